//! A client of the public API over one or more node addresses, used by the CLI, tests,
//! `jepsen/` and `bench/`.
//!
//! Any node serves every call (followers forward writes to the leader), so the client only
//! needs one reachable node. It tries the addresses in turn, starting with the last one that
//! answered. A write moves on to the next address only when the request provably never reached
//! the node (connection refused or not established); once a node has it, its answer is final,
//! so a retry can never submit a job twice. Reads move on after any UNAVAILABLE.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::error::{not_sent, Error, Result};
use crate::machine::limits;
use crate::proto::pb;
use crate::proto::pb::api_client::ApiClient;

/// Connect timeout per node.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// A client over a fixed set of node addresses.
pub struct Client {
    nodes: Vec<(String, ApiClient<Channel>)>,
    preferred: AtomicUsize,
}

impl Client {
    /// A client of the nodes at `addrs` (`host:port`); connections open lazily.
    pub fn new<S: AsRef<str>>(addrs: &[S]) -> Result<Client> {
        if addrs.is_empty() {
            return Err(Error::Config("no node address given (--addr)".into()));
        }
        let nodes = addrs
            .iter()
            .map(|a| {
                let addr = a.as_ref().trim().to_string();
                let endpoint = Endpoint::from_shared(format!("http://{addr}")).map_err(|e| {
                    Error::Config(format!("--addr {addr:?} is not an address: {e}"))
                })?;
                let channel = endpoint
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .connect_lazy();
                let client = ApiClient::new(channel)
                    .max_decoding_message_size(limits::API_MESSAGE_BYTES_MAX)
                    .max_encoding_message_size(limits::API_MESSAGE_BYTES_MAX);
                Ok((addr, client))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Client {
            nodes,
            preferred: AtomicUsize::new(0),
        })
    }

    /// The addresses this client uses.
    pub fn addrs(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|(a, _)| a.as_str())
    }

    async fn call<T, F, Fut>(&self, idempotent: bool, f: F) -> Result<T>
    where
        F: Fn(ApiClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..self.nodes.len() {
            let index = (start + i) % self.nodes.len();
            let (addr, client) = &self.nodes[index];
            match f(client.clone()).await {
                Ok(reply) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(reply.into_inner());
                }
                Err(status) => {
                    let retry = not_sent(&status)
                        || (idempotent && status.code() == tonic::Code::Unavailable);
                    if !retry {
                        return Err(status.into());
                    }
                    last = Some(match Error::from(status) {
                        Error::Unavailable { message, leader } => Error::Unavailable {
                            message: format!("{addr}: {message}"),
                            leader,
                        },
                        e => e,
                    });
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::unavailable("no node answered")))
    }

    /// Submits a job; returns its id.
    pub async fn submit(&self, req: pb::SubmitRequest) -> Result<u64> {
        let reply = self
            .call(false, |mut c| {
                let req = req.clone();
                async move { c.submit(req).await }
            })
            .await?;
        Ok(reply.id)
    }

    /// Reads a job, linearizable unless `stale`.
    pub async fn job(&self, id: u64, stale: bool) -> Result<pb::Job> {
        self.call(true, |mut c| async move {
            c.get_job(pb::GetJobRequest { id, stale }).await
        })
        .await
    }

    /// The status of the node at index `i` of the address list (no failover: it is that
    /// node's own view).
    pub async fn node_status(&self, i: usize) -> Result<pb::NodeStatusResponse> {
        let (_, client) = self
            .nodes
            .get(i)
            .ok_or_else(|| Error::Internal(format!("no node at index {i}")))?;
        let mut client = client.clone();
        Ok(client
            .node_status(pb::NodeStatusRequest {})
            .await?
            .into_inner())
    }

    /// Number of node addresses.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the client has no addresses (never true for a constructed client).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}
