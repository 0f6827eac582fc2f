//! Metrics, exported over OTLP beside the traces (see [`crate::telemetry`]).
//!
//! | instrument | kind | attributes |
//! |---|---|---|
//! | `rpc.server.duration` (s) | histogram (its count is the call count) | `rpc.method`, `rpc.grpc.status_code` |
//! | `refnet.redactions` | counter | `refnet.class`, `refnet.action` |
//! | `refnet.streams.open` | up-down counter | `rpc.method` |
//! | `refnet.routing.events` | counter (events the routing worker consumed) | — |
//! | `refnet.handoffs` | gauge, sampled | `refnet.state` |
//! | `refnet.handoffs.overdue` | gauge, sampled | — |
//! | `refnet.routing.lag` | gauge, sampled (events written but not yet routed) | — |
//!
//! The sampled gauges come from database queries the routing process runs
//! every `metrics_sample_ms` ([`Metrics::set_sample`]); a process that does
//! not sample (intake alone) reports none rather than zeros. Attributes are
//! method names, codes, classes and states: never an identifier, a name or a
//! place. Method names are checked against the contract, so made-up paths
//! cannot grow the attribute set.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, OnceLock},
    task::{Context, Poll},
    time::Instant,
};

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram, Meter, ObservableGauge, UpDownCounter},
};

/// Bucket bounds of the latency histogram, in seconds.
const LATENCY_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What the last database sample found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    /// Handoffs per state (proto state names), every state present.
    pub handoffs_by_state: Vec<(String, u64)>,
    /// Open handoffs past their acknowledge-by or decide-by deadline.
    pub overdue: u64,
    /// Events in the log the routing worker has not consumed yet.
    pub routing_lag: u64,
}

/// The process's instruments.
pub struct Metrics {
    rpc_duration: Histogram<f64>,
    redactions: Counter<u64>,
    open_streams: UpDownCounter<i64>,
    routing_events: Counter<u64>,
    sample: Arc<Mutex<Option<Sample>>>,
    _gauges: [ObservableGauge<u64>; 3],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Instruments on `meter` (the global one in production, a test's own in tests).
    pub fn new(meter: &Meter) -> Self {
        let sample: Arc<Mutex<Option<Sample>>> = Arc::default();
        let by_state = sample.clone();
        let overdue = sample.clone();
        let lag = sample.clone();
        Self {
            rpc_duration: meter
                .f64_histogram("rpc.server.duration")
                .with_description("Time to answer an RPC (streams: to open), by method and code")
                .with_unit("s")
                .with_boundaries(LATENCY_BOUNDS.to_vec())
                .build(),
            redactions: meter
                .u64_counter("refnet.redactions")
                .with_description("Fields and free-text identifiers redacted, by class and action")
                .build(),
            open_streams: meter
                .i64_up_down_counter("refnet.streams.open")
                .with_description("Server streams open now")
                .build(),
            routing_events: meter
                .u64_counter("refnet.routing.events")
                .with_description("Event-log rows the routing worker consumed")
                .build(),
            _gauges: [
                meter
                    .u64_observable_gauge("refnet.handoffs")
                    .with_description("Handoffs by state")
                    .with_callback(move |observer| {
                        if let Some(s) = read(&by_state) {
                            for (state, n) in &s.handoffs_by_state {
                                observer
                                    .observe(*n, &[KeyValue::new("refnet.state", state.clone())]);
                            }
                        }
                    })
                    .build(),
                meter
                    .u64_observable_gauge("refnet.handoffs.overdue")
                    .with_description(
                        "Open handoffs past their acknowledge-by or decide-by deadline",
                    )
                    .with_callback(move |observer| {
                        if let Some(s) = read(&overdue) {
                            observer.observe(s.overdue, &[]);
                        }
                    })
                    .build(),
                meter
                    .u64_observable_gauge("refnet.routing.lag")
                    .with_description("Events written but not yet consumed by the routing worker")
                    .with_callback(move |observer| {
                        if let Some(s) = read(&lag) {
                            observer.observe(s.routing_lag, &[]);
                        }
                    })
                    .build(),
            ],
            sample,
        }
    }

    /// Records one answered call.
    pub fn record_rpc(&self, path: &str, code: i64, seconds: f64) {
        self.rpc_duration.record(
            seconds,
            &[
                KeyValue::new("rpc.method", method_label(path)),
                KeyValue::new("rpc.grpc.status_code", code),
            ],
        );
    }

    /// Counts `n` redactions of `class` by `action` (proto enum names).
    pub fn record_redactions(&self, class: &'static str, action: &'static str, n: u64) {
        self.redactions.add(
            n,
            &[
                KeyValue::new("refnet.class", class),
                KeyValue::new("refnet.action", action),
            ],
        );
    }

    /// Counts events the routing worker consumed.
    pub fn record_routing_events(&self, n: u64) {
        self.routing_events.add(n, &[]);
    }

    /// A stream of `method` opened; it counts as open until the guard drops.
    pub fn stream_opened(self: &Arc<Self>, method: &'static str) -> StreamGuard {
        self.open_streams
            .add(1, &[KeyValue::new("rpc.method", method)]);
        StreamGuard {
            metrics: self.clone(),
            method,
        }
    }

    /// Replaces the sampled gauges' values.
    pub fn set_sample(&self, sample: Sample) {
        if let Ok(mut slot) = self.sample.lock() {
            *slot = Some(sample);
        }
    }
}

fn read(sample: &Mutex<Option<Sample>>) -> Option<Sample> {
    sample.lock().ok().and_then(|s| s.clone())
}

/// Keeps a stream counted as open; dropping it (the stream ended, for
/// whatever reason) counts it closed.
#[derive(Debug)]
pub struct StreamGuard {
    metrics: Arc<Metrics>,
    method: &'static str,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.metrics
            .open_streams
            .add(-1, &[KeyValue::new("rpc.method", self.method)]);
    }
}

/// `path` when it names a method of the contract (or health/reflection),
/// else `"other"`.
fn method_label(path: &str) -> String {
    static KNOWN: OnceLock<HashSet<String>> = OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        let mut known: HashSet<String> = refnet_api::descriptor_pool()
            .services()
            .flat_map(|s| {
                s.methods()
                    .map(|m| format!("/{}/{}", s.full_name(), m.name()))
                    .collect::<Vec<_>>()
            })
            .collect();
        known.insert("/grpc.health.v1.Health/Check".to_owned());
        known.insert("/grpc.health.v1.Health/Watch".to_owned());
        known
    });
    if known.contains(path) {
        path.to_owned()
    } else if path.starts_with("/grpc.reflection.") {
        "reflection".to_owned()
    } else {
        "other".to_owned()
    }
}

/// A tower layer timing every call and recording it by method and code.
#[derive(Clone, Debug)]
pub struct RpcMetricsLayer {
    metrics: Arc<Metrics>,
}

impl RpcMetricsLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service made by [`RpcMetricsLayer`].
#[derive(Clone, Debug)]
pub struct RpcMetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            let started = Instant::now();
            let response = inner.call(request).await;
            // An error answered before the body is in the headers
            // ("trailers-only"); a reply that got this far is OK.
            let code = match &response {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0),
                Err(_) => i64::from(tonic::Code::Unavailable as i32),
            };
            tracing::Span::current().record("rpc.grpc.status_code", code);
            metrics.record_rpc(&path, code, started.elapsed().as_secs_f64());
            response
        })
    }
}
