//! Production shape: `refnet migrate`, then the three service binaries as
//! three OS processes on one PostgreSQL database, configured only through
//! `REFNET_...` variables. A police desk files through `refnet-intake`; the
//! worker inside `refnet-routing` routes it; the NGO sees it on its inbox
//! stream, acknowledges and accepts it; the police desk follows it on the
//! referral's stream; `refnet-protection` answers. SIGTERM stops each cleanly;
//! SIGKILL of routing (mid-batch, mid-stream) or of intake (mid-filing) loses
//! and duplicates nothing once restarted.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use refnet_api::v1::{
    self as pb, intake_service_client::IntakeServiceClient,
    routing_service_client::RoutingServiceClient,
    witness_protection_service_client::WitnessProtectionServiceClient,
};
use refnet_core::devkeys::{DevSigner, TokenRequest};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::common::{authed, new_key};

/// A service binary of the workspace, built beside this test binary.
pub(crate) fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (scripts/test does)",
        path.display()
    );
    path
}

/// A process killed on drop unless it already exited.
struct Process(Child, &'static str);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn agencies_toml() -> String {
    refnet_core::agencies::demo()
        .iter()
        .map(|a| {
            let county = a
                .county
                .as_deref()
                .map(|c| format!("county = \"{c}\"\n"))
                .unwrap_or_default();
            format!(
                "[[agency]]\nid = \"{}\"\nkind = \"{}\"\nname = \"{}\"\n{county}\n",
                a.id,
                refnet_core::auth::agency_kind_name(a.kind),
                a.name
            )
        })
        .collect()
}

