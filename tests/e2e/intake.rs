//! IntakeService scenarios: filing and reading back, idempotency, amending,
//! consent, listing with keyset pages, tenancy and possible duplicates.

use refnet_api::v1::{self as pb};
use tonic::Code;

use crate::{
    common::{TestApp, authed, canary_draft, fixtures, new_key, violations},
    on_both,
};

on_both!(
    files_and_reads_back_every_field,
    every_fixture_files_and_reads_back,
    retry_with_the_same_key_returns_the_same_referral,
    amend_checks_the_version,
    consent_is_recorded_and_withdrawn,
    list_pages_by_keyset_with_filters,
    page_tokens_cannot_be_forged_or_reused,
    other_agencies_get_not_found,
    possible_duplicates_are_reported,
    adult_without_means_is_accepted_but_incomplete,
    roles_and_agency_kinds_are_enforced,
    empty_requests_name_their_missing_fields,
);

/// The draft as the server normalises it (what a read returns).
fn normalised(mut draft: pb::ReferralDraft) -> pb::ReferralDraft {
    if let Some(consent) = draft.consent.as_mut() {
        consent.recorded_at = None;
        consent.recorded_by_officer.clear();
    }
    draft
}

async fn files_and_reads_back_every_field(app: &TestApp) {
    let draft = canary_draft();
    let filed = app.file("police-nairobi", draft.clone()).await;
    assert!(!filed.replayed);
    let referral = filed.referral.expect("referral");
    assert_eq!(referral.version, 1);
    assert_eq!(referral.status, pb::ReferralStatus::Filed as i32);
    assert!(referral.reference_code.starts_with("RN-"));
    assert_eq!(referral.filing_agency_id, "police-nairobi");
    assert_eq!(referral.filing_agency_kind, pb::AgencyKind::Police as i32);
    assert_eq!(referral.filed_by_officer, "officer-police-nairobi");
    assert!(referral.missing_elements.is_empty());
    let consent = referral
        .draft
        .as_ref()
        .and_then(|d| d.consent.clone())
        .expect("consent");
    assert_eq!(consent.recorded_by_officer, "officer-police-nairobi");
    assert!(consent.recorded_at.is_some());

    // The filer (POLICE) sees its column: special-category data is withheld, and says so.
    let special = referral
        .draft
        .as_ref()
        .and_then(|d| d.special.clone())
        .expect("special");
    assert_eq!(special, pb::SpecialCategory::default());
    let withheld: Vec<&str> = filed.redactions.iter().map(|r| r.path.as_str()).collect();
    for path in [
        "referral.draft.special.health_notes",
        "referral.draft.special.injuries",
        "referral.draft.special.sexual_violence",
        "referral.draft.special.psychosocial_notes",
    ] {
        assert!(withheld.contains(&path), "{path} in {withheld:?}");
    }
    assert!(
        filed
            .redactions
            .iter()
            .all(|r| r.reason == pb::RedactionReason::AgencyPolicy as i32)
    );

    // The WPA, once party, sees every field exactly as filed, by id or by code.
    app.make_party(&referral.id, "wpa").await;
    for reference in [referral.id.clone(), referral.reference_code.to_lowercase()] {
        let got = app.get_as("wpa", &reference).await;
        assert!(got.redactions.is_empty(), "{:?}", got.redactions);
        let got = got.referral.expect("referral");
        assert_eq!(got.id, referral.id);
        assert_eq!(
            normalised(got.draft.clone().expect("draft")),
            normalised(draft.clone())
        );
        let mut expected = referral.clone();
        expected.draft = got.draft.clone();
        // The status is routing's, moving on its own: this draft routes
        // nowhere (Kisumu has no agency its rules name), so it waits in triage.
        assert!(
            [
                pb::ReferralStatus::Filed as i32,
                pb::ReferralStatus::NeedsRouting as i32
            ]
            .contains(&got.status),
            "{:?}",
            got.status
        );
        expected.status = got.status;
        assert_eq!(
            got, expected,
            "apart from what POLICE may not see and routing's status, a read returns what filing returned"
        );
    }
}

