//! Tracing set-up: structured logs, pretty (coloured only on a terminal) or
//! JSON (one object per line, for production collectors), filtered by `RUST_LOG`
//! (default `info`), and OpenTelemetry traces and metrics
//! ([`crate::metrics`]) over OTLP/gRPC when an endpoint is configured
//! (`REFNET_OTLP_ENDPOINT`, else the standard `OTEL_EXPORTER_OTLP_ENDPOINT`;
//! metrics every `OTEL_METRIC_EXPORT_INTERVAL` ms, default 60 000). Log lines and span fields carry ids and
//! reference codes, never names, numbers or places.
//!
//! W3C trace context crosses every boundary: it is read from each call's
//! `traceparent` metadata ([`rpc_span`]), stored on every event-log row
//! ([`current_traceparent`]), and restored by the routing worker and the
//! streams that consume the row ([`continue_trace`]), so one trace runs from
//! a `FileReferral` through routing to the receiving agency's stream item.

use std::{collections::HashMap, io::IsTerminal as _};

use opentelemetry::{
    KeyValue,
    propagation::TextMapPropagator,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_sdk::{
    Resource, metrics::SdkMeterProvider, propagation::TraceContextPropagator,
    trace::SdkTracerProvider,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use tonic::transport::ClientTlsConfig;

use crate::config::{LogFormat, TlsConfig};

/// What must be flushed at exit: the trace and metric pipelines, when there are.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    meters: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Exports the spans and metrics still buffered and stops the pipelines.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "flushing traces failed");
        }
        if let Some(meters) = self.meters
            && let Err(e) = meters.shutdown()
        {
            tracing::warn!(error = %e, "flushing metrics failed");
        }
    }
}

/// The resource every signal carries: service name and version.
fn resource(service: &str) -> Resource {
    Resource::builder()
        .with_service_name(service.to_owned())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Installs the global meter provider exporting to `endpoint`; the contexts
/// built afterwards ([`crate::AppContext::build`]) take their instruments from it.
fn init_metrics(
    endpoint: &str,
    tls: Option<&ClientTlsConfig>,
    service: &str,
) -> Option<SdkMeterProvider> {
    use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
    let mut builder = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.to_owned());
    if let Some(tls) = tls {
        builder = builder.with_tls_config(tls.clone());
    }
    match builder.build() {
        Ok(exporter) => {
            let provider = SdkMeterProvider::builder()
                .with_periodic_exporter(exporter)
                .with_resource(resource(service))
                .build();
            opentelemetry::global::set_meter_provider(provider.clone());
            Some(provider)
        }
        Err(e) => {
            eprintln!("refnet: OTLP metric exporter for {endpoint} not started: {e}");
            None
        }
    }
}

/// The OTLP endpoint in force, if any.
fn otlp_endpoint(configured: Option<&str>) -> Option<String> {
    configured
        .map(str::to_owned)
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .filter(|e| !e.trim().is_empty())
}

/// The TLS of an `https://` OTLP endpoint (`tls.outbound_ca`, and the client
/// certificate for a collector that asks for one); `None` for `http://`.
fn otlp_tls(endpoint: &str, tls: &TlsConfig) -> Result<Option<ClientTlsConfig>, String> {
    if !endpoint.starts_with("https://") {
        return Ok(None);
    }
    crate::tls::client_tls(tls)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Installs the global subscriber once (later calls are no-ops): logs, and
/// traces and metrics to `otlp` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) as
/// `service`; an `https://` endpoint is verified against the system's roots
/// and `tls.outbound_ca`.
pub fn init(format: LogFormat, otlp: Option<&str>, tls: &TlsConfig, service: &str) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let mut telemetry = Telemetry::default();
    let endpoint = otlp_endpoint(otlp).and_then(|endpoint| match otlp_tls(&endpoint, tls) {
        Ok(client) => Some((endpoint, client)),
        Err(e) => {
            eprintln!("refnet: OTLP export to {endpoint} not started: {e}");
            None
        }
    });
    if let Some((endpoint, client)) = &endpoint {
        telemetry.meters = init_metrics(endpoint, client.as_ref(), service);
    }
    let otel = endpoint.and_then(|(endpoint, client)| {
        use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone());
        if let Some(client) = client {
            builder = builder.with_tls_config(client);
        }
        let exporter = builder.build();
        match exporter {
            Ok(exporter) => {
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource(service))
                    .build();
                let tracer = provider.tracer("refnet");
                telemetry.provider = Some(provider);
                Some(tracing_opentelemetry::layer().with_tracer(tracer))
            }
            Err(e) => {
                eprintln!("refnet: OTLP exporter for {endpoint} not started: {e}");
                None
            }
        }
    });
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        // Colour only for a person at a terminal: a file, a pipe or a log
        // collector gets plain text.
        LogFormat::Pretty => registry
            .with(
                fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // Already initialised (tests, or a second service in one process): keep the first.
    let _ = result;
    telemetry
}

/// The span of one RPC, a child of the caller's `traceparent` when it sent one.
pub fn rpc_span(request: &tonic::codegen::http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!(
        "rpc",
        otel.kind = "server",
        rpc.method = %request.uri().path(),
        otel.name = %request.uri().path(),
        rpc.grpc.status_code = tracing::field::Empty,
        refnet.agency_kind = tracing::field::Empty,
        refnet.reference_code = tracing::field::Empty,
        refnet.referral_id = tracing::field::Empty,
    );
    let carrier: HashMap<String, String> = request
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span
}

/// The W3C `traceparent` of the current span, when tracing is on.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the stored `traceparent` (an event-log row's).
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}
