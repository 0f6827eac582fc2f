//! Validation at the boundary: every rule answers INVALID_ARGUMENT with a
//! `BadRequest` naming every bad field, and a rejected request writes nothing.

use prost::Message;
use refnet_api::v1 as pb;
use tonic::Code;

use crate::{
    common::{TestApp, authed, canary_draft, new_key, violations},
    on_both,
};

on_both!(
    each_rule_names_its_field,
    every_bad_field_is_named_at_once,
    oversized_requests_are_refused_before_decoding
);

type Mutation = fn(&mut pb::FileReferralRequest);

fn subject(r: &mut pb::FileReferralRequest) -> &mut pb::Subject {
    r.draft
        .as_mut()
        .and_then(|d| d.subject.as_mut())
        .expect("subject")
}

fn case(r: &mut pb::FileReferralRequest) -> &mut pb::CaseFacts {
    r.draft
        .as_mut()
        .and_then(|d| d.case_facts.as_mut())
        .expect("case")
}

fn draft(r: &mut pb::FileReferralRequest) -> &mut pb::ReferralDraft {
    r.draft.as_mut().expect("draft")
}

/// One rule each: the mutation and the field it must be reported on.
fn rules() -> Vec<(&'static str, Mutation)> {
    vec![
        ("idempotency_key", |r| r.idempotency_key.clear()),
        ("idempotency_key", |r| {
            r.idempotency_key = "bad key with spaces".into()
        }),
        ("draft", |r| r.draft = None),
        ("draft.subject", |r| draft(r).subject = None),
        ("draft.subject.phones[1]", |r| {
            subject(r).phones[1] = "12345".into()
        }),
        ("draft.subject.phones[0]", |r| {
            subject(r).phones[0] = "call me maybe".into()
        }),
        ("draft.subject.national_id", |r| {
            subject(r).national_id = "12AB".into()
        }),
        ("draft.subject.passport_number", |r| {
            subject(r).passport_number = "P!".into()
        }),
        ("draft.subject.refugee_id", |r| {
            subject(r).refugee_id = "??".into()
        }),
        ("draft.subject.email", |r| {
            subject(r).email = "not-an-email".into()
        }),
        ("draft.subject.date_of_birth", |r| {
            subject(r).date_of_birth = "2999-01-01".into()
        }),
        ("draft.subject.date_of_birth", |r| {
            subject(r).date_of_birth = "17/04/1999".into()
        }),
        ("draft.subject.date_of_birth", |r| {
            subject(r).date_of_birth = "1999-02-30".into()
        }),
        ("draft.subject.is_child", |r| subject(r).is_child = true),
        ("draft.subject.sex", |r| subject(r).sex = 77),
        ("draft.subject.nationality", |r| {
            subject(r).nationality = "Kenya".into()
        }),
        ("draft.subject.county_of_origin", |r| {
            subject(r).county_of_origin = "Atlantis".into()
        }),
        ("draft.subject.languages[0]", |r| {
            subject(r).languages[0] = "Kiswahili!".into()
        }),
        ("draft.subject.given_name", |r| {
            subject(r).given_name = "x".repeat(201)
        }),
        ("draft.subject.family_name", |r| {
            subject(r).family_name = "Bad\u{0}Name".into()
        }),
        ("draft.subject.aliases", |r| {
            subject(r).aliases = vec!["a".into(); 21]
        }),
        ("draft.subject.coordinates.latitude", |r| {
            subject(r).coordinates = Some(pb::GeoPoint {
                latitude: 91.0,
                longitude: 36.0,
            })
        }),
        ("draft.subject.coordinates.longitude", |r| {
            subject(r).coordinates = Some(pb::GeoPoint {
                latitude: 1.0,
                longitude: f64::NAN,
            })
        }),
        ("draft.subject.next_of_kin[0].phone", |r| {
            subject(r).next_of_kin[0].phone = "0".into()
        }),
        ("draft.case_facts.acts[0]", |r| case(r).acts = vec![99]),
        ("draft.case_facts.means[0]", |r| case(r).means = vec![0]),
        ("draft.case_facts.purposes[1]", |r| {
            case(r).purposes[1] = 1234
        }),
        ("draft.case_facts.other_purpose", |r| {
            case(r).other_purpose.clear()
        }),
        ("draft.case_facts.country_of_exploitation", |r| {
            case(r).country_of_exploitation = "SAU".into()
        }),
        ("draft.case_facts.county_of_recruitment", |r| {
            case(r).county_of_recruitment = "Nowhere".into()
        }),
        ("draft.case_facts.recruitment_date", |r| {
            case(r).recruitment_date = "2999-12-31".into()
        }),
        ("draft.case_facts.narrative", |r| {
            case(r).narrative = "n".repeat(20_001)
        }),
        ("draft.suspects[0].phone", |r| {
            r.draft.as_mut().expect("draft").suspects[0].phone = "abc".into()
        }),
        ("draft.needs[0]", |r| draft(r).needs = vec![55]),
        ("draft.urgency", |r| draft(r).urgency = 0),
        ("draft.urgency", |r| draft(r).urgency = 9),
        ("draft.classification", |r| draft(r).classification = 0),
        ("draft.identified_by", |r| draft(r).identified_by = 100),
        ("draft.county", |r| draft(r).county.clear()),
        ("draft.county", |r| draft(r).county = "Narnia".into()),
        ("draft.consent.by", |r| {
            draft(r).consent.as_mut().expect("consent").by = 0
        }),
        ("draft.consent.agency_kinds[0]", |r| {
            draft(r).consent.as_mut().expect("consent").agency_kinds = vec![31]
        }),
    ]
}

