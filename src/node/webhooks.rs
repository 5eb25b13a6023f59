//! The leader's webhook deliverer: POSTs the outbox's due deliveries (`machine/webhooks.rs`)
//! and proposes each attempt's outcome. Followers do nothing; a node that loses the
//! leadership drops its attempts in flight, and the next leader makes them again (same
//! delivery id), so every delivery is made at least once.
//!
//! Each POST carries:
//! - `content-type: application/json` and the body the outbox holds:
//!   `{"id":"<delivery id>","topic":"job.dead","created_ms":...,"data":{...}}`;
//! - `x-raftline-delivery: <delivery id>` (the same on every attempt: dedup on it),
//!   `x-raftline-topic`, `x-raftline-attempt` (1 for the first);
//! - `x-raftline-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, as
//!   Stripe signs: a receiver recomputes it with the secret, compares in constant time and
//!   refuses an old `t` to stop replays.
//!
//! A 2xx answer is a delivery; anything else, no answer within `WEBHOOK_TIMEOUT_MS`, or a
//! connection error is a failed attempt, retried after the outbox's backoff. The deliverer
//! wakes on every applied change, so a new event goes out within one commit round when a slot
//! is free (`WEBHOOK_IN_FLIGHT_MAX` POSTs at once).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;

use crate::machine::limits;
use crate::machine::webhooks::{AttemptOutcome, DeliveryId, DueDelivery};
use crate::machine::Command;
use crate::raft::{wall_clock_ms, Replica};

/// Longest sleep between checks while nothing is due.
const CHECK_INTERVAL: Duration = Duration::from_millis(limits::TICKER_CHECK_MS);

/// Runs until `shutdown` completes.
pub async fn run(replica: Arc<Replica>, shutdown: impl Future<Output = ()>) {
    tokio::select! {
        _ = deliver(replica) => {}
        _ = shutdown => {}
    }
}

async fn deliver(replica: Arc<Replica>) {
    let tls = client_tls();
    let mut changes = replica.changes();
    let mut busy: BTreeSet<DeliveryId> = BTreeSet::new();
    let mut in_flight: JoinSet<DeliveryId> = JoinSet::new();
    loop {
        changes.mark_seen();
        let wait = if replica.is_leader() {
            let now = wall_clock_ms().max(replica.read(|m| m.now_ms()));
            let room = limits::WEBHOOK_IN_FLIGHT_MAX.saturating_sub(busy.len());
            let (due, next) = replica.read(|m| m.webhooks().due(now, &busy, room));
            for d in due {
                busy.insert(d.delivery.id);
                let (replica, tls) = (replica.clone(), tls.clone());
                in_flight.spawn(async move { attempt(&replica, &tls, d).await });
            }
            next.map_or(CHECK_INTERVAL, |t| {
                Duration::from_millis(t.saturating_sub(now)).min(CHECK_INTERVAL)
            })
        } else {
            in_flight.abort_all();
            busy.clear();
            CHECK_INTERVAL
        };
        tokio::select! {
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Ok(id) = done {
                    busy.remove(&id);
                }
            }
            _ = tokio::time::timeout(wait, changes.changed()) => {}
        }
    }
}

/// Makes one attempt of a delivery and proposes its outcome.
async fn attempt(replica: &Replica, tls: &Arc<rustls::ClientConfig>, d: DueDelivery) -> DeliveryId {
    let id = d.delivery.id;
    let number = d.delivery.attempts + 1;
    let limit = Duration::from_millis(limits::WEBHOOK_TIMEOUT_MS);
    let (status, error) = match tokio::time::timeout(limit, post(tls, &d, number)).await {
        Ok(Ok(status)) if (200..300).contains(&status) => (status, String::new()),
        Ok(Ok(status)) => (status, format!("the receiver answered HTTP {status}")),
        Ok(Err(e)) => (0, e),
        Err(_) => (
            0,
            format!("no answer within {} ms", limits::WEBHOOK_TIMEOUT_MS),
        ),
    };
    if !error.is_empty() {
        tracing::debug!(delivery = id, attempt = number, "webhook: {error}");
    }
    let outcome = AttemptOutcome {
        delivery: id,
        attempt: number,
        status: status.into(),
        error,
    };
    if let Err(e) = replica.propose(Command::WebhookAttempt(outcome)).await {
        tracing::debug!(delivery = id, "webhook outcome not recorded: {e}");
    }
    id
}

/// The signature header's value for `body` at unix time `t` (seconds).
pub fn signature(secret: &str, t: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// POSTs one delivery; the HTTP status, or why there was none.
async fn post(
    tls: &Arc<rustls::ClientConfig>,
    d: &DueDelivery,
    number: u32,
) -> Result<u16, String> {
    let uri: http::Uri = d.url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let https = uri.scheme_str() == Some("https");
    let authority = uri.authority().ok_or("the URL has no host")?.clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let body = Bytes::from(d.delivery.body.clone());
    let t = wall_clock_ms() / 1000;
    let request = http::Request::post(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("raftline-webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .header("x-raftline-delivery", d.delivery.id.to_string())
        .header("x-raftline-topic", d.delivery.topic.as_str())
        .header("x-raftline-attempt", number.to_string())
        .header("x-raftline-signature", signature(&d.secret, t, &body))
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if !https {
        return exchange(tcp, request).await;
    }
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("TLS name {host}: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}: {e}"))?;
    exchange(stream, request).await
}

async fn exchange<I>(io: I, request: http::Request<Full<Bytes>>) -> Result<u16, String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let conn = tokio::spawn(conn);
    let response = sender.send_request(request).await;
    conn.abort();
    Ok(response
        .map_err(|e| format!("HTTP: {e}"))?
        .status()
        .as_u16())
}

/// TLS for https receivers: the system's root certificates (none found: https deliveries fail
/// with the handshake's error, named in the delivery log).
fn client_tls() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!("webhooks: no system root certificates found; https receivers will fail");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    /// The signature is HMAC-SHA256 over "t.body", as Stripe's (a known vector computed
    /// with Python's hmac module).
    #[test]
    fn signature_matches_a_known_vector() {
        assert_eq!(
            super::signature("whsec_test", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }
}
