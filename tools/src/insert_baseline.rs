//! performance.md's insert baseline: one transaction inserting 4 rows
//! (subject, referral, event, audit; UUID keys, FK indexes), run on the
//! database under test in the same invocation as what it is compared with.
//! PostgreSQL with 16 clients is pg-insert (scripts/bench-pg uses pgbench for
//! it); SQLite with one writer is sqlite-insert. Used by `refnet bench` and by
//! the routing-worker benchmark.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, TransactionTrait};

/// Creates the baseline's four tables (`bench_*`) if they are missing.
pub async fn schema(db: &DatabaseConnection) -> anyhow::Result<()> {
    let pg = db.get_database_backend() == DatabaseBackend::Postgres;
    let (uuid, ts, bytes) = if pg {
        ("uuid", "timestamptz", "bytea")
    } else {
        ("blob", "text", "blob")
    };
    for sql in [
        format!(
            "CREATE TABLE IF NOT EXISTS bench_subject (id {uuid} PRIMARY KEY, sealed {bytes}, created_at {ts})"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS bench_referral (id {uuid} PRIMARY KEY, subject_id {uuid} REFERENCES bench_subject(id), code text, created_at {ts})"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS bench_event (seq {} PRIMARY KEY, referral_id {uuid} REFERENCES bench_referral(id), payload text, created_at {ts})",
            if pg { "bigserial" } else { "integer" }
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS bench_audit (id {uuid} PRIMARY KEY, referral_id {uuid} REFERENCES bench_referral(id), entry text, created_at {ts})"
        ),
        "CREATE INDEX IF NOT EXISTS bench_referral_subject ON bench_referral(subject_id)"
            .to_owned(),
        "CREATE INDEX IF NOT EXISTS bench_event_referral ON bench_event(referral_id)".to_owned(),
        "CREATE INDEX IF NOT EXISTS bench_audit_referral ON bench_audit(referral_id)".to_owned(),
    ] {
        db.execute_unprepared(&sql).await?;
    }
    Ok(())
}

/// Runs the 4-row transaction from `clients` tasks for `duration`; returns
/// transactions per second.
pub async fn run(
    db: &DatabaseConnection,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let backend = db.get_database_backend();
    let p = |n: usize| {
        if backend == DatabaseBackend::Postgres {
            format!("${n}")
        } else {
            "?".to_owned()
        }
    };
    let sql = [
        format!(
            "INSERT INTO bench_subject (id, sealed, created_at) VALUES ({}, {}, {})",
            p(1),
            p(2),
            p(3)
        ),
        format!(
            "INSERT INTO bench_referral (id, subject_id, code, created_at) VALUES ({}, {}, {}, {})",
            p(1),
            p(2),
            p(3),
            p(4)
        ),
        format!(
            "INSERT INTO bench_event (referral_id, payload, created_at) VALUES ({}, {}, {})",
            p(1),
            p(2),
            p(3)
        ),
        format!(
            "INSERT INTO bench_audit (id, referral_id, entry, created_at) VALUES ({}, {}, {}, {})",
            p(1),
            p(2),
            p(3),
            p(4)
        ),
    ];
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let db = db.clone();
        let sql = sql.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while start.elapsed() < duration {
                let now = chrono::Utc::now();
                let (s, r) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
                let st =
                    |q: &str, v: Vec<sea_orm::Value>| Statement::from_sql_and_values(backend, q, v);
                let txn = db.begin().await?;
                txn.execute_raw(st(
                    &sql[0],
                    vec![s.into(), vec![7u8; 200].into(), now.into()],
                ))
                .await?;
                txn.execute_raw(st(
                    &sql[1],
                    vec![r.into(), s.into(), "KE-NBI-2026-000001".into(), now.into()],
                ))
                .await?;
                txn.execute_raw(st(
                    &sql[2],
                    vec![r.into(), "{\"kind\":\"ReferralFiled\"}".into(), now.into()],
                ))
                .await?;
                txn.execute_raw(st(
                    &sql[3],
                    vec![
                        uuid::Uuid::now_v7().into(),
                        r.into(),
                        "GetReferral".into(),
                        now.into(),
                    ],
                ))
                .await?;
                txn.commit().await?;
                done += 1;
            }
            Ok::<u64, sea_orm::DbErr>(done)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}
