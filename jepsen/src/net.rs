//! Network faults between nodes with nftables: one table per test, holding a named set of
//! blocked (source, destination) address pairs and a rule dropping matching packets on the
//! output hook (loopback traffic passes it), and a set of lossy pairs losing 30% of packets. A partition is a new content of the set; healing
//! empties it; teardown deletes the table. Needs root and the `nft` tool; without them the
//! harness runs without network faults and says so in the report.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

/// The nftables table of one test.
pub struct Net {
    table: String,
}

fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("nft stdin")?
        .write_all(script.as_bytes())
        .map_err(|e| format!("nft: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    /// Creates the table, or explains why network faults are not available.
    pub fn new(test: &str) -> Result<Net, String> {
        let table = format!("raftline_jepsen_{test}");
        let script = format!(
            "table inet {table} {{\n\
               set blocked {{ type ipv4_addr . ipv4_addr; }}\n\
               set lossy {{ type ipv4_addr . ipv4_addr; }}\n\
               chain out {{ type filter hook output priority 0; policy accept;\n\
                 ip saddr . ip daddr @blocked drop\n\
                 ip saddr . ip daddr @lossy numgen random mod 100 < 30 drop\n\
               }}\n\
             }}\n"
        );
        nft(&script)?;
        Ok(Net { table })
    }

    /// Blocks exactly the given directed links (source ip, destination ip); all others pass.
    pub fn set_blocked(&self, links: &BTreeSet<(String, String)>) -> Result<(), String> {
        self.replace_set("blocked", links)
    }

    /// Drops 30% of the packets on exactly the given directed links.
    pub fn set_lossy(&self, links: &BTreeSet<(String, String)>) -> Result<(), String> {
        self.replace_set("lossy", links)
    }

    /// Replaces the content of the named set of (source, destination) pairs.
    fn replace_set(&self, set: &str, links: &BTreeSet<(String, String)>) -> Result<(), String> {
        let mut script = format!("flush set inet {} {set}\n", self.table);
        if !links.is_empty() {
            let elements: Vec<String> = links.iter().map(|(a, b)| format!("{a} . {b}")).collect();
            script.push_str(&format!(
                "add element inet {} {set} {{ {} }}\n",
                self.table,
                elements.join(", ")
            ));
        }
        nft(&script)
    }

    /// Removes every block and every lossy link.
    pub fn heal(&self) -> Result<(), String> {
        self.set_blocked(&BTreeSet::new())?;
        self.set_lossy(&BTreeSet::new())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = nft(&format!("delete table inet {}\n", self.table));
    }
}

/// How network faults are injected: nftables rules, or the userspace proxies.
pub enum Faults {
    /// nftables (needs root): real packet drops, lossy links too.
    Nft(Net),
    /// Userspace proxies in front of the nodes' peer ports: blocks only.
    Proxy(crate::proxy::Proxies),
}

impl Faults {
    /// Blocks exactly the given directed links.
    pub fn set_blocked(&self, links: &BTreeSet<(String, String)>) -> Result<(), String> {
        match self {
            Faults::Nft(net) => net.set_blocked(links),
            Faults::Proxy(p) => {
                p.set_blocked(links);
                Ok(())
            }
        }
    }

    /// Makes the given links lossy (nftables only).
    pub fn set_lossy(&self, links: &BTreeSet<(String, String)>) -> Result<(), String> {
        match self {
            Faults::Nft(net) => net.set_lossy(links),
            Faults::Proxy(_) => Err("lossy links need nftables".into()),
        }
    }

    /// Whether lossy links can be injected.
    pub fn lossy(&self) -> bool {
        matches!(self, Faults::Nft(_))
    }

    /// Removes every fault.
    pub fn heal(&self) -> Result<(), String> {
        match self {
            Faults::Nft(net) => net.heal(),
            Faults::Proxy(p) => {
                p.heal();
                Ok(())
            }
        }
    }
}
