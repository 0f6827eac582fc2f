//! Subject erasure and retention: `EraseSubject` destroys the subject's data
//! key, so identity, location and every text sealed under it are gone from
//! every reply and from the database, while case facts, handoffs, the
//! timeline and the audit trail remain; who may erase, when it is refused,
//! and the retention worker erasing long-closed referrals.

use prost::Message;
use refnet_api::v1 as pb;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tonic::Code;

use crate::{
    common::{Backend, CANARIES, TestApp, authed, canary_draft, count_rows, new_key},
    on_both,
};

on_both!(
    erasure_destroys_identity_and_keeps_the_case,
    a_protected_witness_is_erased_only_by_the_wpa
);

type Routing = pb::routing_service_client::RoutingServiceClient<tonic::transport::Channel>;
type Protection = pb::witness_protection_service_client::WitnessProtectionServiceClient<
    tonic::transport::Channel,
>;

/// Free text this test writes under the subject's key (beside [`CANARIES`]).
const TEXT_CANARIES: &[&str] = &["Canarymessage", "Canaryreason", "Canarygrounds"];

async fn erase(
    app: &TestApp,
    referral: &str,
    token: &str,
) -> Result<pb::EraseSubjectResponse, tonic::Status> {
    app.intake()
        .await
        .erase_subject(authed(
            pb::EraseSubjectRequest {
                referral: referral.into(),
                ground: pb::ErasureGround::SubjectRequest as i32,
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

fn assert_no_canary(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for canary in CANARIES.iter().chain(TEXT_CANARIES) {
        assert!(!text.contains(canary), "{what} still holds {canary}");
    }
}

/// A handoff of `referral` to `agency` made by the filer's supervisor.
async fn handoff_to(
    app: &TestApp,
    routing: &mut Routing,
    referral: &str,
    agency: &str,
    purpose: &str,
) -> pb::Handoff {
    routing
        .create_handoff(authed(
            pb::CreateHandoffRequest {
                referral: referral.into(),
                to_agency_id: agency.into(),
                purpose: purpose.into(),
                idempotency_key: new_key(),
            },
            &app.token("police-nairobi", &["supervisor"]),
        ))
        .await
        .expect("handoff")
        .into_inner()
}

/// A supervisor of the filing agency (police-nairobi) closes `referral`: a
/// referral whose handoffs were all declined waits in triage until then.
async fn close(app: &TestApp, routing: &mut Routing, referral: &str) {
    let closed = routing
        .close_referral(authed(
            pb::CloseReferralRequest {
                referral: referral.into(),
                reason: pb::CloseReason::AssistedOutside as i32,
            },
            &app.token("police-nairobi", &["supervisor"]),
        ))
        .await
        .expect("close")
        .into_inner();
    assert_eq!(closed.status, pb::ReferralStatus::Closed as i32);
}

/// `agency` acknowledges `h` and declines it with `reason`.
async fn decline(
    app: &TestApp,
    routing: &mut Routing,
    h: &pb::Handoff,
    agency: &str,
    reason: &str,
) -> pb::Handoff {
    let token = app.officer(agency);
    let acknowledged = routing
        .acknowledge_handoff(authed(
            pb::HandoffTransitionRequest {
                handoff_id: h.id.clone(),
                expected_version: h.version,
                reason: String::new(),
            },
            &token,
        ))
        .await
        .expect("acknowledge")
        .into_inner();
    routing
        .decline_handoff(authed(
            pb::HandoffTransitionRequest {
                handoff_id: h.id.clone(),
                expected_version: acknowledged.version,
                reason: reason.into(),
            },
            &token,
        ))
        .await
        .expect("decline")
        .into_inner()
}

async fn submit_protection(
    app: &TestApp,
    protection: &mut Protection,
    referral: &str,
) -> pb::ProtectionRequest {
    protection
        .submit_protection_request(authed(
            pb::SubmitProtectionRequestRequest {
                referral_id: referral.into(),
                idempotency_key: new_key(),
                grounds: "Canarygrounds: Canarygiven Zqx will testify".into(),
                threat_assessment: "High".into(),
                measures: vec![pb::ProtectionMeasure::PhysicalProtection as i32],
                urgency: pb::Urgency::High as i32,
                threat_sources: "the network".into(),
            },
            &app.officer("police-nairobi"),
        ))
        .await
        .expect("submit protection request")
        .into_inner()
}

async fn timeline(app: &TestApp, routing: &mut Routing, referral: &str) -> Vec<pb::TimelineEvent> {
    routing
        .get_timeline(authed(
            pb::GetTimelineRequest {
                referral: referral.into(),
                page_size: 200,
                ..Default::default()
            },
            &app.officer("police-nairobi"),
        ))
        .await
        .expect("timeline")
        .into_inner()
        .events
}

/// How `bytes` would appear in [`stored_bytes`](crate::common::stored_bytes): raw on SQLite, `\x` hex in PostgreSQL's row text.
fn as_stored(app: &TestApp, bytes: &[u8]) -> Vec<u8> {
    match app.backend {
        Backend::Sqlite => bytes.to_vec(),
        Backend::Postgres => bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into_bytes(),
    }
}

/// The case facts of `draft` without their free text (sealed under the
/// subject's key, so erased with it): what erasure keeps.
fn structured_facts(draft: &pb::ReferralDraft) -> Option<pb::CaseFacts> {
    draft.case_facts.clone().map(|f| pb::CaseFacts {
        narrative: String::new(),
        other_purpose: String::new(),
        recruitment_route: String::new(),
        ..f
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn referral_row(app: &TestApp, referral: &str) -> refnet_core::entities::referral::Model {
    refnet_core::entities::referral::Entity::find_by_id(
        uuid::Uuid::parse_str(referral).expect("id"),
    )
    .one(&app.db().await)
    .await
    .expect("read")
    .expect("referral row")
}

async fn subject_row(app: &TestApp, referral: &str) -> refnet_core::entities::subject::Model {
    let row = referral_row(app, referral).await;
    refnet_core::entities::subject::Entity::find_by_id(row.subject_id)
        .one(&app.db().await)
        .await
        .expect("read")
        .expect("subject row")
}

/// The audit records of `referral`, as the filer's auditor reads them.
async fn audit_records(app: &TestApp, referral: &str) -> Vec<pb::AuditRecord> {
    pb::audit_service_client::AuditServiceClient::new(app.channel().await)
        .list_audit_records(authed(
            pb::ListAuditRecordsRequest {
                referral: referral.into(),
                ..Default::default()
            },
            &app.token("police-nairobi", &["auditor"]),
        ))
        .await
        .expect("audit")
        .into_inner()
        .records
}

async fn erasure_destroys_identity_and_keeps_the_case(app: &TestApp) {
    let filed = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    let id = filed.id.clone();
    let mut routing = Routing::new(app.channel().await);
    let mut protection = Protection::new(app.channel().await);
    let officer = app.officer("police-nairobi");
    let dpo = app.token("police-nairobi", &["data_protection"]);

    // Free text about the subject in three places, each sealed under its key.
    let posted = routing
        .post_message(authed(
            pb::PostMessageRequest {
                referral_id: id.clone(),
                idempotency_key: new_key(),
                body: "Canarymessage: Canarygiven Zqx moved to Canarywhere".into(),
            },
            &officer,
        ))
        .await
        .expect("post")
        .into_inner();
    let h = handoff_to(
        app,
        &mut routing,
        &id,
        "ngo-shelter-nairobi",
        "shelter, psychosocial support and legal aid",
    )
    .await;
    let declined = decline(
        app,
        &mut routing,
        &h,
        "ngo-shelter-nairobi",
        "Canaryreason: Canarygiven Zqx has no bed",
    )
    .await;
    let request = submit_protection(app, &mut protection, &id).await;

    // While the WPA has the request, nobody erases.
    let refused = erase(app, &id, &dpo)
        .await
        .expect_err("open protection request");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let request = protection
        .withdraw_protection_request(authed(
            pb::ProtectionStepRequest {
                id: request.id.clone(),
                expected_version: request.version,
                ..Default::default()
            },
            &officer,
        ))
        .await
        .expect("withdraw")
        .into_inner();

    // Who may not: the filer's desk officer and supervisor, another party's
    // data-protection officer, a WPA officer; a non-party is told nothing.
    for (agency, role, code) in [
        ("police-nairobi", "officer", Code::PermissionDenied),
        ("police-nairobi", "supervisor", Code::PermissionDenied),
        ("police-nairobi", "auditor", Code::PermissionDenied),
        (
            "ngo-shelter-nairobi",
            "data_protection",
            Code::PermissionDenied,
        ),
        ("wpa", "officer", Code::PermissionDenied),
        ("police-mombasa", "data_protection", Code::NotFound),
        ("secretariat", "data_protection", Code::NotFound),
    ] {
        let status = erase(app, &id, &app.token(agency, &[role]))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), code, "{agency}/{role}: {status:?}");
    }
    let missing = erase(app, &uuid::Uuid::now_v7().to_string(), &dpo)
        .await
        .expect_err("no such referral");
    assert_eq!(missing.code(), Code::NotFound);
    let unspecified = app
        .intake()
        .await
        .erase_subject(authed(
            pb::EraseSubjectRequest {
                referral: id.clone(),
                ground: pb::ErasureGround::Retention as i32,
            },
            &dpo,
        ))
        .await
        .expect_err("retention is the worker's ground");
    assert_eq!(unspecified.code(), Code::InvalidArgument);
    assert!(
        subject_row(app, &id).await.erased_at.is_none(),
        "refusals erase nothing"
    );

    let before = subject_row(app, &id).await;
    assert!(!before.wrapped_key.is_empty());
    assert!(
        contains(
            &crate::common::stored_bytes(app).await,
            &as_stored(app, &before.wrapped_key)
        ),
        "the dump is real: it holds the data key before erasure"
    );

    // The filer's data-protection officer erases.
    let erased = erase(app, &id, &dpo).await.expect("erase");
    assert!(!erased.already_erased);
    let referral = erased.referral.expect("referral");
    assert!(referral.subject_erased_at.is_some());
    assert_no_canary("the EraseSubject reply", &referral.encode_to_vec());

    // What remains: the case, for every party (the WPA, party through the
    // protection request, sees every class in full).
    for viewer in ["police-nairobi", "wpa"] {
        let got = app.get_as(viewer, &id).await.referral.expect("referral");
        assert_no_canary(&format!("GetReferral as {viewer}"), &got.encode_to_vec());
        let (was, now) = (
            filed.draft.as_ref().expect("draft"),
            got.draft.as_ref().expect("draft"),
        );
        assert_eq!(now.case_facts, structured_facts(was), "case facts remain");
        assert_eq!(
            (
                now.urgency,
                now.classification,
                now.identified_by,
                &now.county,
                &now.needs
            ),
            (
                was.urgency,
                was.classification,
                was.identified_by,
                &was.county,
                &was.needs
            )
        );
        let subject = now.subject.as_ref().expect("subject");
        assert!(subject.given_name.is_empty() && subject.date_of_birth.is_empty());
        assert_eq!(
            subject.sex,
            was.subject.as_ref().expect("subject").sex,
            "sex is kept for statistics"
        );
        assert!(got.subject_erased_at.is_some());
    }
    let messages = routing
        .list_messages(authed(
            pb::ListMessagesRequest {
                referral: id.clone(),
                ..Default::default()
            },
            &officer,
        ))
        .await
        .expect("messages")
        .into_inner()
        .messages;
    let message = messages
        .iter()
        .find(|m| m.id == posted.id)
        .expect("the message remains");
    assert!(message.body.is_empty() && message.body_erased);
    assert_eq!(message.author_agency_id, "police-nairobi");
    let handoff = routing
        .get_handoff(authed(
            pb::GetHandoffRequest {
                handoff_id: declined.id.clone(),
            },
            &officer,
        ))
        .await
        .expect("handoff")
        .into_inner();
    assert_eq!(
        handoff.state,
        pb::HandoffState::Declined as i32,
        "the handoff remains"
    );
    assert!(handoff.decline_reason.is_empty());
    let kept = protection
        .get_protection_request(authed(
            pb::GetProtectionRequestRequest {
                id: request.id.clone(),
            },
            &officer,
        ))
        .await
        .expect("protection request")
        .into_inner();
    assert_eq!(kept.state, pb::ProtectionState::Withdrawn as i32);
    assert!(kept.grounds.is_empty());
    let events = timeline(app, &mut routing, &id).await;
    assert_no_canary(
        "the timeline",
        &pb::GetTimelineResponse {
            events: events.clone(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let last = events.last().expect("events");
    assert_eq!(last.event, "SubjectErased");
    assert!(
        last.detail.contains("at the subject's request"),
        "{}",
        last.detail
    );
    assert_eq!(last.actor_agency_id, "police-nairobi");
    assert!(
        events.iter().any(|e| e.event == "HandoffDeclined"),
        "the history remains"
    );

    // Audited: who erased, which referral, what was destroyed.
    let audit = audit_records(app, &id).await;
    let record = audit
        .iter()
        .find(|r| r.rpc.ends_with("/EraseSubject"))
        .expect("an audit record of the erasure");
    assert_eq!(record.officer_id, "officer-police-nairobi");
    assert_eq!(record.roles, vec!["data_protection".to_owned()]);
    assert!(
        record
            .field_paths
            .iter()
            .any(|p| p == "referral.draft.subject")
    );

    // In the database: the key and the sealed columns are gone, the date of
    // birth replaced by an age band, the identifier digests deleted, and the
    // old wrapped key is nowhere in a copy of the database.
    let after = subject_row(app, &id).await;
    assert!(
        after.wrapped_key.is_empty()
            && after.identity_ct.is_empty()
            && after.location_ct.is_empty()
    );
    assert_eq!(after.key_id, "erased");
    assert_eq!(after.date_of_birth, None);
    assert_eq!(
        after.age_band.as_deref(),
        Some("27-29"),
        "born 1999-04-17, filed in 2026"
    );
    assert!(after.erased_at.is_some());
    assert_eq!(
        (after.sex.as_str(), after.nationality.as_str()),
        (before.sex.as_str(), before.nationality.as_str())
    );
    let db = app.db().await;
    let subject_id = after.id;
    assert_eq!(
        refnet_core::entities::subject_identifier::Entity::find()
            .filter(refnet_core::entities::subject_identifier::Column::SubjectId.eq(subject_id))
            .all(&db)
            .await
            .expect("identifiers")
            .len(),
        0
    );
    let row = referral_row(app, &id).await;
    assert!(row.sealed.is_empty() && row.request_digest.is_empty());
    let stored = crate::common::stored_bytes(app).await;
    assert!(
        !contains(&stored, &as_stored(app, &before.wrapped_key)),
        "the erased subject's wrapped key is still in the database"
    );
    assert!(!contains(&stored, &as_stored(app, &before.identity_ct)));

    // Nothing new is recorded about an erased person.
    let amend = app
        .intake()
        .await
        .amend_referral(authed(
            pb::AmendReferralRequest {
                referral: id.clone(),
                expected_version: referral.version,
                draft: Some(canary_draft()),
            },
            &officer,
        ))
        .await
        .expect_err("amend after erasure");
    assert_eq!(amend.code(), Code::FailedPrecondition, "{amend:?}");
    let consent = app
        .intake()
        .await
        .record_consent(authed(
            pb::RecordConsentRequest {
                referral: id.clone(),
                expected_version: referral.version,
                consent: canary_draft().consent,
            },
            &officer,
        ))
        .await
        .expect_err("consent after erasure");
    assert_eq!(consent.code(), Code::FailedPrecondition, "{consent:?}");
    let post = routing
        .post_message(authed(
            pb::PostMessageRequest {
                referral_id: id.clone(),
                idempotency_key: new_key(),
                body: "Canarymessage again".into(),
            },
            &officer,
        ))
        .await
        .expect_err("message after erasure");
    assert_eq!(post.code(), Code::FailedPrecondition, "{post:?}");
    let again = pb::SubmitProtectionRequestRequest {
        referral_id: id.clone(),
        idempotency_key: new_key(),
        grounds: "witness".into(),
        threat_assessment: "High".into(),
        measures: vec![pb::ProtectionMeasure::PhysicalProtection as i32],
        urgency: pb::Urgency::High as i32,
        threat_sources: "the network".into(),
    };
    let submit = protection
        .submit_protection_request(authed(again, &officer))
        .await
        .expect_err("protection request after erasure");
    assert_eq!(submit.code(), Code::FailedPrecondition, "{submit:?}");
    // The handoffs still work: one can be declined, its reason not kept.
    let h = handoff_to(
        app,
        &mut routing,
        &id,
        "health-nairobi",
        "medical treatment",
    )
    .await;
    let declined = decline(
        app,
        &mut routing,
        &h,
        "health-nairobi",
        "Canaryreason: no record",
    )
    .await;
    assert_eq!(declined.state, pb::HandoffState::Declined as i32);
    assert!(declined.decline_reason.is_empty());
    let events = timeline(app, &mut routing, &id).await;
    assert!(
        events
            .iter()
            .any(|e| e.event == "HandoffDeclined" && e.detail.contains("reason not kept")),
        "{events:?}"
    );

    // Erasing again changes nothing, whoever asks.
    let repeat = erase(app, &id, &dpo).await.expect("erase again");
    assert!(repeat.already_erased);
    let erasures = count_rows(
        &db,
        &format!(
            "SELECT COUNT(*) AS n FROM events WHERE kind = 'SubjectErased' AND referral_id = {}",
            match app.backend {
                Backend::Postgres => format!("'{id}'"),
                Backend::Sqlite => format!("X'{}'", id.replace('-', "")),
            }
        ),
    )
    .await;
    assert_eq!(erasures, 1);

    // The same person filed again is not linked to the erased referral, and
    // key rotation has nothing to re-wrap for an erased subject.
    let refiled = app.file("police-nairobi", canary_draft()).await;
    assert!(
        refiled
            .possible_duplicates
            .iter()
            .all(|d| d.reference_code != filed.reference_code),
        "{:?}",
        refiled.possible_duplicates
    );
    assert_eq!(
        refnet_core::keys::wrapped_by_others(&db, app.ctx.keys().master.id())
            .await
            .expect("count"),
        0
    );
}

async fn a_protected_witness_is_erased_only_by_the_wpa(app: &TestApp) {
    let filed = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    let id = filed.id.clone();
    let mut protection = Protection::new(app.channel().await);
    let wpa = app.officer("wpa");
    let wpa_supervisor = app.token("wpa", &["supervisor"]);
    let submitted = submit_protection(app, &mut protection, &id).await;
    let step = |r: &pb::ProtectionRequest| pb::ProtectionStepRequest {
        id: r.id.clone(),
        expected_version: r.version,
        ..Default::default()
    };
    let assessing = protection
        .begin_assessment(authed(step(&submitted), &wpa))
        .await
        .expect("assess")
        .into_inner();
    let admitted = protection
        .admit_to_programme(authed(step(&assessing), &wpa))
        .await
        .expect("admit")
        .into_inner();

    // Protected: the filer's data-protection officer may not; the WPA may
    // not while the protection is in force.
    let dpo = erase(app, &id, &app.token("police-nairobi", &["data_protection"]))
        .await
        .expect_err("protected witness");
    assert_eq!(dpo.code(), Code::PermissionDenied, "{dpo:?}");
    let open = erase(app, &id, &wpa_supervisor)
        .await
        .expect_err("protection open");
    assert_eq!(open.code(), Code::FailedPrecondition, "{open:?}");

    // Protection closed (identity still suppressed), the WPA supervisor erases.
    protection
        .close_protection(authed(step(&admitted), &wpa))
        .await
        .expect("close");
    let dpo = erase(app, &id, &app.token("police-nairobi", &["data_protection"]))
        .await
        .expect_err("still a protected witness");
    assert_eq!(dpo.code(), Code::PermissionDenied, "{dpo:?}");
    let erased = erase(app, &id, &wpa_supervisor)
        .await
        .expect("the WPA erases");
    assert!(!erased.already_erased);
    let referral = erased.referral.expect("referral");
    assert!(referral.subject_erased_at.is_some());
    assert!(
        referral.protection_applies,
        "still shown under the WPA's pseudonym"
    );
    let got = app.get_as("wpa", &id).await.referral.expect("referral");
    assert_no_canary("GetReferral as the WPA", &got.encode_to_vec());
    let request = protection
        .get_protection_request(authed(
            pb::GetProtectionRequestRequest {
                id: admitted.id.clone(),
            },
            &wpa,
        ))
        .await
        .expect("the request remains")
        .into_inner();
    assert_eq!(request.state, pb::ProtectionState::Closed as i32);
    assert!(request.grounds.is_empty());
}

/// The retention worker erases the subjects of referrals closed longer ago
/// than the period, oldest first, and leaves open ones, recent ones and those
/// the WPA still protects; a closed referral given a new handoff is open again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_erases_long_closed_referrals_sqlite() {
    let app = TestApp::spawn_configured(Backend::Sqlite, |c| c.routing_worker = false)
        .await
        .expect("sqlite");
    retention_erases_long_closed_referrals(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_erases_long_closed_referrals_postgres() {
    let Some(app) =
        TestApp::spawn_configured(Backend::Postgres, |c| c.routing_worker = false).await
    else {
        return;
    };
    retention_erases_long_closed_referrals(&app).await;
    app.stop().await;
}

async fn retention_erases_long_closed_referrals(app: &TestApp) {
    use refnet_intake::erase::RetentionWorker;
    let mut routing = Routing::new(app.channel().await);
    let mut protection = Protection::new(app.channel().await);
    let shelter = "shelter, psychosocial support and legal aid";
    let file = || async {
        app.file("police-nairobi", canary_draft())
            .await
            .referral
            .expect("referral")
    };
    // closed: its one handoff declined, then closed by a supervisor. open:
    // its handoff pending. guarded: closed the same way, but with a
    // protection request the WPA has not decided.
    let closed = file().await;
    let open = file().await;
    let guarded = file().await;
    let h = handoff_to(
        app,
        &mut routing,
        &closed.id,
        "ngo-shelter-nairobi",
        shelter,
    )
    .await;
    decline(app, &mut routing, &h, "ngo-shelter-nairobi", "no bed").await;
    close(app, &mut routing, &closed.id).await;
    handoff_to(app, &mut routing, &open.id, "ngo-shelter-nairobi", shelter).await;
    submit_protection(app, &mut protection, &guarded.id).await;
    let h = handoff_to(
        app,
        &mut routing,
        &guarded.id,
        "ngo-shelter-nairobi",
        shelter,
    )
    .await;
    decline(app, &mut routing, &h, "ngo-shelter-nairobi", "no bed").await;
    close(app, &mut routing, &guarded.id).await;
    for (r, status) in [
        (&closed, pb::ReferralStatus::Closed),
        (&open, pb::ReferralStatus::Routed),
        (&guarded, pb::ReferralStatus::Closed),
    ] {
        let got = app
            .get_as("police-nairobi", &r.id)
            .await
            .referral
            .expect("referral");
        assert_eq!(got.status, status as i32, "{}", r.reference_code);
    }

    let worker = RetentionWorker::new(app.ctx.clone());
    let now = chrono::Utc::now();
    assert_eq!(
        worker.step_at(now).await.expect("step"),
        0,
        "nothing is due yet"
    );
    let period = i64::from(app.ctx.config().retention.erase_closed_after_days);
    let later = now + chrono::Duration::days(period + 1);
    assert_eq!(
        worker.step_at(later).await.expect("step"),
        1,
        "the closed referral only"
    );
    assert_eq!(worker.step_at(later).await.expect("step"), 0, "done once");

    let got = app
        .get_as("police-nairobi", &closed.id)
        .await
        .referral
        .expect("referral");
    assert!(got.subject_erased_at.is_some());
    assert_no_canary("the retained referral", &got.encode_to_vec());
    assert_eq!(
        got.draft.expect("draft").case_facts,
        structured_facts(closed.draft.as_ref().expect("draft"))
    );
    for r in [&open, &guarded] {
        let got = app
            .get_as("police-nairobi", &r.id)
            .await
            .referral
            .expect("referral");
        assert!(got.subject_erased_at.is_none(), "{} kept", r.reference_code);
    }
    let events = timeline(app, &mut routing, &closed.id).await;
    let last = events.last().expect("events");
    assert_eq!(last.event, "SubjectErased");
    assert!(last.detail.contains("retention period"), "{}", last.detail);
    let audit = audit_records(app, &closed.id).await;
    assert!(
        audit
            .iter()
            .any(|r| r.rpc == refnet_intake::erase::RETENTION_RPC
                && r.officer_id == "refnet-retention"),
        "{audit:?}"
    );

    // A closed referral given a new handoff is open again: no closure to count from.
    let h = handoff_to(
        app,
        &mut routing,
        &guarded.id,
        "health-nairobi",
        "medical treatment",
    )
    .await;
    let got = app
        .get_as("police-nairobi", &guarded.id)
        .await
        .referral
        .expect("referral");
    assert_eq!(got.status, pb::ReferralStatus::Routed as i32);
    assert_eq!(referral_row(app, &guarded.id).await.closed_at, None);
    // Declined again: it waits in triage (not closed, nothing to count from)
    // until a supervisor closes it, and the period counts from then.
    decline(app, &mut routing, &h, "health-nairobi", "no capacity").await;
    let row = referral_row(app, &guarded.id).await;
    assert_eq!(
        row.status,
        refnet_core::states::ReferralStatus::NeedsRouting
    );
    assert_eq!(row.closed_at, None);
    close(app, &mut routing, &guarded.id).await;
    let row = referral_row(app, &guarded.id).await;
    assert!(row.closed_at.is_some(), "closed again, counted from now");
}
