//! A referral's content as refnet stores it, and its conversion from and to
//! the wire.
//!
//! [`ReferralContent::from_draft`] turns a `ReferralDraft` into validated
//! content, collecting a field violation for every bad field (paths such as
//! `draft.subject.phones[1]`). The content is split by sensitivity for storage:
//! identity and location are sealed per subject, the free text that may repeat
//! them (narrative, notes, suspects) is sealed too, and only quasi-identifiers
//! and case facts stay in clear.

mod to_proto;
mod validate;

use chrono::NaiveDate;
use refnet_api::v1 as pb;
use serde::{Deserialize, Serialize};

pub use to_proto::timestamp;
pub use validate::EnumName;

use super::{CountryCode, Email, LanguageCode, NationalId, PassportNumber, Phone, RefugeeId};

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

impl ReferralContent {
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
