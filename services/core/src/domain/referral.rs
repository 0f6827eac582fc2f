//! A referral's content as refnet stores it, and its conversion from and to
//! the wire.
//!
//! [`ReferralContent::from_draft`] turns a `ReferralDraft` into validated
//! content, collecting a field violation for every bad field (paths such as
//! `draft.subject.phones[1]`). The content is split by sensitivity for storage:
//! identity and location are sealed per subject, the free text that may repeat
//! them (narrative, notes, suspects) is sealed too, and only quasi-identifiers
//! and case facts stay in clear.

use chrono::NaiveDate;
use refnet_api::v1 as pb;
use serde::{Deserialize, Serialize};

use super::{
    CountryCode, Email, LanguageCode, NationalId, PassportNumber, Phone, RefugeeId, age_on,
    canonical_county, parse_past_date, parse_text,
};
use crate::error::Violations;

/// Longest name, alias or short field, in characters.
pub const MAX_NAME: usize = 200;
/// Longest address or location description.
pub const MAX_ADDRESS: usize = 500;
/// Longest narrative.
pub const MAX_NARRATIVE: usize = 20_000;
/// Longest note (health, injuries, psychosocial, routes, reasons).
pub const MAX_NOTE: usize = 5_000;
/// Longest list of aliases, phones, languages, vehicles, next of kin.
pub const MAX_SHORT_LIST: usize = 20;
/// Most suspects on one referral.
pub const MAX_SUSPECTS: usize = 50;

/// A next of kin, validated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NextOfKinRecord {
    /// Name.
    pub name: String,
    /// Phone.
    pub phone: Option<Phone>,
    /// Relationship.
    pub relationship: String,
}

/// The subject's direct identifiers (sealed at rest).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdentityRecord {
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Aliases.
    pub aliases: Vec<String>,
    /// National ID.
    pub national_id: Option<NationalId>,
    /// Passport.
    pub passport_number: Option<PassportNumber>,
    /// Refugee ID.
    pub refugee_id: Option<RefugeeId>,
    /// Phones.
    pub phones: Vec<Phone>,
    /// Email.
    pub email: Option<Email>,
    /// Home address.
    pub home_address: String,
    /// Next of kin.
    pub next_of_kin: Vec<NextOfKinRecord>,
}

/// Where the subject is (sealed at rest).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LocationRecord {
    /// Current whereabouts.
    pub current_location: String,
    /// Shelter address.
    pub shelter_address: String,
    /// Latitude and longitude.
    pub coordinates: Option<(f64, f64)>,
}

/// Quasi-identifiers (kept in clear for statistics).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QuasiRecord {
    /// Date of birth.
    pub date_of_birth: Option<NaiveDate>,
    /// Sex (proto name).
    pub sex: String,
    /// Nationality.
    pub nationality: Option<CountryCode>,
    /// County of origin (canonical).
    pub county_of_origin: Option<String>,
    /// Sub-county of origin.
    pub sub_county_of_origin: String,
    /// Languages.
    pub languages: Vec<LanguageCode>,
}

/// Case facts without free text (kept in clear).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaseRecord {
    /// Acts (proto names).
    pub acts: Vec<String>,
    /// Means (proto names).
    pub means: Vec<String>,
    /// Purposes (proto names).
    pub purposes: Vec<String>,
    /// Country of exploitation.
    pub country_of_exploitation: Option<CountryCode>,
    /// County of recruitment (canonical).
    pub county_of_recruitment: Option<String>,
    /// Recruitment date.
    pub recruitment_date: Option<NaiveDate>,
    /// Identification date.
    pub identification_date: Option<NaiveDate>,
}

/// A suspect (sealed at rest).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SuspectRecord {
    /// Name.
    pub name: String,
    /// Phone.
    pub phone: Option<Phone>,
    /// Vehicles.
    pub vehicles: Vec<String>,
    /// Employer.
    pub employer: String,
    /// Recruitment agency.
    pub recruitment_agency: String,
}

/// Special-category information (sealed at rest).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpecialRecord {
    /// Health notes.
    pub health_notes: String,
    /// Injuries.
    pub injuries: String,
    /// Sexual violence reported or suspected.
    pub sexual_violence: bool,
    /// Psychosocial notes.
    pub psychosocial_notes: String,
}

