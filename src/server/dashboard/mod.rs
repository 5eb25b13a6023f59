//! The web dashboard on every node's `http_addr` (issue 18): a page served from the binary
//! that reads the REST API with the viewer's token. Being built.

use std::sync::Arc;

use axum::Router;

use crate::raft::Replica;

/// The dashboard's routes, merged into the HTTP server's router.
pub fn router(_api: super::rest::ApiCall, _replica: Arc<Replica>) -> Router {
    Router::new()
}
