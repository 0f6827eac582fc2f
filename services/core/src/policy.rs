//! The redaction policy: which action each sensitivity class gets for a
//! viewer, as a data file (`policy/redaction.toml`, compiled in; overridable by
//! configuration) validated at start.
//!
//! [`Policy::view`] turns a viewer (agency kind, roles), the subject's state
//! (consent, protection) and the viewer's relation to the referral into one
//! action per class, computed once per reply. Overrides only ever tighten.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::Path,
};

use refnet_api::v1::{AgencyKind, RedactionAction, RedactionReason, Sensitivity};
use serde::Deserialize;

use crate::auth::{Role, agency_kind_name, parse_agency_kind};

/// The policy compiled into refnet.
pub const DEFAULT_POLICY: &str = include_str!("../policy/redaction.toml");

/// What is done to a field of some class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Shown as is.
    Show,
    /// A hint is kept (initials, last 3 digits).
    Mask,
    /// Coarsened (age band, county).
    Generalise,
    /// The subject's pseudonym instead of their name; other identifiers removed.
    Pseudonymise,
    /// Removed.
    Drop,
}

impl Action {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "show" => Some(Self::Show),
            "mask" => Some(Self::Mask),
            "generalise" => Some(Self::Generalise),
            "pseudonymise" => Some(Self::Pseudonymise),
            "drop" => Some(Self::Drop),
            _ => None,
        }
    }

    /// The policy-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Show => "show",
            Self::Mask => "mask",
            Self::Generalise => "generalise",
            Self::Pseudonymise => "pseudonymise",
            Self::Drop => "drop",
        }
    }

    /// The wire form (SHOW has none: nothing was redacted).
    pub fn to_proto(self) -> RedactionAction {
        match self {
            Self::Show => RedactionAction::Unspecified,
            Self::Mask => RedactionAction::Mask,
            Self::Generalise => RedactionAction::Generalise,
            Self::Pseudonymise => RedactionAction::Pseudonymise,
            Self::Drop => RedactionAction::Drop,
        }
    }
}

/// The classes the policy decides (OPERATIONAL is always shown to parties).
pub const POLICY_CLASSES: [Sensitivity; 7] = [
    Sensitivity::Identity,
    Sensitivity::Location,
    Sensitivity::QuasiIdentifier,
    Sensitivity::Case,
    Sensitivity::Special,
    Sensitivity::Suspect,
    Sensitivity::Protection,
];

/// How many sensitivity values there are (UNSPECIFIED and OPERATIONAL included).
const CLASS_COUNT: usize = 9;

fn class_name(class: Sensitivity) -> &'static str {
    class
        .as_str_name()
        .strip_prefix("SENSITIVITY_")
        .unwrap_or("UNSPECIFIED")
}

fn parse_class(s: &str) -> Option<Sensitivity> {
    Sensitivity::from_str_name(&format!("SENSITIVITY_{s}"))
        .filter(|c| *c != Sensitivity::Unspecified)
}

fn class_index(class: Sensitivity) -> usize {
    class as usize
}

/// A per-class table of actions, indexed by `Sensitivity as usize`.
type Row = [Action; CLASS_COUNT];

/// How a role sees a referral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoleView {
    Agency,
    Operational,
}

#[derive(Debug, Clone)]
struct Override {
    kinds: BTreeSet<AgencyKind>,
    actions: BTreeMap<Sensitivity, Action>,
}

#[derive(Debug, Clone)]
struct LocationException {
    action: Action,
    handoff_state: String,
    purposes: Vec<String>,
}

/// A validated redaction policy.
#[derive(Debug, Clone)]
pub struct Policy {
    version: String,
    agency: BTreeMap<AgencyKind, Row>,
    location_exceptions: BTreeMap<AgencyKind, LocationException>,
    protected_exempt: BTreeSet<AgencyKind>,
    protected: BTreeMap<Sensitivity, Action>,
    coarse_quasi_when_protected: bool,
    no_consent: Override,
    roles: BTreeMap<Role, RoleView>,
}

