//! The synthetic fixture referrals (`tests/fixtures/referrals.jsonl`, a copy of
//! `shared/fixtures`): read by the end-to-end tests and by `refnet bench` as
//! payloads. Every person in them is invented.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use refnet_api::v1 as pb;
use serde::Deserialize;

/// One fixture referral, as the file spells it.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct Fixture {
    pub fixture_id: String,
    pub filed_by_agency_kind: String,
    pub urgency: String,
    pub classification: String,
    pub identified_by: String,
    pub subject: FixtureSubject,
    pub case: FixtureCase,
    pub special: FixtureSpecial,
    pub suspects: Vec<FixtureSuspect>,
    pub needs: Vec<String>,
    pub consent: FixtureConsent,
    pub narrative_subject_identifiers: Vec<String>,
    pub narrative_suspect_identifiers: Vec<String>,
}

/// The fixture's person.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct FixtureSubject {
    pub given_name: String,
    pub family_name: String,
    pub aliases: Vec<String>,
    pub date_of_birth: String,
    pub sex: String,
    pub is_child: bool,
    pub nationality: String,
    pub national_id: String,
    pub passport_number: String,
    pub phones: Vec<String>,
    pub email: String,
    pub home_address: String,
    pub county_of_origin: String,
    pub current_location: String,
    pub languages: Vec<String>,
}

/// The fixture's case facts.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct FixtureCase {
    pub acts: Vec<String>,
    pub means: Vec<String>,
    pub purposes: Vec<String>,
    pub country_of_exploitation: String,
    pub county_of_recruitment: String,
    pub narrative: String,
}

/// Special-category data.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct FixtureSpecial {
    pub health_notes: String,
}

/// A suspect.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct FixtureSuspect {
    pub name: String,
    pub phone: String,
    pub employer: String,
}

/// Consent as given.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct FixtureConsent {
    pub given: bool,
    pub by: String,
    pub agency_kinds: Vec<String>,
}

/// `REFNET_FIXTURES`, else the repository's `tests/fixtures/referrals.jsonl`.
pub fn default_path() -> PathBuf {
    std::env::var_os("REFNET_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/referrals.jsonl")
        })
}

/// Reads every fixture of a JSON-lines file.
pub fn load(path: &Path) -> anyhow::Result<Vec<Fixture>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))
        })
        .collect()
}

/// The enum value `prefix` + `name`, or 0 (unspecified: the server rejects
/// it with a field violation) for a name the contract does not have.
fn enum_value(prefix: &str, name: &str, parse: impl Fn(&str) -> Option<i32>) -> i32 {
    parse(&format!("{prefix}{name}")).unwrap_or(0)
}

/// The demo agency that files a fixture of `kind`.
pub fn demo_agency_of_kind(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "POLICE" => "police-nairobi",
        "PROSECUTION" => "prosecution-nairobi",
        "IMMIGRATION" => "immigration-nairobi",
        "LABOUR" => "labour-nairobi",
        "CHILDREN" => "children-nairobi",
        "NGO" => "ngo-shelter-nairobi",
        "HEALTH" => "health-nairobi",
        _ => return None,
    })
}

impl Fixture {
    /// True when the subject is a child by date of birth today (the fixture's
    /// `is_child` was computed on an earlier day). An unreadable date: false.
    pub fn child_today(&self) -> bool {
        use chrono::Datelike as _;
        let Ok(birth) = chrono::NaiveDate::parse_from_str(&self.subject.date_of_birth, "%Y-%m-%d")
        else {
            return false;
        };
        let today = chrono::Utc::now().date_naive();
        let mut age = today.year() - birth.year();
        if (today.month(), today.day()) < (birth.month(), birth.day()) {
            age -= 1;
        }
        age < 18
    }

