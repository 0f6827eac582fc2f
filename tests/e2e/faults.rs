//! Faults: PostgreSQL going away under load, two ways: refnet behind a TCP
//! proxy to its own fresh database, which cuts every connection and refuses
//! new ones for three seconds (a failover as refnet sees it); and a private
//! PostgreSQL server of the test's own, stopped and started again (a
//! restart). Officers file and read throughout. And duplicate events: every
//! `ReferralFiled` appended twice and the routing worker's checkpoint rewound.
//!
//! Checked: every answer during the outage is a success or UNAVAILABLE (never
//! INTERNAL, never a wrong answer); after it, every filing retried with its
//! idempotency key (the ones that failed and, as duplicate requests, the ones
//! that succeeded) is answered with one referral; the database then holds
//! exactly one referral and one `ReferralFiled` event per key, the filer's
//! party row, and an audit chain that verifies.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use refnet_api::v1 as pb;
use sea_orm::Database;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::broadcast,
    task::JoinHandle,
};
use tonic::Code;

use crate::{
    common::{TestApp, authed, canary_draft, fresh_postgres_url, without_rate_limits},
    on_both,
};

/// A TCP proxy that can cut every connection and refuse new ones.
struct Proxy {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    kill: broadcast::Sender<()>,
    task: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let down = Arc::new(AtomicBool::new(false));
        let (kill, _) = broadcast::channel(4);
        let (flag, killer) = (down.clone(), kill.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if flag.load(Ordering::SeqCst) {
                    drop(client); // refused: as a server that is down
                    continue;
                }
                let mut kill = killer.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = kill.recv() => {} // both sockets dropped: connection reset
                    }
                });
            }
        });
        Self {
            addr,
            down,
            kill,
            task,
        }
    }

    /// Cuts every open connection and refuses new ones.
    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        let _ = self.kill.send(());
    }

    /// Accepts connections again.
    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `url` with its host and port replaced by `addr`.
fn through(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let (authority, path) = rest.split_once('/').expect("path");
    let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
    format!("{scheme}://{}{addr}/{path}", user.unwrap_or_default())
}

/// The host and port of `url`.
async fn upstream_of(url: &str) -> SocketAddr {
    let rest = url.split_once("://").expect("scheme").1;
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    tokio::net::lookup_host(host_port)
        .await
        .expect("resolve")
        .next()
        .expect("an address")
}

