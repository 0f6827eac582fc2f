//! Routing worker throughput: referrals routed per second from a backlog, and
//! a baseline measured in the same run on the same database: the 4-row insert
//! transaction of `shared/design/performance.md` (referral, subject, event,
//! audit; UUID keys, FK indexes), 16 clients on PostgreSQL (pg-insert), one
//! writer on SQLite (sqlite-insert). The target is routing ≥ 0.5 × pg-insert.
//!
//! ```sh
//! cargo bench --bench routing_worker                                   # SQLite
//! REFNET_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo bench --bench routing_worker                                 # PostgreSQL
//! ```
//!
//! Each round files `REFNET_BENCH_REFERRALS` (default 1000) referrals over
//! gRPC with the worker off, then times one worker draining the backlog, then
//! runs the baseline for the same wall time. Three rounds; min/median/max.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use refnet_api::v1 as pb;
use refnet_core::{
    AppContext,
    config::Config,
    devkeys::{DevSigner, TokenRequest},
};
use sea_orm::{ConnectionTrait, Database, Statement};
use tonic::transport::Channel;

const ROUNDS: usize = 3;
const FILERS: usize = 16;

fn draft(i: usize) -> pb::ReferralDraft {
    let child = i.is_multiple_of(3);
    let foreign = i.is_multiple_of(2);
    pb::ReferralDraft {
        subject: Some(pb::Subject {
            given_name: format!("Benchgiven{i}"),
            family_name: "Synthetic".into(),
            date_of_birth: if child { "2013-05-06" } else { "1995-05-06" }.into(),
            sex: pb::Sex::Female as i32,
            nationality: if foreign { "UG" } else { "KE" }.into(),
            county_of_origin: "Kisumu".into(),
            languages: vec!["sw".into()],
            ..Default::default()
        }),
        case_facts: Some(pb::CaseFacts {
            acts: vec![pb::Act::Recruitment as i32],
            means: vec![pb::Means::Deception as i32],
            purposes: vec![if i.is_multiple_of(4) {
                pb::Purpose::SexualExploitation
            } else {
                pb::Purpose::ForcedLabour
            } as i32],
            country_of_exploitation: "KE".into(),
            identification_date: "2026-10-01".into(),
            narrative: "Synthetic benchmark narrative.".into(),
            ..Default::default()
        }),
        needs: vec![
            pb::Need::Shelter as i32,
            if i.is_multiple_of(5) {
                pb::Need::Return
            } else {
                pb::Need::Medical
            } as i32,
        ],
        consent: Some(pb::Consent {
            given: true,
            by: if child {
                pb::ConsentBy::Guardian
            } else {
                pb::ConsentBy::Subject
            } as i32,
            agency_kinds: vec![pb::AgencyKind::Ngo as i32],
            ..Default::default()
        }),
        urgency: pb::Urgency::High as i32,
        classification: pb::Classification::SuspectedTip as i32,
        identified_by: pb::IdentifiedBy::Police as i32,
        county: "Nairobi".into(),
        ..Default::default()
    }
}

async fn fresh_database(admin: &str) -> String {
    let db = Database::connect(admin).await.expect("admin connection");
    let name = format!("refnet_bench_{}", uuid::Uuid::new_v4().simple());
    db.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let (base, _) = admin.rsplit_once('/').expect("database url with a path");
    format!("{base}/{name}")
}

async fn file_backlog(channel: &Channel, token: &str, n: usize) {
    let per = n.div_ceil(FILERS);
    let mut tasks = Vec::new();
    for f in 0..FILERS {
        let channel = channel.clone();
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut client = pb::intake_service_client::IntakeServiceClient::new(channel);
            for i in f * per..((f + 1) * per).min(n) {
                let mut request = tonic::Request::new(pb::FileReferralRequest {
                    idempotency_key: format!("bench-{}", uuid::Uuid::new_v4().simple()),
                    draft: Some(draft(i)),
                });
                request.metadata_mut().insert(
                    "authorization",
                    format!("Bearer {token}").parse().expect("header"),
                );
                client.file_referral(request).await.expect("file");
            }
        }));
    }
    for t in tasks {
        t.await.expect("filer");
    }
}

