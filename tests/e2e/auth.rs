//! Identity: forged, expired and misused tokens are UNAUTHENTICATED; an
//! unknown role is PERMISSION_DENIED; a rotated-in key works without restart.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use refnet_api::v1 as pb;
use refnet_core::devkeys;
use serde_json::{Value, json};
use tonic::Code;

use crate::{
    common::{TestApp, authed},
    on_both,
};

/// A permissions override that takes GetReferral from auditors (an operator
/// may only tighten), written where the test's configuration points.
fn tighter_permissions(config: &mut refnet_core::config::Config) {
    let path = std::env::temp_dir().join(format!(
        "refnet-test-permissions-{}.toml",
        std::process::id()
    ));
    let text = refnet_core::permissions::DEFAULT_PERMISSIONS.replace(
        "[rpc.\"refnet.v1.IntakeService/GetReferral\"]\ngrants = [{ roles = [\"officer\", \"supervisor\", \"auditor\", \"data_protection\"] }]",
        "[rpc.\"refnet.v1.IntakeService/GetReferral\"]\ngrants = [{ roles = [\"officer\", \"supervisor\", \"data_protection\"] }]",
    );
    assert_ne!(text, refnet_core::permissions::DEFAULT_PERMISSIONS);
    std::fs::write(&path, text).expect("write permissions");
    config.permissions_file = Some(path);
}

on_both!(config = super::tighter_permissions; an_operator_tightens_permissions_as_data);

on_both!(
    bad_tokens_are_refused,
    unknown_roles_are_denied,
    rotated_keys_work_without_restart
);

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn good_claims() -> Value {
    json!({
        "iss": "refnet-dev", "aud": "refnet", "sub": "officer-7",
        "iat": now(), "nbf": now() - 5, "exp": now() + 600,
        "agency_id": "police-nairobi", "agency_kind": "POLICE", "roles": ["officer"],
    })
}

fn dev_key(app: &TestApp) -> EncodingKey {
    let pem = std::fs::read(app.data_dir.path().join(devkeys::PRIVATE_KEY_FILE)).expect("pem");
    EncodingKey::from_ed_pem(&pem).expect("ed key")
}

fn sign(app: &TestApp, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(app.signer().kid().to_owned());
    jsonwebtoken::encode(&header, claims, &dev_key(app)).expect("sign")
}

fn with_claim(key: &str, value: Value) -> Value {
    let mut claims = good_claims();
    claims[key] = value;
    claims
}

fn without_claim(key: &str) -> Value {
    let mut claims = good_claims();
    claims.as_object_mut().expect("object").remove(key);
    claims
}

/// A second key pair, as an identity provider would rotate in (its directory
/// holds its JWKS), and a police officer's token signed with it.
fn second_key() -> (tempfile::TempDir, String) {
    let other = tempfile::tempdir().expect("tempdir");
    devkeys::ensure(other.path()).expect("new key");
    let next = devkeys::DevSigner::load(other.path(), "refnet-dev", "refnet").expect("signer");
    let token = next
        .mint(&devkeys::TokenRequest {
            officer_id: "officer-9".into(),
            agency_id: "police-nairobi".into(),
            agency_kind: pb::AgencyKind::Police,
            roles: vec!["officer".into()],
            ttl: std::time::Duration::from_secs(60),
        })
        .expect("mint");
    (other, token)
}

async fn call(app: &TestApp, token: Option<&str>) -> Result<(), tonic::Status> {
    let mut client = app.intake().await;
    let request = pb::ListReferralsRequest::default();
    let request = match token {
        Some(t) => authed(request, t),
        None => tonic::Request::new(request),
    };
    client.list_referrals(request).await.map(|_| ())
}

