//! The desk client as a desk officer runs it: the real `refnet` binary against
//! a running server, with real tokens in `REFNET_TOKEN`. What it prints is
//! checked against what the server holds (read back over gRPC), errors name
//! their code and every bad field, redaction reaches the terminal intact, and
//! `inbox watch` follows the inbox live and resumes across a server restart.

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use prost::Message as _;
use refnet_api::v1 as pb;
use refnet_core::{
    AppContext,
    config::Config,
    devkeys::{DevSigner, TokenRequest},
};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::{
    common::{TestApp, authed, canary_draft, fixtures},
    on_both,
};

const REFNET: &str = env!("CARGO_BIN_EXE_refnet");

on_both!(
    the_readmes_draft_files_as_shown,
    every_rpc_is_reachable_with_refnet_call,
    a_desk_files_routes_and_acts_on_a_referral,
    errors_print_codes_and_every_bad_field,
    the_terminal_shows_only_what_the_agency_may_see,
    protection_requests_from_the_desk,
    triage_withdrawal_and_notifications_from_the_desk,
);

/// What one run of `refnet` did.
#[derive(Debug)]
pub(crate) struct Ran {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `refnet ARGS` against `server` with `token` in `REFNET_TOKEN` (none
/// when `None`) and `stdin` on standard input, off the runtime's threads. No
/// output may contain the token.
pub(crate) async fn run(
    server: &str,
    token: Option<&str>,
    args: &[&str],
    stdin: Option<&str>,
) -> Ran {
    let server = server.to_owned();
    let token = token.map(str::to_owned);
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let input = stdin.map(str::to_owned);
    let secret = token.clone();
    let ran = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(REFNET);
        command
            .args(&args)
            .env_remove("REFNET_TOKEN")
            .env_remove("REFNET_CONFIG")
            .env("REFNET_SERVER", &server)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(token) = &token {
            command.env("REFNET_TOKEN", token);
        }
        let mut child = command.spawn().expect("spawn refnet");
        if let Some(input) = input {
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(input.as_bytes()).expect("write stdin");
        }
        let out = child.wait_with_output().expect("refnet runs");
        Ran {
            success: out.status.success(),
            stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
            stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
        }
    })
    .await
    .expect("join");
    if let Some(secret) = secret {
        assert!(
            !ran.stdout.contains(&secret) && !ran.stderr.contains(&secret),
            "the token was printed"
        );
    }
    ran
}

fn server(app: &TestApp) -> String {
    format!("http://{}", app.addr)
}

/// `refnet ARGS` as an officer of `agency`; it must succeed. Returns its standard output.
async fn desk(app: &TestApp, agency: &str, args: &[&str]) -> String {
    let ran = run(&server(app), Some(&app.officer(agency)), args, None).await;
    assert!(ran.success, "refnet {args:?} as {agency}: {ran:?}");
    ran.stdout
}

/// `refnet ARGS` as an officer of `agency`; it must fail. Returns its standard error.
async fn desk_fails(app: &TestApp, agency: &str, args: &[&str]) -> String {
    let ran = run(&server(app), Some(&app.officer(agency)), args, None).await;
    assert!(
        !ran.success,
        "refnet {args:?} as {agency} should fail: {ran:?}"
    );
    ran.stderr
}

/// `draft` in the proto3 JSON mapping (camelCase, enum names), as a desk tool would write it.
pub(crate) fn draft_json(draft: &pb::ReferralDraft) -> String {
    let descriptor = refnet_api::descriptor_pool()
        .get_message_by_name("refnet.v1.ReferralDraft")
        .expect("descriptor");
    let message =
        prost_reflect::DynamicMessage::decode(descriptor, draft.encode_to_vec().as_slice())
            .expect("decode");
    serde_json::to_string_pretty(&message).expect("json")
}

/// The first police fixture with an adult subject, handled in Nairobi and
/// needing shelter with consent for NGOs: routing hands it to ngo-shelter-nairobi.
pub(crate) fn shelter_draft() -> (pb::ReferralDraft, String) {
    let fixture = fixtures()
        .iter()
        .find(|f| f.filer() == Some("police-nairobi") && !f.child_today())
        .expect("an adult police fixture");
    let mut draft = fixture.draft();
    draft.county = "Nairobi".into();
    draft.needs = vec![pb::Need::Shelter as i32];
    draft.consent = Some(pb::Consent {
        given: true,
        by: pb::ConsentBy::Subject as i32,
        agency_kinds: vec![pb::AgencyKind::Ngo as i32],
        ..Default::default()
    });
    (draft, fixture.subject.given_name.clone())
}

