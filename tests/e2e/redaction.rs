//! What redaction looks like to a client: masks keep a hint, every withheld
//! field is listed with its action and reason, and consent changes what
//! consent-bound agencies see from the next reply on.

use refnet_api::v1 as pb;

use crate::{
    common::{TestApp, authed, canary_draft},
    on_both,
};

on_both!(
    labour_sees_masks_and_the_reasons,
    consent_changes_the_next_reply,
    policy_errors_and_unknown_roles,
    free_text_without_its_subject_is_refused
);

fn subject(reply: &pb::GetReferralResponse) -> pb::Subject {
    reply
        .referral
        .as_ref()
        .and_then(|r| r.draft.as_ref())
        .and_then(|d| d.subject.clone())
        .expect("subject")
}

fn withheld(
    reply: &pb::GetReferralResponse,
    path: &str,
) -> Option<(pb::RedactionAction, pb::RedactionReason)> {
    reply.redactions.iter().find(|r| r.path == path).map(|r| {
        (
            pb::RedactionAction::try_from(r.action).expect("action"),
            pb::RedactionReason::try_from(r.reason).expect("reason"),
        )
    })
}

async fn labour_sees_masks_and_the_reasons(app: &TestApp) {
    let mut draft = canary_draft();
    draft.consent = Some(pb::Consent {
        given: true,
        by: pb::ConsentBy::Subject as i32,
        agency_kinds: vec![pb::AgencyKind::Labour as i32],
        ..Default::default()
    });
    let referral = app
        .file("police-nairobi", draft)
        .await
        .referral
        .expect("referral");
    app.make_party(&referral.id, "labour-nairobi").await;
    let reply = app.get_as("labour-nairobi", &referral.id).await;
    let s = subject(&reply);
    assert_eq!(s.given_name, "C. Z.");
    assert_eq!(s.family_name, "C. Z.");
    assert_eq!(
        s.phones,
        vec!["+•••••••••222".to_owned(), "+•••••••••654".to_owned()]
    );
    assert_eq!(s.national_id, "•••••926");
    assert_eq!(s.email, "c•••@•••");
    assert_eq!(s.current_location, "", "LOCATION dropped");
    assert_eq!(
        s.date_of_birth, "25-29",
        "QUASI_IDENTIFIER generalised to an age band"
    );
    assert_eq!(
        s.county_of_origin, "Kisumu",
        "county kept by default generalisation"
    );
    assert_eq!(s.sub_county_of_origin, "", "sub-county dropped");
    use pb::{RedactionAction as A, RedactionReason as R};
    assert_eq!(
        withheld(&reply, "referral.draft.subject.given_name"),
        Some((A::Mask, R::AgencyPolicy))
    );
    assert_eq!(
        withheld(&reply, "referral.draft.subject.current_location"),
        Some((A::Drop, R::AgencyPolicy))
    );
    assert_eq!(
        withheld(&reply, "referral.draft.subject.date_of_birth"),
        Some((A::Generalise, R::AgencyPolicy))
    );
    assert_eq!(
        withheld(&reply, "referral.draft.special.health_notes"),
        Some((A::Drop, R::AgencyPolicy))
    );
    // The narrative is readable (CASE) with the subject's identifiers masked in it
    // and the suspect's shown (LABOUR sees SUSPECT).
    let narrative = reply
        .referral
        .as_ref()
        .and_then(|r| r.draft.as_ref())
        .and_then(|d| d.case_facts.as_ref())
        .map(|c| c.narrative.clone())
        .expect("narrative");
    assert!(
        narrative.starts_with("Canarynarrative: C. Z."),
        "{narrative}"
    );
    assert!(
        !narrative.contains("Canarygiven") && !narrative.contains("0700 111 222"),
        "{narrative}"
    );
    assert!(narrative.contains("Canarysuspect Zqx"), "{narrative}");
    let free_text = reply
        .redactions
        .iter()
        .find(|r| {
            r.path == "referral.draft.case_facts.narrative"
                && r.class == pb::Sensitivity::Identity as i32
        })
        .expect("narrative redaction listed");
    assert!(free_text.replaced >= 3, "{free_text:?}");
}