fn draft_for(key: &str) -> pb::FileReferralRequest {
    pb::FileReferralRequest {
        idempotency_key: key.to_owned(),
        draft: Some(canary_draft()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_under_load_loses_and_duplicates_nothing() {
    let Some(direct) = fresh_postgres_url().await else {
        return;
    };
    let proxy = Proxy::start(upstream_of(&direct).await).await;
    let app = TestApp::spawn_with(Some(through(&direct, proxy.addr)), without_rate_limits).await;
    let outage = async {
        proxy.cut();
        tokio::time::sleep(Duration::from_secs(3)).await;
        proxy.restore();
    };
    under_load("cut link", &app, &direct, outage).await;
    app.stop().await;
}

/// Eight filers and a reader on `app` while `outage` runs, then every key
/// retried; checked in the database at `direct` (see the module's doc).
async fn under_load(
    what: &str,
    app: &TestApp,
    direct: &str,
    outage: impl std::future::Future<Output = ()>,
) {
    let token = app.officer("police-nairobi");
    let known = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral")
        .id;

    // Eight filers and a reader, each call with a deadline, for the whole run.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (app_addr, token, stop) = (app.addr, token.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let channel = tonic::transport::Channel::from_shared(format!("http://{app_addr}"))
                .expect("uri")
                .connect()
                .await
                .expect("connect");
            let mut intake = pb::intake_service_client::IntakeServiceClient::new(channel);
            let mut outcomes: Vec<(String, Result<String, Code>)> = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("fault-{w}-{n}");
                n += 1;
                let mut request = authed(draft_for(&key), &token);
                request.set_timeout(Duration::from_secs(30));
                let outcome = intake
                    .file_referral(request)
                    .await
                    .map(|r| r.into_inner().referral.expect("referral").id)
                    .map_err(|s| s.code());
                let failed = outcome.is_err();
                outcomes.push((key, outcome));
                if failed {
                    // As a client would: back off before the next attempt.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            outcomes
        }));
    }
    let reader = {
        let (app_addr, token, stop, known) = (app.addr, token.clone(), stop.clone(), known.clone());
        tokio::spawn(async move {
            let channel = tonic::transport::Channel::from_shared(format!("http://{app_addr}"))
                .expect("uri")
                .connect()
                .await
                .expect("connect");
            let mut intake = pb::intake_service_client::IntakeServiceClient::new(channel);
            let mut codes = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let mut request = authed(
                    pb::GetReferralRequest {
                        referral: known.clone(),
                    },
                    &token,
                );
                request.set_timeout(Duration::from_secs(30));
                match intake.get_referral(request).await {
                    Ok(r) => {
                        let referral = r.into_inner().referral.expect("referral");
                        assert_eq!(referral.id, known, "a read answered with another referral");
                        codes.push(Code::Ok);
                    }
                    Err(s) => codes.push(s.code()),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            codes
        })
    };

    tokio::time::sleep(Duration::from_millis(1500)).await;
    outage.await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);

    let mut outcomes: BTreeMap<String, Result<String, Code>> = BTreeMap::new();
    for w in workers {
        outcomes.extend(w.await.expect("filer"));
    }
    let reads = reader.await.expect("reader");
    let failed: Vec<Code> = outcomes.values().filter_map(|o| o.clone().err()).collect();
    let read_failures: Vec<Code> = reads.iter().copied().filter(|c| *c != Code::Ok).collect();
    eprintln!(
        "{what}: filings: {} ({} failed), reads: {} ({} failed)",
        outcomes.len(),
        failed.len(),
        reads.len(),
        read_failures.len()
    );
    assert!(
        failed
            .iter()
            .chain(&read_failures)
            .all(|c| *c == Code::Unavailable),
        "only UNAVAILABLE while the database is away: {failed:?} {read_failures:?}"
    );
    assert!(
        !failed.is_empty() || !read_failures.is_empty(),
        "the outage was not felt: the proxy did not cut anything"
    );
    assert!(outcomes.values().filter(|o| o.is_ok()).count() > 8);
    assert!(reads.contains(&Code::Ok));

    // Every key again: a failed one files now or turns out to have been
    // filed; a successful one is a duplicate request and is answered with
    // the same referral.
    let outcomes = Arc::new(outcomes);
    let mut retries = Vec::new();
    for part in 0..8 {
        let (outcomes, channel, token) = (outcomes.clone(), app.channel().await, token.clone());
        retries.push(tokio::spawn(async move {
            let mut intake = pb::intake_service_client::IntakeServiceClient::new(channel);
            for (key, first) in outcomes.iter().skip(part).step_by(8) {
                let again = match intake.file_referral(authed(draft_for(key), &token)).await {
                    Ok(r) => r.into_inner(),
                    Err(s) => panic!("retry of {key} (first: {first:?}): {s:?}"),
                };
                let id = again.referral.expect("referral").id;
                if let Ok(first_id) = first {
                    assert_eq!(
                        &id, first_id,
                        "{key}: a duplicate request made another referral"
                    );
                    assert!(
                        again.replayed,
                        "{key}: a duplicate request was not a replay"
                    );
                }
            }
        }));
    }
    for r in retries {
        r.await.expect("retries");
    }

    // Checked directly in the database (not through refnet): one referral,
    // one ReferralFiled event and one filer party row per key; the audit
    // chain verifies.
    let db = Database::connect(direct.to_owned()).await.expect("db");
    let count = |sql: &'static str| crate::common::count_rows(&db, sql);
    let keys = outcomes.len() as i64;
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM referrals WHERE idempotency_key LIKE 'fault-%'").await,
        keys,
        "one referral per key"
    );
    assert_eq!(
        count(
            "SELECT COUNT(DISTINCT idempotency_key) AS n FROM referrals WHERE idempotency_key LIKE 'fault-%'"
        )
        .await,
        keys
    );
    assert_eq!(
        count(
            "SELECT COUNT(*) AS n FROM events e JOIN referrals r ON r.id = e.referral_id \
             WHERE e.kind = 'ReferralFiled' AND r.idempotency_key LIKE 'fault-%'"
        )
        .await,
        keys,
        "one ReferralFiled event per referral"
    );
    assert_eq!(
        count(
            "SELECT COUNT(*) AS n FROM referral_parties p JOIN referrals r ON r.id = p.referral_id \
             WHERE p.relation = 'FILER' AND r.idempotency_key LIKE 'fault-%'"
        )
        .await,
        keys,
        "one filer party row per referral"
    );
    let verified = refnet_core::audit::verify(&db)
        .await
        .expect("read the chain");
    assert!(verified.is_ok(), "audit chain: {verified:?}");
}