/// The reference code after `label:` in a `key: value` block.
pub(crate) fn value_of(block: &str, label: &str) -> String {
    block
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{label}:")))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {label:?} in:\n{block}"))
}

/// The row of a table whose cells include `cell`, split into cells.
pub(crate) fn row_with(table: &str, cell: &str) -> Option<Vec<String>> {
    table
        .lines()
        .map(|l| {
            l.split("  ")
                .filter(|c| !c.is_empty())
                .map(|c| c.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.iter().any(|c| c == cell))
}

async fn get_handoff(app: &TestApp, agency: &str, id: &str) -> pb::Handoff {
    pb::routing_service_client::RoutingServiceClient::new(app.channel().await)
        .get_handoff(authed(
            pb::GetHandoffRequest {
                handoff_id: id.to_owned(),
            },
            &app.officer(agency),
        ))
        .await
        .expect("get handoff")
        .into_inner()
}

/// The README's draft (the heredoc a newcomer pastes) is `examples/draft.json`
/// and files with `refnet referral file` as shown.
async fn the_readmes_draft_files_as_shown(app: &TestApp) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let start = readme
        .find("cat > draft.json <<'JSON'\n")
        .expect("the README's draft")
        + "cat > draft.json <<'JSON'\n".len();
    let end = start + readme[start..].find("\nJSON\n").expect("the heredoc's end");
    let shown: serde_json::Value = serde_json::from_str(&readme[start..end]).expect("JSON");
    let example = root.join("examples/draft.json");
    let shipped: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&example).expect("examples/draft.json"))
            .expect("JSON");
    assert_eq!(shown, shipped, "README and examples/draft.json differ");
    let filed = desk(
        app,
        "police-nairobi",
        &["referral", "file", example.to_str().expect("utf-8 path")],
    )
    .await;
    assert!(value_of(&filed, "filed").starts_with("RN-"), "{filed}");
}