    /// The demo agency that files this fixture, if its kind has one.
    pub fn filer(&self) -> Option<&'static str> {
        demo_agency_of_kind(&self.filed_by_agency_kind)
    }

    /// The fixture as a draft. The county where the case is handled is the
    /// county of recruitment (the fixtures have no such field), else Nairobi.
    /// A subject who is a child by date of birth today has consent decided by
    /// a guardian, as the law requires.
    pub fn draft(&self) -> pb::ReferralDraft {
        let s = &self.subject;
        let c = &self.case;
        let child = self.child_today();
        pb::ReferralDraft {
            subject: Some(pb::Subject {
                given_name: s.given_name.clone(),
                family_name: s.family_name.clone(),
                aliases: s.aliases.clone(),
                national_id: s.national_id.clone(),
                passport_number: s.passport_number.clone(),
                phones: s.phones.clone(),
                email: s.email.clone(),
                home_address: s.home_address.clone(),
                current_location: s.current_location.clone(),
                date_of_birth: s.date_of_birth.clone(),
                sex: match s.sex.as_str() {
                    "F" => pb::Sex::Female as i32,
                    "M" => pb::Sex::Male as i32,
                    _ => pb::Sex::Other as i32,
                },
                nationality: s.nationality.clone(),
                county_of_origin: s.county_of_origin.clone(),
                languages: s.languages.clone(),
                is_child: s.is_child && child,
                ..Default::default()
            }),
            case_facts: Some(pb::CaseFacts {
                acts: c
                    .acts
                    .iter()
                    .map(|a| enum_value("ACT_", a, |n| pb::Act::from_str_name(n).map(|e| e as i32)))
                    .collect(),
                means: c
                    .means
                    .iter()
                    .map(|a| {
                        enum_value("MEANS_", a, |n| {
                            pb::Means::from_str_name(n).map(|e| e as i32)
                        })
                    })
                    .collect(),
                purposes: c
                    .purposes
                    .iter()
                    .map(|a| {
                        enum_value("PURPOSE_", a, |n| {
                            pb::Purpose::from_str_name(n).map(|e| e as i32)
                        })
                    })
                    .collect(),
                country_of_exploitation: c.country_of_exploitation.clone(),
                county_of_recruitment: c.county_of_recruitment.clone(),
                narrative: c.narrative.clone(),
                ..Default::default()
            }),
            special: Some(pb::SpecialCategory {
                health_notes: self.special.health_notes.clone(),
                ..Default::default()
            }),
            suspects: self
                .suspects
                .iter()
                .map(|x| pb::Suspect {
                    name: x.name.clone(),
                    phone: x.phone.clone(),
                    employer: x.employer.clone(),
                    ..Default::default()
                })
                .collect(),
            needs: self
                .needs
                .iter()
                .map(|n| enum_value("NEED_", n, |x| pb::Need::from_str_name(x).map(|e| e as i32)))
                .collect(),
            consent: Some(pb::Consent {
                given: self.consent.given,
                by: if child && self.consent.by == "SUBJECT" {
                    pb::ConsentBy::Guardian as i32
                } else {
                    enum_value("CONSENT_BY_", &self.consent.by, |x| {
                        pb::ConsentBy::from_str_name(x).map(|e| e as i32)
                    })
                },
                agency_kinds: self
                    .consent
                    .agency_kinds
                    .iter()
                    .map(|k| {
                        enum_value("AGENCY_KIND_", k, |x| {
                            pb::AgencyKind::from_str_name(x).map(|e| e as i32)
                        })
                    })
                    .collect(),
                ..Default::default()
            }),
            urgency: enum_value("URGENCY_", &self.urgency, |x| {
                pb::Urgency::from_str_name(x).map(|e| e as i32)
            }),
            classification: enum_value("CLASSIFICATION_", &self.classification, |x| {
                pb::Classification::from_str_name(x).map(|e| e as i32)
            }),
            identified_by: enum_value("IDENTIFIED_BY_", &self.identified_by, |x| {
                pb::IdentifiedBy::from_str_name(x).map(|e| e as i32)
            }),
            county: if c.county_of_recruitment.is_empty() {
                "Nairobi".into()
            } else {
                c.county_of_recruitment.clone()
            },
        }
    }
}

/// Replaces the draft's subject identifiers with the `n`th synthetic set
/// (numbers from `n`, `example.org` emails), so filings numbered apart match
/// no other filing in the duplicate check. The load tool numbers from 1;
/// `refnet seed` from [`SEED_NUMBERS`], which keeps the two apart.
pub fn number_identifiers(draft: &mut pb::ReferralDraft, n: u64) {
    let Some(subject) = draft.subject.as_mut() else {
        return;
    };
    for (k, phone) in subject.phones.iter_mut().enumerate() {
        *phone = format!("+2547{:08}", (n * 4 + k as u64) % 100_000_000);
    }
    if !subject.national_id.is_empty() {
        subject.national_id = format!("{}", 10_000_000 + n % 90_000_000);
    }
    if !subject.passport_number.is_empty() {
        subject.passport_number = format!("B{:07}", n % 10_000_000);
    }
    if !subject.email.is_empty() {
        subject.email = format!("bench.{n}@example.org");
    }
}

/// Where `refnet seed` starts numbering identifiers: phones, IDs and passports
/// of the first 7.5 million seeded referrals differ from the load tool's first
/// 2.5 million filings.
pub const SEED_NUMBERS: u64 = 12_500_000;
