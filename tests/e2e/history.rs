//! History-aware redaction: an amendment that corrects a subject's name or
//! phone number never un-redacts text written before it. Messages, decline
//! reasons, timelines and both streams written while the record said
//! "Kerubo" and "0700 123 456" still hide those values from every viewer
//! without identity rights after the record says "Keruba" and
//! "0700 123 457", and from everyone but the WPA once the person is a
//! protected witness. The record's earlier identifiers are kept sealed under
//! the subject's data key (`SealedRecord::former`).

use std::time::Duration;

use prost::Message;
use refnet_api::v1::{
    self as pb, routing_service_client::RoutingServiceClient,
    witness_protection_service_client::WitnessProtectionServiceClient,
};
use tonic::transport::Channel;

use crate::{
    common::{TestApp, authed, canary_draft, new_key},
    on_both,
    routing::{await_handoffs, inbox},
};

on_both!(an_amendment_never_reveals_an_earlier_identifier);

/// Every spelling of the old and new name and number that must stay hidden.
const HIDDEN: &[&str] = &[
    "Kerubo",
    "Keruba",
    "Histwanja",
    "123456",
    "123 456",
    "123457",
    "123 457",
];

/// A Ugandan adult needing shelter, filed in Nairobi (routed to the NGO
/// shelter and to immigration), who consented to share with health workers
/// only: the NGO and labour officers see a pseudonym, never the identity.
fn draft(given_name: &str, phone: &str) -> pb::ReferralDraft {
    let mut draft = canary_draft();
    let subject = draft.subject.as_mut().expect("subject");
    subject.given_name = given_name.into();
    subject.family_name = "Histwanja".into();
    subject.aliases.clear();
    subject.phones = vec![phone.into()];
    subject.next_of_kin.clear();
    subject.nationality = "UG".into();
    let case = draft.case_facts.as_mut().expect("case");
    case.purposes = vec![pb::Purpose::SexualExploitation as i32];
    case.other_purpose.clear();
    case.narrative = format!("{given_name} Histwanja was recruited with a false job offer.");
    draft.suspects[0].employer.clear();
    draft.suspects[0].recruitment_agency.clear();
    draft.needs = vec![pb::Need::Shelter as i32];
    draft.county = "Nairobi".into();
    draft.consent = Some(pb::Consent {
        given: true,
        by: pb::ConsentBy::Subject as i32,
        agency_kinds: vec![pb::AgencyKind::Health as i32],
        ..Default::default()
    });
    draft
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every item a stream sends until it has been quiet for half a second.
async fn drain<T: Message + Default>(mut stream: tonic::Streaming<T>) -> Vec<u8> {
    let mut bytes = Vec::new();
    while let Ok(Ok(Some(item))) =
        tokio::time::timeout(Duration::from_millis(500), stream.message()).await
    {
        bytes.extend(item.encode_to_vec());
    }
    bytes
}

/// Everything `agency` can read about `referral` through every read RPC and
/// both streams (its inbox too when it received a handoff), encoded.
async fn everything_seen_by(
    app: &TestApp,
    agency: &str,
    referral: &str,
    handoff: Option<&str>,
) -> Vec<(&'static str, Vec<u8>)> {
    let token = app.officer(agency);
    let channel = app.channel().await;
    let mut routing = RoutingServiceClient::new(channel.clone());
    let mut intake = pb::intake_service_client::IntakeServiceClient::new(channel);
    let mut seen = vec![(
        "GetReferral",
        app.get_as(agency, referral).await.encode_to_vec(),
    )];
    let list = intake
        .list_referrals(authed(pb::ListReferralsRequest::default(), &token))
        .await
        .expect("list referrals")
        .into_inner();
    seen.push(("ListReferrals", list.encode_to_vec()));
    let timeline = routing
        .get_timeline(authed(
            pb::GetTimelineRequest {
                referral: referral.into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("timeline")
        .into_inner();
    seen.push(("GetTimeline", timeline.encode_to_vec()));
    let messages = routing
        .list_messages(authed(
            pb::ListMessagesRequest {
                referral: referral.into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("messages")
        .into_inner();
    assert!(messages.messages.len() >= 2, "{agency} reads the thread");
    seen.push(("ListMessages", messages.encode_to_vec()));
    let watch = routing
        .watch_referral(authed(
            pb::WatchReferralRequest {
                referral: referral.into(),
                cursor: String::new(),
                from_beginning: true,
            },
            &token,
        ))
        .await
        .expect("watch referral")
        .into_inner();
    seen.push(("WatchReferral", drain(watch).await));
    if let Some(handoff) = handoff {
        let reply = routing
            .get_handoff(authed(
                pb::GetHandoffRequest {
                    handoff_id: handoff.into(),
                },
                &token,
            ))
            .await
            .expect("handoff")
            .into_inner();
        seen.push(("GetHandoff", reply.encode_to_vec()));
        let list = routing
            .list_inbox(authed(pb::ListInboxRequest::default(), &token))
            .await
            .expect("inbox")
            .into_inner();
        seen.push(("ListInbox", list.encode_to_vec()));
        let watch = routing
            .watch_inbox(authed(
                pb::WatchInboxRequest {
                    cursor: String::new(),
                    from_beginning: true,
                },
                &token,
            ))
            .await
            .expect("watch inbox")
            .into_inner();
        seen.push(("WatchInbox", drain(watch).await));
    }
    seen
}

async fn assert_hidden_from(app: &TestApp, agency: &str, referral: &str, handoff: Option<&str>) {
    for (rpc, bytes) in everything_seen_by(app, agency, referral, handoff).await {
        for needle in HIDDEN {
            assert!(
                !contains(&bytes, needle),
                "{agency} reads {needle:?} in {rpc}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
}

async fn post(routing: &mut RoutingServiceClient<Channel>, app: &TestApp, id: &str, body: &str) {
    routing
        .post_message(authed(
            pb::PostMessageRequest {
                referral_id: id.into(),
                idempotency_key: new_key(),
                body: body.into(),
            },
            &app.officer("police-nairobi"),
        ))
        .await
        .expect("message");
}

async fn an_amendment_never_reveals_an_earlier_identifier(app: &TestApp) {
    let filed = app
        .file("police-nairobi", draft("Kerubo", "+254700123456"))
        .await
        .referral
        .expect("referral");
    let id = filed.id.clone();
    await_handoffs(app, &id, 2).await;
    app.make_party(&id, "labour-nairobi").await;
    let mut routing = RoutingServiceClient::new(app.channel().await);

    // Written while the record says Kerubo, 0700 123 456.
    post(
        &mut routing,
        app,
        &id,
        "Kerubo Histwanja called from 0700 123 456 about her passport",
    )
    .await;
    let ngo = app.officer("ngo-shelter-nairobi");
    let handoff = inbox(app, "ngo-shelter-nairobi")
        .await
        .into_iter()
        .find(|h| h.referral_id == id)
        .expect("the NGO's handoff");
    let acked = routing
        .acknowledge_handoff(authed(
            pb::HandoffTransitionRequest {
                handoff_id: handoff.id.clone(),
                expected_version: handoff.version,
                reason: String::new(),
            },
            &ngo,
        ))
        .await
        .expect("acknowledge")
        .into_inner();
    routing
        .decline_handoff(authed(
            pb::HandoffTransitionRequest {
                handoff_id: handoff.id.clone(),
                expected_version: acked.version,
                reason: "No bed for Kerubo tonight; the recruiter knows 0700123456".into(),
            },
            &ngo,
        ))
        .await
        .expect("decline");

    // The police desk corrects the spelling and the number.
    let current = app
        .get_as("police-nairobi", &id)
        .await
        .referral
        .expect("referral");
    pb::intake_service_client::IntakeServiceClient::new(app.channel().await)
        .amend_referral(authed(
            pb::AmendReferralRequest {
                referral: id.clone(),
                expected_version: current.version,
                draft: Some(draft("Keruba", "+254700123457")),
            },
            &app.officer("police-nairobi"),
        ))
        .await
        .expect("amend");
    post(
        &mut routing,
        app,
        &id,
        "Correction: Keruba Histwanja, now on 0700 123 457",
    )
    .await;

    // The police desk sees both spellings: the test looks where they are.
    let police = everything_seen_by(app, "police-nairobi", &id, None).await;
    let all: Vec<u8> = police.iter().flat_map(|(_, b)| b.clone()).collect();
    for needle in ["Kerubo", "Keruba", "0700 123 456", "0700 123 457"] {
        assert!(contains(&all, needle), "the filer reads {needle:?}");
    }
    // Without identity rights, neither the old nor the new value, anywhere.
    assert_hidden_from(app, "ngo-shelter-nairobi", &id, Some(&handoff.id)).await;
    assert_hidden_from(app, "labour-nairobi", &id, None).await;

    // Once the person is a protected witness, only the WPA reads any of it.
    let mut wpa = WitnessProtectionServiceClient::new(app.channel().await);
    let submitted = wpa
        .submit_protection_request(authed(
            pb::SubmitProtectionRequestRequest {
                referral_id: id.clone(),
                idempotency_key: new_key(),
                grounds: "Key witness".into(),
                threat_assessment: "The recruiter is looking for her".into(),
                measures: vec![pb::ProtectionMeasure::VideoLinkTestimony as i32],
                urgency: pb::Urgency::High as i32,
                threat_sources: String::new(),
            },
            &app.officer("police-nairobi"),
        ))
        .await
        .expect("request protection")
        .into_inner();
    let step = |r: &pb::ProtectionRequest| pb::ProtectionStepRequest {
        id: r.id.clone(),
        expected_version: r.version,
        ..Default::default()
    };
    let wpa_officer = app.officer("wpa");
    let assessing = wpa
        .begin_assessment(authed(step(&submitted), &wpa_officer))
        .await
        .expect("assess")
        .into_inner();
    wpa.admit_to_programme(authed(step(&assessing), &wpa_officer))
        .await
        .expect("admit");
    let seen = app.get_as("wpa", &id).await.encode_to_vec();
    assert!(contains(&seen, "Keruba"), "the WPA reads the name");
    let reply = app.get_as("labour-nairobi", &id).await;
    assert!(
        reply
            .redactions
            .iter()
            .any(|r| r.path.contains("given_name")
                && r.reason == pb::RedactionReason::Protected as i32),
        "a protected subject without consent is withheld as PROTECTED: {:?}",
        reply.redactions
    );
    assert_hidden_from(app, "police-nairobi", &id, None).await;
    assert_hidden_from(app, "immigration-nairobi", &id, None).await;
    assert_hidden_from(app, "ngo-shelter-nairobi", &id, Some(&handoff.id)).await;
    assert_hidden_from(app, "labour-nairobi", &id, None).await;
}