async fn every_fixture_files_and_reads_back(app: &TestApp) {
    // The whole synthetic set must be accepted as filed by its agencies.
    let all = fixtures();
    let mut handles = Vec::new();
    for chunk in all.chunks(all.len().div_ceil(8)) {
        let chunk = chunk.to_vec();
        let channel = app.channel().await;
        let tokens: Vec<String> = chunk
            .iter()
            .map(|f| app.officer(f.filer().expect("a demo filer")))
            .collect();
        handles.push(tokio::spawn(async move {
            let mut client = pb::intake_service_client::IntakeServiceClient::new(channel);
            let mut filed = Vec::new();
            for (fixture, token) in chunk.iter().zip(tokens) {
                let referral = client
                    .file_referral(authed(
                        pb::FileReferralRequest {
                            idempotency_key: new_key(),
                            draft: Some(fixture.draft()),
                        },
                        &token,
                    ))
                    .await
                    .unwrap_or_else(|s| {
                        panic!(
                            "{} rejected: {:?} {:?}",
                            fixture.fixture_id,
                            s.message(),
                            violations(&s)
                        )
                    })
                    .into_inner()
                    .referral
                    .expect("referral");
                filed.push((referral.id, fixture.clone()));
            }
            filed
        }));
    }
    let mut filed = Vec::new();
    for handle in handles {
        filed.extend(handle.await.expect("worker"));
    }
    assert_eq!(app.count("referrals").await, all.len() as i64);

    // Read back in full by the WPA (which sees every class) for a sample.
    for (id, fixture) in filed.iter().step_by(10) {
        app.make_party(id, "wpa").await;
        let got = app.get_as("wpa", id).await.referral.expect("referral");
        let draft = got.draft.expect("draft");
        let subject = draft.subject.expect("subject");
        assert_eq!(subject.given_name, fixture.subject.given_name);
        assert_eq!(
            subject.phones, fixture.subject.phones,
            "{}",
            fixture.fixture_id
        );
        assert_eq!(
            got.subject_is_child,
            fixture.child_today(),
            "{}",
            fixture.fixture_id
        );
        assert_eq!(
            draft.case_facts.map(|c| c.narrative),
            Some(fixture.case.narrative.clone())
        );
    }
}

async fn retry_with_the_same_key_returns_the_same_referral(app: &TestApp) {
    let mut client = app.intake().await;
    let token = app.officer("immigration-nairobi");
    let key = new_key();
    let request = pb::FileReferralRequest {
        idempotency_key: key.clone(),
        draft: Some(canary_draft()),
    };
    let first = client
        .file_referral(authed(request.clone(), &token))
        .await
        .expect("first")
        .into_inner();
    let second = client
        .file_referral(authed(request.clone(), &token))
        .await
        .expect("retry")
        .into_inner();
    assert!(!first.replayed);
    assert!(second.replayed);
    // The replay is the stored referral now: routing may have moved its status on.
    let mut replayed = second.referral.clone().expect("referral");
    assert!(
        [
            pb::ReferralStatus::Filed as i32,
            pb::ReferralStatus::NeedsRouting as i32
        ]
        .contains(&replayed.status)
    );
    replayed.status = pb::ReferralStatus::Filed as i32;
    assert_eq!(first.referral, Some(replayed));
    assert_eq!(app.count("referrals").await, 1);
    assert_eq!(app.count(crate::common::INTAKE_EVENTS).await, 1);

    // The same key with a different referral is refused, naming the key.
    let mut other = canary_draft();
    other.urgency = pb::Urgency::Low as i32;
    let status = client
        .file_referral(authed(
            pb::FileReferralRequest {
                idempotency_key: key.clone(),
                draft: Some(other),
            },
            &token,
        ))
        .await
        .expect_err("key reuse");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations(&status), vec!["idempotency_key".to_owned()]);

    // Keys are per agency: another agency may use the same key.
    let elsewhere = client
        .file_referral(authed(request, &app.officer("police-nairobi")))
        .await
        .expect("other agency")
        .into_inner();
    assert!(!elsewhere.replayed);
    assert_ne!(
        elsewhere.referral.map(|r| r.id),
        first.referral.map(|r| r.id)
    );
}

