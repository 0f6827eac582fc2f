//! The `refnet` binary as a desk officer's administrator uses it: `serve` on a
//! fresh data directory, `agencies`, and a token from `refnet token` that the
//! server accepts for filing and reading a referral.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use refnet_api::{SERVICE_NAMES, v1 as pb};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::common::{authed, canary_draft, new_key};

const REFNET: &str = env!("CARGO_BIN_EXE_refnet");

pub(crate) struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn refnet(args: &[&str]) -> String {
    let out = Command::new(REFNET)
        .args(args)
        .env_remove("REFNET_DATABASE_URL")
        .output()
        .expect("run refnet");
    assert!(
        out.status.success(),
        "refnet {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A 10-minute officer token of `agency` from `refnet token` on `data`.
pub(crate) fn officer_token(data: &str, agency: &str) -> String {
    refnet(&[
        "token",
        "--data-dir",
        data,
        "--agency",
        agency,
        "--role",
        "officer",
        "--ttl",
        "10m",
    ])
    .trim()
    .to_owned()
}

/// Starts `refnet serve` on `data` with extra environment `env`; returns the
/// process (killed on drop), the address it serves on, and its log so far.
pub(crate) async fn spawn_serve(
    data: &str,
    env: &[(&str, &str)],
) -> (Server, String, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut command = Command::new(REFNET);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data])
        .env_remove("REFNET_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn refnet serve");
    let stderr = child.stderr.take().expect("stderr");
    let server = Server(child);
    // Read the server's stderr to the end (a closed pipe would fail its
    // writes), reporting the address it serves on.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let server_log = log.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = refnet_core::announce::served_address(&line)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr.to_owned());
            }
            if let Ok(mut l) = server_log.lock() {
                l.push_str(&line);
                l.push('\n');
            }
        }
    });
    let addr = tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .expect("serves in time")
        .unwrap_or_else(|_| {
            panic!(
                "refnet serve exited without serving: {}",
                log.lock().expect("log")
            )
        });
    (server, addr, log)
}

