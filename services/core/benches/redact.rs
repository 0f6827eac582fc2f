#![allow(clippy::expect_used, missing_docs)]
//! Structured redaction of one full `GetReferralResponse` (every field set,
//! a narrative with identifiers in it), for a few viewers; reported as
//! replies per second on one core. Baseline in the same run: cloning the
//! reply, which every redaction pass does once.

use std::{collections::BTreeSet, hint::black_box, time::Duration};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use refnet_api::v1 as pb;
use refnet_core::{
    auth::Role,
    detect::{HitKind, MatcherCache, RecordIdentifiers, RecordMatcher},
    policy::{Policy, Relation, SubjectState},
    redact::Redactor,
};

fn reply() -> pb::GetReferralResponse {
    let subject = pb::Subject {
        given_name: "Wanjiru".into(),
        family_name: "Kamau".into(),
        aliases: vec!["Shiru".into()],
        national_id: "23456789".into(),
        passport_number: "AK1234567".into(),
        refugee_id: String::new(),
        phones: vec!["+254712345678".into()],
        email: "wanjiru.kamau@example.org".into(),
        home_address: "Kariobangi North, House 12, Nairobi".into(),
        next_of_kin: vec![pb::NextOfKin {
            name: "Grace Kamau".into(),
            phone: "+254733000111".into(),
            relationship: "mother".into(),
        }],
        current_location: "Nakuru bus park".into(),
        shelter_address: "Safe House Road 3, Nakuru".into(),
        coordinates: Some(pb::GeoPoint {
            latitude: -0.3031,
            longitude: 36.08,
        }),
        date_of_birth: "2001-05-06".into(),
        sex: pb::Sex::Female as i32,
        nationality: "KE".into(),
        county_of_origin: "Nairobi".into(),
        sub_county_of_origin: "Embakasi".into(),
        languages: vec!["sw".into(), "en".into()],
        is_child: false,
    };
    let draft = pb::ReferralDraft {
        subject: Some(subject),
        case_facts: Some(pb::CaseFacts {
            acts: vec![1, 2],
            means: vec![6],
            purposes: vec![2],
            other_purpose: String::new(),
            country_of_exploitation: "SA".into(),
            county_of_recruitment: "Nairobi".into(),
            recruitment_route: "Nairobi - Mombasa - Jeddah".into(),
            recruitment_date: "2025-01-10".into(),
            identification_date: "2026-10-01".into(),
            narrative: "Wanjiru Kamau was recruited in Nairobi by John Otieno (0722 111 333) who promised \
                        domestic work in SA. She called 0712-345-678 from Nakuru bus park and was identified \
                        by police. Her passport AK1234567 was taken."
                .into(),
        }),
        special: Some(pb::SpecialCategory { health_notes: "malaria".into(), injuries: "bruises".into(), sexual_violence: true, psychosocial_notes: "anxious".into() }),
        suspects: vec![pb::Suspect { name: "John Otieno".into(), phone: "+254722111333".into(), vehicles: vec!["KDA 123A".into()], employer: "Sunrise Placements".into(), recruitment_agency: "Sunrise".into() }],
        needs: vec![1, 2, 3],
        consent: Some(pb::Consent { given: true, by: 1, agency_kinds: vec![6], recorded_at: None, recorded_by_officer: "o".into() }),
        urgency: 3,
        classification: 1,
        identified_by: 2,
        county: "Nakuru".into(),
    };
    pb::GetReferralResponse {
        referral: Some(pb::Referral {
            id: "0190c0de-0000-7000-8000-000000000000".into(),
            reference_code: "RN-2026-7F3K9Q".into(),
            version: 3,
            status: 1,
            draft: Some(draft),
            missing_elements: vec![],
            subject_is_child: false,
            filing_agency_id: "police-nairobi".into(),
            filing_agency_kind: 1,
            filed_by_officer: "o".into(),
            filed_at: None,
            updated_at: None,
            protection_applies: false,
            subject_erased_at: None,
        }),
        redactions: vec![],
    }
}

fn record() -> RecordIdentifiers {
    RecordIdentifiers {
        subject_names: vec![
            "Wanjiru".into(),
            "Kamau".into(),
            "Wanjiru Kamau".into(),
            "Shiru".into(),
            "Grace Kamau".into(),
        ],
        subject_numbers: vec![
            (HitKind::NationalId, "23456789".into()),
            (HitKind::Passport, "AK1234567".into()),
            (HitKind::Phone, "+254712345678".into()),
        ],
        subject_emails: vec!["wanjiru.kamau@example.org".into()],
        subject_addresses: vec!["Kariobangi North, House 12, Nairobi".into()],
        locations: vec!["Nakuru bus park".into(), "Safe House Road 3, Nakuru".into()],
        suspect_names: vec!["John Otieno".into(), "Sunrise Placements".into()],
        suspect_phones: vec!["+254722111333".into()],
        suspect_vehicles: vec!["KDA 123A".into()],
    }
}

fn bench(c: &mut Criterion) {
    let policy = Policy::default_policy().expect("policy");
    let officer: BTreeSet<Role> = [Role::Officer].into_iter().collect();
    let consented = SubjectState {
        consented_kinds: vec![pb::AgencyKind::Ngo],
        pseudonym: "Subject-7F3K9".into(),
        ..Default::default()
    };
    let protected = SubjectState {
        protected_pseudonym: Some("Witness K-17".into()),
        ..consented.clone()
    };
    let ids = record();
    let matcher = RecordMatcher::new(&ids);
    let cache = MatcherCache::new(1024, Duration::from_secs(120));
    let base = reply();

    let mut group = c.benchmark_group("structured_redaction");
    group.throughput(Throughput::Elements(1));
    group.bench_function("baseline: clone the reply", |b| {
        b.iter(|| black_box(base.clone()))
    });
    for (name, kind, subject) in [
        (
            "police (mostly shown, audit paths)",
            pb::AgencyKind::Police,
            &consented,
        ),
        (
            "labour (masks, generalise)",
            pb::AgencyKind::Labour,
            &consented,
        ),
        (
            "health, no consent (pseudonymise)",
            pb::AgencyKind::Health,
            &consented,
        ),
        (
            "police, protected subject",
            pb::AgencyKind::Police,
            &protected,
        ),
    ] {
        let view = policy
            .view(kind, &officer, subject, &Relation::default())
            .expect("view");
        group.bench_function(format!("{name}, matcher prebuilt"), |b| {
            b.iter(|| {
                let mut message = base.clone();
                let outcome = Redactor::new(&view, &matcher).apply(&mut message);
                black_box((message, outcome))
            })
        });
        group.bench_function(
            format!("{name}, as served: view built, matcher from the cache"),
            |b| {
                b.iter(|| {
                    let view = policy
                        .view(kind, &officer, subject, &Relation::default())
                        .expect("view");
                    let matcher = cache.get(&ids);
                    let mut message = base.clone();
                    let outcome = Redactor::new(&view, &matcher).apply(&mut message);
                    black_box((message, outcome))
                })
            },
        );
        group.bench_function(format!("{name}, matcher + view built per reply"), |b| {
            b.iter(|| {
                let view = policy
                    .view(kind, &officer, subject, &Relation::default())
                    .expect("view");
                let matcher = RecordMatcher::new(&ids);
                let mut message = base.clone();
                let outcome = Redactor::new(&view, &matcher).apply(&mut message);
                black_box((message, outcome))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
