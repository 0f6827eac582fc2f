//! Routing rules as data: a versioned rule set (`rules/default.toml`,
//! compiled in; overridable by configuration) that maps a referral's facts to
//! the agency kinds that must act, each with a purpose.
//!
//! Facts are what the `ReferralFiled` and `ReferralAmended` events carry: case
//! facts and coarse attributes only (child, Kenyan or foreign, purposes, needs,
//! classification, county, urgency, filing agency kind, whether an employer or
//! recruitment agency is involved), never an identifier.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use refnet_api::v1 as pb;
use refnet_core::auth::parse_agency_kind;
pub use refnet_core::domain::facts::RoutingFacts;
use serde::Deserialize;

/// The rule set compiled into refnet.
pub const DEFAULT_RULES: &str = include_str!("../rules/default.toml");

/// A handoff a rule asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedHandoff {
    /// The rule that produced it.
    pub rule_id: String,
    /// The receiving agency kind.
    pub to: pb::AgencyKind,
    /// Why.
    pub purpose: String,
    /// Supporting documents to collect (Trust Fund applications).
    pub checklist: Vec<String>,
    /// Where an agency of the kind may be found.
    pub reach: Reach,
}

/// How far routing looks for an agency of the kind a rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reach {
    /// Only the referral's county.
    County,
    /// The referral's county, else the national agency (the default).
    #[default]
    National,
    /// The county, the national agency, else one in any county.
    Anywhere,
}

impl Reach {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "county" => Some(Self::County),
            "national" => Some(Self::National),
            "anywhere" => Some(Self::Anywhere),
            _ => None,
        }
    }

    /// The name used in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::County => "county",
            Self::National => "national",
            Self::Anywhere => "anywhere",
        }
    }
}

/// What happens to a referral no rule could route (the rule set's
/// `[fallback]`): it waits in the filing agency's triage list, whose
/// supervisors are notified and must route it within `route_within` hours
/// by urgency; when that passes, the supervisors of `escalate_to` (the
/// secretariat by default) are notified too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// The agency kind told when a routing deadline passes.
    pub escalate_to: pb::AgencyKind,
    route_within: BTreeMap<String, chrono::Duration>,
}

impl Fallback {
    /// Route-by hours when the file gives none: as quickly as the receiving
    /// agency would have to acknowledge (CRITICAL 1 h, HIGH 4 h, NORMAL 24 h, LOW 72 h).
    fn default_hours(urgency: &str) -> i64 {
        Deadlines::default_for(urgency).acknowledge.num_hours()
    }

    /// How long supervisors have to route a referral of `urgency` ("HIGH"
    /// or the stored "URGENCY_HIGH").
    pub fn route_within(&self, urgency: &str) -> chrono::Duration {
        let urgency = urgency.strip_prefix("URGENCY_").unwrap_or(urgency);
        self.route_within
            .get(urgency)
            .copied()
            .unwrap_or_else(|| chrono::Duration::hours(Self::default_hours(urgency)))
    }
}

#[derive(Debug, Clone)]
struct Rule {
    id: String,
    description: String,
    child: Option<bool>,
    nationality: Option<Nationality>,
    purposes: BTreeSet<String>,
    needs: BTreeSet<String>,
    classifications: BTreeSet<String>,
    counties: BTreeSet<String>,
    urgencies: BTreeSet<String>,
    filing_agency_kinds: BTreeSet<String>,
    not_filing_agency_kinds: BTreeSet<String>,
    employer_involved: Option<bool>,
    to: pb::AgencyKind,
    purpose: String,
    purpose_by_need: Vec<(String, String)>,
    checklist: Vec<String>,
    reach: Reach,
    second_choice: Option<pb::AgencyKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nationality {
    Kenyan,
    Foreign,
}

/// How long the receiving agency has, in wall-clock time from routing, to
/// acknowledge a handoff and to decide it (accept or decline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Acknowledge within.
    pub acknowledge: chrono::Duration,
    /// Accept or decline within.
    pub decide: chrono::Duration,
}