/// PostgreSQL itself stopped (fast: every session ended) and started again
/// three seconds later under the same load: the same checks as the cut link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_load_loses_and_duplicates_nothing() {
    let Some(server) = crate::pg::PrivateServer::start() else {
        return;
    };
    let direct = server.url();
    let app = TestApp::spawn_with(Some(direct.clone()), without_rate_limits).await;
    let server = Arc::new(server);
    let outage = {
        let server = server.clone();
        async move {
            let s = server.clone();
            tokio::task::spawn_blocking(move || s.stop("fast"))
                .await
                .expect("stop");
            tokio::time::sleep(Duration::from_secs(3)).await;
            tokio::task::spawn_blocking(move || server.pg_ctl_start())
                .await
                .expect("start");
        }
    };
    under_load("restart", &app, &direct, outage).await;
    app.stop().await;
}

on_both!(duplicate_events_create_nothing_twice);

/// Events delivered twice: every `ReferralFiled` appended again (a producer's
/// retry) and the routing worker's checkpoint rewound to the start (a
/// consumer's redelivery). Nothing is created twice: handoffs, their events,
/// parties and notifications stay as they were.
async fn duplicate_events_create_nothing_twice(app: &TestApp) {
    use refnet_core::entities::event;
    use refnet_routing::entities::consumer_checkpoint;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
    let db = app.db().await;
    let mut filed = Vec::new();
    for _ in 0..3 {
        filed.push(
            app.file(
                "police-nairobi",
                crate::routing::foreign_child_in_forced_labour(),
            )
            .await
            .referral
            .expect("referral")
            .id,
        );
    }
    let last_seq = || async {
        event::Entity::find()
            .all(&app.db().await)
            .await
            .expect("events")
            .iter()
            .map(|e| e.seq)
            .max()
            .unwrap_or(0)
    };
    let checkpoint = || async {
        consumer_checkpoint::Entity::find_by_id(refnet_routing::worker::CONSUMER.to_owned())
            .one(&app.db().await)
            .await
            .expect("checkpoint")
            .map_or(0, |c| c.seq)
    };
    let caught_up = |target: i64| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while checkpoint().await < target {
            assert!(
                std::time::Instant::now() < deadline,
                "the routing worker did not catch up"
            );
            app.ctx.event_signal().notify_waiters();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    caught_up(last_seq().await).await;
    let tables = [
        "handoffs",
        "referral_parties",
        "notifications",
        "referrals",
        "events WHERE kind = 'HandoffCreated'",
    ];
    let mut before = Vec::new();
    for t in tables {
        before
            .push(crate::common::count_rows(&db, &format!("SELECT COUNT(*) AS n FROM {t}")).await);
    }
    assert!(before[0] >= 3, "the referrals were routed: {before:?}");

    let originals = event::Entity::find()
        .filter(event::Column::Kind.eq("ReferralFiled"))
        .all(&db)
        .await
        .expect("events");
    assert_eq!(originals.len(), 3);
    let txn = db.begin().await.expect("begin");
    for original in &originals {
        let payload: serde_json::Value = serde_json::from_str(&original.payload).expect("payload");
        refnet_core::events::append(
            &txn,
            refnet_core::events::EventKind::ReferralFiled,
            original.referral_id,
            None,
            &payload,
        )
        .await
        .expect("append a duplicate");
    }
    txn.commit().await.expect("commit");
    consumer_checkpoint::Entity::update_many()
        .col_expr(consumer_checkpoint::Column::Seq, 0i64.into())
        .filter(consumer_checkpoint::Column::Consumer.eq(refnet_routing::worker::CONSUMER))
        .exec(&db)
        .await
        .expect("rewind the checkpoint");
    caught_up(last_seq().await).await;

    let mut after = Vec::new();
    for t in tables {
        after.push(crate::common::count_rows(&db, &format!("SELECT COUNT(*) AS n FROM {t}")).await);
    }
    assert_eq!(
        after, before,
        "{tables:?}: created again by duplicate events"
    );
    for id in &filed {
        let got = app
            .get_as("police-nairobi", id)
            .await
            .referral
            .expect("referral");
        assert_eq!(got.status, pb::ReferralStatus::Routed as i32);
    }
    let verified = refnet_core::audit::verify(&db)
        .await
        .expect("read the chain");
    assert!(verified.is_ok(), "audit chain: {verified:?}");
}
