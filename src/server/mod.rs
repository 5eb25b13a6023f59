//! The tonic services a node serves: the public `Api` on `api_addr`, the internal `RaftPeer`
//! on `raft_addr`, and plain HTTP (`/health`, `/metrics`) on `http_addr`.
//!
//! Each server takes a bound listener and a shutdown future (mini-redis style), caps message
//! size and concurrency (`limits.rs`), and validates requests before anything is proposed.

pub mod api;
pub mod http;
pub mod raft_service;

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::error::{Error, Result};
use crate::machine::limits;
use crate::proto::pb::api_server::ApiServer;
use crate::proto::pb::raft_peer_server::RaftPeerServer;
use crate::raft::Replica;

/// Serves the public API until `shutdown` completes, then drains in-flight calls.
pub async fn serve_api(
    listener: TcpListener,
    replica: Arc<Replica>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let service = ApiServer::new(api::ApiService::new(replica))
        .max_decoding_message_size(limits::API_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(limits::API_MESSAGE_BYTES_MAX);
    tonic::transport::Server::builder()
        .concurrency_limit_per_connection(limits::API_CONCURRENCY_MAX)
        .add_service(service)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .map_err(|e| Error::Internal(format!("api server: {e}")))
}

/// Serves the internal peer service until `shutdown` completes.
pub async fn serve_raft(
    listener: TcpListener,
    replica: Arc<Replica>,
    cluster: String,
    open: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let service = RaftPeerServer::new(raft_service::RaftService::new(replica, cluster, open))
        .max_decoding_message_size(limits::PEER_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(limits::PEER_MESSAGE_BYTES_MAX);
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .map_err(|e| Error::Internal(format!("raft server: {e}")))
}