/// Everything on a referral that may repeat identifiers (sealed at rest).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SealedRecord {
    /// Narrative.
    pub narrative: String,
    /// Other purpose.
    pub other_purpose: String,
    /// Recruitment route.
    pub recruitment_route: String,
    /// Special category.
    pub special: SpecialRecord,
    /// Suspects.
    pub suspects: Vec<SuspectRecord>,
    /// Every identifier the record held before its amendments (names,
    /// numbers, emails, addresses, locations, suspects): text written before a
    /// correction still repeats them, so free-text redaction keeps looking for
    /// them. Never shown; destroyed with the rest of this record on erasure.
    #[serde(
        default,
        skip_serializing_if = "crate::detect::RecordIdentifiers::is_empty"
    )]
    pub former: crate::detect::RecordIdentifiers,
}

/// Consent as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsentRecord {
    /// Given.
    pub given: bool,
    /// Who decided (proto name).
    pub by: String,
    /// Agency kinds covered (proto names).
    pub agency_kinds: Vec<String>,
    /// When recorded.
    pub recorded_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Who recorded it.
    pub recorded_by_officer: String,
}

/// A referral's validated content.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferralContent {
    /// Identity.
    pub identity: IdentityRecord,
    /// Location.
    pub location: LocationRecord,
    /// Quasi-identifiers.
    pub quasi: QuasiRecord,
    /// The subject is a child.
    pub is_child: bool,
    /// Case facts.
    pub case_facts: CaseRecord,
    /// Sealed free text, special category and suspects.
    pub sealed: SealedRecord,
    /// Needs (proto names).
    pub needs: Vec<String>,
    /// Consent.
    pub consent: ConsentRecord,
    /// Urgency.
    pub urgency: pb::Urgency,
    /// Classification.
    pub classification: pb::Classification,
    /// Who identified the person.
    pub identified_by: pb::IdentifiedBy,
    /// County where the case is handled (canonical).
    pub county: String,
    /// The WPA pseudonym while the subject is protected; read from storage,
    /// never from a draft.
    pub protected_pseudonym: Option<String>,
    /// When the subject was erased (identity, location and sealed text are
    /// then empty); read from storage, never from a draft.
    pub erased_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Validates a list of enum numbers: known, not UNSPECIFIED, de-duplicated.
fn enum_list<E>(v: &mut Violations, path: &str, values: &[i32]) -> Vec<String>
where
    E: TryFrom<i32> + Copy + PartialEq + EnumName,
{
    let mut out: Vec<String> = Vec::new();
    for (i, raw) in values.iter().enumerate() {
        match E::try_from(*raw) {
            Ok(e) if *raw != 0 => {
                let name = e.name().to_owned();
                if !out.contains(&name) {
                    out.push(name);
                }
            }
            Ok(_) => v.add(format!("{path}[{i}]"), "must not be UNSPECIFIED"),
            Err(_) => v.add(format!("{path}[{i}]"), format!("unknown value {raw}")),
        }
    }
    out
}

/// Validates a required enum number.
fn enum_required<E>(v: &mut Violations, path: &str, raw: i32) -> Option<E>
where
    E: TryFrom<i32>,
{
    match E::try_from(raw) {
        Ok(e) if raw != 0 => Some(e),
        Ok(_) => {
            v.add(path, "is required");
            None
        }
        Err(_) => {
            v.add(path, format!("unknown value {raw}"));
            None
        }
    }
}

/// The proto name of an enum value.
pub trait EnumName {
    /// e.g. `ACT_RECRUITMENT`.
    fn name(&self) -> &'static str;
}

macro_rules! enum_name {
    ($($t:ty),*) => {$(
        impl EnumName for $t {
            fn name(&self) -> &'static str { self.as_str_name() }
        }
    )*};
}
enum_name!(
    pb::Act,
    pb::Means,
    pb::Purpose,
    pb::Need,
    pb::AgencyKind,
    pb::Sex,
    pb::ConsentBy
);

fn text(v: &mut Violations, path: &str, s: &str, max: usize, multiline: bool) -> String {
    v.check(path, parse_text(s, max, multiline))
        .unwrap_or_default()
}