/// SIGTERM with a call that cannot finish (another session holds the lock
/// every event append takes, so it waits forever): the process waits for it
/// no longer than `shutdown_grace_seconds`, exits cleanly, and the client is
/// answered with an error rather than left hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_grace_period() {
    use sea_orm::{ConnectionTrait, Statement};
    let Some(url) = crate::common::fresh_postgres_url().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let (mut server, addr, log) = spawn_serve(
        data,
        &[
            ("REFNET_DATABASE_URL", url.as_str()),
            ("REFNET_SHUTDOWN_GRACE_SECONDS", "1"),
        ],
    )
    .await;
    let blocker = sea_orm::Database::connect(
        sea_orm::ConnectOptions::new(url.clone())
            .max_connections(1)
            .to_owned(),
    )
    .await
    .expect("blocker connects");
    blocker
        .execute_raw(Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_advisory_lock($1)",
            [refnet_core::events::APPEND_LOCK.into()],
        ))
        .await
        .expect("lock");
    let signer =
        refnet_core::devkeys::DevSigner::load(std::path::Path::new(data), "refnet-dev", "refnet")
            .expect("dev key");
    let token = signer
        .mint(&refnet_core::devkeys::TokenRequest {
            officer_id: "desk-1".into(),
            agency_id: "police-nairobi".into(),
            agency_kind: pb::AgencyKind::Police,
            roles: vec!["officer".into()],
            ttl: Duration::from_secs(600),
        })
        .expect("token");
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let stuck = tokio::spawn(async move {
        pb::intake_service_client::IntakeServiceClient::new(channel)
            .file_referral(authed(
                pb::FileReferralRequest {
                    idempotency_key: new_key(),
                    draft: Some(canary_draft()),
                },
                &token,
            ))
            .await
    });
    // Let the call reach the lock.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if stuck.is_finished() {
        panic!(
            "the call should wait on the lock, but ended: {:?}\nsqlite file exists: {}\n{}",
            stuck.await.map(|r| r.map(|_| ())),
            std::path::Path::new(data).join("refnet.db").exists(),
            log.lock().expect("log")
        );
    }
    let pid = server.0.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let mut exited = None;
    for _ in 0..200 {
        if let Some(status) = server.0.try_wait().expect("wait") {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = exited.unwrap_or_else(|| {
        panic!(
            "refnet did not exit after SIGTERM: {}",
            log.lock().expect("log")
        )
    });
    assert!(status.success(), "clean exit: {status:?}");
    let outcome = tokio::time::timeout(Duration::from_secs(20), stuck)
        .await
        .expect("the client was answered")
        .expect("task");
    assert!(outcome.is_err(), "the cut-off call failed: {outcome:?}");
    assert!(
        log.lock().expect("log").contains("grace period over"),
        "{}",
        log.lock().expect("log")
    );
    drop(blocker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_agencies_and_token_work_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");

    let err = Command::new(REFNET)
        .args(["agencies", "--data-dir", data])
        .output()
        .expect("run");
    assert!(
        !err.status.success(),
        "agencies before serve is an error, not an empty list"
    );

    let (server, addr, log) = spawn_serve(data, &[]).await;

    let agencies = refnet(&["agencies", "--data-dir", data]);
    let rows: Vec<Vec<&str>> = agencies.lines().map(|l| l.split('\t').collect()).collect();
    assert!(rows.len() >= 10);
    assert!(
        rows.iter().all(|r| r.len() == 5 && r[4] == "active"),
        "id, kind, name, county, active: {agencies}"
    );
    for kind in [
        "POLICE",
        "PROSECUTION",
        "IMMIGRATION",
        "LABOUR",
        "CHILDREN",
        "NGO",
        "HEALTH",
        "WPA",
        "TRUST_FUND",
        "SECRETARIAT",
    ] {
        assert!(
            rows.iter().any(|r| r[1] == kind),
            "a demo agency of kind {kind}"
        );
    }
    let police = rows.iter().find(|r| r[1] == "POLICE").expect("police")[0].to_owned();

    let token = refnet(&[
        "token",
        "--data-dir",
        data,
        "--agency",
        &police,
        "--role",
        "officer",
        "--ttl",
        "10m",
    ]);
    let token = token.trim();

    let channel = match Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
    {
        Ok(channel) => channel,
        Err(e) => panic!(
            "connect to {addr}: {e:?}; server log:\n{}",
            log.lock().expect("log")
        ),
    };
    let mut health = HealthClient::new(channel.clone());
    for service in SERVICE_NAMES {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health")
            .into_inner();
        assert_eq!(status.status, ServingStatus::Serving as i32);
    }

    let mut intake = pb::intake_service_client::IntakeServiceClient::new(channel);
    let denied = intake
        .file_referral(pb::FileReferralRequest {
            idempotency_key: new_key(),
            draft: Some(canary_draft()),
        })
        .await
        .expect_err("no token");
    assert_eq!(denied.code(), Code::Unauthenticated);

    let filed = intake
        .file_referral(authed(
            pb::FileReferralRequest {
                idempotency_key: new_key(),
                draft: Some(canary_draft()),
            },
            token,
        ))
        .await
        .expect("file with a minted token")
        .into_inner()
        .referral
        .expect("referral");
    let got = intake
        .get_referral(authed(
            pb::GetReferralRequest {
                referral: filed.reference_code.clone(),
            },
            token,
        ))
        .await
        .expect("get")
        .into_inner()
        .referral
        .expect("referral");
    assert_eq!(got.id, filed.id);
    assert_eq!(got.filing_agency_id, police);

    // The audit chain verifies, and names the record an intruder edited.
    let verified = refnet(&["audit", "verify", "--data-dir", data]);
    assert!(verified.starts_with("audit log intact: "), "{verified}");
    {
        use sea_orm::{ConnectionTrait, Database, Statement};
        let db = Database::connect(format!("sqlite://{data}/refnet.db"))
            .await
            .expect("db");
        db.execute_raw(Statement::from_string(
            db.get_database_backend(),
            "UPDATE audit_log SET field_paths = '[]' WHERE seq = 1".to_owned(),
        ))
        .await
        .expect("tamper");
    }
    let broken = Command::new(REFNET)
        .args(["audit", "verify", "--data-dir", data])
        .output()
        .expect("run");
    assert!(!broken.status.success());
    let message = String::from_utf8_lossy(&broken.stderr);
    assert!(message.contains("audit record 1 was modified"), "{message}");

    let bad_role = Command::new(REFNET)
        .args([
            "token",
            "--data-dir",
            data,
            "--agency",
            &police,
            "--role",
            "janitor",
        ])
        .output()
        .expect("run");
    assert!(!bad_role.status.success());
    drop(server);
}

#[test]
fn policy_check_validates_and_prints_the_matrix() {
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/services/core/policy/redaction.toml"
    );
    let out = refnet(&["policy", "check", shipped]);
    assert!(out.contains("valid"));
    assert!(
        out.lines()
            .any(|l| l.starts_with("IDENTITY") && l.contains("mask")),
        "{out}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(shipped).expect("policy").replace(
        "[agency.NGO]\nIDENTITY = \"show\"",
        "[agency.NGO]\nIDENTITY = \"reveal\"",
    );
    std::fs::write(&bad, text).expect("write");
    let result = Command::new(REFNET)
        .args(["policy", "check", bad.to_str().expect("path")])
        .output()
        .expect("run");
    assert!(!result.status.success());
    let message = String::from_utf8_lossy(&result.stderr);
    assert!(
        message.contains("bad.toml")
            && message.contains("agency.NGO.IDENTITY")
            && message.contains("reveal"),
        "{message}"
    );
}

/// `refnet demo` runs the scenario on a fresh embedded server and shows the
/// witness's identity to every agency before protection and to the WPA only
/// after it.
#[test]
fn demo_shows_each_agency_its_own_view() {
    let out = refnet(&["demo"]);
    let after = out
        .split("What each agency sees now")
        .nth(1)
        .expect("the second table");
    let before = out
        .split("What each agency sees now")
        .next()
        .expect("the first table");
    let row = |table: &str, name: &str| -> String {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("row {name} in {table}"))
            .to_owned()
    };
    assert_eq!(row(before, "given name").matches("Demo Akinyi").count(), 3);
    let names = row(after, "given name");
    assert_eq!(names.matches("Witness-").count(), 3, "{names}");
    assert_eq!(
        names.matches("Demo Akinyi").count(),
        1,
        "only the WPA: {names}"
    );
    assert_eq!(row(after, "passport").matches("DM1234567").count(), 1);
    assert_eq!(
        row(after, "current location").matches("Demo Lodge").count(),
        1
    );
}

