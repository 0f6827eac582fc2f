//! A referral's content back to the wire: [`ReferralContent::to_proto`],
//! the consent's wire form, and the protobuf timestamp every service uses.

use chrono::NaiveDate;
use refnet_api::v1 as pb;

use super::{ConsentRecord, ReferralContent};

impl ConsentRecord {
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
