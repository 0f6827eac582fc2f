//! Building a referral's content from the wire: the field validators (enum
//! lists, texts, optional values, list lengths, counties) and
//! [`ReferralContent::from_draft`], which reports every bad field at once.

use chrono::NaiveDate;
use refnet_api::v1 as pb;

use super::{
    CaseRecord, ConsentRecord, IdentityRecord, LocationRecord, MAX_ADDRESS, MAX_NAME,
    MAX_NARRATIVE, MAX_NOTE, MAX_SHORT_LIST, MAX_SUSPECTS, NextOfKinRecord, QuasiRecord,
    ReferralContent, SealedRecord, SpecialRecord, SuspectRecord,
};
use crate::{
    domain::{
        CountryCode, Email, LanguageCode, NationalId, PassportNumber, Phone, RefugeeId, age_on,
        canonical_county, parse_past_date, parse_text,
    },
    error::Violations,
};

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
}