fn opt<T>(
    v: &mut Violations,
    path: &str,
    s: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Option<T> {
    if s.trim().is_empty() {
        None
    } else {
        v.check(path, parse(s))
    }
}

fn list_len(v: &mut Violations, path: &str, len: usize, max: usize) {
    if len > max {
        v.add(path, format!("must have at most {max} entries"));
    }
}

fn short_texts(v: &mut Violations, path: &str, items: &[String]) -> Vec<String> {
    list_len(v, path, items.len(), MAX_SHORT_LIST);
    items
        .iter()
        .enumerate()
        .map(|(i, s)| text(v, &format!("{path}[{i}]"), s, MAX_NAME, false))
        .filter(|s| !s.is_empty())
        .collect()
}

fn county(v: &mut Violations, path: &str, s: &str) -> Option<String> {
    opt(v, path, s, |s| {
        canonical_county(s)
            .map(str::to_owned)
            .ok_or_else(|| "must be one of Kenya's 47 counties".to_owned())
    })
}

impl ConsentRecord {
    /// Validates consent from the wire for a subject who is (or is not) a child.
    pub fn from_proto(
        v: &mut Violations,
        path: &str,
        consent: Option<&pb::Consent>,
        is_child: bool,
    ) -> Self {
        let Some(c) = consent else {
            return Self::default();
        };
        let by = match pb::ConsentBy::try_from(c.by) {
            Ok(pb::ConsentBy::Unspecified) if c.given => {
                v.add(format!("{path}.by"), "is required when consent is given");
                String::new()
            }
            Ok(pb::ConsentBy::Subject) if is_child => {
                v.add(
                    format!("{path}.by"),
                    "for a child, consent is given by a guardian or the Children Officer",
                );
                String::new()
            }
            Ok(pb::ConsentBy::Unspecified) => String::new(),
            Ok(by) => by.as_str_name().to_owned(),
            Err(_) => {
                v.add(format!("{path}.by"), format!("unknown value {}", c.by));
                String::new()
            }
        };
        let agency_kinds =
            enum_list::<pb::AgencyKind>(v, &format!("{path}.agency_kinds"), &c.agency_kinds);
        Self {
            given: c.given,
            by,
            agency_kinds: if c.given { agency_kinds } else { Vec::new() },
            recorded_at: None,
            recorded_by_officer: String::new(),
        }
    }

    /// The wire form.
    pub fn to_proto(&self) -> pb::Consent {
        pb::Consent {
            given: self.given,
            by: pb::ConsentBy::from_str_name(&self.by).map_or(0, |b| b as i32),
            agency_kinds: names_to_i32(&self.agency_kinds, pb::AgencyKind::from_str_name),
            recorded_at: self.recorded_at.map(timestamp),
            recorded_by_officer: self.recorded_by_officer.clone(),
        }
    }
}

/// A protobuf timestamp.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn names_to_i32<E: Into<i32>>(names: &[String], parse: impl Fn(&str) -> Option<E>) -> Vec<i32> {
    names
        .iter()
        .filter_map(|n| parse(n))
        .map(Into::into)
        .collect()
}

