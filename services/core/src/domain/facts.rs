//! The facts routing decides on, as the `ReferralFiled` and `ReferralAmended`
//! events carry them: case facts and coarse attributes only, never an identifier.

use serde::{Deserialize, Serialize};

use super::referral::ReferralContent;

/// What routing knows about a referral.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingFacts {
    /// The subject is a child.
    #[serde(default)]
    pub child: bool,
    /// Nationality, ISO alpha-2, when known.
    #[serde(default)]
    pub nationality: Option<String>,
    /// Purposes of exploitation, short names (`FORCED_LABOUR`).
    #[serde(default)]
    pub purposes: Vec<String>,
    /// Needs, short names (`SHELTER`).
    #[serde(default)]
    pub needs: Vec<String>,
    /// Classification, short name (`SUSPECTED_TIP`).
    #[serde(default)]
    pub classification: String,
    /// County where the case is handled.
    #[serde(default)]
    pub county: String,
    /// Urgency, short name (`HIGH`).
    #[serde(default)]
    pub urgency: String,
    /// Filing agency kind (`POLICE`).
    #[serde(default)]
    pub filing_agency_kind: String,
    /// A suspect names an employer or a recruitment agency.
    #[serde(default)]
    pub employer_involved: bool,
}

fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_owned()
}

impl RoutingFacts {
    /// The routing facts of a referral's content, filed by an agency of `filing_agency_kind` ("POLICE").
    pub fn of(content: &ReferralContent, filing_agency_kind: &str) -> Self {
        Self {
            child: content.is_child,
            nationality: content
                .quasi
                .nationality
                .as_ref()
                .map(|c| c.as_str().to_owned()),
            purposes: content
                .case_facts
                .purposes
                .iter()
                .map(|p| short(p, "PURPOSE_"))
                .collect(),
            needs: content.needs.iter().map(|n| short(n, "NEED_")).collect(),
            classification: short(content.classification.as_str_name(), "CLASSIFICATION_"),
            county: content.county.clone(),
            urgency: short(content.urgency.as_str_name(), "URGENCY_"),
            filing_agency_kind: filing_agency_kind.to_owned(),
            employer_involved: content
                .sealed
                .suspects
                .iter()
                .any(|s| !s.employer.trim().is_empty() || !s.recruitment_agency.trim().is_empty()),
        }
    }
}
