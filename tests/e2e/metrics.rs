//! Metrics: RPC counts and latency by method and code, redactions by class
//! and action, open streams, routing events, and the sampled gauges
//! (handoffs by state, overdue handoffs, routing lag), read from an in-memory
//! exporter the test's own server records into.

use std::time::Duration;

use opentelemetry::{KeyValue, metrics::MeterProvider as _};
use opentelemetry_sdk::metrics::{
    InMemoryMetricExporter, PeriodicReader, SdkMeterProvider,
    data::{AggregatedMetrics, MetricData, ResourceMetrics},
};
use refnet_api::v1 as pb;
use sea_orm::{ConnectionTrait, Statement};

use crate::common::{TestApp, authed, next_item_for};

/// The server's meter provider and what it has exported.
struct Meters {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

impl Meters {
    fn new() -> Self {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(
                PeriodicReader::builder(exporter.clone())
                    .with_interval(Duration::from_secs(3600))
                    .build(),
            )
            .build();
        Self { provider, exporter }
    }

    /// Collects now; nothing recorded yet exports nothing.
    fn collect(&self) -> Vec<ResourceMetrics> {
        self.exporter.reset();
        self.provider.force_flush().expect("flush");
        self.exporter.get_finished_metrics().expect("metrics")
    }
}

fn has(attrs: &[KeyValue], wanted: &[(&str, &str)]) -> bool {
    wanted.iter().all(|(k, v)| {
        attrs
            .iter()
            .any(|kv| kv.key.as_str() == *k && kv.value.to_string() == *v)
    })
}

/// Every exported metric called `name`.
fn named<'a>(
    rm: &'a [ResourceMetrics],
    name: &'a str,
) -> impl Iterator<Item = &'a opentelemetry_sdk::metrics::data::Metric> {
    rm.iter()
        .flat_map(|r| r.scope_metrics())
        .flat_map(|s| s.metrics())
        .filter(move |m| m.name() == name)
}

/// The histogram count of `name` over points carrying `wanted`.
fn histogram_count(rm: &[ResourceMetrics], name: &str, wanted: &[(&str, &str)]) -> u64 {
    let mut total = 0;
    for m in named(rm, name) {
        if let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() {
            for p in h.data_points() {
                let attrs: Vec<KeyValue> = p.attributes().cloned().collect();
                if has(&attrs, wanted) {
                    total += p.count();
                }
            }
        }
    }
    total
}

/// The value of the sum or gauge `name` over points carrying `wanted`
/// (`None` when no point carries them).
fn value(rm: &[ResourceMetrics], name: &str, wanted: &[(&str, &str)]) -> Option<i64> {
    let mut found = None;
    for m in named(rm, name) {
        let mut add = |attrs: Vec<KeyValue>, v: i64| {
            if has(&attrs, wanted) {
                found = Some(found.unwrap_or(0) + v);
            }
        };
        match m.data() {
            AggregatedMetrics::U64(MetricData::Sum(s)) => s
                .data_points()
                .for_each(|p| add(p.attributes().cloned().collect(), p.value() as i64)),
            AggregatedMetrics::I64(MetricData::Sum(s)) => s
                .data_points()
                .for_each(|p| add(p.attributes().cloned().collect(), p.value())),
            AggregatedMetrics::U64(MetricData::Gauge(g)) => g
                .data_points()
                .for_each(|p| add(p.attributes().cloned().collect(), p.value() as i64)),
            _ => {}
        }
    }
    found
}

/// Collects until `check` holds (the sampler runs every 50 ms here).
async fn eventually(meters: &Meters, what: &str, check: impl Fn(&[ResourceMetrics]) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let rm = meters.collect();
        if check(&rm) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count_sql(app: &TestApp, sql: &str) -> i64 {
    let db = app.db().await;
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .expect("row")
        .try_get_by_index::<i64>(0)
        .expect("count")
}

mod calls_redactions_streams_and_handoffs_are_measured {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::measured(None).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        if let Some(url) = crate::common::fresh_postgres_url().await {
            super::measured(Some(url)).await;
        }
    }
}

