//! Optional export of spans over OTLP (cargo feature `otlp`, on by default): when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, e.g.
//! `http://127.0.0.1:4317`, the process sends its spans over OTLP/gRPC to that collector
//! (Jaeger, Tempo, the OpenTelemetry Collector...): one `rpc` span per API call (its path) and
//! one `attempt` span per job attempt a node runs (job, queue, attempt, token), with the
//! events logged inside them. The standard `OTEL_*` variables configure the rest
//! (`OTEL_SERVICE_NAME`, default `raftline`; `OTEL_RESOURCE_ATTRIBUTES`; timeouts).
//!
//! Spans are batched and sent by the SDK's background thread; at exit the rest are flushed
//! ([`shutdown`]). An unreachable collector costs dropped spans (the SDK's queue is bounded,
//! 2,048 spans by default), never a stalled node.

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::{Layer, Registry};

/// The provider, kept to flush it at exit.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether the environment asks for export.
fn wanted() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// The export layer, when the environment asks for it. Must run inside the tokio runtime (the
/// gRPC channel is made on it). A collector address that can't be used is reported on stderr
/// and export stays off.
pub fn layer() -> Option<Box<dyn Layer<Registry> + Send + Sync>> {
    if !wanted() {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("warning: OTLP span export is off: {e}");
            return None;
        }
    };
    let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "raftline".into());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(name)
                .build(),
        )
        .build();
    let tracer = provider.tracer("raftline");
    let _ = PROVIDER.set(provider);
    let spans = Targets::new().with_target("raftline", Level::INFO);
    Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(spans)
            .boxed(),
    )
}

/// Sends the spans not sent yet (bounded by the SDK's export timeout). Call before the runtime
/// stops.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(e) = provider.shutdown() {
            eprintln!("warning: OTLP spans not all sent: {e}");
        }
    }
}
