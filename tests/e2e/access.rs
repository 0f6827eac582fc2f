//! Revoking access and limiting rates: a suspended officer's or agency's
//! valid tokens are refused (UNAUTHENTICATED) on a running server within the
//! refresh interval, through `refnet access`, and a caller over its rate
//! limit gets RESOURCE_EXHAUSTED with a retry time; a refused call writes
//! nothing.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use refnet_api::v1 as pb;
use refnet_core::devkeys::TokenRequest;
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::{Backend, TestApp, authed, canary_draft, new_key};

const REFNET: &str = env!("CARGO_BIN_EXE_refnet");

/// `refnet access ARGS` against the app's database.
fn access(app: &TestApp, args: &[&str]) {
    let out = Command::new(REFNET)
        .arg("access")
        .args(args)
        .args(["--database-url", &app.database_url])
        .args(["--data-dir", &app.data_dir.path().display().to_string()])
        .output()
        .expect("run refnet access");
    assert!(
        out.status.success(),
        "refnet access {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A token of `officer` in `agency` with the officer role.
fn token_of(app: &TestApp, agency: &str, officer: &str) -> String {
    let found = app.ctx.agencies().get(agency).expect("demo agency");
    app.signer()
        .mint(&TokenRequest {
            officer_id: officer.to_owned(),
            agency_id: found.id,
            agency_kind: found.kind,
            roles: vec!["officer".into()],
            ttl: Duration::from_secs(600),
        })
        .expect("mint")
}

async fn list(app: &TestApp, token: &str) -> Result<(), tonic::Status> {
    app.intake()
        .await
        .list_referrals(authed(pb::ListReferralsRequest::default(), token))
        .await
        .map(|_| ())
}

async fn file(app: &TestApp, token: &str) -> Result<(), tonic::Status> {
    app.intake()
        .await
        .file_referral(authed(
            pb::FileReferralRequest {
                idempotency_key: new_key(),
                draft: Some(canary_draft()),
            },
            token,
        ))
        .await
        .map(|_| ())
}

/// Waits (up to 10 s) until `list` with `token` gives `want` (`None`: OK).
async fn until(app: &TestApp, token: &str, want: Option<Code>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = list(app, token).await.err().map(|s| s.code());
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn spawn_with_fast_refresh(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_configured(backend, |c| c.auth.access_refresh_ms = 100).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspensions_take_effect_on_a_running_server_sqlite() {
    let app = spawn_with_fast_refresh(Backend::Sqlite)
        .await
        .expect("sqlite");
    suspensions_take_effect_on_a_running_server(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspensions_take_effect_on_a_running_server_postgres() {
    let Some(app) = spawn_with_fast_refresh(Backend::Postgres).await else {
        return;
    };
    suspensions_take_effect_on_a_running_server(&app).await;
    app.stop().await;
}

async fn suspensions_take_effect_on_a_running_server(app: &TestApp) {
    let amina = token_of(app, "police-nairobi", "amina");
    let baraka = token_of(app, "police-nairobi", "baraka");
    let mombasa = token_of(app, "police-mombasa", "amina");
    // Each token works, and is now remembered by the auth layer.
    for t in [&amina, &baraka, &mombasa] {
        list(app, t).await.expect("valid token accepted");
    }

    access(
        app,
        &[
            "suspend-officer",
            "--agency",
            "police-nairobi",
            "--officer",
            "amina",
            "--reason",
            "device reported lost",
        ],
    );
    until(
        app,
        &amina,
        Some(Code::Unauthenticated),
        "suspended officer",
    )
    .await;
    let referrals = app.count("referrals").await;
    let refused = file(app, &amina)
        .await
        .expect_err("suspended officer files");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(app.count("referrals").await, referrals, "nothing written");
    list(app, &baraka)
        .await
        .expect("a colleague is not suspended");
    list(app, &mombasa)
        .await
        .expect("the same officer id in another agency is someone else");
    // A new token for the suspended officer is refused too.
    let fresh = list(app, &token_of(app, "police-nairobi", "amina"))
        .await
        .expect_err("new token");
    assert_eq!(fresh.code(), Code::Unauthenticated);

    access(
        app,
        &[
            "reinstate-officer",
            "--agency",
            "police-nairobi",
            "--officer",
            "amina",
        ],
    );
    until(app, &amina, None, "reinstated officer").await;

    access(app, &["suspend-agency", "police-nairobi"]);
    until(
        app,
        &baraka,
        Some(Code::Unauthenticated),
        "suspended agency",
    )
    .await;
    let status = list(app, &amina).await.expect_err("whole agency");
    assert_eq!(status.code(), Code::Unauthenticated);
    list(app, &mombasa).await.expect("another agency");

    access(app, &["reinstate-agency", "police-nairobi"]);
    until(app, &baraka, None, "reinstated agency").await;
    list(app, &amina).await.expect("agency back");
}

/// Calls `list` until one is refused; returns how many were allowed and the
/// refusal. Fails the test if none is refused within `most` calls.
async fn until_limited(app: &TestApp, token: &str, most: usize) -> (usize, tonic::Status) {
    for allowed in 0..most {
        if let Err(status) = list(app, token).await {
            return (allowed, status);
        }
    }
    panic!("{most} calls and none was rate limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_refuse_with_a_retry_time() {
    let app = TestApp::spawn_configured(Backend::Sqlite, |c| {
        c.limits.officer_per_second = 1;
        c.limits.officer_burst = 5;
        c.limits.agency_per_second = 1;
        c.limits.agency_burst = 8;
    })
    .await
    .expect("sqlite");
    let amina = token_of(&app, "police-nairobi", "amina");
    let baraka = token_of(&app, "police-nairobi", "baraka");
    let other = token_of(&app, "police-mombasa", "amina");

    // Buckets refill at one call a second, so a slow machine may get one
    // more call per second it takes; never fewer than the burst.
    let started = Instant::now();
    let (allowed, refused) = until_limited(&app, &amina, 50).await;
    let slack = started.elapsed().as_secs() as usize + 1;
    assert!(
        (5..=5 + slack).contains(&allowed),
        "officer allowed {allowed} calls, burst 5"
    );
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("officer"),
        "{}",
        refused.message()
    );
    let retry = refused
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo detail");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(1),
        "{retry:?}"
    );

    // A refused filing writes nothing.
    let referrals = app.count("referrals").await;
    let status = file(&app, &amina).await.expect_err("limited");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(app.count("referrals").await, referrals);

    // The agency's bucket (burst 8) holds what its officers used together.
    let started = Instant::now();
    let (allowed_b, refused) = until_limited(&app, &baraka, 50).await;
    let slack = started.elapsed().as_secs() as usize + 1;
    assert!(
        allowed + allowed_b >= 8 && allowed + allowed_b <= 8 + 2 * slack,
        "agency allowed {allowed} + {allowed_b}, burst 8"
    );
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("agency"),
        "{}",
        refused.message()
    );

    // Other agencies are not affected.
    list(&app, &other).await.expect("another agency");

    // After the retry time the officer may call again.
    tokio::time::sleep(retry + Duration::from_millis(1100)).await;
    list(&app, &amina).await.expect("after the retry time");
    app.stop().await;
}