fn date_str(d: Option<NaiveDate>) -> String {
    d.map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

impl ReferralContent {
    /// Validates a draft; `path` prefixes field paths (e.g. "draft"). Every bad
    /// field is recorded in `v`; `None` when any was.
    pub fn from_draft(
        v: &mut Violations,
        path: &str,
        draft: Option<&pb::ReferralDraft>,
        today: NaiveDate,
    ) -> Option<Self> {
        let Some(d) = draft else {
            v.add(path, "is required");
            return None;
        };
        let p = |s: &str| format!("{path}.{s}");
        let empty_subject = pb::Subject::default();
        let s = match &d.subject {
            Some(s) => s,
            None => {
                v.add(p("subject"), "is required");
                &empty_subject
            }
        };
        let sp = |f: &str| format!("{path}.subject.{f}");

        let mut phones = Vec::new();
        list_len(v, &sp("phones"), s.phones.len(), MAX_SHORT_LIST);
        for (i, raw) in s.phones.iter().enumerate() {
            if let Some(phone) = v.check(format!("{}[{i}]", sp("phones")), Phone::parse(raw))
                && !phones.contains(&phone)
            {
                phones.push(phone);
            }
        }
        list_len(v, &sp("next_of_kin"), s.next_of_kin.len(), MAX_SHORT_LIST);
        let next_of_kin = s
            .next_of_kin
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let kp = format!("{}[{i}]", sp("next_of_kin"));
                NextOfKinRecord {
                    name: text(v, &format!("{kp}.name"), &k.name, MAX_NAME, false),
                    phone: opt(v, &format!("{kp}.phone"), &k.phone, Phone::parse),
                    relationship: text(
                        v,
                        &format!("{kp}.relationship"),
                        &k.relationship,
                        MAX_NAME,
                        false,
                    ),
                }
            })
            .collect();
        let identity = IdentityRecord {
            given_name: text(v, &sp("given_name"), &s.given_name, MAX_NAME, false),
            family_name: text(v, &sp("family_name"), &s.family_name, MAX_NAME, false),
            aliases: short_texts(v, &sp("aliases"), &s.aliases),
            national_id: opt(v, &sp("national_id"), &s.national_id, NationalId::parse),
            passport_number: opt(
                v,
                &sp("passport_number"),
                &s.passport_number,
                PassportNumber::parse,
            ),
            refugee_id: opt(v, &sp("refugee_id"), &s.refugee_id, RefugeeId::parse),
            phones,
            email: opt(v, &sp("email"), &s.email, Email::parse),
            home_address: text(v, &sp("home_address"), &s.home_address, MAX_ADDRESS, false),
            next_of_kin,
        };

        let coordinates = s.coordinates.as_ref().and_then(|g| {
            let ok_lat = g.latitude.is_finite() && (-90.0..=90.0).contains(&g.latitude);
            let ok_lon = g.longitude.is_finite() && (-180.0..=180.0).contains(&g.longitude);
            if !ok_lat {
                v.add(
                    format!("{}.latitude", sp("coordinates")),
                    "must be between -90 and 90",
                );
            }
            if !ok_lon {
                v.add(
                    format!("{}.longitude", sp("coordinates")),
                    "must be between -180 and 180",
                );
            }
            (ok_lat && ok_lon).then_some((g.latitude, g.longitude))
        });
        let location = LocationRecord {
            current_location: text(
                v,
                &sp("current_location"),
                &s.current_location,
                MAX_ADDRESS,
                false,
            ),
            shelter_address: text(
                v,
                &sp("shelter_address"),
                &s.shelter_address,
                MAX_ADDRESS,
                false,
            ),
            coordinates,
        };

        let date_of_birth = opt(v, &sp("date_of_birth"), &s.date_of_birth, |x| {
            parse_past_date(x, today)
        });
        let sex = match pb::Sex::try_from(s.sex) {
            Ok(sex) => sex.as_str_name().to_owned(),
            Err(_) => {
                v.add(sp("sex"), format!("unknown value {}", s.sex));
                String::new()
            }
        };
        let languages = {
            list_len(v, &sp("languages"), s.languages.len(), MAX_SHORT_LIST);
            let mut out: Vec<LanguageCode> = Vec::new();
            for (i, l) in s.languages.iter().enumerate() {
                if let Some(code) =
                    v.check(format!("{}[{i}]", sp("languages")), LanguageCode::parse(l))
                    && !out.contains(&code)
                {
                    out.push(code);
                }
            }
            out
        };
        let quasi = QuasiRecord {
            date_of_birth,
            sex,
            nationality: opt(v, &sp("nationality"), &s.nationality, CountryCode::parse),
            county_of_origin: county(v, &sp("county_of_origin"), &s.county_of_origin),
            sub_county_of_origin: text(
                v,
                &sp("sub_county_of_origin"),
                &s.sub_county_of_origin,
                MAX_NAME,
                false,
            ),
            languages,
        };

        let empty_case = pb::CaseFacts::default();
        let c = d.case_facts.as_ref().unwrap_or(&empty_case);
        let cp = |f: &str| format!("{path}.case_facts.{f}");
        let recruitment_date = opt(v, &cp("recruitment_date"), &c.recruitment_date, |x| {
            parse_past_date(x, today)
        });
        let identification_date = opt(v, &cp("identification_date"), &c.identification_date, |x| {
            parse_past_date(x, today)
        });

        // The child rule: a date of birth decides; without one, the officer's assessment does.
        let is_child = match date_of_birth {
            Some(birth) => {
                let child = age_on(birth, identification_date.unwrap_or(today)) < 18;
                if s.is_child && !child {
                    v.add(sp("is_child"), "contradicts date_of_birth (18 or older)");
                }
                child
            }
            None => s.is_child,
        };

        let case_facts = CaseRecord {
            acts: enum_list::<pb::Act>(v, &cp("acts"), &c.acts),
            means: enum_list::<pb::Means>(v, &cp("means"), &c.means),
            purposes: enum_list::<pb::Purpose>(v, &cp("purposes"), &c.purposes),
            country_of_exploitation: opt(
                v,
                &cp("country_of_exploitation"),
                &c.country_of_exploitation,
                CountryCode::parse,
            ),
            county_of_recruitment: county(
                v,
                &cp("county_of_recruitment"),
                &c.county_of_recruitment,
            ),
            recruitment_date,
            identification_date,
        };
        if is_child {
            if case_facts.acts.is_empty() {
                v.add(cp("acts"), "a child case needs at least one act");
            }
            if case_facts.purposes.is_empty() {
                v.add(cp("purposes"), "a child case needs at least one purpose");
            }
        }
        if case_facts.purposes.iter().any(|p| p == "PURPOSE_OTHER")
            && c.other_purpose.trim().is_empty()
        {
            v.add(
                cp("other_purpose"),
                "is required when PURPOSE_OTHER is given",
            );
        }

        let empty_special = pb::SpecialCategory::default();
        let sc = d.special.as_ref().unwrap_or(&empty_special);
        let scp = |f: &str| format!("{path}.special.{f}");
        list_len(v, &p("suspects"), d.suspects.len(), MAX_SUSPECTS);
        let suspects = d
            .suspects
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let xp = |f: &str| format!("{path}.suspects[{i}].{f}");
                SuspectRecord {
                    name: text(v, &xp("name"), &x.name, MAX_NAME, false),
                    phone: opt(v, &xp("phone"), &x.phone, Phone::parse),
                    vehicles: short_texts(v, &xp("vehicles"), &x.vehicles),
                    employer: text(v, &xp("employer"), &x.employer, MAX_NAME, false),
                    recruitment_agency: text(
                        v,
                        &xp("recruitment_agency"),
                        &x.recruitment_agency,
                        MAX_NAME,
                        false,
                    ),
                }
            })
            .collect();
        let sealed = SealedRecord {
            narrative: text(v, &cp("narrative"), &c.narrative, MAX_NARRATIVE, true),
            other_purpose: text(v, &cp("other_purpose"), &c.other_purpose, MAX_NAME, false),
            recruitment_route: text(
                v,
                &cp("recruitment_route"),
                &c.recruitment_route,
                MAX_NOTE,
                true,
            ),
            special: SpecialRecord {
                health_notes: text(v, &scp("health_notes"), &sc.health_notes, MAX_NOTE, true),
                injuries: text(v, &scp("injuries"), &sc.injuries, MAX_NOTE, true),
                sexual_violence: sc.sexual_violence,
                psychosocial_notes: text(
                    v,
                    &scp("psychosocial_notes"),
                    &sc.psychosocial_notes,
                    MAX_NOTE,
                    true,
                ),
            },
            suspects,
            former: Default::default(),
        };

        let needs = enum_list::<pb::Need>(v, &p("needs"), &d.needs);
        let consent = ConsentRecord::from_proto(v, &p("consent"), d.consent.as_ref(), is_child);
        let urgency = enum_required::<pb::Urgency>(v, &p("urgency"), d.urgency);
        let classification =
            enum_required::<pb::Classification>(v, &p("classification"), d.classification);
        let identified_by =
            enum_required::<pb::IdentifiedBy>(v, &p("identified_by"), d.identified_by);
        let county_now = if d.county.trim().is_empty() {
            v.add(p("county"), "is required (one of Kenya's 47 counties)");
            None
        } else {
            county(v, &p("county"), &d.county)
        };

        if !v.is_empty() {
            return None;
        }
        Some(Self {
            identity,
            location,
            quasi,
            is_child,
            case_facts,
            sealed,
            needs,
            consent,
            urgency: urgency?,
            classification: classification?,
            identified_by: identified_by?,
            county: county_now?,
            protected_pseudonym: None,
            erased_at: None,
        })
    }

    /// The trafficking elements this case is missing. Means are not required for a child.
    pub fn missing_elements(&self) -> Vec<pb::TraffickingElement> {
        let mut missing = Vec::new();
        if self.case_facts.acts.is_empty() {
            missing.push(pb::TraffickingElement::Act);
        }
        if self.case_facts.means.is_empty() && !self.is_child {
            missing.push(pb::TraffickingElement::Means);
        }
        if self.case_facts.purposes.is_empty() {
            missing.push(pb::TraffickingElement::Purpose);
        }
        missing
    }

    /// The identifiers for the blind index: (kind, normalised value).
    pub fn blind_identifiers(&self) -> Vec<(&'static str, String)> {
        let id = &self.identity;
        let mut out = Vec::new();
        if let Some(n) = &id.national_id {
            out.push(("national_id", n.as_str().to_owned()));
        }
        if let Some(n) = &id.passport_number {
            out.push(("passport_number", n.as_str().to_owned()));
        }
        if let Some(n) = &id.refugee_id {
            out.push(("refugee_id", n.as_str().to_owned()));
        }
        for phone in &id.phones {
            out.push(("phone", phone.as_str().to_owned()));
        }
        out
    }

    /// The wire form of the content.
    pub fn to_proto(&self) -> pb::ReferralDraft {
        let id = &self.identity;
        let loc = &self.location;
        let q = &self.quasi;
        let c = &self.case_facts;
        let s = &self.sealed;
        pb::ReferralDraft {
            subject: Some(pb::Subject {
                given_name: id.given_name.clone(),
                family_name: id.family_name.clone(),
                aliases: id.aliases.clone(),
                national_id: id
                    .national_id
                    .as_ref()
                    .map(|x| x.as_str().to_owned())
                    .unwrap_or_default(),
                passport_number: id
                    .passport_number
                    .as_ref()
                    .map(|x| x.as_str().to_owned())
                    .unwrap_or_default(),
                refugee_id: id
                    .refugee_id
                    .as_ref()
                    .map(|x| x.as_str().to_owned())
                    .unwrap_or_default(),
                phones: id.phones.iter().map(|p| p.as_str().to_owned()).collect(),
                email: id
                    .email
                    .as_ref()
                    .map(|x| x.as_str().to_owned())
                    .unwrap_or_default(),
                home_address: id.home_address.clone(),
                next_of_kin: id
                    .next_of_kin
                    .iter()
                    .map(|k| pb::NextOfKin {
                        name: k.name.clone(),
                        phone: k
                            .phone
                            .as_ref()
                            .map(|p| p.as_str().to_owned())
                            .unwrap_or_default(),
                        relationship: k.relationship.clone(),
                    })
                    .collect(),
                current_location: loc.current_location.clone(),
                shelter_address: loc.shelter_address.clone(),
                coordinates: loc.coordinates.map(|(latitude, longitude)| pb::GeoPoint {
                    latitude,
                    longitude,
                }),
                date_of_birth: date_str(q.date_of_birth),
                sex: pb::Sex::from_str_name(&q.sex).map_or(0, |x| x as i32),
                nationality: q
                    .nationality
                    .as_ref()
                    .map(|x| x.as_str().to_owned())
                    .unwrap_or_default(),
                county_of_origin: q.county_of_origin.clone().unwrap_or_default(),
                sub_county_of_origin: q.sub_county_of_origin.clone(),
                languages: q.languages.iter().map(|l| l.as_str().to_owned()).collect(),
                is_child: self.is_child,
            }),
            case_facts: Some(pb::CaseFacts {
                acts: names_to_i32(&c.acts, pb::Act::from_str_name),
                means: names_to_i32(&c.means, pb::Means::from_str_name),
                purposes: names_to_i32(&c.purposes, pb::Purpose::from_str_name),
                other_purpose: s.other_purpose.clone(),
                country_of_exploitation: c
                    .country_of_exploitation
                    .as_ref()
                    .map(|x| x.as_str().to_owned())
                    .unwrap_or_default(),
                county_of_recruitment: c.county_of_recruitment.clone().unwrap_or_default(),
                recruitment_route: s.recruitment_route.clone(),
                recruitment_date: date_str(c.recruitment_date),
                identification_date: date_str(c.identification_date),
                narrative: s.narrative.clone(),
            }),
            special: Some(pb::SpecialCategory {
                health_notes: s.special.health_notes.clone(),
                injuries: s.special.injuries.clone(),
                sexual_violence: s.special.sexual_violence,
                psychosocial_notes: s.special.psychosocial_notes.clone(),
            }),
            suspects: s
                .suspects
                .iter()
                .map(|x| pb::Suspect {
                    name: x.name.clone(),
                    phone: x
                        .phone
                        .as_ref()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_default(),
                    vehicles: x.vehicles.clone(),
                    employer: x.employer.clone(),
                    recruitment_agency: x.recruitment_agency.clone(),
                })
                .collect(),
            needs: names_to_i32(&self.needs, pb::Need::from_str_name),
            consent: Some(self.consent.to_proto()),
            urgency: self.urgency as i32,
            classification: self.classification as i32,
            identified_by: self.identified_by as i32,
            county: self.county.clone(),
        }
    }
}