async fn amend_checks_the_version(app: &TestApp) {
    let referral = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    let mut client = app.intake().await;
    let token = app.officer("police-nairobi");
    let mut draft = canary_draft();
    draft.urgency = pb::Urgency::Critical as i32;
    draft.subject.as_mut().expect("subject").phones = vec!["0711 000 111".into()];
    let amended = client
        .amend_referral(authed(
            pb::AmendReferralRequest {
                referral: referral.id.clone(),
                expected_version: 1,
                draft: Some(draft.clone()),
            },
            &token,
        ))
        .await
        .expect("amend")
        .into_inner()
        .referral
        .expect("referral");
    assert_eq!(amended.version, 2);
    let got = amended.draft.expect("draft");
    assert_eq!(got.urgency, pb::Urgency::Critical as i32);
    assert_eq!(
        got.subject.expect("subject").phones,
        vec!["+254711000111".to_owned()]
    );
    assert_eq!(
        got.consent.map(|c| c.given),
        Some(true),
        "amend keeps consent"
    );

    // The same amendment against version 1 again is stale.
    let stale = client
        .amend_referral(authed(
            pb::AmendReferralRequest {
                referral: referral.id.clone(),
                expected_version: 1,
                draft: Some(draft.clone()),
            },
            &token,
        ))
        .await
        .expect_err("stale");
    assert_eq!(stale.code(), Code::Aborted);

    // A non-party cannot tell the referral exists.
    let foreign = client
        .amend_referral(authed(
            pb::AmendReferralRequest {
                referral: referral.id.clone(),
                expected_version: 2,
                draft: Some(draft.clone()),
            },
            &app.officer("police-mombasa"),
        ))
        .await
        .expect_err("non-party");
    assert_eq!(foreign.code(), Code::NotFound);

    // A bad amendment names its fields and changes nothing.
    draft.subject.as_mut().expect("subject").email = "nope".into();
    let bad = client
        .amend_referral(authed(
            pb::AmendReferralRequest {
                referral: referral.id.clone(),
                expected_version: 0,
                draft: Some(draft),
            },
            &token,
        ))
        .await
        .expect_err("invalid");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        violations(&bad),
        vec![
            "expected_version".to_owned(),
            "draft.subject.email".to_owned()
        ]
    );
    assert_eq!(app.count(crate::common::INTAKE_EVENTS).await, 2);
}

async fn consent_is_recorded_and_withdrawn(app: &TestApp) {
    let referral = app
        .file("labour-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    let mut client = app.intake().await;
    let token = app.officer("labour-nairobi");
    let recorded = client
        .record_consent(authed(
            pb::RecordConsentRequest {
                referral: referral.reference_code.clone(),
                expected_version: 1,
                consent: Some(pb::Consent {
                    given: true,
                    by: pb::ConsentBy::Subject as i32,
                    agency_kinds: vec![
                        pb::AgencyKind::Ngo as i32,
                        pb::AgencyKind::Health as i32,
                        pb::AgencyKind::TrustFund as i32,
                    ],
                    ..Default::default()
                }),
            },
            &token,
        ))
        .await
        .expect("record")
        .into_inner()
        .referral
        .expect("referral");
    assert_eq!(recorded.version, 2);
    let consent = recorded.draft.and_then(|d| d.consent).expect("consent");
    assert_eq!(consent.agency_kinds.len(), 3);
    assert_eq!(consent.recorded_by_officer, "officer-labour-nairobi");

    let withdrawn = client
        .withdraw_consent(authed(
            pb::WithdrawConsentRequest {
                referral: referral.id.clone(),
                expected_version: 2,
                agency_kinds: vec![pb::AgencyKind::Health as i32],
            },
            &token,
        ))
        .await
        .expect("withdraw")
        .into_inner()
        .referral
        .expect("referral");
    let consent = withdrawn.draft.and_then(|d| d.consent).expect("consent");
    assert!(consent.given);
    assert_eq!(
        consent.agency_kinds,
        vec![pb::AgencyKind::Ngo as i32, pb::AgencyKind::TrustFund as i32]
    );

    let all = client
        .withdraw_consent(authed(
            pb::WithdrawConsentRequest {
                referral: referral.id.clone(),
                expected_version: 3,
                agency_kinds: vec![],
            },
            &token,
        ))
        .await
        .expect("withdraw all")
        .into_inner()
        .referral
        .expect("referral");
    let consent = all.draft.and_then(|d| d.consent).expect("consent");
    assert!(!consent.given);
    assert!(consent.agency_kinds.is_empty());

    let stale = client
        .withdraw_consent(authed(
            pb::WithdrawConsentRequest {
                referral: referral.id.clone(),
                expected_version: 3,
                agency_kinds: vec![],
            },
            &token,
        ))
        .await
        .expect_err("stale");
    assert_eq!(stale.code(), Code::Aborted);
    assert_eq!(app.count(crate::common::INTAKE_EVENTS).await, 4);
}

async fn file_n(
    app: &TestApp,
    agency: &str,
    n: usize,
    adjust: impl Fn(usize, &mut pb::ReferralDraft),
) -> Vec<pb::Referral> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut draft = canary_draft();
        adjust(i, &mut draft);
        out.push(app.file(agency, draft).await.referral.expect("referral"));
    }
    out
}