async fn consent_changes_the_next_reply(app: &TestApp) {
    let referral = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    app.make_party(&referral.id, "ngo-shelter-nairobi").await;
    app.make_party(&referral.id, "health-nairobi").await;
    // canary_draft consents to NGO only.
    let ngo = app.get_as("ngo-shelter-nairobi", &referral.id).await;
    assert_eq!(subject(&ngo).given_name, "Canarygiven Zqx");
    let health = app.get_as("health-nairobi", &referral.id).await;
    let pseudonym = subject(&health).given_name;
    assert!(pseudonym.starts_with("Subject-"), "{pseudonym}");
    assert_eq!(subject(&health).family_name, "");
    assert_eq!(
        withheld(&health, "referral.draft.subject.given_name"),
        Some((
            pb::RedactionAction::Pseudonymise,
            pb::RedactionReason::NoConsent
        ))
    );
    // The pseudonym is stable across replies, and the same in free text.
    assert_eq!(
        subject(&app.get_as("health-nairobi", &referral.id).await).given_name,
        pseudonym
    );
    let narrative = health
        .referral
        .and_then(|r| r.draft)
        .and_then(|d| d.case_facts)
        .map(|c| c.narrative)
        .expect("narrative");
    assert!(
        narrative.contains(&pseudonym) && !narrative.contains("Canarygiven"),
        "{narrative}"
    );

    let mut client = app.intake().await;
    let token = app.officer("police-nairobi");
    client
        .withdraw_consent(authed(
            pb::WithdrawConsentRequest {
                referral: referral.id.clone(),
                expected_version: 1,
                agency_kinds: vec![pb::AgencyKind::Ngo as i32],
            },
            &token,
        ))
        .await
        .expect("withdraw");
    let ngo = app.get_as("ngo-shelter-nairobi", &referral.id).await;
    assert_eq!(
        subject(&ngo).given_name,
        pseudonym,
        "withdrawn: the NGO now sees the pseudonym"
    );
    assert_eq!(
        withheld(&ngo, "referral.draft.subject.given_name"),
        Some((
            pb::RedactionAction::Pseudonymise,
            pb::RedactionReason::NoConsent
        ))
    );
    // The police act on a legal basis: consent does not limit them.
    assert_eq!(
        subject(&app.get_as("police-nairobi", &referral.id).await).given_name,
        "Canarygiven Zqx"
    );

    client
        .record_consent(authed(
            pb::RecordConsentRequest {
                referral: referral.id.clone(),
                expected_version: 2,
                consent: Some(pb::Consent {
                    given: true,
                    by: pb::ConsentBy::Subject as i32,
                    agency_kinds: vec![pb::AgencyKind::Health as i32],
                    ..Default::default()
                }),
            },
            &token,
        ))
        .await
        .expect("record");
    assert_eq!(
        subject(&app.get_as("health-nairobi", &referral.id).await).given_name,
        "Canarygiven Zqx"
    );
    assert_eq!(
        subject(&app.get_as("ngo-shelter-nairobi", &referral.id).await).given_name,
        pseudonym
    );
}

async fn policy_errors_and_unknown_roles(app: &TestApp) {
    // Auditors get operational data only; every non-operational field says ROLE.
    let referral = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    let reply = app
        .intake()
        .await
        .get_referral(authed(
            pb::GetReferralRequest {
                referral: referral.id.clone(),
            },
            &app.token("police-nairobi", &["auditor"]),
        ))
        .await
        .expect("auditor read")
        .into_inner();
    let got = reply.referral.expect("referral");
    assert_eq!(got.id, referral.id);
    assert_eq!(got.reference_code, referral.reference_code);
    let draft = got.draft.expect("draft");
    assert_eq!(draft.urgency, 0, "CASE withheld from auditors");
    assert_eq!(draft.subject.map(|s| s.given_name).unwrap_or_default(), "");
    assert!(!reply.redactions.is_empty());
    assert!(
        reply
            .redactions
            .iter()
            .all(|r| r.reason == pb::RedactionReason::Role as i32)
    );
}

/// The boundary refuses a reply that holds free text but names no subject
/// (it could only be redacted by pattern, so a name would pass); about the
/// referral, it resolves the subject itself and the name is withheld.
async fn free_text_without_its_subject_is_refused(app: &TestApp) {
    use refnet_core::{
        ServiceError,
        auth::Principal,
        boundary::{CallInfo, Concerning, reply},
        principal::Role,
    };
    let filed = app.file("police-nairobi", canary_draft()).await;
    let referral = filed.referral.expect("referral");
    let id: uuid::Uuid = referral.id.parse().expect("uuid");
    app.make_party(&referral.id, "labour-nairobi").await;
    let viewer = Principal {
        officer_id: "officer-labour-nairobi".into(),
        agency_id: "labour-nairobi".into(),
        agency_kind: pb::AgencyKind::Labour,
        roles: [Role::Officer].into_iter().collect(),
    };
    let call = CallInfo {
        rpc: "/refnet.v1.RoutingService/GetHandoff".into(),
        trace_id: None,
    };
    let handoff = || pb::Handoff {
        referral_id: referral.id.clone(),
        decline_reason: "Canarygiven Zqx has no shelter place here".into(),
        ..Default::default()
    };
    let refused = reply(&app.ctx, &viewer, &call, Concerning::Nothing, handoff()).await;
    assert!(
        matches!(refused, Err(ServiceError::Internal(_))),
        "free text about nothing must be refused: {refused:?}"
    );
    // Without free text the same message is about nothing and passes.
    let plain = pb::Handoff {
        decline_reason: String::new(),
        ..handoff()
    };
    reply(&app.ctx, &viewer, &call, Concerning::Nothing, plain)
        .await
        .expect("no free text");
    let redacted = reply(
        &app.ctx,
        &viewer,
        &call,
        Concerning::Referral(id),
        handoff(),
    )
    .await
    .expect("about the referral")
    .into_inner();
    assert!(
        !redacted.decline_reason.contains("Canarygiven"),
        "the subject's name is withheld from labour: {}",
        redacted.decline_reason
    );
}
