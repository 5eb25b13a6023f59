//! The tonic services a node serves: the public `Api` on `api_addr`, the internal `RaftPeer`
//! on `raft_addr`, and plain HTTP (`/health`, `/metrics`) on `http_addr`.
//!
//! Each server takes a bound listener and a shutdown future (mini-redis style), caps message
//! size and concurrency (`limits.rs`), and validates requests before anything is proposed.

pub mod api;
pub mod auth;
pub mod http;
pub mod peer_budget;
pub mod raft_service;

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::error::{Error, Result};
use crate::machine::limits;
use crate::proto::pb::api_server::ApiServer;
use crate::proto::pb::raft_peer_server::RaftPeerServer;
use crate::raft::Replica;
use crate::tls::NodeTls;

/// Serves the public API until `shutdown` completes, then drains in-flight calls.
pub async fn serve_api(
    listener: TcpListener,
    replica: Arc<Replica>,
    gate: Arc<auth::Gate>,
    tls: Option<Arc<NodeTls>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let service = ApiServer::new(api::ApiService::new(replica))
        .max_decoding_message_size(limits::API_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(limits::API_MESSAGE_BYTES_MAX);
    let router = builder()
        .concurrency_limit_per_connection(limits::API_CONCURRENCY_MAX)
        .layer(auth::AuthLayer(gate))
        .add_service(service);
    let served = router
        .serve_with_incoming_shutdown(
            crate::tls::incoming(
                listener,
                tls.map(|t| (t, crate::tls::Port::Api)),
                limits::API_CONNECTIONS_MAX,
            ),
            shutdown,
        )
        .await;
    served.map_err(|e| Error::Internal(format!("api server: {e}")))
}

/// A server builder with raftline's connection limits: idle connections are closed, streams
/// per connection are capped, and HTTP/2 keepalive finds dead peers.
fn builder() -> tonic::transport::Server {
    // Pings every quarter of the idle timeout: a live client's answers keep its connection.
    let ping = crate::tls::connection_idle() / 4;
    tonic::transport::Server::builder()
        .max_concurrent_streams(Some(limits::STREAMS_PER_CONNECTION_MAX))
        .http2_keepalive_interval(Some(ping))
        .http2_keepalive_timeout(Some(ping))
        .http2_max_pending_accept_reset_streams(Some(limits::PENDING_RESET_STREAMS_MAX))
}

/// Serves the internal peer service until `shutdown` completes.
pub async fn serve_raft(
    listener: TcpListener,
    replica: Arc<Replica>,
    cluster: String,
    open: Arc<AtomicBool>,
    tls: Option<Arc<NodeTls>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let service = RaftPeerServer::new(raft_service::RaftService::new(replica, cluster, open))
        .max_decoding_message_size(limits::PEER_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(limits::PEER_MESSAGE_BYTES_MAX);
    let router = builder()
        .layer(peer_budget::BudgetLayer::default())
        .add_service(service);
    let served = router
        .serve_with_incoming_shutdown(
            crate::tls::incoming(
                listener,
                tls.map(|t| (t, crate::tls::Port::Peer)),
                limits::PEER_CONNECTIONS_MAX,
            ),
            shutdown,
        )
        .await;
    served.map_err(|e| Error::Internal(format!("raft server: {e}")))
}
