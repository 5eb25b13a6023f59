//! A per-node budget of large messages in flight on the peer port. A gRPC message starts with
//! a 5-byte header holding its length; a request whose message is over `PEER_BUDGET_FROM_BYTES`
//! reserves that many bytes of the node's `PEER_INFLIGHT_BYTES_MAX` before any more of its body
//! is read, and holds them until the request is done. So however many connections and streams
//! carry them, large messages being received can't hold more than the budget in memory; one
//! that waits longer than `PEER_BUDGET_WAIT_MS` for room gets RESOURCE_EXHAUSTED (openraft
//! sends it again). Small messages (votes, heartbeats, most appends) never wait, so a budget
//! held by slow senders can't stall elections or the log's steady replication.
//!
//! A reservation is all or nothing, so two waiting requests can't each hold part of what the
//! other needs. CAVEATS: a sender that claims a large message and then stalls holds its bytes
//! until the connection's idle timeout; mutual TLS keeps strangers from doing so.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::machine::limits;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Reserving = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, BoxError>> + Send>>;

/// The layer that puts the budget in front of the peer service.
#[derive(Clone)]
pub struct BudgetLayer(Arc<Semaphore>);

impl Default for BudgetLayer {
    /// A fresh budget of `PEER_INFLIGHT_BYTES_MAX` bytes for one node.
    fn default() -> BudgetLayer {
        BudgetLayer(Arc::new(Semaphore::new(limits::PEER_INFLIGHT_BYTES_MAX)))
    }
}

impl<S> tower::Layer<S> for BudgetLayer {
    type Service = Budgeted<S>;

    fn layer(&self, inner: S) -> Budgeted<S> {
        Budgeted {
            inner,
            budget: self.0.clone(),
        }
    }
}

/// A service whose requests' bodies count against the budget.
#[derive(Clone)]
pub struct Budgeted<S> {
    inner: S,
    budget: Arc<Semaphore>,
}

impl<S, B> tower::Service<http::Request<B>> for Budgeted<S>
where
    S: tower::Service<http::Request<tonic::body::Body>>,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let budget = self.budget.clone();
        self.inner.call(req.map(|body| {
            tonic::body::Body::new(Counted {
                inner: body,
                budget,
                header: [0; 5],
                have: 0,
                remaining: 0,
                reserving: None,
                held: Vec::new(),
            })
        }))
    }
}

/// A request body that reserves each large message's length before reading on.
struct Counted<B> {
    inner: B,
    budget: Arc<Semaphore>,
    /// Header bytes of the next message seen so far.
    header: [u8; 5],
    have: usize,
    /// Bytes of the current message still to come.
    remaining: u64,
    reserving: Option<Reserving>,
    held: Vec<OwnedSemaphorePermit>,
}

impl<B> Counted<B> {
    /// Follows the message framing through `data`; returns the bytes to reserve for the large
    /// messages whose headers it completed.
    fn scan(&mut self, data: &[u8]) -> u64 {
        let mut need = 0u64;
        let mut at = 0;
        while at < data.len() {
            if self.remaining > 0 {
                let take = self.remaining.min((data.len() - at) as u64);
                self.remaining -= take;
                at += take as usize;
                continue;
            }
            self.header[self.have] = data[at];
            self.have += 1;
            at += 1;
            if self.have == self.header.len() {
                self.have = 0;
                let len = u64::from(u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]));
                self.remaining = len;
                if len > limits::PEER_BUDGET_FROM_BYTES {
                    need = need.saturating_add(len);
                }
            }
        }
        need
    }

    fn reserve(&self, bytes: u64) -> Reserving {
        let budget = self.budget.clone();
        // A claim beyond what the message limit allows is refused by the decoder anyway.
        let bytes = bytes.min(limits::PEER_INFLIGHT_BYTES_MAX as u64) as u32;
        Box::pin(async move {
            let wait = Duration::from_millis(limits::PEER_BUDGET_WAIT_MS);
            match tokio::time::timeout(wait, budget.acquire_many_owned(bytes)).await {
                Ok(Ok(permit)) => Ok(permit),
                Ok(Err(closed)) => Err(closed.into()),
                Err(_) => Err(tonic::Status::resource_exhausted(format!(
                    "{} bytes of large peer messages are in flight on this node, the budget \
                     (PEER_INFLIGHT_BYTES_MAX); send it again later",
                    limits::PEER_INFLIGHT_BYTES_MAX
                ))
                .into()),
            }
        })
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(reserving) = self.reserving.as_mut() {
            let reserved = std::task::ready!(reserving.as_mut().poll(cx));
            self.reserving = None;
            match reserved {
                Ok(permit) => self.held.push(permit),
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
        match std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                let need = frame.data_ref().map_or(0, |data| self.scan(data));
                if need > 0 {
                    self.reserving = Some(self.reserve(need));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.reserving.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