/// `refnet call` reaches every RPC of the contract (enumerated from the
/// descriptors): each answers with a reply or a status of its handler's
/// (never UNIMPLEMENTED or a transport error), and a real call round-trips
/// JSON: a referral filed through `refnet call`, read back by reference code.
async fn every_rpc_is_reachable_with_refnet_call(app: &TestApp) {
    let server = server(app);
    let police = app.officer("police-nairobi");
    let pool = refnet_api::descriptor_pool();
    let mut called = 0;
    for service in pool.services().filter(|s| s.package_name() == "refnet.v1") {
        for method in service.methods() {
            let name = format!("{}/{}", service.name(), method.name());
            let ran = run(
                &server,
                Some(&police),
                &[
                    "call",
                    &name,
                    "--data",
                    "{}",
                    "--timeout",
                    "2",
                    "--limit",
                    "1",
                ],
                None,
            )
            .await;
            assert!(
                !ran.stderr.contains("UNIMPLEMENTED")
                    && !ran.stderr.contains("cannot reach")
                    && !ran.stderr.contains("no such RPC"),
                "{name} was not reached: {ran:?}"
            );
            if ran.success && !method.is_server_streaming() {
                serde_json::from_str::<serde_json::Value>(&ran.stdout)
                    .unwrap_or_else(|e| panic!("{name} printed no JSON ({e}): {}", ran.stdout));
            }
            called += 1;
        }
    }
    let rpcs = refnet_api::SERVICE_NAMES
        .iter()
        .filter_map(|s| pool.get_service_by_name(s))
        .map(|s| s.methods().len())
        .sum::<usize>();
    assert_eq!(called, rpcs, "every RPC of the served services was called");

    let request = format!(
        r#"{{"idempotencyKey":"call-{}","draft":{}}}"#,
        uuid::Uuid::new_v4().simple(),
        draft_json(&shelter_draft().0)
    );
    let filed = run(
        &server,
        Some(&police),
        &["call", "IntakeService/FileReferral", "--data", "@-"],
        Some(&request),
    )
    .await;
    assert!(filed.success, "{filed:?}");
    let filed: serde_json::Value = serde_json::from_str(&filed.stdout).expect("JSON reply");
    let code = filed["referral"]["reference_code"]
        .as_str()
        .expect("a reference code")
        .to_owned();
    let got = run(
        &server,
        Some(&police),
        &[
            "call",
            "refnet.v1.IntakeService/GetReferral",
            "--data",
            &format!(r#"{{"referral":"{code}"}}"#),
        ],
        None,
    )
    .await;
    assert!(got.success, "{got:?}");
    let got: serde_json::Value = serde_json::from_str(&got.stdout).expect("JSON reply");
    assert_eq!(got["referral"]["reference_code"], code.as_str());
    let listed = run(&server, None, &["call", "--list"], None).await;
    assert!(
        listed.success && listed.stdout.lines().count() == rpcs,
        "{listed:?}"
    );
}

async fn a_desk_files_routes_and_acts_on_a_referral(app: &TestApp) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("draft.json");
    let (draft, given_name) = shelter_draft();
    std::fs::write(&file, draft_json(&draft)).expect("write draft");
    let file = file.to_str().expect("utf-8 path");

    // Police files it from the file.
    let filed = desk(app, "police-nairobi", &["referral", "file", file]).await;
    let code = value_of(&filed, "filed");
    assert!(code.starts_with("RN-") && code.len() == 14, "{filed}");
    let id = value_of(&filed, "id");
    assert_eq!(value_of(&filed, "status"), "FILED", "{filed}");
    assert!(value_of(&filed, "idempotency key").starts_with("desk-"));

    // It reads it back by reference code, as a block and as JSON.
    let shown = desk(app, "police-nairobi", &["referral", "show", &code]).await;
    assert_eq!(value_of(&shown, "reference code"), code);
    assert_eq!(value_of(&shown, "id"), id);
    assert!(shown.contains("given name:"), "{shown}");
    assert!(shown.contains(&given_name), "police sees the name: {shown}");
    let json: serde_json::Value = serde_json::from_str(
        &desk(app, "police-nairobi", &["referral", "show", &id, "--json"]).await,
    )
    .expect("--json is one JSON document");
    assert_eq!(json["referral"]["reference_code"], code.as_str());
    assert_eq!(json["referral"]["id"], id.as_str());
    assert_eq!(
        json["referral"]["draft"]["subject"]["given_name"],
        given_name.as_str()
    );
    assert_eq!(json["referral"]["draft"]["county"], "Nairobi");
    assert_eq!(json["referral"]["filing_agency_id"], "police-nairobi");
    assert!(json["redactions"].is_array());

    // The NGO's inbox shows the handoff once routing has run (asynchronously).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let row = loop {
        let inbox = desk(app, "ngo-shelter-nairobi", &["inbox", "list"]).await;
        if let Some(row) = row_with(&inbox, &code) {
            assert!(inbox.starts_with("HANDOFF"), "{inbox}");
            break row;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{code} never reached the NGO's inbox: {inbox}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let handoff_id = row[0].clone();
    assert_eq!(row[2], "DELIVERED", "{row:?}");
    assert_eq!(row[3], "police-nairobi", "{row:?}");
    let before = get_handoff(app, "ngo-shelter-nairobi", &handoff_id).await;
    assert_eq!(before.state, pb::HandoffState::Delivered as i32);

    // Acknowledge, then accept: the CLI reads the version itself; the server agrees.
    let acked = desk(app, "ngo-shelter-nairobi", &["handoff", "ack", &handoff_id]).await;
    assert_eq!(value_of(&acked, "state"), "ACKNOWLEDGED", "{acked}");
    let h = get_handoff(app, "ngo-shelter-nairobi", &handoff_id).await;
    assert_eq!(
        (h.state, h.version),
        (pb::HandoffState::Acknowledged as i32, before.version + 1)
    );
    // A stale --version is refused with ABORTED and changes nothing.
    let stale = desk_fails(
        app,
        "ngo-shelter-nairobi",
        &[
            "handoff",
            "accept",
            &handoff_id,
            "--version",
            &before.version.to_string(),
        ],
    )
    .await;
    assert!(stale.contains("ABORTED: "), "{stale}");
    let accepted = desk(
        app,
        "ngo-shelter-nairobi",
        &["handoff", "accept", &handoff_id],
    )
    .await;
    assert_eq!(value_of(&accepted, "state"), "ACCEPTED", "{accepted}");
    let h = get_handoff(app, "ngo-shelter-nairobi", &handoff_id).await;
    assert_eq!(
        (h.state, h.version),
        (pb::HandoffState::Accepted as i32, before.version + 2)
    );
    let json: serde_json::Value = serde_json::from_str(
        &desk(
            app,
            "ngo-shelter-nairobi",
            &["handoff", "show", &handoff_id, "--json"],
        )
        .await,
    )
    .expect("json");
    assert_eq!(json["state"], "HANDOFF_STATE_ACCEPTED");
    assert_eq!(json["version"], before.version + 2);

    // A message from the NGO; the police desk's timeline shows it among the events.
    let note = "Bed ready at the shelter from tonight";
    let posted = desk(
        app,
        "ngo-shelter-nairobi",
        &["message", "post", &code, note],
    )
    .await;
    assert_eq!(value_of(&posted, "body"), note);
    let timeline = desk(app, "police-nairobi", &["timeline", &code]).await;
    assert!(timeline.starts_with("WHEN"), "{timeline}");
    for event in [
        "ReferralFiled",
        "HandoffCreated",
        "HandoffAcknowledged",
        "HandoffAccepted",
    ] {
        assert!(timeline.contains(event), "{event} in {timeline}");
    }
    let message = row_with(&timeline, note).expect("the message is on the timeline");
    assert_eq!(message[1..], ["Message", "ngo-shelter-nairobi", note]);
    let json: serde_json::Value =
        serde_json::from_str(&desk(app, "police-nairobi", &["timeline", &code, "--json"]).await)
            .expect("json");
    assert_eq!(json["messages"][0]["body"], note);
    assert!(
        json["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["event"] == "MessagePosted")
    );

    // `inbox watch --json` prints a line for a referral filed after it starts.
    let ngo = app.officer("ngo-shelter-nairobi");
    let mut watch = Watch::spawn(&server(app), &ngo, &["inbox", "watch", "--json"]);
    watch.stderr_line("watching").await;
    let second = desk(app, "police-nairobi", &["referral", "file", file]).await;
    let second = value_of(&second, "filed");
    assert_ne!(second, code, "a new key files a new referral");
    let line = watch.stdout_line(|l| l.contains(&second)).await;
    let item: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(item["handoff"]["reference_code"], second.as_str());
    assert_eq!(item["handoff"]["to_agency_id"], "ngo-shelter-nairobi");
    assert!(!item["cursor"].as_str().expect("cursor").is_empty());
    assert!(
        item["event"]
            .as_str()
            .expect("event")
            .starts_with("Handoff")
    );
    // Ctrl-C ends it cleanly and says how to resume.
    let (success, stderr) = watch.interrupt().await;
    assert!(success, "Ctrl-C is a clean stop: {stderr}");
    assert!(
        stderr.contains("resume with: refnet inbox watch --cursor "),
        "{stderr}"
    );

    // Paging: one referral per page, the next page by the printed token.
    let first_page = desk(
        app,
        "police-nairobi",
        &["referral", "list", "--page-size", "1"],
    )
    .await;
    assert!(first_page.starts_with("REFERENCE"), "{first_page}");
    assert!(
        row_with(&first_page, &second).is_some(),
        "newest first: {first_page}"
    );
    let token = first_page
        .lines()
        .find_map(|l| l.strip_prefix("next page: --page-token "))
        .unwrap_or_else(|| panic!("a next page token: {first_page}"));
    let json: serde_json::Value = serde_json::from_str(
        &desk(
            app,
            "police-nairobi",
            &[
                "referral",
                "list",
                "--page-size",
                "1",
                "--page-token",
                token,
                "--json",
            ],
        )
        .await,
    )
    .expect("json");
    assert_eq!(json["referrals"][0]["reference_code"], code.as_str());
    assert_eq!(json["next_page_token"], "");
}

async fn errors_print_codes_and_every_bad_field(app: &TestApp) {
    let url = server(app);
    let police = app.officer("police-nairobi");

    // A draft missing its required fields, from standard input: every bad field, one per line.
    let bad = r#"{"subject": {"givenName": "Incomplete", "phones": ["call me maybe"]}, "county": "Atlantis"}"#;
    let ran = run(&url, Some(&police), &["referral", "file", "-"], Some(bad)).await;
    assert!(!ran.success, "{ran:?}");
    assert!(ran.stdout.is_empty(), "{ran:?}");
    assert!(ran.stderr.contains("INVALID_ARGUMENT: "), "{}", ran.stderr);
    for field in [
        "draft.subject.phones[0]",
        "draft.urgency",
        "draft.classification",
        "draft.identified_by",
        "draft.county",
    ] {
        assert!(
            ran.stderr
                .lines()
                .any(|l| l.starts_with(&format!("  {field}: "))),
            "{field} in:\n{}",
            ran.stderr
        );
    }
    assert_eq!(app.count("referrals").await, 0, "nothing was filed");

    // A file that is not a draft is refused before any call.
    let ran = run(
        &url,
        Some(&police),
        &["referral", "file", "-"],
        Some(r#"{"subjekt": {}}"#),
    )
    .await;
    assert!(!ran.success && ran.stderr.contains("subjekt"), "{ran:?}");

    // No token: a clear error naming the flag and the variable.
    let ran = run(&url, None, &["referral", "list"], None).await;
    assert!(!ran.success, "{ran:?}");
    assert!(
        ran.stderr.contains("no token") && ran.stderr.contains("REFNET_TOKEN"),
        "{}",
        ran.stderr
    );
    // A token the server does not accept.
    let ran = run(&url, Some("not-a-token"), &["referral", "list"], None).await;
    assert!(
        !ran.success && ran.stderr.contains("UNAUTHENTICATED: "),
        "{ran:?}"
    );

    // A referral the agency is not party to is NOT_FOUND, exactly like one that does not exist.
    let referral = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    for reference in [referral.id.as_str(), referral.reference_code.as_str()] {
        let stderr = desk_fails(app, "wpa", &["referral", "show", reference]).await;
        assert!(stderr.contains("NOT_FOUND: "), "{stderr}");
        assert!(!stderr.contains("Canary"), "{stderr}");
    }
    let stderr = desk_fails(app, "wpa", &["referral", "show", "RN-2026-000000"]).await;
    assert!(stderr.contains("NOT_FOUND: "), "{stderr}");

    // A handoff transition's own validation: decline needs a reason (the flag is required).
    let stderr = desk_fails(app, "police-nairobi", &["handoff", "decline", &referral.id]).await;
    assert!(stderr.contains("--reason"), "{stderr}");

    // The server given without a scheme works; an unreachable one is an error.
    let ran = run(
        "unused",
        Some(&police),
        &["referral", "list", "--server", &app.addr.to_string()],
        None,
    )
    .await;
    assert!(ran.success, "{ran:?}");
    let ran = run(
        "http://127.0.0.1:1",
        Some(&police),
        &["referral", "list"],
        None,
    )
    .await;
    assert!(
        !ran.success
            && ran
                .stderr
                .contains("cannot reach refnet at http://127.0.0.1:1"),
        "{ran:?}"
    );
}

async fn the_terminal_shows_only_what_the_agency_may_see(app: &TestApp) {
    // The canary draft consents to NGOs only: a health party gets the pseudonym.
    let referral = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    app.make_party(&referral.id, "health-nairobi").await;
    let police = desk(app, "police-nairobi", &["referral", "show", &referral.id]).await;
    assert!(police.contains("Canarygiven Zqx"), "{police}");

    let shown = desk(
        app,
        "health-nairobi",
        &["referral", "show", &referral.reference_code],
    )
    .await;
    let as_json = desk(
        app,
        "health-nairobi",
        &["referral", "show", &referral.reference_code, "--json"],
    )
    .await;
    for out in [&shown, &as_json] {
        for canary in [
            "Canarygiven",
            "Canaryfamily",
            "Canaryalias",
            "31415926",
            "ZQ7271828",
            "700111222",
            "canary.email.zqx",
            "Canarywhere",
            "Canaryshelter",
        ] {
            assert!(
                !out.contains(canary),
                "{canary} reached health's terminal:\n{out}"
            );
        }
    }
    assert!(
        value_of(&shown, "    given name").starts_with("Subject-"),
        "{shown}"
    );
    let withheld = row_with(&shown, "referral.draft.subject.given_name")
        .unwrap_or_else(|| panic!("the withheld table names the field: {shown}"));
    assert_eq!(withheld[1..4], ["IDENTITY", "PSEUDONYMISE", "NO_CONSENT"]);
    let json: serde_json::Value = serde_json::from_str(&as_json).expect("json");
    assert!(
        json["redactions"]
            .as_array()
            .expect("redactions")
            .iter()
            .any(|r| r["path"] == "referral.draft.subject.given_name"
                && r["reason"] == "REDACTION_REASON_NO_CONSENT")
    );
}

async fn protection_requests_from_the_desk(app: &TestApp) {
    let referral = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    let requested = desk(
        app,
        "police-nairobi",
        &[
            "protection",
            "request",
            &referral.reference_code,
            "--grounds",
            "key witness against the recruiter",
            "--threat-assessment",
            "threatened by phone twice this week",
            "--measure",
            "video-link-testimony",
            "--measure",
            "IN_CAMERA_HEARING",
            "--urgency",
            "high",
        ],
    )
    .await;
    let id = value_of(&requested, "id");
    assert_eq!(value_of(&requested, "state"), "SUBMITTED", "{requested}");
    let measures = value_of(&requested, "measures requested");
    assert!(
        measures.contains("VIDEO_LINK_TESTIMONY") && measures.contains("IN_CAMERA_HEARING"),
        "{requested}"
    );
    // The WPA sees it in its list and can open it; so can the requester.
    let list = desk(app, "wpa", &["protection", "list"]).await;
    let row = row_with(&list, &id).unwrap_or_else(|| panic!("{id} in the WPA's list: {list}"));
    assert_eq!(
        row[1..5],
        [
            referral.reference_code.as_str(),
            "SUBMITTED",
            "HIGH",
            "police-nairobi"
        ]
    );
    let shown = desk(app, "wpa", &["protection", "show", &id]).await;
    assert_eq!(
        value_of(&shown, "grounds"),
        "key witness against the recruiter"
    );
    let json: serde_json::Value = serde_json::from_str(
        &desk(
            app,
            "police-nairobi",
            &["protection", "show", &id, "--json"],
        )
        .await,
    )
    .expect("json");
    assert_eq!(json["state"], "PROTECTION_STATE_SUBMITTED");
    // Another agency gets nothing.
    let other = desk(app, "ngo-shelter-nairobi", &["protection", "list"]).await;
    assert!(other.starts_with("no protection requests"), "{other}");
    // Missing grounds: the server's violation, per field.
    let stderr = desk_fails(
        app,
        "police-nairobi",
        &[
            "protection",
            "request",
            &referral.id,
            "--grounds",
            "",
            "--threat-assessment",
            "x",
            "--measure",
            "relocation",
            "--urgency",
            "low",
        ],
    )
    .await;
    assert!(
        stderr.contains("INVALID_ARGUMENT: ") && stderr.contains("\n  grounds: "),
        "{stderr}"
    );
}

/// A running `refnet inbox watch`, its output read line by line.
pub(crate) struct Watch {
    child: Child,
    stdout: UnboundedReceiver<String>,
    stderr: UnboundedReceiver<String>,
    seen_stdout: Vec<String>,
    seen_stderr: String,
}

impl Watch {
    pub(crate) fn spawn(server: &str, token: &str, args: &[&str]) -> Self {
        let mut child = Command::new(REFNET)
            .args(args)
            .env_remove("REFNET_CONFIG")
            .env("REFNET_SERVER", server)
            .env("REFNET_TOKEN", token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn refnet inbox watch");
        let lines = |pipe: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = unbounded_channel();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().expect("stdout")));
        let stderr = lines(Box::new(child.stderr.take().expect("stderr")));
        Self {
            child,
            stdout,
            stderr,
            seen_stdout: Vec::new(),
            seen_stderr: String::new(),
        }
    }

    /// Waits (bounded) for a line on standard output that satisfies `wanted`.
    pub(crate) async fn stdout_line(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let (stdout, seen) = (&mut self.stdout, &mut self.seen_stdout);
        let found = next_matching(stdout, |line| {
            seen.push(line.to_owned());
            wanted(line)
        })
        .await;
        found.unwrap_or_else(|| panic!("no such line from the watch; stderr: {}", self.seen_stderr))
    }

    /// Waits (bounded) for a line on standard error containing `text`.
    async fn stderr_line(&mut self, text: &str) -> String {
        let (stderr, seen) = (&mut self.stderr, &mut self.seen_stderr);
        let found = next_matching(stderr, |line| {
            seen.push_str(line);
            seen.push('\n');
            line.contains(text)
        })
        .await;
        found.unwrap_or_else(|| panic!("no {text:?} from the watch; stderr: {}", self.seen_stderr))
    }

    /// Sends SIGINT (Ctrl-C) and waits (bounded) for the exit: success, and all of standard error.
    async fn interrupt(mut self) -> (bool, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the watch ignored Ctrl-C"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(5), self.stderr.recv()).await
        {
            self.seen_stderr.push_str(&line);
            self.seen_stderr.push('\n');
        }
        (status.success(), self.seen_stderr.clone())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// refnet serving `dir` on `addr` in this process, until the sender fires.
async fn serve_at(
    dir: &Path,
    addr: SocketAddr,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    crate::common::captured_logs();
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    }
    .embedded();
    config.shutdown_grace_seconds = 1;
    let ctx = AppContext::build(config).await.expect("refnet starts");
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let bound = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        refnet::serve_all(&ctx, listener, async {
            let _ = rx.await;
        })
        .await
        .expect("serve");
    });
    (bound, tx, handle)
}

fn mint(dir: &Path, agency: &str, kind: pb::AgencyKind) -> String {
    DevSigner::load(dir, "refnet-dev", "refnet")
        .expect("dev key")
        .mint(&TokenRequest {
            officer_id: format!("desk-{agency}"),
            agency_id: agency.to_owned(),
            agency_kind: kind,
            roles: vec!["officer".into()],
            ttl: Duration::from_secs(600),
        })
        .expect("token")
}

async fn file_as_police(addr: SocketAddr, token: &str) -> String {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    pb::intake_service_client::IntakeServiceClient::new(channel)
        .file_referral(authed(
            pb::FileReferralRequest {
                idempotency_key: crate::common::new_key(),
                draft: Some(crate::routing::foreign_child_in_forced_labour()),
            },
            token,
        ))
        .await
        .expect("file")
        .into_inner()
        .referral
        .expect("referral")
        .reference_code
}

/// The server shuts down under an open `inbox watch` (its streams end with
/// UNAVAILABLE) and comes back on the same address: the watch reconnects with
/// a back-off and resumes after the last item it printed, so a referral filed
/// after the restart is printed and none before it is printed twice.
/// (SQLite only: the restart keeps the data directory.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_watch_resumes_after_a_server_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (addr, stop, serving) = serve_at(dir.path(), "127.0.0.1:0".parse().expect("addr")).await;
    let police = mint(dir.path(), "police-nairobi", pb::AgencyKind::Police);
    let ngo = mint(dir.path(), "ngo-shelter-nairobi", pb::AgencyKind::Ngo);
    let mut watch = Watch::spawn(
        &format!("http://{addr}"),
        &ngo,
        &["inbox", "watch", "--json"],
    );
    watch.stderr_line("watching the inbox").await;

    let before = file_as_police(addr, &police).await;
    watch.stdout_line(|l| l.contains(&before)).await;

    let _ = stop.send(());
    serving.await.expect("server stops");
    watch
        .stderr_line("inbox stream interrupted (UNAVAILABLE")
        .await;
    // While the server is down the watch keeps retrying, backing off.
    watch.stderr_line("reconnecting in 1000 ms").await;

    // Back on the same address; a referral is filed at once, most likely before
    // the watch's next attempt: it must still be printed, from the cursor.
    let (_, stop, serving) = serve_at(dir.path(), addr).await;
    let after = file_as_police(addr, &police).await;
    watch.stderr_line("resumed watching").await;
    let line = watch.stdout_line(|l| l.contains(&after)).await;
    let item: serde_json::Value = serde_json::from_str(&line).expect("json line");
    assert_eq!(item["handoff"]["reference_code"], after.as_str());

    // Nothing printed before the restart came again.
    let items: Vec<serde_json::Value> = watch
        .seen_stdout
        .iter()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let mut cursors: Vec<&str> = items
        .iter()
        .map(|i| i["cursor"].as_str().expect("cursor"))
        .collect();
    let printed = cursors.len();
    cursors.sort_unstable();
    cursors.dedup();
    assert_eq!(cursors.len(), printed, "an item was printed twice");
    let created_before = items
        .iter()
        .filter(|i| {
            i["event"] == "HandoffCreated" && i["handoff"]["reference_code"] == before.as_str()
        })
        .count();
    assert_eq!(created_before, 1, "{items:?}");

    let (success, stderr) = watch.interrupt().await;
    assert!(success, "{stderr}");
    let _ = stop.send(());
    let _ = serving.await;
}