async fn measured(database_url: Option<String>) {
    let meters = Meters::new();
    let meter = meters.provider.meter("refnet");
    let app = TestApp::spawn_metered(database_url, |c| c.metrics_sample_ms = 50, &meter).await;
    const FILE: &str = "/refnet.v1.IntakeService/FileReferral";
    const GET: &str = "/refnet.v1.IntakeService/GetReferral";

    // Nothing measured yet: the counts below are this test's own calls.
    let rm = meters.collect();
    assert_eq!(
        histogram_count(&rm, "rpc.server.duration", &[("rpc.method", FILE)]),
        0
    );

    let mut inbox = app.watch_inbox("ngo-shelter-nairobi").await;
    let rm = meters.collect();
    assert_eq!(
        value(&rm, "refnet.streams.open", &[("rpc.method", "WatchInbox")]),
        Some(1),
        "one open inbox stream"
    );

    let filed = app
        .file(
            "police-nairobi",
            crate::routing::foreign_child_in_forced_labour(),
        )
        .await
        .referral
        .expect("referral");
    // A refused call (no token) and a non-party's NOT_FOUND.
    let unauthenticated = app
        .intake()
        .await
        .get_referral(tonic::Request::new(pb::GetReferralRequest {
            referral: filed.id.clone(),
        }))
        .await
        .expect_err("no token");
    assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);
    let not_found = app
        .intake()
        .await
        .get_referral(authed(
            pb::GetReferralRequest {
                referral: filed.id.clone(),
            },
            &app.officer("police-mombasa"),
        ))
        .await
        .expect_err("non-party");
    assert_eq!(not_found.code(), tonic::Code::NotFound);

    // The NGO gets the handoff on its stream, then reads the referral (redacted).
    next_item_for(&mut inbox, &filed.id).await;
    let handoffs = count_sql(&app, "SELECT COUNT(*) FROM handoffs").await;
    let ngo_view = app.get_as("ngo-shelter-nairobi", &filed.id).await;
    let redactions = ngo_view.redactions.len();
    assert!(redactions > 0, "the NGO's view is redacted");

    let rm = meters.collect();
    // One call per (method, code) this test made.
    for (method, code) in [(FILE, "0"), (GET, "16"), (GET, "5"), (GET, "0")] {
        let calls = histogram_count(
            &rm,
            "rpc.server.duration",
            &[("rpc.method", method), ("rpc.grpc.status_code", code)],
        );
        assert_eq!(calls, 1, "{method} answered {code}");
    }
    // Every redaction the NGO's reply lists is counted by class and action
    // (the police's own view of its filing redacts nothing).
    let counted: i64 = ngo_view
        .redactions
        .iter()
        .map(|r| {
            (
                pb::Sensitivity::try_from(r.class)
                    .expect("class")
                    .as_str_name(),
                pb::RedactionAction::try_from(r.action)
                    .expect("action")
                    .as_str_name(),
            )
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|(class, action)| {
            value(
                &rm,
                "refnet.redactions",
                &[("refnet.class", class), ("refnet.action", action)],
            )
            .unwrap_or(0)
        })
        .sum();
    assert!(
        counted >= redactions as i64,
        "redactions counted: {counted} >= {redactions}"
    );
    assert!(value(&rm, "refnet.routing.events", &[]).unwrap_or(0) >= 1);

    // The sampled gauges: every handoff by state, no lag once routed, none overdue.
    eventually(&meters, "handoffs by state", |rm| {
        let total: i64 = ["HANDOFF_STATE_PENDING", "HANDOFF_STATE_DELIVERED"]
            .iter()
            .map(|s| value(rm, "refnet.handoffs", &[("refnet.state", s)]).unwrap_or(0))
            .sum();
        total == handoffs
            && value(rm, "refnet.routing.lag", &[]) == Some(0)
            && value(rm, "refnet.handoffs.overdue", &[]) == Some(0)
    })
    .await;

    // One handoff's acknowledge-by passes: it is overdue.
    let db = app.db().await;
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE handoffs SET acknowledge_by = $1 WHERE id = (SELECT id FROM handoffs ORDER BY id LIMIT 1)",
        [(chrono::Utc::now() - chrono::Duration::hours(1)).into()],
    ))
    .await
    .expect("update");
    eventually(&meters, "one overdue handoff", |rm| {
        value(rm, "refnet.handoffs.overdue", &[]) == Some(1)
    })
    .await;

    // The stream ends: no longer counted open.
    drop(inbox);
    eventually(&meters, "stream closed", |rm| {
        value(rm, "refnet.streams.open", &[("rpc.method", "WatchInbox")]) == Some(0)
    })
    .await;
    app.stop().await;
}
