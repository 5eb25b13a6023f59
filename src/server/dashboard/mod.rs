//! The web dashboard on every node's `http_addr` (issue 18): one page, served from the binary,
//! that reads and drives the cluster through the REST API with the viewer's own token.
//!
//! The model: the server holds no dashboard state and makes no decision for the page. `GET /`
//! is `index.html`; `/ui/app.js`, `/ui/controls.js` and `/ui/app.css` are the rest of it,
//! embedded with `include_str!` so the binary needs no files and no Node toolchain, and nothing
//! is fetched from the internet at run time. The page asks for a token (or takes `#token=...`
//! once), keeps it in `sessionStorage` and sends it as `authorization: Bearer` on every `/v1/`
//! call, so the roles and queue scopes of the REST API (and so of gRPC) are the dashboard's: a
//! viewer sees, an operator may also pause queues, edit their policies (rate limit,
//! concurrency, breaker), requeue dead letters, trigger schedules and control workflows (pause,
//! resume, cancel, retry or skip a step). The page shows those buttons only to a token that may
//! use them, which it learns from one read only operators and admins may make (`ListWebhooks`;
//! a test below keeps that read's roles the same as the actions'); the server still decides
//! every action.
//!
//! Live updates: `GET /ui/changes` ([`changes`]) is a Server-Sent Events stream that says
//! "applied N" whenever this node applies new log entries, at most
//! [`changes::EVENTS_PER_SECOND_MAX`] times a second; the page re-fetches its current view on
//! each event. It is read with `fetch()` rather than `EventSource` so that it can carry the
//! token. A node serves at most [`changes::STREAMS_MAX`] streams at once (503 beyond), each
//! for a bounded time, after which the page opens a new one.
//!
//! Invariants: every byte of data the page shows comes from a `/v1/` call made with the
//! viewer's token; the change stream carries only log indexes and is refused (with the REST
//! API's own status and body) to a caller that could not read the cluster status.
//!
//! CAVEATS (not implemented): replication lag per member comes from the leader through the
//! membership call's read-only `progress` action, which only admin tokens may make (NodeStatus
//! carries no per-member progress), so other roles see this node's own apply lag only; rates
//! are differences of this node's `/metrics` counters as the page sampled them (none for the
//! first few seconds, and they restart when the node does); a token limited to some queues
//! sees the action buttons of every queue (and gets a 403 for the others); the workflow list
//! stops at 1,000; the page is English only. Each open tab holds its stream's connection and a
//! browser's keep-alive ones (two or three in all) out of the HTTP port's
//! `HTTP_CONNECTIONS_MAX` (64), which `/metrics` scrapes and REST clients share: a few dozen
//! open tabs on one node can crowd them.

pub mod changes;

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::raft::Replica;

/// The page.
const INDEX_HTML: &str = include_str!("assets/index.html");
/// The client: views, routing, the change stream, exports.
const APP_JS: &str = include_str!("assets/app.js");
/// The operator's controls: the role probe, confirmations, the queue policy dialog, workflow
/// control (loaded before `app.js`).
const CONTROLS_JS: &str = include_str!("assets/controls.js");
/// Its style sheet.
const APP_CSS: &str = include_str!("assets/app.css");

/// The dashboard's routes, merged into the HTTP server's router.
pub fn router(api: super::rest::ApiCall, replica: Arc<Replica>) -> Router {
    let streams = changes::Streams::new(api, replica);
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/controls.js",
            get(|| async { asset(CONTROLS_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/ui/changes",
            get(move |headers: axum::http::HeaderMap| {
                let streams = streams.clone();
                async move { streams.open(headers).await }
            }),
        )
}

/// An embedded file. `no-cache` makes the browser revalidate, so a node upgraded in place
/// serves its own page rather than a cached one of the old version.
fn asset(body: &'static str, content_type: &'static str) -> axum::response::Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                 script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use crate::server::auth::allowed;

    /// The page shows its action buttons to a token that may call `ListWebhooks`
    /// (`controls.js`, `probeRole`): that read must allow exactly the roles of every action
    /// the page offers, or it would hide buttons that work or show ones that never do.
    #[test]
    fn role_probe_matches_the_actions() {
        let probe = allowed("ListWebhooks").expect("ListWebhooks in METHODS");
        for action in [
            "PauseQueue",
            "ResumeQueue",
            "SetQueuePolicy",
            "ControlWorkflow",
            "RetryJob",
            "CancelJob",
            "BulkJobs",
            "ControlSchedule",
        ] {
            assert_eq!(
                allowed(action),
                Some(probe),
                "{action} allows other roles than ListWebhooks, the dashboard's role probe"
            );
        }
    }
}
