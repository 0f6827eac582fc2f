//! Who is calling: the verified [`Principal`] of an RPC (officer, agency,
//! agency kind, roles) and the spellings of roles and agency kinds in tokens
//! and data files. [`crate::auth`] makes a principal from a token; the rest
//! of refnet (rate limits, the registry, every handler) only reads one.

use std::collections::BTreeSet;

use refnet_api::v1::AgencyKind;

use crate::error::ServiceError;

/// A role an officer holds inside their agency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A desk officer: the agency's column of the policy.
    Officer,
    /// An officer who may also reassign and escalate.
    Supervisor,
    /// Operational data and the audit log only.
    Auditor,
    /// A data-protection officer: operational data only; erases the subjects
    /// of the filing agency's referrals (`EraseSubject`).
    DataProtection,
}

impl Role {
    /// Every role refnet knows, in the order help texts list them.
    pub const ALL: [Self; 4] = [
        Self::Officer,
        Self::Supervisor,
        Self::Auditor,
        Self::DataProtection,
    ];

    /// Parses a role claim; `None` for a role refnet does not know.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "officer" => Some(Self::Officer),
            "supervisor" => Some(Self::Supervisor),
            "auditor" => Some(Self::Auditor),
            "data_protection" => Some(Self::DataProtection),
            _ => None,
        }
    }

    /// The claim spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Officer => "officer",
            Self::Supervisor => "supervisor",
            Self::Auditor => "auditor",
            Self::DataProtection => "data_protection",
        }
    }
}

/// The verified caller of an RPC.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The officer (`sub`).
    pub officer_id: String,
    /// The officer's agency.
    pub agency_id: String,
    /// The agency's kind, as registered.
    pub agency_kind: AgencyKind,
    /// Roles held; never empty.
    pub roles: BTreeSet<Role>,
}

impl Principal {
    /// True when the principal holds any of `roles`.
    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.roles.contains(r))
    }

    /// `Ok` when the principal holds one of `roles`, else PERMISSION_DENIED.
    pub fn require_any(&self, roles: &[Role]) -> Result<(), ServiceError> {
        if self.has_any(roles) {
            Ok(())
        } else {
            Err(ServiceError::PermissionDenied(
                "your role does not allow this operation".into(),
            ))
        }
    }

    /// The principal put into a request's extensions by [`AuthLayer`].
    pub fn of<T>(request: &tonic::Request<T>) -> Result<&Principal, ServiceError> {
        request
            .extensions()
            .get::<Principal>()
            .ok_or_else(|| ServiceError::Unauthenticated("missing credentials".into()))
    }
}

/// The agency kind spelled as in tokens and data files ("POLICE").
pub fn parse_agency_kind(s: &str) -> Option<AgencyKind> {
    AgencyKind::from_str_name(&format!("AGENCY_KIND_{s}")).filter(|k| *k != AgencyKind::Unspecified)
}

/// The spelling of `kind` in tokens and data files ("POLICE").
pub fn agency_kind_name(kind: AgencyKind) -> &'static str {
    kind.as_str_name()
        .strip_prefix("AGENCY_KIND_")
        .unwrap_or("UNSPECIFIED")
}
