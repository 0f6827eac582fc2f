//! Witness protection: police or prosecution request protection, the WPA
//! decides; from interim measures or admission on, every other viewer sees
//! only the pseudonym, in every RPC, in streams opened before, and over
//! messages written before. The requester sees the court measures it must act
//! on; the WPA sees everything.

use prost::Message;
use refnet_api::v1::{
    self as pb, ProtectionMeasure as M, ProtectionState as S,
    routing_service_client::RoutingServiceClient,
    witness_protection_service_client::WitnessProtectionServiceClient,
};
use tonic::{Code, transport::Channel};

use crate::{
    common::{TestApp, authed, canary_draft, new_key, violations},
    on_both,
    routing::{await_handoffs, inbox},
};

on_both!(
    an_admitted_witness_is_hidden_from_everyone_but_the_wpa,
    who_may_request_and_every_transition,
);

async fn wpa(app: &TestApp) -> WitnessProtectionServiceClient<Channel> {
    WitnessProtectionServiceClient::new(app.channel().await)
}

async fn routing(app: &TestApp) -> RoutingServiceClient<Channel> {
    RoutingServiceClient::new(app.channel().await)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// An adult Ugandan national in sexual exploitation who needs shelter and
/// legal aid, filed by a Nairobi police desk: routed to IMMIGRATION and NGO.
fn witness_draft() -> pb::ReferralDraft {
    let mut draft = canary_draft();
    draft.subject.as_mut().expect("subject").nationality = "UG".into();
    let case = draft.case_facts.as_mut().expect("case");
    case.purposes = vec![pb::Purpose::SexualExploitation as i32];
    case.other_purpose.clear();
    draft.suspects[0].employer.clear();
    draft.suspects[0].recruitment_agency.clear();
    draft.county = "Nairobi".into();
    draft
}

/// Someone else entirely: no identifier in common with [`witness_draft`].
fn another_person() -> pb::ReferralDraft {
    let mut draft = witness_draft();
    let subject = draft.subject.as_mut().expect("subject");
    subject.given_name = "Otherwitness".into();
    subject.family_name = "Person".into();
    subject.aliases.clear();
    subject.national_id = "27182818".into();
    subject.passport_number = "AB1234567".into();
    subject.refugee_id.clear();
    subject.phones = vec!["+254711000999".into()];
    subject.email.clear();
    subject.next_of_kin.clear();
    draft.case_facts.as_mut().expect("case").narrative =
        "Otherwitness Person was recruited with a false job offer.".into();
    draft
}

fn request(referral: &str, measures: &[M]) -> pb::SubmitProtectionRequestRequest {
    pb::SubmitProtectionRequestRequest {
        referral_id: referral.into(),
        idempotency_key: new_key(),
        grounds: "Key witness against Canarysuspect Zqx; Canarygiven Zqx was threatened".into(),
        threat_assessment: "Calls to 0700 111 222 from the network".into(),
        measures: measures.iter().map(|m| *m as i32).collect(),
        urgency: pb::Urgency::High as i32,
        threat_sources: "Canarysuspect Zqx and associates".into(),
    }
}

fn step(r: &pb::ProtectionRequest) -> pb::ProtectionStepRequest {
    pb::ProtectionStepRequest {
        id: r.id.clone(),
        expected_version: r.version,
        ..Default::default()
    }
}

/// The referral as `agency` sees it, encoded (to search for canaries).
async fn referral_bytes(app: &TestApp, agency: &str, referral: &str) -> (pb::Referral, Vec<u8>) {
    let reply = app.get_as(agency, referral).await;
    let bytes = reply.encode_to_vec();
    (reply.referral.expect("referral"), bytes)
}

async fn next_event(s: &mut tonic::Streaming<pb::TimelineEvent>) -> pb::TimelineEvent {
    tokio::time::timeout(std::time::Duration::from_secs(10), s.message())
        .await
        .expect("an item in time")
        .expect("stream ok")
        .expect("item")
}

async fn an_admitted_witness_is_hidden_from_everyone_but_the_wpa(app: &TestApp) {
    let filed = app
        .file("police-nairobi", witness_draft())
        .await
        .referral
        .expect("referral");
    let id = filed.id.clone();
    await_handoffs(app, &id, 2).await;
    for agency in ["ngo-shelter-nairobi", "immigration-nairobi"] {
        assert!(
            inbox(app, agency).await.iter().any(|h| h.referral_id == id),
            "{agency} received it"
        );
    }
    let mut routing_client = routing(app).await;
    // Prosecution is brought in by a police supervisor.
    routing_client
        .create_handoff(authed(
            pb::CreateHandoffRequest {
                referral: id.clone(),
                to_agency_id: "prosecution-nairobi".into(),
                purpose: "investigation".into(),
                idempotency_key: new_key(),
            },
            &app.token("police-nairobi", &["supervisor"]),
        ))
        .await
        .expect("prosecution added");
    // A message written before protection, naming the witness.
    routing_client
        .post_message(authed(
            pb::PostMessageRequest {
                referral_id: id.clone(),
                idempotency_key: new_key(),
                body: "Canarygiven Zqx will testify; she is at Canarywhere market stall 9".into(),
            },
            &app.officer("police-nairobi"),
        ))
        .await
        .expect("message");
    // The NGO follows the referral live from before protection.
    let mut stream = routing_client
        .watch_referral(authed(
            pb::WatchReferralRequest {
                referral: id.clone(),
                cursor: String::new(),
                from_beginning: false,
            },
            &app.officer("ngo-shelter-nairobi"),
        ))
        .await
        .expect("watch")
        .into_inner();
    let (before, _) = referral_bytes(app, "ngo-shelter-nairobi", &id).await;
    assert_eq!(
        before
            .draft
            .as_ref()
            .expect("draft")
            .subject
            .as_ref()
            .expect("subject")
            .given_name,
        "Canarygiven Zqx",
        "the consented NGO sees the name before protection"
    );

    // Who may ask.
    let mut client = wpa(app).await;
    for (agency, code) in [
        ("ngo-shelter-nairobi", Code::PermissionDenied),
        ("labour-nairobi", Code::PermissionDenied),
        ("police-mombasa", Code::NotFound),
    ] {
        let err = client
            .submit_protection_request(authed(request(&id, &[M::Relocation]), &app.officer(agency)))
            .await
            .expect_err(agency);
        assert_eq!(err.code(), code, "{agency}: {err:?}");
    }
    assert_eq!(app.count("protection_requests").await, 0);

    let submitted = client
        .submit_protection_request(authed(
            request(&id, &[M::Relocation, M::VideoLinkTestimony]),
            &app.officer("police-nairobi"),
        ))
        .await
        .expect("police request protection")
        .into_inner();
    assert_eq!(submitted.state, S::Submitted as i32);
    assert!(!submitted.identity_suppressed);
    // The WPA is now party to the referral.
    app.get_as("wpa", &id).await;

    let wpa_officer = app.officer("wpa");
    let assessing = client
        .begin_assessment(authed(
            pb::ProtectionStepRequest {
                notes: "Canarywpanote: safe house Canaryshelter Road 12 considered".into(),
                threat_analysis: "Canarywpaanalysis: network active in Nairobi".into(),
                ..step(&submitted)
            },
            &wpa_officer,
        ))
        .await
        .expect("assess")
        .into_inner();
    let admitted = client
        .admit_to_programme(authed(step(&assessing), &wpa_officer))
        .await
        .expect("admit")
        .into_inner();
    assert_eq!(admitted.state, S::Admitted as i32);
    assert!(admitted.identity_suppressed);
    let pseudonym = admitted.pseudonym.clone();
    assert!(pseudonym.starts_with("Witness-"), "{pseudonym}");
    let active = client
        .record_measure(authed(
            pb::RecordMeasureRequest {
                id: admitted.id.clone(),
                expected_version: admitted.version,
                measure: M::Relocation as i32,
                starts_on: "2026-12-01".into(),
                ends_on: String::new(),
                details: "Canaryrelocated to the coast safe house".into(),
            },
            &wpa_officer,
        ))
        .await
        .expect("relocation")
        .into_inner();
    assert_eq!(active.state, S::Active as i32);
    let active = client
        .record_measure(authed(
            pb::RecordMeasureRequest {
                id: active.id.clone(),
                expected_version: active.version,
                measure: M::VideoLinkTestimony as i32,
                starts_on: "2026-12-01".into(),
                ends_on: "2027-06-30".into(),
                details: "Canarylink from the coast court room".into(),
            },
            &wpa_officer,
        ))
        .await
        .expect("video link")
        .into_inner();

    // From now on: the pseudonym for everyone but the WPA.
    let identity = [
        "Canarygiven",
        "Canaryfamily",
        "31415926",
        "700111222",
        "0700 111 222",
        "Canarywhere",
        "Canaryshelter",
        "1999-04-17",
        "Canaryhealth",
    ];
    for agency in [
        "ngo-shelter-nairobi",
        "immigration-nairobi",
        "prosecution-nairobi",
        "police-nairobi",
    ] {
        let (seen, bytes) = referral_bytes(app, agency, &id).await;
        assert!(seen.protection_applies, "{agency}");
        let subject = seen
            .draft
            .as_ref()
            .expect("draft")
            .subject
            .as_ref()
            .expect("subject");
        assert_eq!(subject.given_name, pseudonym, "{agency}");
        for canary in identity {
            assert!(!contains(&bytes, canary), "{agency} sees {canary}");
        }
        // Old messages come back with the pseudonym.
        let messages = routing_client
            .list_messages(authed(
                pb::ListMessagesRequest {
                    referral: id.clone(),
                    ..Default::default()
                },
                &app.officer(agency),
            ))
            .await
            .expect("messages")
            .into_inner();
        let body = &messages.messages[0].body;
        assert!(
            body.contains(&pseudonym)
                && !body.contains("Canarygiven")
                && !body.contains("Canarywhere"),
            "{agency}: {body}"
        );
    }
    let (seen, bytes) = referral_bytes(app, "wpa", &id).await;
    assert_eq!(
        seen.draft
            .as_ref()
            .expect("draft")
            .subject
            .as_ref()
            .expect("subject")
            .given_name,
        "Canarygiven Zqx",
        "the WPA sees the true identity"
    );
    assert!(contains(&bytes, "Canarywhere"));
    assert!(
        app.count("audit_log WHERE agency_id = 'wpa'").await > 0,
        "the WPA's read of a protected identity is audited"
    );

    // The stream opened before admission: the change is an item that reveals
    // nothing, and later items are redacted with the pseudonym.
    let mut applied = next_event(&mut stream).await;
    while applied.event != "ProtectionApplied" {
        applied = next_event(&mut stream).await;
    }
    assert!(
        applied.reason.is_empty()
            && applied.detail.is_empty()
            && applied.actor_agency_id.is_empty()
    );
    let immigration = app.officer("immigration-nairobi");
    let h = inbox(app, "immigration-nairobi")
        .await
        .into_iter()
        .find(|h| h.referral_id == id)
        .expect("immigration handoff");
    let h = routing_client
        .acknowledge_handoff(authed(
            pb::HandoffTransitionRequest {
                handoff_id: h.id.clone(),
                expected_version: h.version,
                reason: String::new(),
            },
            &immigration,
        ))
        .await
        .expect("ack")
        .into_inner();
    routing_client
        .decline_handoff(authed(
            pb::HandoffTransitionRequest {
                handoff_id: h.id.clone(),
                expected_version: h.version,
                reason: "Canarygiven Zqx holds a valid permit".into(),
            },
            &immigration,
        ))
        .await
        .expect("decline");
    let mut declined = next_event(&mut stream).await;
    while declined.event != "HandoffDeclined" {
        declined = next_event(&mut stream).await;
    }
    assert!(
        declined.reason.contains(&pseudonym) && !declined.reason.contains("Canarygiven"),
        "{}",
        declined.reason
    );
    drop(stream);

    // The requester sees the state and the court measure it must act on; never
    // the WPA's notes, analysis, relocation or details.
    let police_view = client
        .get_protection_request(authed(
            pb::GetProtectionRequestRequest {
                id: active.id.clone(),
            },
            &app.officer("police-nairobi"),
        ))
        .await
        .expect("requester reads")
        .into_inner();
    assert_eq!(police_view.state, S::Active as i32);
    assert_eq!(police_view.measures_in_force.len(), 1, "{police_view:?}");
    assert_eq!(
        police_view.measures_in_force[0].measure,
        M::VideoLinkTestimony as i32
    );
    assert_eq!(police_view.measures_in_force[0].ends_on, "2027-06-30");
    assert!(police_view.measures_in_force[0].details.is_empty());
    let bytes = police_view.encode_to_vec();
    for canary in [
        "Canarywpanote",
        "Canarywpaanalysis",
        "Canaryrelocated",
        "Canarylink",
        "Canarygiven",
        "Canaryshelter",
    ] {
        assert!(!contains(&bytes, canary), "the requester sees {canary}");
    }
    // The WPA sees everything about it.
    let wpa_view = client
        .get_protection_request(authed(
            pb::GetProtectionRequestRequest {
                id: active.id.clone(),
            },
            &wpa_officer,
        ))
        .await
        .expect("wpa reads")
        .into_inner();
    assert_eq!(wpa_view.measures_in_force.len(), 2);
    assert!(wpa_view.wpa_notes.contains("Canarywpanote"));
    assert!(wpa_view.wpa_threat_analysis.contains("Canarywpaanalysis"));
    assert!(wpa_view.grounds.contains("Canarygiven Zqx"));
    assert!(
        wpa_view
            .measures_in_force
            .iter()
            .any(|m| m.details.contains("Canaryrelocated"))
    );
    // Other parties: NOT_FOUND for the request, nothing in their lists.
    for agency in [
        "ngo-shelter-nairobi",
        "prosecution-nairobi",
        "police-mombasa",
    ] {
        let err = client
            .get_protection_request(authed(
                pb::GetProtectionRequestRequest {
                    id: active.id.clone(),
                },
                &app.officer(agency),
            ))
            .await
            .expect_err(agency);
        assert_eq!(err.code(), Code::NotFound, "{agency}");
        let listed = client
            .list_protection_requests(authed(
                pb::ListProtectionRequestsRequest::default(),
                &app.officer(agency),
            ))
            .await
            .expect("list")
            .into_inner();
        assert!(listed.requests.is_empty(), "{agency}");
    }
    for agency in ["wpa", "police-nairobi"] {
        let listed = client
            .list_protection_requests(authed(
                pb::ListProtectionRequestsRequest::default(),
                &app.officer(agency),
            ))
            .await
            .expect("list")
            .into_inner();
        assert_eq!(listed.requests.len(), 1, "{agency}");
    }
    // The timeline says protection applies and nothing more; the request itself is not on it.
    let timeline = routing_client
        .get_timeline(authed(
            pb::GetTimelineRequest {
                referral: id.clone(),
                ..Default::default()
            },
            &app.officer("ngo-shelter-nairobi"),
        ))
        .await
        .expect("timeline")
        .into_inner();
    assert_eq!(
        timeline
            .events
            .iter()
            .filter(|e| e.event == "ProtectionApplied")
            .count(),
        1
    );
    assert!(
        timeline
            .events
            .iter()
            .all(|e| !e.event.starts_with("ProtectionRequest")
                && e.event != "ProtectionStateChanged")
    );
}

async fn who_may_request_and_every_transition(app: &TestApp) {
    let id = app
        .file("police-nairobi", witness_draft())
        .await
        .referral
        .expect("referral")
        .id;
    // Another referral about the same person (same ID numbers), filed by immigration.
    let same_person = app
        .file("immigration-nairobi", witness_draft())
        .await
        .referral
        .expect("referral")
        .id;
    let mut client = wpa(app).await;
    let police = app.officer("police-nairobi");
    let wpa_officer = app.officer("wpa");

    // Idempotent submission; a reused key with other content is refused.
    let first = request(&id, &[M::PhysicalProtection]);
    let a = client
        .submit_protection_request(authed(first.clone(), &police))
        .await
        .expect("submit")
        .into_inner();
    let b = client
        .submit_protection_request(authed(first.clone(), &police))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(a.id, b.id);
    let reused = client
        .submit_protection_request(authed(
            pb::SubmitProtectionRequestRequest {
                grounds: "different".into(),
                ..first.clone()
            },
            &police,
        ))
        .await
        .expect_err("reused key");
    assert_eq!(violations(&reused), vec!["idempotency_key"]);
    let empty = client
        .submit_protection_request(authed(
            pb::SubmitProtectionRequestRequest {
                referral_id: id.clone(),
                ..Default::default()
            },
            &police,
        ))
        .await
        .expect_err("empty");
    assert_eq!(
        violations(&empty),
        vec![
            "idempotency_key",
            "grounds",
            "threat_assessment",
            "measures",
            "urgency"
        ]
    );
    assert_eq!(app.count("protection_requests").await, 1);

    // Only the WPA decides; only in order; only at the version read.
    let denied = client
        .begin_assessment(authed(step(&a), &police))
        .await
        .expect_err("police cannot assess");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let early = client
        .admit_to_programme(authed(step(&a), &wpa_officer))
        .await
        .expect_err("admit before assessment");
    assert_eq!(early.code(), Code::FailedPrecondition);
    assert!(early.message().contains("SUBMITTED"), "{}", early.message());
    let misplaced = client
        .begin_assessment(authed(
            pb::ProtectionStepRequest {
                pseudonym: "Witness K-17".into(),
                ..step(&a)
            },
            &wpa_officer,
        ))
        .await
        .expect_err("pseudonym belongs to admission");
    assert_eq!(violations(&misplaced), vec!["pseudonym"]);
    let a = client
        .begin_assessment(authed(step(&a), &wpa_officer))
        .await
        .expect("assess")
        .into_inner();
    let stale = client
        .grant_interim_measures(authed(
            pb::ProtectionStepRequest {
                expected_version: a.version - 1,
                measures: vec![M::PhysicalProtection as i32],
                ..step(&a)
            },
            &wpa_officer,
        ))
        .await
        .expect_err("stale");
    assert_eq!(stale.code(), Code::Aborted);
    let no_measures = client
        .grant_interim_measures(authed(step(&a), &wpa_officer))
        .await
        .expect_err("no measures");
    assert_eq!(violations(&no_measures), vec!["measures"]);
    let not_requester = client
        .withdraw_protection_request(authed(step(&a), &app.officer("prosecution-nairobi")))
        .await
        .expect_err("not the requester");
    assert_eq!(not_requester.code(), Code::NotFound);

    // Interim measures protect at once, on every referral about the same person.
    let a = client
        .grant_interim_measures(authed(
            pb::ProtectionStepRequest {
                measures: vec![M::PhysicalProtection as i32],
                ..step(&a)
            },
            &wpa_officer,
        ))
        .await
        .expect("interim")
        .into_inner();
    assert_eq!(a.state, S::InterimMeasures as i32);
    let interim_name = a.pseudonym.clone();
    let (seen, _) = referral_bytes(app, "police-nairobi", &id).await;
    assert_eq!(
        seen.draft
            .expect("draft")
            .subject
            .expect("subject")
            .given_name,
        interim_name
    );
    let (seen, bytes) = referral_bytes(app, "immigration-nairobi", &same_person).await;
    assert!(seen.protection_applies);
    assert!(
        !contains(&bytes, "Canarygiven"),
        "the same person's other referral is covered"
    );

    // A declined request (no restore) leaves the identity hidden.
    let no_reason = client
        .decline_request(authed(step(&a), &wpa_officer))
        .await
        .expect_err("reason required");
    assert_eq!(violations(&no_reason), vec!["reason"]);
    let declined = client
        .decline_request(authed(
            pb::ProtectionStepRequest {
                reason: "not a programme case; interim protection stays".into(),
                ..step(&a)
            },
            &wpa_officer,
        ))
        .await
        .expect("decline")
        .into_inner();
    assert_eq!(declined.state, S::Declined as i32);
    assert!(declined.identity_suppressed);
    let requester_view = client
        .get_protection_request(authed(
            pb::GetProtectionRequestRequest {
                id: declined.id.clone(),
            },
            &police,
        ))
        .await
        .expect("requester reads")
        .into_inner();
    assert!(requester_view.reason.contains("not a programme case"));

    // A second witness: the pseudonym is unique system-wide.
    let second = app
        .file("police-nairobi", another_person())
        .await
        .referral
        .expect("referral")
        .id;
    let c = client
        .submit_protection_request(authed(request(&second, &[M::PseudonymInCourt]), &police))
        .await
        .expect("submit")
        .into_inner();
    let c = client
        .begin_assessment(authed(step(&c), &wpa_officer))
        .await
        .expect("assess")
        .into_inner();
    let clash = client
        .admit_to_programme(authed(
            pb::ProtectionStepRequest {
                pseudonym: interim_name.to_lowercase().replace('-', " "),
                ..step(&c)
            },
            &wpa_officer,
        ))
        .await
        .expect_err("pseudonym taken");
    assert_eq!(violations(&clash), vec!["pseudonym"]);
    let c = client
        .admit_to_programme(authed(
            pb::ProtectionStepRequest {
                pseudonym: "Witness K-17".into(),
                ..step(&c)
            },
            &wpa_officer,
        ))
        .await
        .expect("admit with a chosen pseudonym")
        .into_inner();
    assert_eq!(c.pseudonym, "Witness K-17");
    // Closing keeps the identity hidden unless the WPA restores it explicitly.
    let closed = client
        .close_protection(authed(step(&c), &wpa_officer))
        .await
        .expect("close")
        .into_inner();
    assert_eq!(closed.state, S::Closed as i32);
    let (seen, _) = referral_bytes(app, "police-nairobi", &second).await;
    assert_eq!(
        seen.draft
            .expect("draft")
            .subject
            .expect("subject")
            .given_name,
        "Witness K-17"
    );
    let (seen, _) = referral_bytes(app, "police-nairobi", &id).await;
    assert_eq!(
        seen.draft
            .expect("draft")
            .subject
            .expect("subject")
            .given_name,
        interim_name,
        "another witness's admission changes nothing here"
    );
    let again = client
        .close_protection(authed(step(&closed), &wpa_officer))
        .await
        .expect_err("closed is final");
    assert_eq!(again.code(), Code::FailedPrecondition);
    // A later filing about that witness is protected from its first reply on,
    // and so is a referral amended to carry one of the witness's numbers.
    let refiled = app
        .file("immigration-nairobi", another_person())
        .await
        .referral
        .expect("refiled");
    assert!(refiled.protection_applies);
    assert_eq!(
        refiled
            .draft
            .expect("draft")
            .subject
            .expect("subject")
            .given_name,
        "Witness K-17"
    );
    let mut stranger = another_person();
    {
        let subject = stranger.subject.as_mut().expect("subject");
        subject.national_id = "11223344".into();
        subject.passport_number = "CD7654321".into();
        subject.phones = vec!["+254722000111".into()];
    }
    let unrelated = app
        .file("police-nairobi", stranger.clone())
        .await
        .referral
        .expect("unrelated");
    assert!(!unrelated.protection_applies);
    stranger.subject.as_mut().expect("subject").national_id = "27182818".into();
    let amended = app
        .intake()
        .await
        .amend_referral(authed(
            pb::AmendReferralRequest {
                referral: unrelated.id.clone(),
                expected_version: unrelated.version,
                draft: Some(stranger),
            },
            &police,
        ))
        .await
        .expect("amend")
        .into_inner()
        .referral
        .expect("referral");
    assert!(amended.protection_applies);
    assert_eq!(
        amended
            .draft
            .expect("draft")
            .subject
            .expect("subject")
            .given_name,
        "Witness K-17"
    );

    // The first request's interim protection: lifted only by an explicit restore.
    let d = client
        .submit_protection_request(authed(request(&id, &[M::InCameraHearing]), &police))
        .await
        .expect("new request")
        .into_inner();
    let withdrawn = client
        .withdraw_protection_request(authed(step(&d), &police))
        .await
        .expect("withdraw")
        .into_inner();
    assert_eq!(withdrawn.state, S::Withdrawn as i32);
    let twice = client
        .withdraw_protection_request(authed(step(&withdrawn), &police))
        .await
        .expect_err("withdrawn is final");
    assert_eq!(twice.code(), Code::FailedPrecondition);

    // The interim request of `id` was declined; a fresh request is admitted and closed with restore.
    let e = client
        .submit_protection_request(authed(request(&id, &[M::IdentityDistortion]), &police))
        .await
        .expect("request")
        .into_inner();
    let e = client
        .begin_assessment(authed(step(&e), &wpa_officer))
        .await
        .expect("assess")
        .into_inner();
    let e = client
        .admit_to_programme(authed(
            pb::ProtectionStepRequest {
                pseudonym: "Witness Restore".into(),
                ..step(&e)
            },
            &wpa_officer,
        ))
        .await
        .expect("admit")
        .into_inner();
    client
        .close_protection(authed(
            pb::ProtectionStepRequest {
                restore_identity: true,
                reason: "trial over; the witness asked to be named".into(),
                ..step(&e)
            },
            &wpa_officer,
        ))
        .await
        .expect("close with restore");
    let (seen, _) = referral_bytes(app, "police-nairobi", &id).await;
    assert!(!seen.protection_applies);
    assert_eq!(
        seen.draft
            .expect("draft")
            .subject
            .expect("subject")
            .given_name,
        "Canarygiven Zqx"
    );
    let timeline = routing(app)
        .await
        .get_timeline(authed(
            pb::GetTimelineRequest {
                referral: id.clone(),
                ..Default::default()
            },
            &police,
        ))
        .await
        .expect("timeline")
        .into_inner();
    assert!(
        timeline
            .events
            .iter()
            .any(|e| e.event == "ProtectionLifted")
    );
}