/// The load tool runs every unary scenario against its own server without
/// errors and reports a summary per scenario (a smoke run: no speed asserted).
#[test]
fn the_load_tool_runs_each_scenario_without_errors() {
    let out = Command::new(REFNET)
        .args([
            "bench",
            "--duration",
            "300ms",
            "--rounds",
            "1",
            "--prefill",
            "30",
            "--concurrency",
            "4",
        ])
        .env_remove("REFNET_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run refnet bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("file     ratio to sqlite-insert: min "),
        "the SQLite insert baseline runs beside FileReferral: {stdout}"
    );
    for scenario in ["file", "get", "list", "inbox", "message"] {
        let row = stdout
            .lines()
            .find(|l| {
                l.starts_with(&format!("{scenario:<8} "))
                    && l.split_whitespace().nth(1) == Some("1")
            })
            .unwrap_or_else(|| panic!("no round for {scenario}: {stdout}"));
        let errors: u64 = row
            .split_whitespace()
            .nth(6)
            .and_then(|e| e.parse().ok())
            .expect("errors column");
        assert_eq!(errors, 0, "{row}");
        assert!(
            stdout.contains(&format!("summary scenario={scenario} ")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("server RSS now"), "{stdout}");
}

/// The soak, as a bounded short run (the documented one is 10 minutes): a
/// steady mix of filings, reads and pages with no error, reported per window
/// with the server's memory and the latency drift.
#[test]
fn the_soak_runs_without_errors_and_reports_drift() {
    soak(None);
}

/// The same short soak on PostgreSQL (a fresh database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soak_runs_without_errors_on_postgres() {
    let Some(url) = crate::common::fresh_postgres_url().await else {
        return;
    };
    tokio::task::spawn_blocking(move || soak(Some(url)))
        .await
        .expect("soak");
}

fn soak(database_url: Option<String>) {
    let mut command = Command::new(REFNET);
    command
        .args([
            "bench",
            "--scenario",
            "soak",
            "--duration",
            "4s",
            "--rate",
            "60",
            "--prefill",
            "20",
            "--concurrency",
            "4",
        ])
        .env_remove("REFNET_DATABASE_URL")
        .env("RUST_LOG", "warn");
    if let Some(url) = &database_url {
        command.args(["--database-url", url]);
    }
    let out = command.output().expect("run refnet bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let windows: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            l.starts_with("soak ")
                && l.split_whitespace()
                    .nth(1)
                    .is_some_and(|w| w.parse::<u32>().is_ok())
        })
        .collect();
    assert_eq!(windows.len(), 10, "{stdout}");
    for row in &windows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        let rate: f64 = cols[2].parse().expect("calls/s");
        assert!(rate > 0.0, "a window without calls: {row}");
        assert_eq!(cols[3], "0", "errors in {row}");
        let rss: f64 = cols[5].parse().expect("RSS");
        assert!(rss > 1.0, "{row}");
    }
    for rpc in ["file", "get", "list", "inbox"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("soak rpc {rpc:<6} p50 "))),
            "no line for {rpc}: {stdout}"
        );
    }
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary scenario=soak "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(summary.contains(" errors=0 "), "{summary}");
    assert!(
        summary.contains("rss_growth_mib=") && summary.contains("p99_drift="),
        "{summary}"
    );
}

