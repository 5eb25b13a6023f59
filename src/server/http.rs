//! HTTP on `http_addr`: the REST API under `/v1/` ([`super::rest`]), `/health` (200 while the process serves, with this node's Raft view),
//! `/ready` (200 when this node can serve: it knows a leader (and, leading, heard a majority
//! within the request timeout), is a voter and has applied its log to within
//! `READY_APPLY_LAG_MAX` entries; 503 with the reason otherwise; for load
//! balancers and Kubernetes) and `/metrics` (Prometheus text); HTTPS (HTTP/1.1 or HTTP/2, the node's certificate) when `[tls]` is set. The
//! dashboard comes in a later issue.

use std::future::Future;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::error::{Error, Result};
use crate::machine::limits;
use crate::raft::Replica;

/// Serves HTTP until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    replica: Arc<Replica>,
    api: super::rest::ApiCall,
    tls: Option<Arc<crate::tls::NodeTls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let health = {
        let replica = replica.clone();
        move || async move {
            let s = replica.status();
            axum::Json(serde_json::json!({
                "id": s.id,
                "state": s.state,
                "leader": s.leader,
                "term": s.term,
                "last_applied": s.last_applied,
            }))
        }
    };
    let ready = {
        let replica = replica.clone();
        move || async move { readiness(&replica) }
    };
    let dashboard = super::dashboard::router(api.clone(), replica.clone());
    let metrics = move || async move { super::metrics::text(&replica) };
    let rest = move |method: axum::http::Method,
                     uri: axum::http::Uri,
                     headers: axum::http::HeaderMap,
                     body: axum::body::Bytes| {
        super::rest::handle(api.clone(), method, uri, headers, body)
    };
    let openapi = || async { axum::Json(super::rest::openapi::document()) };
    let app = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/{*path}", axum::routing::any(rest))
        .merge(dashboard)
        .layer(axum::extract::DefaultBodyLimit::max(
            limits::REST_BODY_BYTES_MAX,
        ));
    let local = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("http: {e}")))?;
    let listener = Capped {
        conns: Box::pin(crate::tls::incoming(
            listener,
            tls.map(|t| (t, crate::tls::Port::Http)),
            limits::HTTP_CONNECTIONS_MAX,
        )),
        local,
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Internal(format!("http server: {e}")))
}

/// Why this node is not ready to serve, or `None` when it is (`/ready`, gRPC health).
pub fn readiness_reason(replica: &Replica) -> Option<String> {
    let s = replica.status();
    let voter = s.members.iter().any(|(id, _, voter)| *id == s.id && *voter);
    let behind = s.last_log_index.saturating_sub(s.last_applied);
    if s.leader.is_none() {
        Some("no leader known".to_string())
    } else if s.leader_without_quorum {
        Some("leads, but no majority has answered it within the request timeout".to_string())
    } else if !voter {
        Some("not a voter of the cluster".to_string())
    } else if behind > limits::READY_APPLY_LAG_MAX {
        Some(format!("applying its log: {behind} entries behind"))
    } else {
        None
    }
}

/// `/ready`: 200 or 503, with the reason when not ready.
fn readiness(replica: &Replica) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    let reason = readiness_reason(replica);
    let s = replica.status();
    let code = if reason.is_some() {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    } else {
        axum::http::StatusCode::OK
    };
    let body = serde_json::json!({
        "ready": reason.is_none(),
        "reason": reason,
        "id": s.id,
        "state": s.state,
        "leader": s.leader,
        "last_applied": s.last_applied,
        "last_log_index": s.last_log_index,
    });
    (code, axum::Json(body))
}

/// The HTTP listener: connections from [`crate::tls::incoming`] (at most
/// `HTTP_CONNECTIONS_MAX` open, TLS when configured, idle ones closed).
struct Capped {
    conns: std::pin::Pin<Box<dyn futures::Stream<Item = std::io::Result<crate::tls::Conn>> + Send>>,
    local: std::net::SocketAddr,
}

impl axum::serve::Listener for Capped {
    type Io = crate::tls::Conn;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        use futures::StreamExt;
        loop {
            match self.conns.next().await {
                Some(Ok(conn)) => {
                    let addr = conn.remote_addr().unwrap_or(self.local);
                    return (conn, addr);
                }
                Some(Err(e)) => tracing::warn!("http accept: {e}"),
                // The stream ends only when its listener task is gone: nothing more comes.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
