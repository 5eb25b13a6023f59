//! rest: durable submit over the REST API (`POST /v1/jobs`, a JSON body, HTTP/1.1 keep-alive
//! connections) against gRPC `Submit` on the same cluster, 256 B payloads, clients spread over
//! every node, in alternating rounds. Prints each round and the median ratio `rest_vs_grpc`.
//! The REST path runs the same gRPC service in process, so the difference is the JSON and
//! HTTP/1.1 work of the gateway (and one request per connection at a time).

use std::path::PathBuf;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex;

use crate::{closed_loop, ms, payload_job, Bench, Looped, PAYLOAD_BYTES};

/// One client's keep-alive connection, opened on first use and again after an error.
type Conn = Arc<Mutex<Option<SendRequest<Full<Bytes>>>>>;

/// Runs `rounds` alternating rounds of gRPC and REST submits at `clients` clients.
pub async fn run(b: &mut Bench, clients: usize, secs: u64, rounds: usize) {
    let token = b.cluster.as_ref().and_then(|c| c.access.token.clone());
    // The same 256 B payload, base64 (bytes fields are base64 in JSON): "eHh4" is "xxx", "eA=="
    // one "x".
    let payload = "eHh4".repeat(PAYLOAD_BYTES / 3) + "eA==";
    let body = Bytes::from(format!(r#"{{"queue":"bench-rest","payload":"{payload}"}}"#));
    let conns: Arc<Vec<Conn>> = Arc::new((0..clients).map(|_| Conn::default()).collect());
    let mut ratios = Vec::new();
    for round in 1..=rounds.max(1) {
        let pool = b.clients.clone();
        let grpc = closed_loop(clients, secs, move |c| {
            let client = pool[c % pool.len()].clone();
            async move { client.submit(payload_job("bench-rest")).await.is_ok() }
        })
        .await;
        let target = Arc::new((
            b.http.clone(),
            b.http_ca.clone(),
            token.clone(),
            body.clone(),
        ));
        let conns = conns.clone();
        let rest = closed_loop(clients, secs, move |c| {
            let (target, conn) = (target.clone(), conns[c].clone());
            async move {
                let (addrs, ca, token, body) = &*target;
                let addr = &addrs[c % addrs.len()];
                match submit(&conn, addr, ca.as_ref(), token.as_deref(), body.clone()).await {
                    Ok(()) => true,
                    Err(e) => {
                        first_error(&e);
                        *conn.lock().await = None;
                        false
                    }
                }
            }
        })
        .await;
        let ratio = rest.rate / grpc.rate.max(1.0);
        print_round(round, clients, &grpc, &rest, ratio);
        b.record(serde_json::json!({
            "section": "rest", "round": round, "clients": clients,
            "grpc_ops_per_s": grpc.rate, "rest_ops_per_s": rest.rate, "rest_vs_grpc": ratio,
            "grpc_p50_ms": ms(&grpc.hist, 0.5), "rest_p50_ms": ms(&rest.hist, 0.5),
            "grpc_errors": grpc.errors, "rest_errors": rest.errors,
        }));
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "rest: rest_vs_grpc={:.2} (median of {} rounds, {clients} clients)",
        ratios[ratios.len() / 2],
        ratios.len()
    );
}

/// One `POST /v1/jobs` on the client's connection (HTTPS when the cluster serves TLS).
async fn submit(
    conn: &Conn,
    addr: &str,
    ca: Option<&PathBuf>,
    token: Option<&str>,
    body: Bytes,
) -> Result<(), String> {
    let mut guard = conn.lock().await;
    if guard.is_none() {
        *guard = Some(connect(addr, ca).await?);
    }
    let sender = guard.as_mut().expect("connected");
    let mut req = hyper::Request::post("/v1/jobs")
        .header("host", addr)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let reply = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = reply.status();
    // Read the body to its end so the connection can carry the next request.
    let body = reply
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{status}: {:?}", body.to_bytes()))
    }
}

async fn connect(addr: &str, ca: Option<&PathBuf>) -> Result<SendRequest<Full<Bytes>>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (sender, driver) = match ca {
        Some(ca) => {
            let mut config =
                (*raftline::tls::client_config(ca, None).map_err(|e| e.to_string())?).clone();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let ip: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
            let name = rustls_pki_types::ServerName::IpAddress(ip.ip().into());
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
            (
                sender,
                tokio::spawn(async move {
                    let _ = conn.await;
                }),
            )
        }
        None => {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
            (
                sender,
                tokio::spawn(async move {
                    let _ = conn.await;
                }),
            )
        }
    };
    drop(driver);
    Ok(sender)
}

/// Prints the first failed REST call of the run, so a failing setup says why.
fn first_error(what: &str) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| eprintln!("rest: first failed call: {what}"));
}

fn print_round(round: usize, clients: usize, grpc: &Looped, rest: &Looped, ratio: f64) {
    println!(
        "REST vs gRPC submit  round {round}  clients {clients}  gRPC {:>8.0} ops/s p50 {:>6.2} ms (errors {})  REST {:>8.0} ops/s p50 {:>6.2} ms (errors {})  ratio {ratio:.2}",
        grpc.rate,
        ms(&grpc.hist, 0.5),
        grpc.errors,
        rest.rate,
        ms(&rest.hist, 0.5),
        rest.errors,
    );
}
