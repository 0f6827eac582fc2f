#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]
//! Per-request costs, one core: token verification (first sight, and a token
//! already verified), validation of a fixture draft, routing-rule evaluation,
//! and one event appended in its own write transaction (SQLite, WAL,
//! synchronous=NORMAL). Baseline in the same run for the event append:
//! performance.md's sqlite-insert shape reduced to one row (an empty
//! transaction inserting one row into a table with an index), so the ratio
//! shows what the event log's own work adds.
//!
//! ```sh
//! cargo bench --bench requests -- --warm-up-time 1 --measurement-time 3
//! ```

use std::{hint::black_box, sync::Arc, time::Duration};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use refnet_api::v1 as pb;
use refnet_core::{
    agencies::{self, AgencyRegistry},
    auth::{Authenticator, KeySource},
    config::AuthConfig,
    devkeys::{self, DevSigner, TokenRequest},
    domain::{facts::RoutingFacts, referral::ReferralContent},
    error::Violations,
    events::{self, EventKind},
};
use sea_orm::{ConnectionTrait, Statement};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn token_request(i: usize) -> TokenRequest {
    TokenRequest {
        officer_id: format!("officer-{i}"),
        agency_id: "police-nairobi".into(),
        agency_kind: pb::AgencyKind::Police,
        roles: vec!["officer".into()],
        ttl: Duration::from_secs(3600),
    }
}

fn tokens(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let jwks = devkeys::ensure(dir.path()).unwrap();
    let signer = DevSigner::load(dir.path(), "refnet-dev", "refnet").unwrap();
    let registry = Arc::new(AgencyRegistry::new(agencies::demo()));
    let auth = rt
        .block_on(Authenticator::new(
            AuthConfig::default(),
            KeySource::File(jwks),
            registry,
            Vec::new(),
        ))
        .unwrap();
    let mut group = c.benchmark_group("token");
    group.throughput(Throughput::Elements(1));
    // First sight: every iteration a token never seen (minted outside the timing).
    // Officer ids never repeat, so no token is one the cache has seen.
    let mut next = 1_000_000;
    group.bench_function("verify_first_sight", |b| {
        b.iter_custom(|iters| {
            let fresh: Vec<String> = (0..iters as usize)
                .map(|_| {
                    next += 1;
                    format!("Bearer {}", signer.mint(&token_request(next)).unwrap())
                })
                .collect();
            let started = std::time::Instant::now();
            for header in &fresh {
                black_box(rt.block_on(auth.authenticate(Some(header))).unwrap());
            }
            started.elapsed()
        });
    });
    let known = format!("Bearer {}", signer.mint(&token_request(0)).unwrap());
    rt.block_on(auth.authenticate(Some(&known))).unwrap();
    group.bench_function("verify_remembered", |b| {
        b.iter(|| black_box(rt.block_on(auth.authenticate(Some(&known))).unwrap()));
    });
    group.finish();
}

fn drafts() -> Vec<pb::ReferralDraft> {
    refnet_devtools::fixtures::load(&refnet_devtools::fixtures::default_path())
        .expect("fixtures")
        .iter()
        .map(|f| f.draft())
        .collect()
}

fn validation_and_rules(c: &mut Criterion) {
    let drafts = drafts();
    let today = chrono::Utc::now().date_naive();
    let mut group = c.benchmark_group("request");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("validate_fixture_draft", |b| {
        b.iter(|| {
            i = (i + 1) % drafts.len();
            let mut v = Violations::new();
            black_box(ReferralContent::from_draft(
                &mut v,
                "draft",
                Some(&drafts[i]),
                today,
            ))
        });
    });
    let rules = refnet_routing::rules::RuleSet::default_rules().unwrap();
    let facts: Vec<RoutingFacts> = drafts
        .iter()
        .filter_map(|d| {
            let mut v = Violations::new();
            ReferralContent::from_draft(&mut v, "draft", Some(d), today)
        })
        .map(|content| RoutingFacts::of(&content, "POLICE"))
        .collect();
    let mut j = 0;
    group.bench_function("route_fixture_facts", |b| {
        b.iter(|| {
            j = (j + 1) % facts.len();
            black_box(rules.route(&facts[j]))
        });
    });
    group.finish();
}

fn event_append(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("b.db").display());
    let db = rt.block_on(refnet_core::db::connect(&url)).unwrap();
    rt.block_on(refnet_core::db::migrate(&db)).unwrap();
    rt.block_on(db.execute_unprepared(
        "CREATE TABLE bench_row (seq INTEGER PRIMARY KEY, referral_id BLOB, payload TEXT); CREATE INDEX bench_row_ref ON bench_row (referral_id)",
    ))
    .unwrap();
    let payload = serde_json::json!({"reference_code": "RN-2026-BENCH0", "facts": null});
    let mut group = c.benchmark_group("event");
    group.throughput(Throughput::Elements(1));
    group.bench_function("baseline_one_row_transaction", |b| {
        b.iter(|| {
            rt.block_on(refnet_core::db::write_txn(&db, |txn| {
                Box::pin(async move {
                    txn.execute_raw(Statement::from_sql_and_values(
                        txn.get_database_backend(),
                        "INSERT INTO bench_row (referral_id, payload) VALUES ($1, $2)",
                        [
                            uuid::Uuid::now_v7().into(),
                            "{\"kind\":\"ReferralFiled\"}".into(),
                        ],
                    ))
                    .await?;
                    Ok(())
                })
            }))
            .unwrap();
        });
    });
    group.bench_function("append_in_own_transaction", |b| {
        b.iter(|| {
            let payload = payload.clone();
            rt.block_on(refnet_core::db::write_txn(&db, move |txn| {
                Box::pin(async move {
                    events::append(txn, EventKind::ConsentRecorded, None, None, &payload).await
                })
            }))
            .unwrap();
        });
    });
    group.finish();
}

criterion_group!(benches, tokens, validation_and_rules, event_append);
criterion_main!(benches);