async fn bad_tokens_are_refused(app: &TestApp) {
    // The well-formed token is accepted, so each failure below is the one change.
    call(app, Some(&sign(app, &good_claims())))
        .await
        .expect("good token accepted");

    let kid = app.signer().kid().to_owned();
    let good = sign(app, &good_claims());
    let parts: Vec<&str> = good.split('.').collect();

    let unsigned = {
        let header =
            URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string());
        format!("{header}.{}.", parts[1])
    };
    let hmac_with_public_key = {
        let jwks: Value = serde_json::from_str(
            &std::fs::read_to_string(devkeys::jwks_path(app.data_dir.path())).expect("jwks"),
        )
        .expect("json");
        let x = jwks["keys"][0]["x"].as_str().expect("x").to_owned();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        let mut tokens = Vec::new();
        for secret in [
            x.as_bytes().to_vec(),
            URL_SAFE_NO_PAD.decode(&x).expect("x bytes"),
        ] {
            tokens.push(
                jsonwebtoken::encode(&header, &good_claims(), &EncodingKey::from_secret(&secret))
                    .expect("hs256"),
            );
        }
        tokens
    };
    let unknown_kid = {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("no-such-key".into());
        jsonwebtoken::encode(&header, &good_claims(), &dev_key(app)).expect("sign")
    };
    let no_kid = jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &good_claims(),
        &dev_key(app),
    )
    .expect("sign");
    let other_key_same_kid = {
        let other = tempfile::tempdir().expect("tempdir");
        devkeys::ensure(other.path()).expect("other key");
        let pem = std::fs::read(other.path().join(devkeys::PRIVATE_KEY_FILE)).expect("pem");
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(
            &header,
            &good_claims(),
            &EncodingKey::from_ed_pem(&pem).expect("key"),
        )
        .expect("sign")
    };
    let tampered = {
        let mut claims = good_claims();
        claims["agency_id"] = json!("police-mombasa");
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            parts[2]
        )
    };

    let mut cases: Vec<(&str, String)> = vec![
        ("garbage", "not.a.token".into()),
        ("expired", sign(app, &with_claim("exp", json!(now() - 300)))),
        (
            "not yet valid",
            sign(app, &with_claim("nbf", json!(now() + 600))),
        ),
        (
            "wrong audience",
            sign(app, &with_claim("aud", json!("someone-else"))),
        ),
        (
            "wrong issuer",
            sign(app, &with_claim("iss", json!("https://evil.example"))),
        ),
        ("no expiry", sign(app, &without_claim("exp"))),
        ("no subject", sign(app, &without_claim("sub"))),
        ("unsigned (alg none)", unsigned),
        ("unknown key id", unknown_kid),
        ("no key id", no_kid),
        ("signed by another key", other_key_same_kid),
        ("tampered payload", tampered),
        (
            "unknown agency",
            sign(app, &with_claim("agency_id", json!("ghost-agency"))),
        ),
        (
            "agency kind mismatch",
            sign(app, &with_claim("agency_kind", json!("WPA"))),
        ),
        (
            "unknown agency kind",
            sign(app, &with_claim("agency_kind", json!("SPIES"))),
        ),
        ("empty", String::new()),
    ];
    for (i, token) in hmac_with_public_key.into_iter().enumerate() {
        cases.push((
            if i == 0 {
                "HS256 with the public key (text)"
            } else {
                "HS256 with the public key (bytes)"
            },
            token,
        ));
    }
    for (what, token) in cases {
        let status = call(app, Some(&token)).await.expect_err(what);
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{what}: {}",
            status.message()
        );
    }
    let status = call(app, None).await.expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);

    // A basic-auth header is not a bearer token.
    let mut request = tonic::Request::new(pb::ListReferralsRequest::default());
    request.metadata_mut().insert(
        "authorization",
        "Basic dXNlcjpwYXNz".parse().expect("ascii"),
    );
    let status = app
        .intake()
        .await
        .list_referrals(request)
        .await
        .expect_err("basic");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(app.count(crate::common::INTAKE_EVENTS).await, 0);
}

async fn unknown_roles_are_denied(app: &TestApp) {
    for roles in [json!(["janitor"]), json!([]), json!(["officer", "root"])] {
        let status = call(app, Some(&sign(app, &with_claim("roles", roles.clone()))))
            .await
            .expect_err("role");
        assert_eq!(status.code(), Code::PermissionDenied, "{roles}");
    }
}

async fn rotated_keys_work_without_restart(app: &TestApp) {
    let (other, token) = second_key();
    let status = call(app, Some(&token)).await.expect_err("not yet trusted");
    assert_eq!(status.code(), Code::Unauthenticated);

    // Publish both keys in the trusted JWKS file: old and new are valid together.
    let path = devkeys::jwks_path(app.data_dir.path());
    let mut jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("jwks")).expect("json");
    let new_keys: Value = serde_json::from_str(
        &std::fs::read_to_string(devkeys::jwks_path(other.path())).expect("jwks"),
    )
    .expect("json");
    jwks["keys"]
        .as_array_mut()
        .expect("keys")
        .push(new_keys["keys"][0].clone());
    std::fs::write(&path, jwks.to_string()).expect("write jwks");

    call(app, Some(&token))
        .await
        .expect("rotated-in key accepted");
    call(app, Some(&app.officer("police-nairobi")))
        .await
        .expect("old key still accepted");
}