impl Deadlines {
    fn hours(acknowledge: i64, decide: i64) -> Self {
        Self {
            acknowledge: chrono::Duration::hours(acknowledge),
            decide: chrono::Duration::hours(decide),
        }
    }

    /// The defaults for an urgency ("CRITICAL", ...): acknowledge as domain.md
    /// suggests (1 h, 4 h, 24 h, 72 h), decide within 4 h, 24 h, 72 h, 7 days.
    pub fn default_for(urgency: &str) -> Self {
        match urgency {
            "CRITICAL" => Self::hours(1, 4),
            "HIGH" => Self::hours(4, 24),
            "LOW" => Self::hours(72, 168),
            _ => Self::hours(24, 72),
        }
    }
}

/// The urgencies deadlines are set for.
const URGENCIES: [&str; 4] = ["CRITICAL", "HIGH", "NORMAL", "LOW"];

/// A validated rule set.
#[derive(Debug, Clone)]
pub struct RuleSet {
    version: String,
    rules: Vec<Rule>,
    deadlines: BTreeMap<String, Deadlines>,
    fallback: Fallback,
}

/// A rule file that is wrong; names the file and the entry.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {entry}: {problem}")]
pub struct RulesError {
    file: String,
    entry: String,
    problem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    version: String,
    #[serde(default)]
    deadlines: BTreeMap<String, RawDeadlines>,
    #[serde(default)]
    rule: Vec<RawRule>,
    fallback: Option<RawFallback>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFallback {
    escalate_to: Option<String>,
    #[serde(default)]
    route_within_hours: BTreeMap<String, i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeadlines {
    acknowledge_hours: i64,
    decide_hours: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    #[serde(default)]
    description: String,
    child: Option<bool>,
    nationality: Option<String>,
    #[serde(default)]
    purposes: Vec<String>,
    #[serde(default)]
    needs: Vec<String>,
    #[serde(default)]
    classifications: Vec<String>,
    #[serde(default)]
    counties: Vec<String>,
    #[serde(default)]
    urgencies: Vec<String>,
    #[serde(default)]
    filing_agency_kinds: Vec<String>,
    #[serde(default)]
    not_filing_agency_kinds: Vec<String>,
    employer_involved: Option<bool>,
    to: String,
    purpose: String,
    #[serde(default)]
    purpose_by_need: Vec<RawPurposeByNeed>,
    #[serde(default)]
    checklist: Vec<String>,
    reach: Option<String>,
    second_choice: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurposeByNeed {
    need: String,
    purpose: String,
}

/// Checks a short enum name against a proto enum's values (`PREFIX_NAME`).
fn known(prefix: &str, name: &str, parse: fn(&str) -> bool) -> bool {
    parse(&format!("{prefix}{name}"))
}

impl RuleSet {
    /// The compiled-in rule set.
    pub fn default_rules() -> Result<Self, RulesError> {
        Self::parse(DEFAULT_RULES, "<built-in routing rules>")
    }

    /// Loads and validates a rule file.
    pub fn load(path: &Path) -> Result<Self, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|e| RulesError {
            file: path.display().to_string(),
            entry: "file".into(),
            problem: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates rule text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, RulesError> {
        let err = |entry: &str, problem: String| RulesError {
            file: file.to_owned(),
            entry: entry.to_owned(),
            problem,
        };
        let raw: RawRules =
            toml::from_str(text).map_err(|e| err("syntax", e.to_string().trim().to_owned()))?;
        if raw.version.trim().is_empty() {
            return Err(err("version", "must not be empty".into()));
        }
        let mut deadlines: BTreeMap<String, Deadlines> = URGENCIES
            .iter()
            .map(|u| ((*u).to_owned(), Deadlines::default_for(u)))
            .collect();
        for (urgency, d) in raw.deadlines {
            let entry = format!("deadlines.{urgency}");
            if !URGENCIES.contains(&urgency.as_str()) {
                return Err(err(
                    &entry,
                    format!("unknown urgency (one of {})", URGENCIES.join(", ")),
                ));
            }
            if !(1..=24 * 90).contains(&d.acknowledge_hours)
                || !(d.acknowledge_hours..=24 * 365).contains(&d.decide_hours)
            {
                return Err(err(
                    &entry,
                    "acknowledge_hours must be 1..=2160 and decide_hours at least acknowledge_hours (at most 8760)".into(),
                ));
            }
            deadlines.insert(
                urgency,
                Deadlines::hours(d.acknowledge_hours, d.decide_hours),
            );
        }
        let mut ids = BTreeSet::new();
        let mut rules = Vec::new();
        for (i, r) in raw.rule.into_iter().enumerate() {
            let entry = format!("rule #{} ({:?})", i + 1, r.id);
            let id_ok = !r.id.is_empty()
                && r.id.len() <= 64
                && r.id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !id_ok {
                return Err(err(&entry, "id must be 1-64 of [A-Za-z0-9_-]".into()));
            }
            if !ids.insert(r.id.clone()) {
                return Err(err(&entry, "duplicate id".into()));
            }
            let check = |field: &str,
                         values: &[String],
                         prefix: &str,
                         parse: fn(&str) -> bool|
             -> Result<BTreeSet<String>, RulesError> {
                values
                    .iter()
                    .map(|v| {
                        if known(prefix, v, parse) {
                            Ok(v.clone())
                        } else {
                            Err(err(
                                &format!("{entry}.{field}"),
                                format!("unknown value {v:?}"),
                            ))
                        }
                    })
                    .collect()
            };
            let kind = |field: &str, v: &String| {
                parse_agency_kind(v).ok_or_else(|| {
                    err(
                        &format!("{entry}.{field}"),
                        format!("unknown agency kind {v:?}"),
                    )
                })
            };
            let purposes = check("purposes", &r.purposes, "PURPOSE_", |s| {
                pb::Purpose::from_str_name(s).is_some()
            })?;
            let needs = check("needs", &r.needs, "NEED_", |s| {
                pb::Need::from_str_name(s).is_some()
            })?;
            let classifications = check(
                "classifications",
                &r.classifications,
                "CLASSIFICATION_",
                |s| pb::Classification::from_str_name(s).is_some(),
            )?;
            let urgencies = check("urgencies", &r.urgencies, "URGENCY_", |s| {
                pb::Urgency::from_str_name(s).is_some()
            })?;
            for k in r
                .filing_agency_kinds
                .iter()
                .chain(&r.not_filing_agency_kinds)
            {
                kind("filing_agency_kinds", k)?;
            }
            let mut counties = BTreeSet::new();
            for c in &r.counties {
                let canonical = refnet_core::domain::canonical_county(c).ok_or_else(|| {
                    err(
                        &format!("{entry}.counties"),
                        format!("unknown county {c:?}"),
                    )
                })?;
                counties.insert(canonical.to_owned());
            }
            let nationality = match r.nationality.as_deref() {
                None => None,
                Some("kenyan") => Some(Nationality::Kenyan),
                Some("foreign") => Some(Nationality::Foreign),
                Some(other) => {
                    return Err(err(
                        &format!("{entry}.nationality"),
                        format!("unknown value {other:?} (kenyan, foreign)"),
                    ));
                }
            };
            let mut purpose_by_need = Vec::new();
            for p in r.purpose_by_need {
                if !known("NEED_", &p.need, |s| pb::Need::from_str_name(s).is_some()) {
                    return Err(err(
                        &format!("{entry}.purpose_by_need"),
                        format!("unknown need {:?}", p.need),
                    ));
                }
                purpose_by_need.push((p.need, p.purpose));
            }
            if r.purpose.trim().is_empty() {
                return Err(err(&format!("{entry}.purpose"), "must not be empty".into()));
            }
            let reach = match r.reach.as_deref() {
                None => Reach::default(),
                Some(v) => Reach::parse(v).ok_or_else(|| {
                    err(
                        &format!("{entry}.reach"),
                        format!("unknown value {v:?} (county, national, anywhere)"),
                    )
                })?,
            };
            let to = kind("to", &r.to)?;
            let second_choice = match &r.second_choice {
                None => None,
                Some(v) => {
                    let k = kind("second_choice", v)?;
                    if k == to {
                        return Err(err(
                            &format!("{entry}.second_choice"),
                            "must name another agency kind than `to`".into(),
                        ));
                    }
                    Some(k)
                }
            };
            rules.push(Rule {
                to,
                reach,
                second_choice,
                id: r.id,
                description: r.description,
                child: r.child,
                nationality,
                purposes,
                needs,
                classifications,
                counties,
                urgencies,
                filing_agency_kinds: r.filing_agency_kinds.into_iter().collect(),
                not_filing_agency_kinds: r.not_filing_agency_kinds.into_iter().collect(),
                employer_involved: r.employer_involved,
                purpose: r.purpose,
                purpose_by_need,
                checklist: r.checklist,
            });
        }
        let raw_fallback = raw.fallback.unwrap_or(RawFallback {
            escalate_to: None,
            route_within_hours: BTreeMap::new(),
        });
        let escalate_to = match &raw_fallback.escalate_to {
            None => pb::AgencyKind::Secretariat,
            Some(v) => parse_agency_kind(v)
                .ok_or_else(|| err("fallback.escalate_to", format!("unknown agency kind {v:?}")))?,
        };
        let mut route_within = BTreeMap::new();
        for (urgency, hours) in raw_fallback.route_within_hours {
            let entry = format!("fallback.route_within_hours.{urgency}");
            if !URGENCIES.contains(&urgency.as_str()) {
                return Err(err(
                    &entry,
                    format!("unknown urgency (one of {})", URGENCIES.join(", ")),
                ));
            }
            if !(1..=24 * 90).contains(&hours) {
                return Err(err(&entry, "must be 1..=2160 hours".into()));
            }
            route_within.insert(urgency, chrono::Duration::hours(hours));
        }
        Ok(Self {
            version: raw.version,
            rules,
            deadlines,
            fallback: Fallback {
                escalate_to,
                route_within,
            },
        })
    }

    /// What happens to a referral no rule routes.
    pub fn fallback(&self) -> &Fallback {
        &self.fallback
    }

    /// The second choice the rule `rule_id` names, if any: the agency kind
    /// tried when its handoff is declined.
    pub fn second_choice(&self, rule_id: &str) -> Option<(pb::AgencyKind, Reach)> {
        self.rules
            .iter()
            .find(|r| r.id == rule_id)
            .and_then(|r| r.second_choice.map(|k| (k, r.reach)))
    }

    /// The deadlines for handoffs of a referral of `urgency` ("CRITICAL" or
    /// the stored "URGENCY_CRITICAL", ...).
    pub fn deadlines(&self, urgency: &str) -> Deadlines {
        let urgency = urgency.strip_prefix("URGENCY_").unwrap_or(urgency);
        self.deadlines
            .get(urgency)
            .copied()
            .unwrap_or_else(|| Deadlines::default_for(urgency))
    }

    /// The rule set's version, recorded on every handoff it produces.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every rule that fires for `facts`, in file order, with why the others did not.
    pub fn explain(&self, facts: &RoutingFacts) -> Vec<(String, Result<PlannedHandoff, String>)> {
        self.rules
            .iter()
            .map(|r| (r.id.clone(), r.evaluate(facts)))
            .collect()
    }

    /// The handoffs for `facts`: one per agency kind, from the first rule that fires for it.
    pub fn route(&self, facts: &RoutingFacts) -> Vec<PlannedHandoff> {
        let mut seen = BTreeSet::new();
        self.rules
            .iter()
            .filter_map(|r| r.evaluate(facts).ok())
            .filter(|h| seen.insert(h.to))
            .collect()
    }

    /// Every purpose the rules name (the vocabulary of manual handoffs).
    pub fn purposes(&self) -> BTreeSet<String> {
        self.rules
            .iter()
            .flat_map(|r| {
                std::iter::once(r.purpose.clone())
                    .chain(r.purpose_by_need.iter().map(|(_, p)| p.clone()))
            })
            .collect()
    }

    /// A human summary of the rules, for `refnet rules check`.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "routing rules {} ({} rules)\n",
            self.version,
            self.rules.len()
        );
        for r in &self.rules {
            out.push_str(&format!(
                "  {:<32} -> {:<12} {}\n",
                r.id,
                refnet_core::auth::agency_kind_name(r.to),
                r.description
            ));
        }
        for r in self
            .rules
            .iter()
            .filter(|r| r.second_choice.is_some() || r.reach != Reach::default())
        {
            out.push_str(&format!(
                "  {:<32}    reach {}{}\n",
                r.id,
                r.reach.as_str(),
                r.second_choice.map_or(String::new(), |k| format!(
                    ", second choice {}",
                    refnet_core::auth::agency_kind_name(k)
                ))
            ));
        }
        out.push_str("deadlines (acknowledge / decide, hours)\n");
        for u in URGENCIES {
            let d = self.deadlines(u);
            out.push_str(&format!(
                "  {:<32} {:>5} / {}\n",
                u,
                d.acknowledge.num_hours(),
                d.decide.num_hours()
            ));
        }
        out.push_str(&format!(
            "fallback: unrouted referrals wait in the filing agency's triage list; route within (hours), then {} is told\n",
            refnet_core::auth::agency_kind_name(self.fallback.escalate_to)
        ));
        for u in URGENCIES {
            out.push_str(&format!(
                "  {:<32} {:>5}\n",
                u,
                self.fallback.route_within(u).num_hours()
            ));
        }
        out
    }
}

impl Rule {
    fn evaluate(&self, f: &RoutingFacts) -> Result<PlannedHandoff, String> {
        if let Some(child) = self.child
            && child != f.child
        {
            return Err(format!("needs child = {child}"));
        }
        if let Some(n) = self.nationality {
            let actual = match f.nationality.as_deref() {
                Some("KE") => Some(Nationality::Kenyan),
                Some(c) if !c.is_empty() => Some(Nationality::Foreign),
                _ => None,
            };
            if actual != Some(n) {
                return Err(format!(
                    "needs a {} national",
                    if n == Nationality::Kenyan {
                        "Kenyan"
                    } else {
                        "foreign"
                    }
                ));
            }
        }
        let any = |set: &BTreeSet<String>, values: &[String]| {
            set.is_empty() || values.iter().any(|v| set.contains(v))
        };
        let one = |set: &BTreeSet<String>, value: &str| set.is_empty() || set.contains(value);
        if !any(&self.purposes, &f.purposes) {
            return Err(format!("needs a purpose among {:?}", self.purposes));
        }
        if !any(&self.needs, &f.needs) {
            return Err(format!("needs a need among {:?}", self.needs));
        }
        if !one(&self.classifications, &f.classification) {
            return Err(format!(
                "needs a classification among {:?}",
                self.classifications
            ));
        }
        if !one(&self.counties, &f.county) {
            return Err(format!("needs a county among {:?}", self.counties));
        }
        if !one(&self.urgencies, &f.urgency) {
            return Err(format!("needs an urgency among {:?}", self.urgencies));
        }
        if !one(&self.filing_agency_kinds, &f.filing_agency_kind) {
            return Err(format!(
                "needs a filing agency among {:?}",
                self.filing_agency_kinds
            ));
        }
        if self.not_filing_agency_kinds.contains(&f.filing_agency_kind) {
            return Err(format!(
                "not for referrals filed by {}",
                f.filing_agency_kind
            ));
        }
        if let Some(e) = self.employer_involved
            && e != f.employer_involved
        {
            return Err(format!("needs employer_involved = {e}"));
        }
        let purpose = self
            .purpose_by_need
            .iter()
            .find(|(need, _)| f.needs.contains(need))
            .map_or_else(|| self.purpose.clone(), |(_, p)| p.clone());
        Ok(PlannedHandoff {
            rule_id: self.id.clone(),
            to: self.to,
            purpose,
            checklist: self.checklist.clone(),
            reach: self.reach,
        })
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
