//! rest: durable submit over the REST API (`POST /v1/jobs`, a JSON body, HTTP/1.1 keep-alive
//! connections) against gRPC `Submit` on the same cluster, 256 B payloads, clients spread over
//! every node, in alternating rounds. Prints each round and the median ratio `rest_vs_grpc`.
//! The REST path runs the same gRPC service in process, so the difference is the JSON and
//! HTTP/1.1 work of the gateway (and one request per connection at a time).

use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;

use crate::{closed_loop, ms, payload_job, Bench, Looped, PAYLOAD_BYTES};

/// Runs `rounds` alternating rounds of gRPC and REST submits at `clients` clients.
pub async fn run(b: &mut Bench, clients: usize, secs: u64, rounds: usize) {
    let token = b.cluster.as_ref().and_then(|c| c.access.token.clone());
    let http: HttpClient<_, Full<Bytes>> = HttpClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(clients)
        .build_http();
    // The same 256 B payload, base64 (bytes fields are base64 in JSON): "eHh4" is "xxx", "eA=="
    // one "x".
    let payload = "eHh4".repeat(PAYLOAD_BYTES / 3) + "eA==";
    let body = Bytes::from(format!(r#"{{"queue":"bench-rest","payload":"{payload}"}}"#));
    let mut ratios = Vec::new();
    for round in 1..=rounds.max(1) {
        let pool = b.clients.clone();
        let grpc = closed_loop(clients, secs, move |c| {
            let client = pool[c % pool.len()].clone();
            async move { client.submit(payload_job("bench-rest")).await.is_ok() }
        })
        .await;
        let urls: Arc<Vec<String>> = Arc::new(
            b.http
                .iter()
                .map(|a| format!("http://{a}/v1/jobs"))
                .collect(),
        );
        let (http, body, token) = (http.clone(), body.clone(), token.clone());
        let rest = closed_loop(clients, secs, move |c| {
            let url = urls[c % urls.len()].clone();
            let (http, body, token) = (http.clone(), body.clone(), token.clone());
            async move {
                let mut req = hyper::Request::post(url).header("content-type", "application/json");
                if let Some(t) = &token {
                    req = req.header("authorization", format!("Bearer {t}"));
                }
                let Ok(req) = req.body(Full::new(body)) else {
                    return false;
                };
                match http.request(req).await {
                    Ok(reply) => {
                        let ok = reply.status().is_success();
                        // Read the body to its end so the connection goes back to the pool.
                        ok && reply.into_body().collect().await.is_ok()
                    }
                    Err(_) => false,
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