async fn connect(port: u16, child: &mut Process) -> Channel {
    for _ in 0..300 {
        if let Some(status) = child.0.try_wait().expect("wait") {
            panic!("{} exited early: {status:?}", child.1);
        }
        if let Ok(channel) = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .expect("uri")
            .connect()
            .await
        {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} did not listen on {port}", child.1);
}

async fn next<T>(stream: &mut tonic::Streaming<T>, what: &str) -> T {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing in time"))
        .expect("stream ok")
        .expect("an item")
}

/// What a process of the stack needs: its environment.
struct StackEnv {
    url: String,
    master: String,
    jwks: PathBuf,
    agencies: PathBuf,
}

impl StackEnv {
    fn vars(&self, port: u16) -> Vec<(String, String)> {
        vec![
            ("REFNET_DATABASE_URL".into(), self.url.clone()),
            ("REFNET_MASTER_KEY".into(), self.master.clone()),
            (
                "REFNET_AUTH__JWKS_FILE".into(),
                self.jwks.display().to_string(),
            ),
            (
                "REFNET_AGENCIES_FILE".into(),
                self.agencies.display().to_string(),
            ),
            ("REFNET_MIGRATE_ON_START".into(), "false".into()),
            ("REFNET_LISTEN".into(), format!("127.0.0.1:{port}")),
            ("RUST_LOG".into(), "warn".into()),
        ]
    }

    fn start(&self, name: &'static str, port: u16) -> Process {
        let child = Command::new(binary(name))
            .envs(self.vars(port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Process(child, name)
    }
}

/// SIGTERM to `p`, then waits (bounded) for a clean exit.
async fn terminate(p: &mut Process) {
    stop(p, Stop::Term).await;
}

/// How a process is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGTERM: drain and exit cleanly.
    Term,
    /// SIGKILL: the process dies where it stands, as on a crash or an OOM kill.
    Kill,
}

/// Signals `p` and waits (bounded) for it to exit; after SIGTERM the exit must be clean.
async fn stop(p: &mut Process, how: Stop) {
    let pid = p.0.id().to_string();
    let signal = match how {
        Stop::Term => "-TERM",
        Stop::Kill => "-KILL",
    };
    assert!(
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill")
            .success()
    );
    for _ in 0..300 {
        if let Some(status) = p.0.try_wait().expect("wait") {
            if how == Stop::Term {
                assert!(status.success(), "{} exited {status:?}", p.1);
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} did not exit on {signal}", p.1);
}

/// A fresh database, migrated by `refnet migrate`, and the files the services read.
async fn prepare(dir: &Path) -> Option<StackEnv> {
    let url = crate::common::fresh_postgres_url().await?;
    let jwks = refnet_core::devkeys::ensure(dir).expect("dev key");
    let agencies = dir.join("agencies.toml");
    std::fs::write(&agencies, agencies_toml()).expect("agencies file");
    let master = crate::common::random_master_key();
    let migrated = Command::new(env!("CARGO_BIN_EXE_refnet"))
        .args(["migrate", "--database-url", &url])
        .output()
        .expect("refnet migrate");
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    Some(StackEnv {
        url,
        master,
        jwks,
        agencies,
    })
}

fn officer(signer: &DevSigner, agency: &str, kind: pb::AgencyKind) -> String {
    signer
        .mint(&TokenRequest {
            officer_id: format!("desk-{agency}"),
            agency_id: agency.into(),
            agency_kind: kind,
            roles: vec!["officer".into()],
            ttl: Duration::from_secs(600),
        })
        .expect("token")
}

/// SIGTERM to the routing process while referrals are being filed: its
/// stream ends with a resumable status, the worker stops between batches;
/// restarted, it routes the rest, and the NGO, resuming from its last cursor,
/// sees every handoff exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_routing_and_streaming_loses_nothing() {
    routing_stopped_during_routing_and_streaming(Stop::Term).await;
}

/// The same with SIGKILL: the routing process dies mid-batch and mid-stream
/// (its open transaction rolls back, its stream breaks); restarted, it routes
/// every referral exactly once, and the resumed stream repeats nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_routing_and_streaming_loses_nothing() {
    routing_stopped_during_routing_and_streaming(Stop::Kill).await;
}

async fn routing_stopped_during_routing_and_streaming(how: Stop) {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(stack) = prepare(dir.path()).await else {
        return;
    };
    let signer = DevSigner::load(dir.path(), "refnet-dev", "refnet").expect("signer");
    let police = officer(&signer, "police-nairobi", pb::AgencyKind::Police);
    let ngo = officer(&signer, "ngo-shelter-nairobi", pb::AgencyKind::Ngo);
    let (intake_port, routing_port) = (free_port(), free_port());
    let mut intake = stack.start("refnet-intake", intake_port);
    let mut routing = stack.start("refnet-routing", routing_port);
    let intake_ch = connect(intake_port, &mut intake).await;
    let routing_ch = connect(routing_port, &mut routing).await;

    let mut stream = RoutingServiceClient::new(routing_ch.clone())
        .watch_inbox(authed(
            pb::WatchInboxRequest {
                cursor: String::new(),
                from_beginning: true,
            },
            &ngo,
        ))
        .await
        .expect("watch")
        .into_inner();
    const N: usize = 30;
    let filing = {
        let channel = intake_ch.clone();
        let police = police.clone();
        tokio::spawn(async move {
            let mut client = IntakeServiceClient::new(channel);
            for _ in 0..N {
                client
                    .file_referral(authed(
                        pb::FileReferralRequest {
                            idempotency_key: new_key(),
                            draft: Some(crate::routing::foreign_child_in_forced_labour()),
                        },
                        &police,
                    ))
                    .await
                    .expect("file");
            }
        })
    };
    // Take a few items, then stop the routing process mid-flow.
    let mut created = std::collections::BTreeSet::new();
    let mut cursor = String::new();
    while created.len() < 3 {
        let item = next(&mut stream, "first items").await;
        cursor = item.cursor.clone();
        if item.event == "HandoffCreated" {
            assert!(created.insert(item.handoff.expect("handoff").id));
        }
    }
    stop(&mut routing, how).await;
    // The stream ends with UNAVAILABLE (a broken connection after SIGKILL)
    // after whatever was already sent.
    loop {
        match tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("the stream ended")
        {
            Ok(Some(item)) => {
                cursor = item.cursor.clone();
                if item.event == "HandoffCreated" {
                    assert!(created.insert(item.handoff.expect("handoff").id), "twice");
                }
            }
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => {
                assert!(
                    matches!(
                        status.code(),
                        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                    ),
                    "{status:?}"
                );
                break;
            }
        }
    }
    filing
        .await
        .expect("filing finished while routing was down");
    // Restart routing; resume from the last cursor.
    let mut routing = stack.start("refnet-routing", routing_port);
    let routing_ch = connect(routing_port, &mut routing).await;
    let mut stream = RoutingServiceClient::new(routing_ch.clone())
        .watch_inbox(authed(
            pb::WatchInboxRequest {
                cursor,
                from_beginning: false,
            },
            &ngo,
        ))
        .await
        .expect("resume")
        .into_inner();
    while created.len() < N {
        let item = next(&mut stream, "resumed items").await;
        if item.event == "HandoffCreated" {
            assert!(
                created.insert(item.handoff.expect("handoff").id),
                "an item seen before came again"
            );
        }
    }
    // In the database: every referral routed exactly once (4 handoffs each;
    // the stream saw all of them, so the worker is done).
    let db = sea_orm::Database::connect(stack.url.clone())
        .await
        .expect("db");
    use sea_orm::{ConnectionTrait, Statement};
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS handoffs, COUNT(DISTINCT referral_id) AS referrals FROM handoffs"
                .to_owned(),
        ))
        .await
        .expect("count")
        .expect("row");
    assert_eq!(row.try_get::<i64>("", "referrals").expect("n"), N as i64);
    assert_eq!(row.try_get::<i64>("", "handoffs").expect("n"), 4 * N as i64);
    drop(stream);
    terminate(&mut routing).await;
    terminate(&mut intake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_service_processes_on_one_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(stack) = prepare(dir.path()).await else {
        return;
    };
    let signer = DevSigner::load(dir.path(), "refnet-dev", "refnet").expect("signer");

    let mut processes = Vec::new();
    let mut ports = Vec::new();
    for name in ["refnet-intake", "refnet-routing", "refnet-protection"] {
        let port = free_port();
        processes.push(stack.start(name, port));
        ports.push(port);
    }
    let mut channels = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        channels.push(connect(*port, &mut processes[i]).await);
    }
    let (intake_ch, routing_ch, protection_ch) = (
        channels[0].clone(),
        channels[1].clone(),
        channels[2].clone(),
    );
    for (channel, service) in [
        (&intake_ch, "refnet.v1.IntakeService"),
        (&routing_ch, "refnet.v1.RoutingService"),
        (&protection_ch, "refnet.v1.WitnessProtectionService"),
    ] {
        let mut serving = false;
        for _ in 0..100 {
            if let Ok(reply) = HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                && reply.into_inner().status == ServingStatus::Serving as i32
            {
                serving = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(serving, "{service} is SERVING");
    }

    let police = officer(&signer, "police-nairobi", pb::AgencyKind::Police);
    let ngo = officer(&signer, "ngo-shelter-nairobi", pb::AgencyKind::Ngo);

    // The NGO watches its inbox on the routing process before anything is filed.
    let mut inbox = RoutingServiceClient::new(routing_ch.clone())
        .watch_inbox(authed(pb::WatchInboxRequest::default(), &ngo))
        .await
        .expect("watch inbox")
        .into_inner();
    let filed = IntakeServiceClient::new(intake_ch.clone())
        .file_referral(authed(
            pb::FileReferralRequest {
                idempotency_key: new_key(),
                draft: Some(crate::routing::foreign_child_in_forced_labour()),
            },
            &police,
        ))
        .await
        .expect("file through refnet-intake")
        .into_inner()
        .referral
        .expect("referral");
    let mut follow = RoutingServiceClient::new(routing_ch.clone())
        .watch_referral(authed(
            pb::WatchReferralRequest {
                referral: filed.reference_code.clone(),
                cursor: String::new(),
                from_beginning: true,
            },
            &police,
        ))
        .await
        .expect("follow")
        .into_inner();

    // Routed by the worker in refnet-routing; seen on the NGO's stream.
    let created = loop {
        let item = next(&mut inbox, "NGO inbox").await;
        if item.event == "HandoffCreated" {
            break item.handoff.expect("handoff");
        }
    };
    assert_eq!(created.referral_id, filed.id);
    assert_eq!(created.rule_id, "shelter-psychosocial-legal-ngo");
    let mut routing = RoutingServiceClient::new(routing_ch.clone());
    let h = routing
        .list_inbox(authed(pb::ListInboxRequest::default(), &ngo))
        .await
        .expect("inbox")
        .into_inner()
        .handoffs
        .into_iter()
        .find(|h| h.id == created.id)
        .expect("listed");
    let step = |h: &pb::Handoff| pb::HandoffTransitionRequest {
        handoff_id: h.id.clone(),
        expected_version: h.version,
        reason: String::new(),
    };
    let h = routing
        .acknowledge_handoff(authed(step(&h), &ngo))
        .await
        .expect("acknowledge")
        .into_inner();
    routing
        .accept_handoff(authed(step(&h), &ngo))
        .await
        .expect("accept");
    // The police desk sees the whole story on its stream.
    let mut seen = Vec::new();
    while !seen.iter().any(|e| e == "HandoffAccepted") {
        seen.push(next(&mut follow, "police follow").await.event);
    }
    assert_eq!(seen[0], "ReferralFiled");
    assert!(seen.iter().any(|e| e == "HandoffCreated"), "{seen:?}");
    // The NGO, now party, reads the referral through refnet-intake with its redaction.
    let read = IntakeServiceClient::new(intake_ch.clone())
        .get_referral(authed(
            pb::GetReferralRequest {
                referral: filed.id.clone(),
            },
            &ngo,
        ))
        .await
        .expect("NGO reads")
        .into_inner()
        .referral
        .expect("referral");
    assert_eq!(read.id, filed.id);
    let listed = WitnessProtectionServiceClient::new(protection_ch.clone())
        .list_protection_requests(authed(
            pb::ListProtectionRequestsRequest::default(),
            &police,
        ))
        .await
        .expect("refnet-protection answers")
        .into_inner();
    assert!(listed.requests.is_empty());
    drop((inbox, follow));

    // SIGTERM: each process exits cleanly.
    for p in &mut processes {
        terminate(p).await;
    }
}

/// SIGKILL to the intake process while four desks file: calls in flight fail
/// (retryably), nothing is half-written; restarted, every filing retried with
/// its idempotency key is answered with exactly one referral, each routed once,
/// and the audit chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_intake_mid_filing_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(stack) = prepare(dir.path()).await else {
        return;
    };
    let signer = DevSigner::load(dir.path(), "refnet-dev", "refnet").expect("signer");
    let police = officer(&signer, "police-nairobi", pb::AgencyKind::Police);
    let (intake_port, routing_port) = (free_port(), free_port());
    let mut intake = stack.start("refnet-intake", intake_port);
    let mut routing = stack.start("refnet-routing", routing_port);
    let intake_ch = connect(intake_port, &mut intake).await;
    connect(routing_port, &mut routing).await;

    let stop_filing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut desks = Vec::new();
    for desk in 0..4 {
        let (channel, police, stop_filing) =
            (intake_ch.clone(), police.clone(), stop_filing.clone());
        desks.push(tokio::spawn(async move {
            let mut client = IntakeServiceClient::new(channel);
            let mut keys = Vec::new();
            let mut failures = Vec::new();
            let mut n = 0;
            while !stop_filing.load(std::sync::atomic::Ordering::SeqCst) {
                let key = format!("kill-{desk}-{n}");
                n += 1;
                let mut request = authed(
                    pb::FileReferralRequest {
                        idempotency_key: key.clone(),
                        draft: Some(crate::routing::foreign_child_in_forced_labour()),
                    },
                    &police,
                );
                request.set_timeout(Duration::from_secs(10));
                if let Err(status) = client.file_referral(request).await {
                    failures.push(status.code());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                keys.push(key);
            }
            (keys, failures)
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop(&mut intake, Stop::Kill).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut intake = stack.start("refnet-intake", intake_port);
    let intake_ch = connect(intake_port, &mut intake).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop_filing.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut keys = Vec::new();
    let mut failures = Vec::new();
    for desk in desks {
        let (k, f) = desk.await.expect("desk");
        keys.extend(k);
        failures.extend(f);
    }
    assert!(!failures.is_empty(), "the kill was not felt by any desk");
    assert!(
        failures.iter().all(|c| matches!(
            c,
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        )),
        "a killed server's calls fail retryably: {failures:?}"
    );

    // Every key again, on the restarted process: one referral each.
    let mut client = IntakeServiceClient::new(intake_ch);
    let mut ids = std::collections::BTreeSet::new();
    for key in &keys {
        // As a client should: over the rate limit, wait as long as RetryInfo says.
        let reply = loop {
            let result = client
                .file_referral(authed(
                    pb::FileReferralRequest {
                        idempotency_key: key.clone(),
                        draft: Some(crate::routing::foreign_child_in_forced_labour()),
                    },
                    &police,
                ))
                .await;
            match result {
                Ok(reply) => break reply.into_inner(),
                Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                    use tonic_types::StatusExt;
                    let wait = s
                        .get_details_retry_info()
                        .and_then(|r| r.retry_delay)
                        .expect("RetryInfo");
                    tokio::time::sleep(wait).await;
                }
                Err(s) => panic!("retry of {key}: {s:?}"),
            }
        };
        assert!(
            ids.insert(reply.referral.expect("referral").id),
            "{key}: two keys, one referral"
        );
    }

    let db = sea_orm::Database::connect(stack.url.clone())
        .await
        .expect("db");
    let count = |sql: &'static str| crate::common::count_rows(&db, sql);
    let n = keys.len() as i64;
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM referrals").await,
        n,
        "one referral per key"
    );
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM events WHERE kind = 'ReferralFiled'").await,
        n,
        "one ReferralFiled event per referral"
    );
    // The routing process routes every referral once: 4 handoffs each.
    let mut handoffs = 0;
    for _ in 0..300 {
        handoffs = count("SELECT COUNT(*) AS n FROM handoffs").await;
        if handoffs >= 4 * n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(handoffs, 4 * n, "every referral routed exactly once");
    assert_eq!(
        count("SELECT COUNT(DISTINCT referral_id) AS n FROM handoffs").await,
        n
    );
    let verified = refnet_core::audit::verify(&db)
        .await
        .expect("read the chain");
    assert!(verified.is_ok(), "audit chain: {verified:?}");
    eprintln!(
        "filings: {} keys, {} failed while intake was killed and restarted",
        keys.len(),
        failures.len()
    );
    terminate(&mut routing).await;
    terminate(&mut intake).await;
}