async fn list_all(
    app: &TestApp,
    token: &str,
    mut request: pb::ListReferralsRequest,
) -> Vec<Vec<pb::ReferralSummary>> {
    let mut client = app.intake().await;
    let mut pages = Vec::new();
    loop {
        let page = client
            .list_referrals(authed(request.clone(), token))
            .await
            .expect("list")
            .into_inner();
        pages.push(page.referrals);
        if page.next_page_token.is_empty() {
            return pages;
        }
        request.page_token = page.next_page_token;
    }
}

async fn list_pages_by_keyset_with_filters(app: &TestApp) {
    let filed = file_n(app, "police-nairobi", 7, |i, d| {
        if i % 2 == 0 {
            d.urgency = pb::Urgency::Critical as i32;
            d.county = "Mombasa".into();
        }
    })
    .await;
    file_n(app, "police-mombasa", 2, |_, _| {}).await;
    let token = app.officer("police-nairobi");

    let pages = list_all(
        app,
        &token,
        pb::ListReferralsRequest {
            page_size: 3,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 1]
    );
    let ids: Vec<String> = pages.concat().into_iter().map(|s| s.id).collect();
    let mut expected: Vec<String> = filed.iter().map(|r| r.id.clone()).collect();
    expected.reverse();
    assert_eq!(
        ids, expected,
        "newest first, every referral once, none of another agency's"
    );

    let critical = list_all(
        app,
        &token,
        pb::ListReferralsRequest {
            urgencies: vec![pb::Urgency::Critical as i32],
            county: "mombasa".into(),
            page_size: 2,
            ..Default::default()
        },
    )
    .await
    .concat();
    assert_eq!(critical.len(), 4);
    assert!(
        critical
            .iter()
            .all(|s| s.urgency == pb::Urgency::Critical as i32 && s.county == "Mombasa")
    );

    let by_filer = list_all(
        app,
        &token,
        pb::ListReferralsRequest {
            filing_agency_id: "police-mombasa".into(),
            ..Default::default()
        },
    )
    .await
    .concat();
    assert!(
        by_filer.is_empty(),
        "another agency's referrals stay invisible even when asked for"
    );

    let statuses = list_all(
        app,
        &token,
        pb::ListReferralsRequest {
            statuses: vec![pb::ReferralStatus::Closed as i32],
            ..Default::default()
        },
    )
    .await
    .concat();
    assert!(statuses.is_empty());

    let future = prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() + 3600,
        nanos: 0,
    };
    let past = prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() - 3600,
        nanos: 0,
    };
    let window = list_all(
        app,
        &token,
        pb::ListReferralsRequest {
            filed_after: Some(past),
            filed_before: Some(future),
            ..Default::default()
        },
    )
    .await
    .concat();
    assert_eq!(window.len(), 7);
    let none = list_all(
        app,
        &token,
        pb::ListReferralsRequest {
            filed_after: Some(future),
            ..Default::default()
        },
    )
    .await
    .concat();
    assert!(none.is_empty());

    let mut client = app.intake().await;
    let bad = client
        .list_referrals(authed(
            pb::ListReferralsRequest {
                page_size: 1000,
                urgencies: vec![42],
                county: "Gotham".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect_err("bad filters");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        violations(&bad),
        vec![
            "page_size".to_owned(),
            "urgencies[0]".to_owned(),
            "county".to_owned()
        ]
    );
}

async fn page_tokens_cannot_be_forged_or_reused(app: &TestApp) {
    file_n(app, "police-nairobi", 3, |_, _| {}).await;
    let token = app.officer("police-nairobi");
    let mut client = app.intake().await;
    let first = client
        .list_referrals(authed(
            pb::ListReferralsRequest {
                page_size: 1,
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("list")
        .into_inner();
    assert!(!first.next_page_token.is_empty());

    let mut forged = first.next_page_token.clone();
    let last = forged.pop().expect("char");
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let cases = [
        (
            pb::ListReferralsRequest {
                page_size: 1,
                page_token: forged,
                ..Default::default()
            },
            token.clone(),
        ),
        (
            pb::ListReferralsRequest {
                page_size: 1,
                page_token: "not-a-token".into(),
                ..Default::default()
            },
            token.clone(),
        ),
        // Same token, different filters.
        (
            pb::ListReferralsRequest {
                page_size: 1,
                page_token: first.next_page_token.clone(),
                county: "Kisumu".into(),
                ..Default::default()
            },
            token.clone(),
        ),
        // Same token, another agency.
        (
            pb::ListReferralsRequest {
                page_size: 1,
                page_token: first.next_page_token.clone(),
                ..Default::default()
            },
            app.officer("police-mombasa"),
        ),
    ];
    for (request, token) in cases {
        let status = client
            .list_referrals(authed(request, &token))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violations(&status), vec!["page_token".to_owned()]);
    }
    // A different page size with the same filters is fine.
    client
        .list_referrals(authed(
            pb::ListReferralsRequest {
                page_size: 2,
                page_token: first.next_page_token,
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("page size may change");
}

async fn other_agencies_get_not_found(app: &TestApp) {
    let referral = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    let mut client = app.intake().await;
    for agency in [
        "police-mombasa",
        "ngo-shelter-nairobi",
        "wpa",
        "secretariat",
    ] {
        let status = client
            .get_referral(authed(
                pb::GetReferralRequest {
                    referral: referral.id.clone(),
                },
                &app.officer(agency),
            ))
            .await
            .expect_err("not party");
        assert_eq!(status.code(), Code::NotFound, "{agency}");
        let missing = client
            .get_referral(authed(
                pb::GetReferralRequest {
                    referral: uuid::Uuid::now_v7().to_string(),
                },
                &app.officer(agency),
            ))
            .await
            .expect_err("missing");
        assert_eq!(
            (missing.code(), missing.message()),
            (status.code(), status.message()),
            "indistinguishable from absent"
        );
        let listed = client
            .list_referrals(authed(
                pb::ListReferralsRequest::default(),
                &app.officer(agency),
            ))
            .await
            .expect("list")
            .into_inner();
        assert!(listed.referrals.is_empty());
    }
    let consent = client
        .record_consent(authed(
            pb::RecordConsentRequest {
                referral: referral.id,
                expected_version: 1,
                consent: Some(pb::Consent::default()),
            },
            &app.officer("police-mombasa"),
        ))
        .await
        .expect_err("not party");
    assert_eq!(consent.code(), Code::NotFound);
}

async fn possible_duplicates_are_reported(app: &TestApp) {
    let first = app.file("police-nairobi", canary_draft()).await;
    assert!(first.possible_duplicates.is_empty());
    let first = first.referral.expect("referral");

    // The same person, re-identified at the border: the phone in a local spelling.
    let mut again = canary_draft();
    let subject = again.subject.as_mut().expect("subject");
    subject.national_id.clear();
    subject.passport_number.clear();
    subject.refugee_id.clear();
    subject.phones = vec!["0700-111-222".into()];
    let second = app.file("immigration-busia", again).await;
    let dups = second.possible_duplicates;
    assert_eq!(dups.len(), 1);
    assert_eq!(dups[0].reference_code, first.reference_code);
    assert_eq!(dups[0].matched_on, "phone");

    let mut stranger = canary_draft();
    let subject = stranger.subject.as_mut().expect("subject");
    subject.national_id = "27182818".into();
    subject.passport_number = "AB1234567".into();
    subject.refugee_id.clear();
    subject.phones = vec!["+254799888777".into()];
    subject.next_of_kin.clear();
    assert!(
        app.file("police-nairobi", stranger)
            .await
            .possible_duplicates
            .is_empty()
    );

    // The numbers themselves are not stored in clear: only keyed hashes.
    assert_eq!(app.count("subject_identifiers").await, 5 + 1 + 3);
}

async fn adult_without_means_is_accepted_but_incomplete(app: &TestApp) {
    let mut draft = canary_draft();
    draft.case_facts.as_mut().expect("case").means.clear();
    let referral = app
        .file("ngo-shelter-nairobi", draft)
        .await
        .referral
        .expect("referral");
    assert_eq!(
        referral.missing_elements,
        vec![pb::TraffickingElement::Means as i32]
    );

    // A child needs no means.
    let mut child = canary_draft();
    let subject = child.subject.as_mut().expect("subject");
    subject.date_of_birth = "2012-03-04".into();
    child.case_facts.as_mut().expect("case").means.clear();
    child.consent.as_mut().expect("consent").by = pb::ConsentBy::Guardian as i32;
    let referral = app
        .file("children-nairobi", child)
        .await
        .referral
        .expect("referral");
    assert!(referral.missing_elements.is_empty());
    assert!(referral.subject_is_child);
}

async fn roles_and_agency_kinds_are_enforced(app: &TestApp) {
    let mut client = app.intake().await;
    let request = || pb::FileReferralRequest {
        idempotency_key: new_key(),
        draft: Some(canary_draft()),
    };
    for (agency, roles) in [
        ("police-nairobi", vec!["auditor"]),
        ("wpa", vec!["officer"]),
        ("secretariat", vec!["supervisor"]),
        ("trust-fund", vec!["officer"]),
    ] {
        let status = client
            .file_referral(authed(request(), &app.token(agency, &roles)))
            .await
            .expect_err("not allowed to file");
        assert_eq!(status.code(), Code::PermissionDenied, "{agency} {roles:?}");
    }
    client
        .file_referral(authed(
            request(),
            &app.token("police-nairobi", &["supervisor"]),
        ))
        .await
        .expect("a supervisor files");
    assert_eq!(app.count("referrals").await, 1);
}

async fn empty_requests_name_their_missing_fields(app: &TestApp) {
    let channel = app.channel().await;
    let mut routing = pb::routing_service_client::RoutingServiceClient::new(channel.clone());
    let mut protection =
        pb::witness_protection_service_client::WitnessProtectionServiceClient::new(channel);
    let token = app.officer("police-nairobi");
    // Declining is implemented: an empty request names every missing field.
    let status = routing
        .decline_handoff(authed(pb::HandoffTransitionRequest::default(), &token))
        .await
        .expect_err("empty request");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        crate::common::violations(&status),
        vec!["handoff_id", "expected_version", "reason"]
    );
    let status = protection
        .get_protection_request(authed(pb::GetProtectionRequestRequest::default(), &token))
        .await
        .expect_err("empty request");
    assert_eq!(crate::common::violations(&status), vec!["id"]);
    let status = protection
        .begin_assessment(authed(pb::ProtectionStepRequest::default(), &token))
        .await
        .expect_err("police cannot assess");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = routing
        .list_inbox(pb::ListInboxRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
}