/// `refnet seed` writes referrals that the server serves like filed ones:
/// every seeded referral its filer is party to comes back once, newest
/// first, through keyset pages; one reads back decrypted (its identity is
/// sealed under its own data key) and closed; another agency gets NOT_FOUND;
/// a second seeding continues the reference codes instead of colliding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_referrals_are_served_like_filed_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    refnet(&[
        "seed",
        "--data-dir",
        data,
        "--count",
        "1200",
        "--batch",
        "500",
    ]);
    refnet(&["seed", "--data-dir", data, "--count", "30"]);

    let db = sea_orm::Database::connect(format!("sqlite://{data}/refnet.db?mode=ro"))
        .await
        .expect("open the seeded database");
    let count = |sql: &'static str| crate::common::count_rows(&db, sql);
    assert_eq!(count("SELECT COUNT(*) AS n FROM referrals").await, 1230);
    assert_eq!(
        count("SELECT COUNT(DISTINCT reference_code) AS n FROM referrals").await,
        1230
    );
    assert_eq!(count("SELECT COUNT(*) AS n FROM events").await, 0);
    let police_party =
        count("SELECT COUNT(*) AS n FROM referral_parties WHERE agency_id = 'police-nairobi'")
            .await;
    assert!(police_party > 50, "{police_party}");
    db.close().await.expect("close");

    let (_server, addr, _log) = spawn_serve(data, &[]).await;
    let token = |agency: &str| officer_token(data, agency);
    let police = token("police-nairobi");
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut intake = pb::intake_service_client::IntakeServiceClient::new(channel);

    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = intake
            .list_referrals(authed(
                pb::ListReferralsRequest {
                    page_size: 100,
                    page_token: std::mem::take(&mut page_token),
                    ..Default::default()
                },
                &police,
            ))
            .await
            .expect("list")
            .into_inner();
        seen.extend(page.referrals.into_iter().map(|r| (r.id, r.reference_code)));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen.len() as i64, police_party, "every referral once");
    let ids: Vec<uuid::Uuid> = seen
        .iter()
        .map(|(id, _)| id.parse().expect("uuid"))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );

    let (_, code) = &seen[seen.len() / 2];
    let got = intake
        .get_referral(authed(
            pb::GetReferralRequest {
                referral: code.clone(),
            },
            &police,
        ))
        .await
        .expect("get a seeded referral by its code")
        .into_inner()
        .referral
        .expect("referral");
    assert_eq!(got.status, pb::ReferralStatus::Closed as i32);
    let subject = got.draft.and_then(|d| d.subject).expect("subject");
    assert!(
        !subject.given_name.is_empty(),
        "identity decrypts for the filer"
    );

    let other = intake
        .get_referral(authed(
            pb::GetReferralRequest {
                referral: code.clone(),
            },
            &token("labour-nairobi"),
        ))
        .await
        .expect_err("not a party");
    assert_eq!(other.code(), Code::NotFound);
}

