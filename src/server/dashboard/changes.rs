//! `GET /ui/changes`: a Server-Sent Events stream of this node's applied index, so the page can
//! re-read its view soon after a commit instead of polling.
//!
//! Each event is `event: applied` with the index as its data: one when the stream opens, then
//! one whenever this node has applied entries past the last index sent, at most
//! [`EVENTS_PER_SECOND_MAX`] a second (a burst of commits is one event, sent when the gap
//! since the previous one has passed, carrying the newest index). A comment line every
//! [`KEEP_ALIVE`] keeps proxies from closing a quiet stream and lets the server notice a page
//! that went away. The stream says nothing about what changed: the page re-reads it through
//! the REST API with its token, so the stream can't show anyone what their role would not.
//!
//! Bounds: at most [`STREAMS_MAX`] streams per node (503 beyond, with the REST API's error
//! body), fewer than the HTTP port's connections so REST calls keep a share; a stream ends
//! after three quarters of `connection_idle_ms` (the node closes a connection that has sent
//! nothing for that long, and a stream's client sends nothing), and the page opens another.
//! The caller must be able to read `/v1/cluster/status`: the check runs that REST call with the
//! request's headers, and any other answer than 200 is passed back as it is.
//!
//! CAVEATS (not implemented): no `Last-Event-ID` resume (the page re-reads its view on every
//! new stream, which covers anything it missed); a token revoked while its stream is open keeps
//! the stream (of indexes only) until the stream's time is up.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::machine::limits;
use crate::raft::{Changes, Replica};
use crate::server::rest::{self, ApiCall};

/// Change streams one node serves at once. Each holds an HTTP connection, so this stays well
/// below the port's `HTTP_CONNECTIONS_MAX` (a limit of the dashboard alone, kept here beside
/// the only code that uses it, rather than in the machine's `limits.rs`).
pub const STREAMS_MAX: usize = 32;
const _: () = assert!(STREAMS_MAX * 2 <= limits::HTTP_CONNECTIONS_MAX);

/// Events a stream sends per second at most: each one makes the page re-read its view.
pub const EVENTS_PER_SECOND_MAX: u64 = 5;
const _: () = assert!(
    EVENTS_PER_SECOND_MAX >= 2,
    "live updates must stay under 1 s"
);

/// The shortest gap between two events of a stream.
const EVENT_GAP: Duration = Duration::from_millis(1_000 / EVENTS_PER_SECOND_MAX);

/// How often a quiet stream sends a comment line.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The change streams of one node: what they read and the slots they hold.
#[derive(Clone)]
pub struct Streams {
    api: ApiCall,
    replica: Arc<Replica>,
    slots: Arc<Semaphore>,
}

impl Streams {
    /// No stream open yet; up to [`STREAMS_MAX`] at once.
    pub fn new(api: ApiCall, replica: Arc<Replica>) -> Streams {
        Streams {
            api,
            replica,
            slots: Arc::new(Semaphore::new(STREAMS_MAX)),
        }
    }

    /// Serves `GET /ui/changes` for a request with `headers`.
    pub async fn open(&self, headers: HeaderMap) -> Response {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return busy();
        };
        let check = rest::handle(
            self.api.clone(),
            Method::GET,
            Uri::from_static("/v1/cluster/status"),
            headers,
            Bytes::new(),
        )
        .await;
        if check.status() != StatusCode::OK {
            return check;
        }
        let mut changes = self.replica.changes();
        changes.mark_seen();
        let watch = Watch {
            changes,
            replica: self.replica.clone(),
            sent: None,
            last_sent: Instant::now() - EVENT_GAP,
            until: Instant::now() + crate::tls::connection_idle() * 3 / 4,
            _slot: slot,
        };
        let events = futures::stream::unfold(watch, Watch::next);
        let mut response = Sse::new(events)
            .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
            .into_response();
        // No proxy buffering (nginx), so an event reaches the page when it is sent.
        response.headers_mut().insert(
            "x-accel-buffering",
            axum::http::HeaderValue::from_static("no"),
        );
        response
    }
}

/// 503 with the REST API's error body: every stream slot is taken.
fn busy() -> Response {
    let body = serde_json::json!({ "error": {
        "code": 503,
        "status": "UNAVAILABLE",
        "field": null,
        "message": format!(
            "this node already serves {STREAMS_MAX} change streams (the dashboard's \
             STREAMS_MAX); try another node or later"
        ),
    }});
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

/// One open stream.
struct Watch {
    changes: Changes,
    replica: Arc<Replica>,
    /// The last index sent, `None` before the first event.
    sent: Option<u64>,
    last_sent: Instant,
    /// When the stream ends.
    until: Instant,
    _slot: OwnedSemaphorePermit,
}

impl Watch {
    /// The next event, or `None` once the stream's time is up.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Watch)> {
        loop {
            // Marked before the read, so a change after the read wakes the wait below.
            self.changes.mark_seen();
            // From the applied state, not openraft's metrics: they are updated after the
            // apply that wakes this wait, so reading them here could miss the last change.
            let applied = self.replica.applied_index();
            if self.sent != Some(applied) {
                let due = self.last_sent + EVENT_GAP;
                if Instant::now() < due {
                    // Sent when the gap has passed, with the index then (re-read above).
                    if due >= self.until {
                        return None;
                    }
                    tokio::time::sleep_until(due).await;
                    continue;
                }
                debug_assert!(
                    self.sent.is_none_or(|s| s < applied),
                    "applied index went back from {:?} to {applied}",
                    self.sent
                );
                self.sent = Some(applied);
                self.last_sent = Instant::now();
                let event = Event::default().event("applied").data(applied.to_string());
                return Some((Ok(event), self));
            }
            if tokio::time::timeout_at(self.until, self.changes.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }
}