fn summary(mut xs: Vec<f64>, precision: usize) -> String {
    xs.sort_by(f64::total_cmp);
    format!(
        "min {:.p$} / median {:.p$} / max {:.p$}",
        xs[0],
        xs[xs.len() / 2],
        xs[xs.len() - 1],
        p = precision
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: usize = std::env::var("REFNET_BENCH_REFERRALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let data_dir = tempfile::tempdir().expect("tempdir");
    let url = match std::env::var("REFNET_BENCH_DATABASE_URL") {
        Ok(admin) if !admin.is_empty() => Some(fresh_database(&admin).await),
        _ => None,
    };
    let mut config = Config {
        data_dir: data_dir.path().to_path_buf(),
        database_url: url.map(Into::into),
        routing_worker: false,
        ..Config::default()
    }
    .embedded();
    config.auth.refresh_min_interval_seconds = 0;
    // The setup files 1,000 referrals in seconds as one officer: not what the
    // rate limits are for.
    config.limits.officer_per_second = 0;
    config.limits.agency_per_second = 0;
    let pg = !config.is_sqlite();
    let ctx = AppContext::build(config).await.expect("refnet starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serving = ctx.clone();
    tokio::spawn(async move {
        refnet::serve_all(&serving, listener, std::future::pending())
            .await
            .expect("serve");
    });
    let signer = DevSigner::load(data_dir.path(), "refnet-dev", "refnet").expect("dev key");
    let police = ctx.agencies().get("police-nairobi").expect("demo agency");
    let token = signer
        .mint(&TokenRequest {
            officer_id: "bench-desk".into(),
            agency_id: police.id,
            agency_kind: police.kind,
            roles: vec!["officer".into()],
            ttl: Duration::from_secs(3600),
        })
        .expect("token");
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    refnet_devtools::insert_baseline::schema(ctx.db())
        .await
        .expect("baseline schema");
    let clients = if pg { 16 } else { 1 };
    let rules = refnet_routing::rules(&ctx).expect("rules");
    let worker = refnet_routing::worker::RoutingWorker::new(ctx.clone(), rules);

    println!(
        "routing worker, {} referrals per round, {} backend; baseline: 4-row insert transaction, {clients} client(s)",
        n,
        if pg { "PostgreSQL" } else { "SQLite" }
    );
    let (mut routed, mut events, mut base, mut ratios) = (vec![], vec![], vec![], vec![]);
    for round in 1..=ROUNDS {
        file_backlog(&channel, &token, n).await;
        let handoffs_before = count(ctx.db(), "handoffs").await;
        let start = Instant::now();
        let mut handled = 0;
        loop {
            let k = worker.step().await.expect("step");
            if k == 0 {
                break;
            }
            handled += k;
        }
        let elapsed = start.elapsed();
        let handoffs = count(ctx.db(), "handoffs").await - handoffs_before;
        let per_s = n as f64 / elapsed.as_secs_f64();
        let tps = refnet_devtools::insert_baseline::run(
            ctx.db(),
            clients,
            elapsed.max(Duration::from_secs(3)),
        )
        .await
        .expect("baseline");
        println!(
            "round {round}: {n} referrals ({handoffs} handoffs, {handled} events read) routed in {:.2} s = {per_s:.0} referrals/s, {:.0} events/s; baseline {tps:.0} tx/s; ratio {:.2}",
            elapsed.as_secs_f64(),
            handled as f64 / elapsed.as_secs_f64(),
            per_s / tps
        );
        routed.push(per_s);
        events.push(handled as f64 / elapsed.as_secs_f64());
        base.push(tps);
        ratios.push(per_s / tps);
    }
    println!("referrals routed/s: {}", summary(routed, 0));
    println!("events handled/s:   {}", summary(events, 0));
    println!("baseline tx/s:      {}", summary(base, 0));
    println!("ratio (target >= 0.5 x pg-insert): {}", summary(ratios, 2));
}

async fn count(db: &sea_orm::DatabaseConnection, table: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table}"),
        ))
        .await
        .expect("count")
        .expect("row");
    row.try_get::<i64>("", "n").expect("n")
}
