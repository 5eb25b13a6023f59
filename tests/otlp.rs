//! Span export over OTLP (feature `otlp`): a 3-node cluster started with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a collector in this test sends it an `rpc` span per
//! API call and an `attempt` span per job attempt carrying the job, queue, attempt and token.
#![cfg(feature = "otlp")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Cluster, Settings};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

/// A span as received: name and attributes as text.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    attributes: Vec<(String, String)>,
}

impl Span {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Collector {
    /// Waits up to 30 s for a received span that `matches`; returns it.
    async fn wait_span(&self, what: &str, matches: impl Fn(&Span) -> bool) -> Span {
        let what = format!("{what} at the collector");
        common::wait_for(&what, Duration::from_secs(30), || {
            let found = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .find(|s| matches(s))
                .cloned();
            async move { found }
        })
        .await
    }
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(&kv.value))
                .unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Span {
                    service: service.clone(),
                    name: span.name,
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(&kv.value)))
                        .collect(),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_reach_an_otlp_collector() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let c = Cluster::start(Settings {
        node_env: vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint),
            // Send each batch after 100 ms instead of 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
        ],
        ..Settings::default()
    })
    .await;
    let client = c.client();
    let id = client
        .submit(common::shell_job("traced", &["true"]))
        .await
        .expect("submit");
    common::wait_finished(&client, &[id], Duration::from_secs(60)).await;

    let attempt = collector
        .wait_span("the job's attempt span", |s| {
            s.name == "attempt" && s.attr("job") == Some(&id.to_string())
        })
        .await;
    assert_eq!(attempt.service, "raftline");
    assert_eq!(attempt.attr("queue"), Some("traced"), "{attempt:?}");
    assert_eq!(attempt.attr("attempt"), Some("1"), "{attempt:?}");
    assert!(
        attempt
            .attr("token")
            .is_some_and(|t| t.parse::<u64>().is_ok()),
        "{attempt:?}"
    );
    // Each node exports its own batches: the node that served the submit may send its span
    // after the node that ran the job sent the attempt.
    collector
        .wait_span("the submit's rpc span", |s| {
            s.name == "rpc" && s.attr("path") == Some("/raftline.v1.Api/Submit")
        })
        .await;
}
