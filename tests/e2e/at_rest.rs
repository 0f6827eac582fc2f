//! Data at rest and in logs: the canary identifiers of a filed referral do
//! not appear in the raw database (file and WAL on SQLite, every table's rows
//! on PostgreSQL) nor in any log line, while the API still returns them.

use sea_orm::{ConnectionTrait, Statement};

use crate::{
    common::{Backend, CANARIES, TestApp, authed, canary_draft, captured_logs},
    on_both,
};
use refnet_api::v1 as pb;

on_both!(canaries_are_not_stored_or_logged_in_clear);

const TABLES: [&str; 6] = [
    "agencies",
    "subjects",
    "referrals",
    "subject_identifiers",
    "referral_parties",
    "events",
];

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
    let mut stored = String::new();
    match app.backend {
        Backend::Postgres => {
            let db = app.db().await;
            for table in TABLES {
                let rows = db
                    .query_all_raw(Statement::from_string(
                        db.get_database_backend(),
                        format!("SELECT CAST(t AS TEXT) AS row_text FROM {table} t"),
                    ))
                    .await
                    .expect("dump");
                for row in rows {
                    stored.push_str(&row.try_get::<String>("", "row_text").expect("text"));
                    stored.push('\n');
                }
            }
        }
        Backend::Sqlite => {
            for file in ["refnet.db", "refnet.db-wal"] {
                if let Ok(bytes) = std::fs::read(app.data_dir.path().join(file)) {
                    stored.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
        }
    }
    assert!(
        stored.contains(&filed.reference_code),
        "the dump is real: it holds the reference code"
    );
    assert!(
        stored.contains("ReferralFiled"),
        "the dump is real: it holds the event log"
    );
    for canary in CANARIES.iter().chain(&["Canarymessage"]) {
        assert!(!stored.contains(canary), "{canary} stored in clear");
    }
    let logs = String::from_utf8_lossy(&logs.lock().expect("logs")).to_string();
    assert!(logs.contains("referral filed"), "logging was captured");
    for canary in CANARIES.iter().chain(&["Canarybad", "Canarymessage"]) {
        assert!(!logs.contains(canary), "{canary} appears in the logs");
    }
}