async fn each_rule_names_its_field(app: &TestApp) {
    let mut client = app.intake().await;
    let token = app.officer("police-nairobi");
    for (field, mutate) in rules() {
        let mut request = pb::FileReferralRequest {
            idempotency_key: crate::common::new_key(),
            draft: Some(canary_draft()),
        };
        mutate(&mut request);
        let status = client
            .file_referral(authed(request, &token))
            .await
            .expect_err(field);
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{field}: {}",
            status.message()
        );
        assert_eq!(violations(&status), vec![field.to_owned()], "{field}");
    }

    // The child rule: a child case needs act and purpose; means are optional.
    let mut child = pb::FileReferralRequest {
        idempotency_key: crate::common::new_key(),
        draft: Some(canary_draft()),
    };
    subject(&mut child).date_of_birth = "2015-06-01".into();
    draft(&mut child).consent.as_mut().expect("consent").by = pb::ConsentBy::Guardian as i32;
    case(&mut child).acts.clear();
    case(&mut child).purposes.clear();
    case(&mut child).means.clear();
    let status = client
        .file_referral(authed(child.clone(), &token))
        .await
        .expect_err("child rule");
    assert_eq!(
        violations(&status),
        vec![
            "draft.case_facts.acts".to_owned(),
            "draft.case_facts.purposes".to_owned()
        ]
    );
    // ... and a child's consent is not the child's own.
    draft(&mut child).consent.as_mut().expect("consent").by = pb::ConsentBy::Subject as i32;
    case(&mut child).acts = vec![pb::Act::Harbouring as i32];
    case(&mut child).purposes = vec![pb::Purpose::ChildBegging as i32];
    let status = client
        .file_referral(authed(child, &token))
        .await
        .expect_err("child consent");
    assert_eq!(violations(&status), vec!["draft.consent.by".to_owned()]);

    assert_eq!(app.count("referrals").await, 0, "nothing written");
    assert_eq!(app.count("subjects").await, 0);
    assert_eq!(app.count(crate::common::INTAKE_EVENTS).await, 0);
}

async fn every_bad_field_is_named_at_once(app: &TestApp) {
    let mut request = pb::FileReferralRequest {
        idempotency_key: String::new(),
        draft: Some(canary_draft()),
    };
    subject(&mut request).phones = vec!["+254700111222".into(), "nope".into()];
    subject(&mut request).email = "x".into();
    subject(&mut request).date_of_birth = "2999-01-01".into();
    draft(&mut request).urgency = 0;
    draft(&mut request).county = "Gondor".into();
    case(&mut request).acts = vec![42];
    let status = app
        .intake()
        .await
        .file_referral(authed(request, &app.officer("police-nairobi")))
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut fields = violations(&status);
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "draft.case_facts.acts[0]",
            "draft.county",
            "draft.subject.date_of_birth",
            "draft.subject.email",
            "draft.subject.phones[1]",
            "draft.urgency",
            "idempotency_key",
        ]
    );
    assert_eq!(app.count("referrals").await, 0);
    assert_eq!(app.count(crate::common::INTAKE_EVENTS).await, 0);
}

/// A request over `max_request_bytes` (1 MiB by default) is refused with
/// OUT_OF_RANGE before it is decoded and writes nothing; the connection and
/// the server go on serving; a referral with a narrative at its length limit
/// (20,000 four-byte characters) is far below the cap and files.
async fn oversized_requests_are_refused_before_decoding(app: &TestApp) {
    let token = app.officer("police-nairobi");
    let mut intake = app.intake().await;
    let referrals = app.count("referrals").await;
    let mut huge = canary_draft();
    huge.case_facts
        .get_or_insert_with(Default::default)
        .narrative = "x".repeat(2 * 1024 * 1024);
    let status = intake
        .file_referral(authed(
            pb::FileReferralRequest {
                idempotency_key: new_key(),
                draft: Some(huge),
            },
            &token,
        ))
        .await
        .expect_err("2 MiB request");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(app.count("referrals").await, referrals, "nothing written");

    let mut longest = canary_draft();
    longest
        .case_facts
        .get_or_insert_with(Default::default)
        .narrative = "\u{1D54F}".repeat(20_000);
    let request = pb::FileReferralRequest {
        idempotency_key: new_key(),
        draft: Some(longest),
    };
    assert!(
        request.encoded_len() < 256 * 1024,
        "{}",
        request.encoded_len()
    );
    intake
        .file_referral(authed(request, &token))
        .await
        .expect("a narrative at its limit files on the same connection");
    assert_eq!(app.count("referrals").await, referrals + 1);
}