/// A policy file that is wrong; the message names the file and the entry.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {entry}: {problem}")]
pub struct PolicyError {
    file: String,
    entry: String,
    problem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: String,
    agency: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    location_exception: BTreeMap<String, RawLocationException>,
    #[serde(rename = "override")]
    overrides: RawOverrides,
    roles: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocationException {
    action: String,
    handoff_state: String,
    purposes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverrides {
    protected: RawProtected,
    no_consent: RawNoConsent,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProtected {
    exempt: Vec<String>,
    #[serde(default)]
    coarse_quasi_identifiers: bool,
    actions: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNoConsent {
    applies_to: Vec<String>,
    actions: BTreeMap<String, String>,
}

/// The subject's state that redaction depends on.
#[derive(Debug, Clone, Default)]
pub struct SubjectState {
    /// The agency kinds the subject (or guardian) consented to share with; empty: none.
    pub consented_kinds: Vec<AgencyKind>,
    /// The WPA pseudonym when the subject is protected.
    pub protected_pseudonym: Option<String>,
    /// A stable pseudonymous token for the subject (e.g. `Subject-7F3K`).
    pub pseudonym: String,
}

/// The viewer's relation to the referral.
#[derive(Debug, Clone, Default)]
pub struct Relation {
    /// The state and purpose of the viewer's handoff, when it received one.
    pub handoff: Option<(String, String)>,
}

/// One class's decision for one viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The action.
    pub action: Action,
    /// Why (meaningful when the action is not SHOW).
    pub reason: RedactionReason,
}

/// Every class's decision for one viewer of one subject, computed once per reply.
#[derive(Debug, Clone)]
pub struct View {
    decisions: [Decision; CLASS_COUNT],
    /// Quasi-identifiers are generalised coarsely (age band only).
    pub coarse_quasi: bool,
    /// What PSEUDONYMISE puts in place of the subject's name.
    pub pseudonym: String,
}

impl View {
    /// The decision for `class`.
    pub fn decide(&self, class: Sensitivity) -> Decision {
        self.decisions[class_index(class)]
    }
}

/// The viewer's role is not in the policy: PERMISSION_DENIED.
#[derive(Debug, thiserror::Error)]
#[error("no role of the caller is in the redaction policy")]
pub struct RoleRefused;

impl Policy {
    /// The compiled-in default policy.
    pub fn default_policy() -> Result<Self, PolicyError> {
        Self::parse(DEFAULT_POLICY, "<built-in redaction policy>")
    }

    /// Loads and validates a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            file: path.display().to_string(),
            entry: "file".into(),
            problem: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates policy text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, PolicyError> {
        let err = |entry: &str, problem: String| PolicyError {
            file: file.to_owned(),
            entry: entry.to_owned(),
            problem,
        };
        let raw: RawPolicy =
            toml::from_str(text).map_err(|e| err("syntax", e.to_string().trim().to_owned()))?;
        let kind = |entry: &str, s: &str| {
            parse_agency_kind(s).ok_or_else(|| err(entry, format!("unknown agency kind {s:?}")))
        };
        let action = |entry: &str, s: &str| {
            Action::parse(s).ok_or_else(|| {
                err(
                    entry,
                    format!("unknown action {s:?} (show, mask, generalise, pseudonymise, drop)"),
                )
            })
        };
        let class = |entry: &str, s: &str| {
            parse_class(s).ok_or_else(|| err(entry, format!("unknown class {s:?}")))
        };
        let actions = |entry: &str,
                       map: &BTreeMap<String, String>|
         -> Result<BTreeMap<Sensitivity, Action>, PolicyError> {
            let mut out = BTreeMap::new();
            for (c, a) in map {
                let at = format!("{entry}.{c}");
                let c = class(&at, c)?;
                if c == Sensitivity::Operational {
                    return Err(err(
                        &at,
                        "OPERATIONAL is always shown to parties and cannot be set".into(),
                    ));
                }
                out.insert(c, action(&at, a)?);
            }
            Ok(out)
        };

        if raw.version.trim().is_empty() {
            return Err(err("version", "must not be empty".into()));
        }
        let mut agency = BTreeMap::new();
        for (k, map) in &raw.agency {
            let entry = format!("agency.{k}");
            let kind = kind(&entry, k)?;
            let given = actions(&entry, map)?;
            let mut row = [Action::Drop; CLASS_COUNT];
            row[class_index(Sensitivity::Operational)] = Action::Show;
            for c in POLICY_CLASSES {
                row[class_index(c)] = *given
                    .get(&c)
                    .ok_or_else(|| err(&entry, format!("missing class {}", class_name(c))))?;
            }
            agency.insert(kind, row);
        }
        for k in all_kinds() {
            if !agency.contains_key(&k) {
                return Err(err(
                    "agency",
                    format!("missing agency kind {}", agency_kind_name(k)),
                ));
            }
        }
        let mut location_exceptions = BTreeMap::new();
        for (k, ex) in &raw.location_exception {
            let entry = format!("location_exception.{k}");
            location_exceptions.insert(
                kind(&entry, k)?,
                LocationException {
                    action: action(&format!("{entry}.action"), &ex.action)?,
                    handoff_state: ex.handoff_state.clone(),
                    purposes: ex.purposes.iter().map(|p| p.to_lowercase()).collect(),
                },
            );
        }
        let protected_exempt = raw
            .overrides
            .protected
            .exempt
            .iter()
            .map(|k| kind("override.protected.exempt", k))
            .collect::<Result<_, _>>()?;
        let protected = actions(
            "override.protected.actions",
            &raw.overrides.protected.actions,
        )?;
        let no_consent = Override {
            kinds: raw
                .overrides
                .no_consent
                .applies_to
                .iter()
                .map(|k| kind("override.no_consent.applies_to", k))
                .collect::<Result<_, _>>()?,
            actions: actions(
                "override.no_consent.actions",
                &raw.overrides.no_consent.actions,
            )?,
        };
        let mut roles = BTreeMap::new();
        for (r, v) in &raw.roles {
            let entry = format!("roles.{r}");
            let role = Role::parse(r).ok_or_else(|| err(&entry, format!("unknown role {r:?}")))?;
            let view = match v.as_str() {
                "agency" => RoleView::Agency,
                "operational" => RoleView::Operational,
                other => {
                    return Err(err(
                        &entry,
                        format!("unknown role view {other:?} (agency, operational)"),
                    ));
                }
            };
            roles.insert(role, view);
        }
        Ok(Self {
            version: raw.version,
            agency,
            location_exceptions,
            protected_exempt,
            protected,
            coarse_quasi_when_protected: raw.overrides.protected.coarse_quasi_identifiers,
            no_consent,
            roles,
        })
    }

    /// The policy's version string.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The decisions for `viewer_kind` with `roles` looking at a subject in `subject`'s state.
    pub fn view(
        &self,
        viewer_kind: AgencyKind,
        roles: &BTreeSet<Role>,
        subject: &SubjectState,
        relation: &Relation,
    ) -> Result<View, RoleRefused> {
        // The most permissive of the caller's roles that the policy knows.
        let role_view = roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .min_by_key(|v| matches!(v, RoleView::Operational))
            .copied()
            .ok_or(RoleRefused)?;
        let base = self
            .agency
            .get(&viewer_kind)
            .copied()
            .unwrap_or([Action::Drop; CLASS_COUNT]);
        let mut decisions = [Decision {
            action: Action::Drop,
            reason: RedactionReason::AgencyPolicy,
        }; CLASS_COUNT];
        for (i, a) in base.iter().enumerate() {
            decisions[i] = Decision {
                action: *a,
                reason: RedactionReason::AgencyPolicy,
            };
        }
        decisions[class_index(Sensitivity::Operational)] = Decision {
            action: Action::Show,
            reason: RedactionReason::Unspecified,
        };
        if let (Some(ex), Some((state, purpose))) = (
            self.location_exceptions.get(&viewer_kind),
            relation.handoff.as_ref(),
        ) && ex.handoff_state.eq_ignore_ascii_case(state)
            && ex
                .purposes
                .iter()
                .any(|p| purpose.to_lowercase().contains(p.as_str()))
        {
            decisions[class_index(Sensitivity::Location)].action = ex.action;
        }
        // Overrides apply weakest first (no consent, then protection); a
        // later one that is as strict as what stands takes over the reason,
        // so the reply names the strongest override that applies.
        let tighten = |decisions: &mut [Decision; CLASS_COUNT],
                       actions: &BTreeMap<Sensitivity, Action>,
                       reason| {
            for (class, action) in actions {
                let d = &mut decisions[class_index(*class)];
                let overridden = matches!(
                    d.reason,
                    RedactionReason::NoConsent | RedactionReason::Protected
                );
                if *action > d.action || (*action == d.action && overridden) {
                    *d = Decision {
                        action: *action,
                        reason,
                    };
                }
            }
        };
        if role_view == RoleView::Operational {
            for c in POLICY_CLASSES {
                decisions[class_index(c)] = Decision {
                    action: Action::Drop,
                    reason: RedactionReason::Role,
                };
            }
        }
        if self.no_consent.kinds.contains(&viewer_kind)
            && !subject.consented_kinds.contains(&viewer_kind)
        {
            tighten(
                &mut decisions,
                &self.no_consent.actions,
                RedactionReason::NoConsent,
            );
        }
        let protected =
            subject.protected_pseudonym.is_some() && !self.protected_exempt.contains(&viewer_kind);
        if protected {
            tighten(&mut decisions, &self.protected, RedactionReason::Protected);
        }
        Ok(View {
            decisions,
            coarse_quasi: protected && self.coarse_quasi_when_protected,
            pseudonym: subject
                .protected_pseudonym
                .clone()
                .unwrap_or_else(|| subject.pseudonym.clone()),
        })
    }

    /// The effective matrix, as `refnet policy check` prints it.
    pub fn matrix(&self) -> String {
        let mut out = format!(
            "redaction policy {}\n\n{:<18}",
            self.version, "class \\ agency"
        );
        let kinds: Vec<AgencyKind> = all_kinds().collect();
        for k in &kinds {
            let _ = write!(out, "{:<13}", agency_kind_name(*k));
        }
        out.push('\n');
        for c in POLICY_CLASSES {
            let _ = write!(out, "{:<18}", class_name(c));
            for k in &kinds {
                let a = self
                    .agency
                    .get(k)
                    .map_or(Action::Drop, |r| r[class_index(c)]);
                let mark = if c == Sensitivity::Location && self.location_exceptions.contains_key(k)
                {
                    "*"
                } else {
                    ""
                };
                let _ = write!(out, "{:<13}", format!("{}{mark}", a.as_str()));
            }
            out.push('\n');
        }
        for (k, ex) in &self.location_exceptions {
            let _ = writeln!(
                out,
                "\n* {} LOCATION: {} when its handoff is {} with purpose {}",
                agency_kind_name(*k),
                ex.action.as_str(),
                ex.handoff_state,
                ex.purposes.join(" or ")
            );
        }
        let list = |m: &BTreeMap<Sensitivity, Action>| {
            m.iter()
                .map(|(c, a)| format!("{} {}", class_name(*c), a.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let kinds_list = |s: &BTreeSet<AgencyKind>| {
            s.iter()
                .map(|k| agency_kind_name(*k))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "\nprotected subject (all but {}): {}{}",
            kinds_list(&self.protected_exempt),
            list(&self.protected),
            if self.coarse_quasi_when_protected {
                "; quasi-identifiers: age band only"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "no consent ({}): {}",
            kinds_list(&self.no_consent.kinds),
            list(&self.no_consent.actions)
        );
        let roles = self
            .roles
            .iter()
            .map(|(r, v)| {
                format!(
                    "{} = {}",
                    r.as_str(),
                    if *v == RoleView::Agency {
                        "agency column"
                    } else {
                        "operational only"
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(out, "roles: {roles}; any other role is refused");
        out
    }
}

fn all_kinds() -> impl Iterator<Item = AgencyKind> {
    (1..=10).filter_map(|n| AgencyKind::try_from(n).ok())
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