impl ReferralContent {
    /// The identifiers free text is scanned for: the subject's own and the
    /// suspects', now and before every amendment (`sealed.former`).
    pub fn record_identifiers(&self) -> crate::detect::RecordIdentifiers {
        use crate::detect::{HitKind, RecordIdentifiers};
        let id = &self.identity;
        let full_name = format!("{} {}", id.given_name, id.family_name)
            .trim()
            .to_owned();
        let mut subject_names: Vec<String> =
            [id.given_name.clone(), id.family_name.clone(), full_name]
                .into_iter()
                .chain(id.aliases.iter().cloned())
                .chain(id.next_of_kin.iter().map(|k| k.name.clone()))
                .filter(|n| !n.trim().is_empty())
                .collect();
        subject_names.dedup();
        let mut subject_numbers: Vec<(HitKind, String)> = Vec::new();
        if let Some(n) = &id.national_id {
            subject_numbers.push((HitKind::NationalId, n.as_str().to_owned()));
        }
        if let Some(n) = &id.passport_number {
            subject_numbers.push((HitKind::Passport, n.as_str().to_owned()));
        }
        if let Some(n) = &id.refugee_id {
            subject_numbers.push((HitKind::RefugeeId, n.as_str().to_owned()));
        }
        for phone in id
            .phones
            .iter()
            .chain(id.next_of_kin.iter().filter_map(|k| k.phone.as_ref()))
        {
            subject_numbers.push((HitKind::Phone, phone.as_str().to_owned()));
        }
        let suspects = &self.sealed.suspects;
        let mut record = RecordIdentifiers {
            subject_names,
            subject_numbers,
            subject_emails: id.email.iter().map(|e| e.as_str().to_owned()).collect(),
            subject_addresses: [id.home_address.clone()]
                .into_iter()
                .filter(|a| !a.is_empty())
                .collect(),
            locations: [
                self.location.current_location.clone(),
                self.location.shelter_address.clone(),
            ]
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect(),
            suspect_names: suspects
                .iter()
                .flat_map(|s| {
                    [
                        s.name.clone(),
                        s.employer.clone(),
                        s.recruitment_agency.clone(),
                    ]
                })
                .filter(|n| !n.trim().is_empty())
                .collect(),
            suspect_phones: suspects
                .iter()
                .filter_map(|s| s.phone.as_ref().map(|p| p.as_str().to_owned()))
                .collect(),
            suspect_vehicles: suspects
                .iter()
                .flat_map(|s| s.vehicles.iter().cloned())
                .collect(),
        };
        record.absorb(&self.sealed.former);
        record
    }

    /// The agency kinds the subject consented to share with.
    pub fn consented_kinds(&self) -> Vec<pb::AgencyKind> {
        if !self.consent.given {
            return Vec::new();
        }
        self.consent
            .agency_kinds
            .iter()
            .filter_map(|k| pb::AgencyKind::from_str_name(k))
            .collect()
    }
}
