//! The fallback for machines without root or nftables: a userspace TCP proxy in front of each
//! node's peer port. Peers reach node N at its `raft_addr` (the proxy), and the proxy forwards
//! to the port the node really listens on (`raft_listen_addr`). Nodes bind their outgoing
//! peer connections to their own address, so the proxy knows which node a connection comes
//! from. A blocked directed link (S, D) stops the bytes flowing from S to D on every
//! connection between them, in whichever direction the connection was opened: the stream
//! stalls as it would behind a firewall that drops packets, and flows again when healed.
//! Lossy links are not modelled here (a byte stream cannot lose bytes); the report says so.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Links = Arc<RwLock<BTreeSet<(String, String)>>>;

/// The proxies of one test.
pub struct Proxies {
    blocked: Links,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Proxies {
    /// Starts one proxy per node: (node ip, address peers dial, address the node listens on).
    pub async fn start(nodes: &[(String, SocketAddr, SocketAddr)]) -> Result<Proxies, String> {
        let blocked: Links = Arc::default();
        let mut tasks = Vec::new();
        for (ip, public, private) in nodes {
            let listener = TcpListener::bind(public)
                .await
                .map_err(|e| format!("proxy for {public}: {e}"))?;
            let (ip, private, blocked) = (ip.clone(), *private, blocked.clone());
            tasks.push(tokio::spawn(accept(listener, ip, private, blocked)));
        }
        Ok(Proxies { blocked, tasks })
    }

    /// Blocks exactly the given directed links (source ip, destination ip).
    pub fn set_blocked(&self, links: &BTreeSet<(String, String)>) {
        *self.blocked.write().expect("links") = links.clone();
    }

    /// Removes every block.
    pub fn heal(&self) {
        self.blocked.write().expect("links").clear();
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn accept(listener: TcpListener, dst_ip: String, private: SocketAddr, blocked: Links) {
    loop {
        let Ok((inbound, peer)) = listener.accept().await else {
            continue;
        };
        let src_ip = peer.ip().to_string();
        let (dst_ip, blocked) = (dst_ip.clone(), blocked.clone());
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(private).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            let forward = pump(
                in_read,
                out_write,
                (src_ip.clone(), dst_ip.clone()),
                blocked.clone(),
            );
            let backward = pump(out_read, in_write, (dst_ip, src_ip), blocked);
            tokio::select! {
                _ = forward => {}
                _ = backward => {}
            }
        });
    }
}

/// Copies bytes from `from` to `to`, holding them while the directed `link` is blocked.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: (String, String),
    blocked: Links,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while blocked.read().expect("links").contains(&link) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