/// Logs written to a pipe (a file, a collector) carry no colour codes; the
/// pretty format colours only a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_off_a_terminal_have_no_colour_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (server, _addr, log) =
        spawn_serve(data.to_str().expect("utf-8 path"), &[("RUST_LOG", "info")]).await;
    // The "serving" line is logged as the listener starts; wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !log.lock().expect("log").contains("serving") {
        assert!(std::time::Instant::now() < deadline, "no serving log line");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(server);
    let log = log.lock().expect("log").clone();
    assert!(log.contains(" INFO "), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in piped logs:\n{log:?}"
    );
}

/// `log_format = "json"` (`REFNET_LOG_FORMAT=json`): every line the server
/// writes is one JSON object, the address it serves on included, so a log
/// collector parses everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut child = Command::new(REFNET)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("REFNET_DATABASE_URL")
        .env("REFNET_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn refnet serve");
    let stderr = child.stderr.take().expect("stderr");
    let server = Server(child);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let reader = std::thread::spawn(move || {
        let mut tx = Some(tx);
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let parsed: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            if parsed["fields"]["message"] == "serving"
                && let Some(addr) = parsed["fields"]["addr"].as_str()
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr.to_owned());
            }
            lines.push(parsed);
        }
        lines
    });
    let addr = tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .expect("a JSON serving line in time")
        .expect("the reader saw the serving line");
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("the logged address serves");
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(status.status, ServingStatus::Serving as i32);
    drop(server);
    let lines = reader.join().expect("every stderr line is JSON");
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string()),
        "{lines:?}"
    );
}

/// `refnet token --help` lists every role refnet knows, and an unknown role
/// is refused with that list.
#[test]
fn token_help_and_errors_list_every_role() {
    let help = refnet(&["token", "--help"]);
    let unknown = Command::new(REFNET)
        .args(["token", "--agency", "police-nairobi", "--role", "chief"])
        .output()
        .expect("run refnet");
    assert!(!unknown.status.success());
    let unknown = String::from_utf8_lossy(&unknown.stderr);
    for role in refnet_core::auth::Role::ALL {
        assert!(
            help.contains(role.as_str()),
            "{role:?} missing from:\n{help}"
        );
        assert!(
            unknown.contains(role.as_str()),
            "{role:?} missing from:\n{unknown}"
        );
    }
}

