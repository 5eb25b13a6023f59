//! `raftline token create|list|revoke` (admin) and `raftline certs init`.

use std::path::PathBuf;

use clap::Subcommand;

use super::connect::client;
use super::parse::parse_duration;
use super::table::{self, Table};
use super::view;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::proto::pb;

/// `raftline token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Make a token; prints its secret once.
    Create {
        /// Role: admin, operator, submitter, worker or viewer.
        #[arg(long)]
        role: String,
        /// A name for people (default: the role).
        #[arg(long)]
        name: Option<String>,
        /// Queue name patterns it is limited to, comma-separated (`build-*`); default every
        /// queue.
        #[arg(long, value_delimiter = ',')]
        queues: Vec<String>,
        /// Lifetime (e.g. 30d, 12h); default no expiry.
        #[arg(long)]
        ttl: Option<String>,
        /// Print `{"id": ..., "secret": ...}` and the rest as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every token (never their secrets).
    List {
        /// Print JSON (one array).
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: it stops working on every node.
    Revoke {
        /// Token id (from `token list`).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `raftline audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// The last accepted writes, newest first: time, token, action, target.
    List {
        /// At most this many (1..=1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only writes made with this token id (`token list` shows ids).
        #[arg(long, value_name = "TOKEN_ID")]
        by: Option<String>,
        /// Print JSON (one array).
        #[arg(long)]
        json: bool,
    },
}

/// Runs `raftline audit ...`.
pub async fn audit(addr: &[String], command: AuditCmd) -> Result<()> {
    let AuditCmd::List { limit, by, json } = command;
    if limit == 0 {
        return Err(Error::InvalidArgument {
            field: "limit".into(),
            message: "is 0; give 1 to 1000".into(),
        });
    }
    let entries = client(addr)?
        .list_audit(pb::ListAuditRequest {
            limit,
            token_id: by.unwrap_or_default(),
            before_seq: 0,
        })
        .await?;
    if json {
        let list = entries.iter().map(|e| {
            serde_json::json!({
                "seq": e.seq, "at_ms": e.at_ms, "token_id": e.token_id,
                "token_name": e.token_name, "action": e.action, "target": e.target,
            })
        });
        view::print_array(list.collect());
        return Ok(());
    }
    let mut t = Table::new(&["SEQ", "AT", "TOKEN", "NAME", "ACTION", "TARGET"]);
    for e in entries {
        t.row(vec![
            table::num(e.seq),
            table::text(table::time(e.at_ms)),
            table::text(e.token_id),
            table::text(e.token_name),
            table::text(e.action),
            table::text(e.target),
        ]);
    }
    t.print();
    Ok(())
}

/// `raftline certs ...`
#[derive(Debug, Subcommand)]
pub enum CertsCmd {
    /// Make a cluster CA and one certificate per node of the config (for its addresses), in
    /// the directory `[tls]` names (default `certs/` beside the config).
    Init {
        /// Cluster config file.
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
        /// Directory to write to (default: that of `[tls] ca_file`, else `certs/` beside the
        /// config).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print JSON: the directory and the files written.
        #[arg(long)]
        json: bool,
    },
}

fn token_json(t: &pb::TokenInfo) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "name": t.name,
        "role": t.role,
        "queues": t.queues,
        "created_ms": t.created_ms,
        "expires_ms": (t.expires_ms > 0).then_some(t.expires_ms),
        "last_used_ms": (t.last_used_ms > 0).then_some(t.last_used_ms),
    })
}

/// Runs `raftline token ...`.
pub async fn token(addr: &[String], command: TokenCmd) -> Result<()> {
    let client = client(addr)?;
    match command {
        TokenCmd::Create {
            role,
            name,
            queues,
            ttl,
            json,
        } => {
            let ttl_ms = match ttl {
                Some(t) => parse_duration("--ttl", &t)?,
                None => 0,
            };
            let request = pb::CreateTokenRequest {
                name: name.unwrap_or_else(|| role.clone()),
                role,
                queues,
                ttl_ms,
            };
            let reply = client.create_token(request).await?;
            let info = reply.token.unwrap_or_default();
            if json {
                let mut value = token_json(&info);
                value["secret"] = serde_json::Value::String(reply.secret);
                println!("{value}");
            } else {
                println!("token {} ({}, role {})", info.id, info.name, info.role);
                println!("secret (shown once): {}", reply.secret);
            }
        }
        TokenCmd::List { json } => {
            let tokens = client.list_tokens().await?.tokens;
            if json {
                view::print_array(tokens.iter().map(token_json).collect());
                return Ok(());
            }
            let mut out = Table::new(&[
                "ID",
                "NAME",
                "ROLE",
                "QUEUES",
                "CREATED",
                "EXPIRES",
                "LAST USED",
            ]);
            for t in &tokens {
                let queues = if t.queues.is_empty() {
                    "*".to_string()
                } else {
                    t.queues.join(",")
                };
                out.row(vec![
                    table::text(&t.id),
                    table::text(&t.name),
                    table::text(&t.role),
                    table::text(queues),
                    table::text(table::time(t.created_ms)),
                    table::text(table::time_opt(Some(t.expires_ms))),
                    table::text(table::time_opt(Some(t.last_used_ms))),
                ]);
            }
            out.print();
        }
        TokenCmd::Revoke { id, json } => {
            client.revoke_token(&id).await?;
            if json {
                println!("{}", serde_json::json!({ "id": id, "state": "revoked" }));
            } else {
                println!("token {id} revoked");
            }
        }
    }
    Ok(())
}

/// Runs `raftline certs ...`.
pub fn certs(command: CertsCmd) -> Result<()> {
    let CertsCmd::Init { config, dir, json } = command;
    let cfg = Config::load(&config).map_err(|e| Error::Config(e.0))?;
    let base = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let dir = dir
        .or_else(|| {
            cfg.tls
                .as_ref()
                .and_then(|t| t.ca_file.parent().map(PathBuf::from))
        })
        .unwrap_or_else(|| base.join("certs"));
    let nodes: Vec<(u64, Vec<std::net::IpAddr>)> = cfg
        .nodes
        .iter()
        .map(|n| {
            let mut ips = vec![n.raft_addr.ip(), n.api_addr.ip(), n.http_addr.ip()];
            ips.sort();
            ips.dedup();
            (n.id, ips)
        })
        .collect();
    let written = crate::tls::init_certs(&dir, &nodes)?;
    if json {
        let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        let v = serde_json::json!({
            "dir": dir.display().to_string(),
            "files": files,
            "tls_configured": cfg.tls.is_some(),
        });
        println!("{v}");
        return Ok(());
    }
    for path in written {
        println!("wrote {}", path.display());
    }
    if cfg.tls.is_none() {
        println!(
            "to turn TLS on, add to {}:\n\n[tls]\nca_file = \"{d}/ca.pem\"\ncert_file = \
             \"{d}/node-{{id}}.pem\"\nkey_file = \"{d}/node-{{id}}-key.pem\"",
            config.display(),
            d = dir.strip_prefix(&base).unwrap_or(&dir).display()
        );
    }
    println!(
        "keep ca-key.pem off the nodes: it signs new node certificates, nothing else needs it"
    );
    Ok(())
}
