//! Data at rest and in logs: the canary identifiers of a filed referral do
//! not appear in the raw database (file and WAL on SQLite, every table's rows
//! on PostgreSQL) nor in any log line, while the API still returns them.

use crate::{
    common::{CANARIES, TestApp, authed, canary_draft, captured_logs},
    on_both,
};
use refnet_api::v1 as pb;

on_both!(canaries_are_not_stored_or_logged_in_clear);

async fn canaries_are_not_stored_or_logged_in_clear(app: &TestApp) {
    let logs = captured_logs();
    let filed = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    let mut client = app.intake().await;
    let token = app.officer("police-nairobi");
    // The WPA, once party, is the one viewer the policy shows every class to.
    app.make_party(&filed.id, "wpa").await;
    let got = app.get_as("wpa", &filed.id).await;
    let reply = format!("{got:?}");
    for canary in CANARIES {
        assert!(
            reply.contains(canary),
            "the API returns {canary} to the WPA"
        );
    }
    // A thread message is sealed like the rest.
    pb::routing_service_client::RoutingServiceClient::new(app.channel().await)
        .post_message(authed(
            pb::PostMessageRequest {
                referral_id: filed.id.clone(),
                idempotency_key: crate::common::new_key(),
                body: "Canarymessage: Canarygiven Zqx is at Canarywhere".into(),
            },
            &token,
        ))
        .await
        .expect("post message");
    // A protection request and the WPA's records are sealed too.
    let mut wpa = pb::witness_protection_service_client::WitnessProtectionServiceClient::new(
        app.channel().await,
    );
    let submitted = wpa
        .submit_protection_request(authed(
            pb::SubmitProtectionRequestRequest {
                referral_id: filed.id.clone(),
                idempotency_key: crate::common::new_key(),
                grounds: "Canarygrounds: Canarygiven Zqx testifies".into(),
                threat_assessment: "Canarythreat from Canarysuspect Zqx".into(),
                measures: vec![pb::ProtectionMeasure::Relocation as i32],
                urgency: pb::Urgency::Critical as i32,
                threat_sources: "Canarysources".into(),
            },
            &token,
        ))
        .await
        .expect("submit")
        .into_inner();
    let wpa_token = app.officer("wpa");
    let step = |r: &pb::ProtectionRequest| pb::ProtectionStepRequest {
        id: r.id.clone(),
        expected_version: r.version,
        ..Default::default()
    };
    let assessing = wpa
        .begin_assessment(authed(
            pb::ProtectionStepRequest {
                notes: "Canarywpanote".into(),
                threat_analysis: "Canaryanalysis".into(),
                ..step(&submitted)
            },
            &wpa_token,
        ))
        .await
        .expect("assess")
        .into_inner();
    let admitted = wpa
        .admit_to_programme(authed(step(&assessing), &wpa_token))
        .await
        .expect("admit")
        .into_inner();
    wpa.record_measure(authed(
        pb::RecordMeasureRequest {
            id: admitted.id.clone(),
            expected_version: admitted.version,
            measure: pb::ProtectionMeasure::Relocation as i32,
            starts_on: "2026-12-01".into(),
            ends_on: String::new(),
            details: "Canarymeasure: moved to Canaryshelter Road 12".into(),
        },
        &wpa_token,
    ))
    .await
    .expect("measure");
    let protection_canaries = [
        "Canarygrounds",
        "Canarythreat",
        "Canarysources",
        "Canarywpanote",
        "Canaryanalysis",
        "Canarymeasure",
    ];
    // A failing call with canaries in it must not log them either.
    let mut bad = canary_draft();
    bad.subject.as_mut().expect("subject").email = "Canarybad email".into();
    let _ = client
        .file_referral(authed(
            pb::FileReferralRequest {
                idempotency_key: "k".into(),
                draft: Some(bad),
            },
            &token,
        ))
        .await
        .expect_err("invalid");

    // What an attacker with a copy of the database sees: every row of every
    // table as text on PostgreSQL; the raw file and its WAL on SQLite.
    let stored = String::from_utf8_lossy(&crate::common::stored_bytes(app).await).to_string();
    assert!(
        stored.contains(&filed.reference_code),
        "the dump is real: it holds the reference code"
    );
    assert!(
        stored.contains("ReferralFiled"),
        "the dump is real: it holds the event log"
    );
    for canary in CANARIES
        .iter()
        .chain(&["Canarymessage"])
        .chain(&protection_canaries)
    {
        assert!(!stored.contains(canary), "{canary} stored in clear");
    }
    let logs = String::from_utf8_lossy(&logs.lock().expect("logs")).to_string();
    assert!(logs.contains("referral filed"), "logging was captured");
    for canary in CANARIES
        .iter()
        .chain(&["Canarybad", "Canarymessage"])
        .chain(&protection_canaries)
    {
        assert!(!logs.contains(canary), "{canary} appears in the logs");
    }
}
