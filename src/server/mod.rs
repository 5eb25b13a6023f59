//! The tonic services a node serves: the public `Api` on `api_addr`, the internal `RaftPeer`
//! on `raft_addr`, and plain HTTP (`/health`, `/metrics`) on `http_addr`.
//!
//! Each server takes a bound listener and a shutdown future (mini-redis style), caps message
//! size and concurrency (`limits.rs`), and validates requests before anything is proposed.

pub mod api;
pub mod auth;
pub mod dashboard;
pub mod http;
pub mod metrics;
pub mod peer_budget;
pub mod raft_service;
pub mod rest;

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

/// The `Api` service with its message limits, behind the auth gate: what the gRPC port serves
/// and what the REST gateway calls in process.
pub fn api_service(replica: Arc<Replica>, gate: Arc<auth::Gate>) -> rest::ApiCall {
    use tower::Layer;
    let service = ApiServer::new(api::ApiService::new(replica))
        .max_decoding_message_size(limits::API_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(limits::API_MESSAGE_BYTES_MAX);
    auth::AuthLayer(gate).layer(service)
}

/// Serves the public API until `shutdown` completes, then drains in-flight calls. Beside `Api`:
/// gRPC server reflection (v1 and v1alpha, the public API's descriptors only) and
/// `grpc.health.v1.Health`, which reports `raftline.v1.Api` (and "") SERVING while the node is
/// ready as `/ready` says, NOT_SERVING otherwise. Those two need no token.
pub async fn serve_api(
    listener: TcpListener,
    replica: Arc<Replica>,
    api: rest::ApiCall,
    tls: Option<Arc<NodeTls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_file_descriptor_set(crate::proto::api_descriptor_set())
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| Error::Internal(format!("grpc reflection: {e}")))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| Error::Internal(format!("grpc reflection: {e}")))?;
    let (stop_health, health_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(report_health(replica, health, health_stopped));
    let router = builder()
        .concurrency_limit_per_connection(limits::API_CONCURRENCY_MAX)
        .add_service(api)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
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
    let _ = stop_health.send(());
    served.map_err(|e| Error::Internal(format!("api server: {e}")))
}

/// Sets the health of `raftline.v1.Api` (and the server's, "") from this node's readiness once a
/// second until `stopped`.
async fn report_health(
    replica: Arc<Replica>,
    health: tonic_health::server::HealthReporter,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let mut last = None;
    loop {
        let ready = http::readiness_reason(&replica).is_none();
        if last != Some(ready) {
            let status = if ready {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            health.set_service_status("raftline.v1.Api", status).await;
            health.set_service_status("", status).await;
            last = Some(ready);
        }
        tokio::select! {
            _ = &mut stopped => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
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
        // One span per call: what a call logs carries the RPC (`--log-format json` puts it in
        // each line's `span`).
        .trace_fn(|req| tracing::info_span!("rpc", path = %req.uri().path()))
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