/// Keys fetched from a JWKS URL (the identity provider's), served here by a
/// minimal HTTP responder on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_a_jwks_url() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let idp = tempfile::tempdir().expect("tempdir");
    devkeys::ensure(idp.path()).expect("idp key");
    let jwks = std::fs::read_to_string(devkeys::jwks_path(idp.path())).expect("jwks");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().expect("addr")
    );
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = fetches.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                jwks.len()
            );
            let _ = socket.write_all(reply.as_bytes()).await;
        }
    });

    let app = TestApp::spawn_with(None, |c| c.auth.jwks_url = Some(url)).await;
    assert_eq!(
        fetches.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "fetched once at start"
    );
    let idp_signer = devkeys::DevSigner::load(idp.path(), "refnet-dev", "refnet").expect("signer");
    let token = idp_signer
        .mint(&devkeys::TokenRequest {
            officer_id: "officer-idp".into(),
            agency_id: "police-nairobi".into(),
            agency_kind: pb::AgencyKind::Police,
            roles: vec!["officer".into()],
            ttl: std::time::Duration::from_secs(60),
        })
        .expect("mint");
    call(&app, Some(&token))
        .await
        .expect("a key from the URL is trusted");
    // The data directory's development key is not trusted once a URL is configured.
    let status = call(&app, Some(&app.officer("police-nairobi")))
        .await
        .expect_err("dev key");
    assert_eq!(status.code(), Code::Unauthenticated);
    app.stop().await;
}

/// A token verified once is remembered (no second signature check), but
/// every use still checks its expiry, that its key is still published, and
/// that its agency is still registered and active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_tokens_are_checked_again() {
    let app = crate::common::TestApp::spawn_configured(crate::common::Backend::Sqlite, |c| {
        c.auth.leeway_seconds = 0;
    })
    .await
    .expect("sqlite");
    // Expiry: good twice, refused once the second is past.
    let short = sign(&app, &with_claim("exp", json!(now() + 2)));
    call(&app, Some(&short)).await.expect("fresh");
    call(&app, Some(&short)).await.expect("remembered");
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let status = call(&app, Some(&short)).await.expect_err("expired");
    assert_eq!(status.code(), Code::Unauthenticated);

    // Key withdrawal: a remembered token of a key no longer published is refused
    // once the key set is refreshed (here by a token naming an unknown key).
    let old = app.officer("police-nairobi");
    call(&app, Some(&old)).await.expect("remembered");
    let (other, fresh) = second_key();
    std::fs::copy(
        devkeys::jwks_path(other.path()),
        devkeys::jwks_path(app.data_dir.path()),
    )
    .expect("publish only the new key");
    call(&app, Some(&fresh))
        .await
        .expect("the new key is fetched");
    let status = call(&app, Some(&old))
        .await
        .expect_err("the withdrawn key's token");
    assert_eq!(status.code(), Code::Unauthenticated);
    app.stop().await;
}

/// The permission table is data: an override that removes auditors from
/// GetReferral refuses them before any handler runs (the same answer for a
/// referral that does not exist), while the roles it keeps still read; a
/// wider override refuses to load.
async fn an_operator_tightens_permissions_as_data(app: &TestApp) {
    let referral = app
        .file("police-nairobi", crate::common::canary_draft())
        .await
        .referral
        .expect("referral");
    let mut client = app.intake().await;
    for id in [referral.id.clone(), uuid::Uuid::now_v7().to_string()] {
        let denied = client
            .get_referral(authed(
                pb::GetReferralRequest { referral: id },
                &app.token("police-nairobi", &["auditor"]),
            ))
            .await
            .expect_err("auditors are taken off GetReferral");
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert_eq!(
            denied.message(),
            "your role or agency may not call GetReferral"
        );
    }
    assert!(
        app.get_as("police-nairobi", &referral.id)
            .await
            .referral
            .is_some()
    );
    let audit = pb::audit_service_client::AuditServiceClient::new(app.channel().await)
        .list_audit_records(authed(
            pb::ListAuditRecordsRequest {
                referral: referral.id.clone(),
                ..Default::default()
            },
            &app.token("police-nairobi", &["auditor"]),
        ))
        .await;
    assert!(
        audit.is_ok(),
        "other RPCs keep the built-in grants: {audit:?}"
    );

    let wider = std::env::temp_dir().join(format!(
        "refnet-test-permissions-wider-{}.toml",
        std::process::id()
    ));
    std::fs::write(
        &wider,
        refnet_core::permissions::DEFAULT_PERMISSIONS.replace(
            r#"grants = [{ roles = ["auditor"] }]"#,
            r#"grants = [{ roles = ["auditor", "officer"] }]"#,
        ),
    )
    .expect("write");
    let refused = refnet_core::permissions::Permissions::load_override(&wider)
        .expect_err("an override may only tighten")
        .to_string();
    assert!(refused.contains("ListAuditRecords"), "{refused}");
}