/// The first line from `lines` (within 30 s) for which `wanted` holds;
/// `None` when the stream ends or time runs out.
async fn next_matching(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    mut wanted: impl FnMut(&str) -> bool,
) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.recv().await {
            if wanted(&line) {
                return Some(line);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// `refnet ARGS` as a supervisor of `agency`; it must succeed.
async fn as_supervisor(app: &TestApp, agency: &str, args: &[&str]) -> String {
    let token = app.token(agency, &["supervisor"]);
    let ran = run(&server(app), Some(&token), args, None).await;
    assert!(
        ran.success,
        "refnet {args:?} as {agency} supervisor: {ran:?}"
    );
    ran.stdout
}

async fn triage_withdrawal_and_notifications_from_the_desk(app: &TestApp) {
    // No rule routes this one: an adult, exploitation unclear, no needs.
    let referral = app
        .file("police-nairobi", crate::triage::unroutable())
        .await
        .referral
        .expect("referral");
    let code = referral.reference_code.clone();
    let mut listed = String::new();
    for _ in 0..200 {
        listed = as_supervisor(app, "police-nairobi", &["triage", "list"]).await;
        if listed.contains(&code) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let row = row_with(&listed, &code).unwrap_or_else(|| panic!("{code} in triage: {listed}"));
    assert_eq!(row[1], "HIGH", "{listed}");
    assert!(listed.contains("no rule routed this referral"), "{listed}");
    let shown = desk(app, "police-nairobi", &["referral", "show", &code]).await;
    assert!(
        shown.contains("NEEDS_ROUTING") && shown.contains("waits for your supervisors"),
        "{shown}"
    );
    let unread = as_supervisor(
        app,
        "police-nairobi",
        &["notifications", "list", "--unread"],
    )
    .await;
    assert!(
        row_with(&unread, "ReferralNeedsRouting").is_some_and(|r| r.contains(&code)),
        "{unread}"
    );

    // Picked up from triage by hand.
    let created = as_supervisor(
        app,
        "police-nairobi",
        &[
            "handoff",
            "create",
            &code,
            "--to",
            "ngo-shelter-nairobi",
            "--purpose",
            "shelter, psychosocial support and legal aid",
        ],
    )
    .await;
    let handoff = value_of(&created, "id");
    assert_eq!(value_of(&created, "to agency id"), "ngo-shelter-nairobi");
    assert!(
        as_supervisor(app, "police-nairobi", &["triage", "list"])
            .await
            .starts_with("nothing waits to be routed"),
    );
    let read = as_supervisor(app, "police-nairobi", &["notifications", "read", "--all"]).await;
    assert!(read.starts_with("marked read: "), "{read}");
    assert!(
        as_supervisor(
            app,
            "police-nairobi",
            &["notifications", "list", "--unread"]
        )
        .await
        .starts_with("no notifications")
    );

    // The NGO accepts; the police desk withdraws it, with a reason.
    desk(app, "ngo-shelter-nairobi", &["handoff", "ack", &handoff]).await;
    desk(app, "ngo-shelter-nairobi", &["handoff", "accept", &handoff]).await;
    let sent = desk(app, "police-nairobi", &["handoff", "sent"]).await;
    let row = row_with(&sent, &handoff).unwrap_or_else(|| panic!("{handoff} in {sent}"));
    assert_eq!(row[2..4], ["ngo-shelter-nairobi", "ACCEPTED"]);
    let stderr = desk_fails(app, "police-nairobi", &["handoff", "withdraw", &handoff]).await;
    assert!(
        stderr.contains("INVALID_ARGUMENT") && stderr.contains("reason"),
        "{stderr}"
    );
    let withdrawn = desk(
        app,
        "police-nairobi",
        &[
            "handoff",
            "withdraw",
            &handoff,
            "--reason",
            "assisted by the county office instead",
        ],
    )
    .await;
    assert_eq!(value_of(&withdrawn, "state"), "WITHDRAWN");
    let told = desk(app, "ngo-shelter-nairobi", &["notifications", "list"]).await;
    assert!(told.contains("withdrawn after acceptance"), "{told}");

    // Its only handoff ended: back in triage, where a supervisor closes it.
    let closed = as_supervisor(
        app,
        "police-nairobi",
        &["referral", "close", &code, "--reason", "assisted-outside"],
    )
    .await;
    assert_eq!(value_of(&closed, "status"), "CLOSED", "{closed}");
    let muted = desk(
        app,
        "police-nairobi",
        &["notifications", "mute", "HandoffDeclined"],
    )
    .await;
    assert_eq!(muted, "switched off for you: HandoffDeclined\n");
    let on = desk(app, "police-nairobi", &["notifications", "mute"]).await;
    assert_eq!(on, "every notification kind is on\n");
    let hook = as_supervisor(app, "police-nairobi", &["notifications", "webhook", "show"]).await;
    assert_eq!(value_of(&hook, "agency id"), "police-nairobi", "{hook}");

    // The WPA's live queue.
    let protected = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    desk(
        app,
        "police-nairobi",
        &[
            "protection",
            "request",
            &protected.reference_code,
            "--grounds",
            "key witness",
            "--threat-assessment",
            "threatened",
            "--measure",
            "relocation",
            "--urgency",
            "critical",
        ],
    )
    .await;
    let queue = desk(
        app,
        "wpa",
        &["protection", "watch", "--from-beginning", "--count", "1"],
    )
    .await;
    assert!(
        queue.contains("ProtectionRequested") && queue.contains(&protected.reference_code),
        "{queue}"
    );
}