/// `SIGHUP` reloads the routing rules (and the redaction policy) after
/// validation: the worker routes the next referral under the new version and
/// the handlers accept its new purposes at once (one version in the process);
/// a broken file is refused, the version in force stays, and the log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_rules_and_a_broken_file_keeps_the_old_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let rules = dir.path().join("rules.toml");
    let write_rules = |version: &str, extra: &str| {
        let text: String = refnet_routing::rules::DEFAULT_RULES
            .lines()
            .map(|l| {
                if l.starts_with("version = ") {
                    format!("version = \"{version}\"")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&rules, text + extra).expect("write rules");
    };
    write_rules("hup-1", "");
    let policy = dir.path().join("redaction.toml");
    std::fs::write(&policy, refnet_core::policy::DEFAULT_POLICY).expect("write policy");
    let (server, addr, log) = spawn_serve(
        data,
        &[
            (
                "REFNET_ROUTING_RULES_FILE",
                rules.to_str().expect("utf-8 path"),
            ),
            (
                "REFNET_REDACTION_POLICY_FILE",
                policy.to_str().expect("utf-8 path"),
            ),
        ],
    )
    .await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let police = officer_token(data, "police-nairobi");
    let supervisor = refnet(&[
        "token",
        "--data-dir",
        data,
        "--agency",
        "police-nairobi",
        "--role",
        "supervisor",
    ])
    .trim()
    .to_owned();
    let ngo = officer_token(data, "ngo-shelter-nairobi");
    let mut routing = pb::routing_service_client::RoutingServiceClient::new(channel.clone());
    // Files a referral routed to the NGO and returns its handoff's rule-set version.
    let routed_under = async || {
        let mut intake = pb::intake_service_client::IntakeServiceClient::new(channel.clone());
        let mut routing = pb::routing_service_client::RoutingServiceClient::new(channel.clone());
        let referral = intake
            .file_referral(authed(
                pb::FileReferralRequest {
                    idempotency_key: new_key(),
                    draft: Some(crate::routing::foreign_child_in_forced_labour()),
                },
                &police,
            ))
            .await
            .expect("file")
            .into_inner()
            .referral
            .expect("referral");
        for _ in 0..400 {
            let inbox = routing
                .list_inbox(authed(pb::ListInboxRequest::default(), &ngo))
                .await
                .expect("inbox")
                .into_inner()
                .handoffs;
            if let Some(h) = inbox.iter().find(|h| h.referral_id == referral.id) {
                return (referral.id, h.rule_set_version.clone());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no handoff to the NGO");
    };
    let new_purpose = "hotline follow-up";
    let create = |referral: &str| {
        authed(
            pb::CreateHandoffRequest {
                referral: referral.to_owned(),
                to_agency_id: "health-nairobi".into(),
                purpose: new_purpose.into(),
                idempotency_key: new_key(),
            },
            &supervisor,
        )
    };
    let (first, version) = routed_under().await;
    assert_eq!(version, "hup-1");
    let unknown = routing
        .create_handoff(create(&first))
        .await
        .expect_err("not a purpose yet");
    assert_eq!(unknown.code(), Code::InvalidArgument);

    let hangup = || {
        let sent = Command::new("kill")
            .args(["-HUP", &server.0.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
    };
    write_rules(
        "hup-2",
        &format!(
            "\n\n[[rule]]\nid = \"hotline\"\ndescription = \"A hotline follow-up purpose for manual handoffs.\"\nneeds = [\"MEDICAL\"]\nto = \"HEALTH\"\npurpose = \"{new_purpose}\"\n"
        ),
    );
    hangup();
    let mut reloaded = None;
    for _ in 0..200 {
        if let Ok(made) = routing.create_handoff(create(&first)).await {
            reloaded = Some(made.into_inner());
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let made = reloaded.unwrap_or_else(|| {
        panic!(
            "the handlers see the reloaded rules: {}",
            log.lock().expect("log")
        )
    });
    assert_eq!(
        made.rule_set_version, "hup-2",
        "a handoff made by hand records the rule set in force"
    );
    assert_eq!(routed_under().await.1, "hup-2", "and so does the worker");

    // Broken files: refused, logged, and the versions in force stay.
    std::fs::write(&rules, "version = \"hup-3\"\n[[rule]]\nid = \"broken\"\n").expect("write");
    std::fs::write(&policy, "this is not a policy").expect("write");
    hangup();
    for _ in 0..200 {
        if log.lock().expect("log").matches("reload refused").count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let said = log.lock().expect("log").clone();
    assert!(
        said.contains("reload refused")
            && said.contains("routing rules")
            && said.contains("redaction policy"),
        "{said}"
    );
    // The policy in force still applies: Labour (no consent) reads a redacted view.
    let seen = pb::intake_service_client::IntakeServiceClient::new(channel.clone())
        .get_referral(authed(
            pb::GetReferralRequest {
                referral: first.clone(),
            },
            &officer_token(data, "labour-nairobi"),
        ))
        .await
        .expect("labour reads")
        .into_inner();
    assert!(
        !seen.redactions.is_empty(),
        "the policy in force still redacts"
    );
    assert_eq!(routed_under().await.1, "hup-2");
    routing
        .create_handoff(create(&first))
        .await
        .expect("the hup-2 purposes still hold");
    drop(server);
}
