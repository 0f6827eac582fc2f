//! Permissions as data: who may call which RPC (`policy/permissions.toml`,
//! compiled in; an operator's `permissions_file` may only tighten it). The
//! auth layer checks the caller's roles and agency kind against it before any
//! handler runs; the handler then checks the relation the file names (party,
//! filer, recipient, ...) on the object the request names.

use std::collections::{BTreeMap, BTreeSet};

use refnet_api::v1::AgencyKind;
use serde::Deserialize;

use crate::{
    error::ServiceError,
    principal::{Principal, Role, agency_kind_name, parse_agency_kind},
};

/// The permissions compiled into refnet.
pub const DEFAULT_PERMISSIONS: &str = include_str!("../policy/permissions.toml");

/// What the handler checks on the object a request names.
pub const RELATIONS: [&str; 8] = [
    "none",
    "party",
    "filer",
    "recipient",
    "sender",
    "either",
    "requester",
    "filer-or-wpa",
];

/// One way to be allowed an RPC: one of `roles`, in an agency of one of
/// `kinds` (any kind when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Roles, one of which the caller must hold.
    pub roles: BTreeSet<Role>,
    /// Agency kinds, one of which the caller's agency must be; `None`: any.
    pub kinds: Option<BTreeSet<AgencyKind>>,
}

impl Grant {
    fn holds(&self, principal: &Principal) -> bool {
        principal.roles.iter().any(|r| self.roles.contains(r))
            && self
                .kinds
                .as_ref()
                .is_none_or(|k| k.contains(&principal.agency_kind))
    }

    /// Whether every caller this grant lets in, `wider` lets in too.
    fn within(&self, wider: &Grant) -> bool {
        self.roles.is_subset(&wider.roles)
            && match (&self.kinds, &wider.kinds) {
                (_, None) => true,
                (None, Some(_)) => false,
                (Some(mine), Some(theirs)) => mine.is_subset(theirs),
            }
    }

    fn describe(&self) -> String {
        let roles: Vec<&str> = self.roles.iter().map(|r| r.as_str()).collect();
        match &self.kinds {
            None => format!("{} (any agency)", roles.join("|")),
            Some(kinds) => format!(
                "{} of {}",
                roles.join("|"),
                kinds
                    .iter()
                    .map(|k| agency_kind_name(*k))
                    .collect::<Vec<_>>()
                    .join("|")
            ),
        }
    }
}

/// Who may call one RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcPermission {
    /// The grants, any of which lets a caller in.
    pub grants: Vec<Grant>,
    /// What the handler checks on the object (one of [`RELATIONS`]).
    pub relation: String,
}

/// A validated permission table, keyed by `package.Service/Method`.
#[derive(Debug, Clone)]
pub struct Permissions {
    version: String,
    rpcs: BTreeMap<String, RpcPermission>,
}

/// A permission file that is wrong; names the file and the entry.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {entry}: {problem}")]
pub struct PermissionsError {
    file: String,
    entry: String,
    problem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: String,
    #[serde(default)]
    rpc: BTreeMap<String, RawRpc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRpc {
    grants: Vec<RawGrant>,
    relation: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    roles: Vec<String>,
    agency_kinds: Option<Vec<String>>,
}

impl Permissions {
    /// The compiled-in permissions.
    pub fn default_permissions() -> Result<Self, PermissionsError> {
        Self::parse(DEFAULT_PERMISSIONS, "<built-in permissions>")
    }

    /// Loads an override file: valid, and no wider than the compiled-in table.
    pub fn load_override(path: &std::path::Path) -> Result<Self, PermissionsError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PermissionsError {
            file: file.clone(),
            entry: "file".into(),
            problem: e.to_string(),
        })?;
        let loaded = Self::parse(&text, &file)?;
        loaded.tightens(&Self::default_permissions()?, &file)?;
        Ok(loaded)
    }

    /// Parses and validates permission text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, PermissionsError> {
        let err = |entry: &str, problem: String| PermissionsError {
            file: file.to_owned(),
            entry: entry.to_owned(),
            problem,
        };
        let raw: RawFile =
            toml::from_str(text).map_err(|e| err("syntax", e.to_string().trim().to_owned()))?;
        if raw.version.trim().is_empty() {
            return Err(err("version", "must not be empty".into()));
        }
        let mut rpcs = BTreeMap::new();
        for (name, rpc) in raw.rpc {
            let entry = format!("rpc {name:?}");
            let shape_ok = name
                .split_once('/')
                .is_some_and(|(service, method)| !service.is_empty() && !method.is_empty());
            if !shape_ok {
                return Err(err(&entry, "must be package.Service/Method".into()));
            }
            if !RELATIONS.contains(&rpc.relation.as_str()) {
                return Err(err(
                    &format!("{entry}.relation"),
                    format!("unknown relation (one of {})", RELATIONS.join(", ")),
                ));
            }
            if rpc.grants.is_empty() {
                return Err(err(&entry, "needs at least one grant".into()));
            }
            let mut grants = Vec::new();
            for (i, g) in rpc.grants.into_iter().enumerate() {
                let at = format!("{entry}.grants[{i}]");
                if g.roles.is_empty() {
                    return Err(err(&at, "needs at least one role".into()));
                }
                let roles = g
                    .roles
                    .iter()
                    .map(|r| Role::parse(r).ok_or_else(|| err(&at, format!("unknown role {r:?}"))))
                    .collect::<Result<BTreeSet<_>, _>>()?;
                let kinds = match g.agency_kinds {
                    None => None,
                    Some(kinds) if kinds.is_empty() => {
                        return Err(err(&at, "agency_kinds, when given, must name one".into()));
                    }
                    Some(kinds) => Some(
                        kinds
                            .iter()
                            .map(|k| {
                                parse_agency_kind(k)
                                    .ok_or_else(|| err(&at, format!("unknown agency kind {k:?}")))
                            })
                            .collect::<Result<BTreeSet<_>, _>>()?,
                    ),
                };
                grants.push(Grant { roles, kinds });
            }
            rpcs.insert(
                name,
                RpcPermission {
                    grants,
                    relation: rpc.relation,
                },
            );
        }
        Ok(Self {
            version: raw.version,
            rpcs,
        })
    }

    /// `Ok` when `self` lets in no caller `base` would refuse, for every RPC
    /// `base` knows (and names no other).
    pub fn tightens(&self, base: &Permissions, file: &str) -> Result<(), PermissionsError> {
        let err = |entry: &str, problem: &str| PermissionsError {
            file: file.to_owned(),
            entry: entry.to_owned(),
            problem: problem.to_owned(),
        };
        for (name, rpc) in &self.rpcs {
            let entry = format!("rpc {name:?}");
            let Some(wider) = base.rpcs.get(name) else {
                return Err(err(&entry, "is not an RPC refnet has"));
            };
            if rpc.relation != wider.relation {
                return Err(err(
                    &entry,
                    "may not change the relation the handler checks",
                ));
            }
            for (i, g) in rpc.grants.iter().enumerate() {
                if !wider.grants.iter().any(|w| g.within(w)) {
                    return Err(err(
                        &format!("{entry}.grants[{i}]"),
                        "grants more than the built-in permissions (an override may only tighten)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The version of the table.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The RPCs the table names, with their permissions.
    pub fn rpcs(&self) -> &BTreeMap<String, RpcPermission> {
        &self.rpcs
    }

    /// `Ok` when `principal` may call the RPC at `path` (`/package.Service/Method`),
    /// else PERMISSION_DENIED; an RPC the table does not name is refused.
    pub fn check(&self, path: &str, principal: &Principal) -> Result<(), ServiceError> {
        let name = path.strip_prefix('/').unwrap_or(path);
        match self.rpcs.get(name) {
            Some(rpc) if rpc.grants.iter().any(|g| g.holds(principal)) => Ok(()),
            Some(_) => Err(ServiceError::PermissionDenied(format!(
                "your role or agency may not call {}",
                name.rsplit('/').next().unwrap_or(name)
            ))),
            None => Err(ServiceError::PermissionDenied(
                "this RPC is not in refnet's permissions".into(),
            )),
        }
    }

    /// One line per RPC: name, grants, relation (`refnet permissions`).
    pub fn matrix(&self) -> String {
        let mut out = format!("permissions {} ({} RPCs)\n", self.version, self.rpcs.len());
        for (name, rpc) in &self.rpcs {
            out.push_str(&format!(
                "{:<60} {:<14} {}\n",
                name,
                rpc.relation,
                rpc.grants
                    .iter()
                    .map(Grant::describe)
                    .collect::<Vec<_>>()
                    .join("; or ")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(kind: AgencyKind, roles: &[Role]) -> Principal {
        Principal {
            officer_id: "o".into(),
            agency_id: "a".into(),
            agency_kind: kind,
            roles: roles.iter().copied().collect(),
        }
    }

    #[test]
    fn every_rpc_of_the_contract_has_an_entry_and_no_entry_is_stale() {
        let table = Permissions::default_permissions().unwrap();
        let mut methods = BTreeSet::new();
        for service in refnet_api::descriptor_pool()
            .services()
            .filter(|s| s.package_name() == "refnet.v1")
        {
            for method in service.methods() {
                methods.insert(format!("{}/{}", service.full_name(), method.name()));
            }
        }
        let named: BTreeSet<String> = table.rpcs().keys().cloned().collect();
        let missing: Vec<_> = methods.difference(&named).collect();
        assert!(missing.is_empty(), "RPCs without permissions: {missing:?}");
        let stale: Vec<_> = named.difference(&methods).collect();
        assert!(stale.is_empty(), "permissions for no RPC: {stale:?}");
    }

    #[test]
    fn grants_check_roles_and_kinds_and_unknown_rpcs_are_refused() {
        let table = Permissions::default_permissions().unwrap();
        let file = "/refnet.v1.IntakeService/FileReferral";
        assert!(
            table
                .check(file, &principal(AgencyKind::Police, &[Role::Officer]))
                .is_ok()
        );
        for refused in [
            principal(AgencyKind::Police, &[Role::Auditor]),
            principal(AgencyKind::Wpa, &[Role::Officer]),
            principal(AgencyKind::Secretariat, &[Role::Supervisor]),
        ] {
            assert!(matches!(
                table.check(file, &refused),
                Err(ServiceError::PermissionDenied(_))
            ));
        }
        let stats = "/refnet.v1.StatisticsService/GetAggregates";
        assert!(
            table
                .check(stats, &principal(AgencyKind::Secretariat, &[Role::Officer]))
                .is_ok()
        );
        assert!(
            table
                .check(stats, &principal(AgencyKind::Ngo, &[Role::Supervisor]))
                .is_ok()
        );
        assert!(
            table
                .check(stats, &principal(AgencyKind::Ngo, &[Role::Officer]))
                .is_err()
        );
        assert!(
            table
                .check(
                    "/refnet.v1.IntakeService/Nothing",
                    &principal(AgencyKind::Police, &[Role::Supervisor])
                )
                .is_err()
        );
    }

    #[test]
    fn an_override_may_only_tighten() {
        let base = Permissions::default_permissions().unwrap();
        let tighter = DEFAULT_PERMISSIONS.replace(
            r#"[rpc."refnet.v1.IntakeService/GetReferral"]
grants = [{ roles = ["officer", "supervisor", "auditor", "data_protection"] }]"#,
            r#"[rpc."refnet.v1.IntakeService/GetReferral"]
grants = [{ roles = ["officer", "supervisor"] }]"#,
        );
        assert_ne!(tighter, DEFAULT_PERMISSIONS);
        let t = Permissions::parse(&tighter, "t.toml").unwrap();
        t.tightens(&base, "t.toml").unwrap();
        for (wider, needle) in [
            (
                DEFAULT_PERMISSIONS.replace(
                    r#"grants = [{ roles = ["auditor"] }]"#,
                    r#"grants = [{ roles = ["auditor", "officer"] }]"#,
                ),
                "ListAuditRecords",
            ),
            (
                DEFAULT_PERMISSIONS.replace(
                    r#"agency_kinds = ["POLICE", "PROSECUTION"] }]"#,
                    r#"agency_kinds = ["POLICE", "PROSECUTION", "NGO"] }]"#,
                ),
                "SubmitProtectionRequest",
            ),
            (
                DEFAULT_PERMISSIONS.replace(
                    r#"grants = [{ roles = ["officer", "supervisor"] }]
relation = "filer""#,
                    r#"grants = [{ roles = ["officer", "supervisor"] }]
relation = "party""#,
                ),
                "AmendReferral",
            ),
        ] {
            let parsed = Permissions::parse(&wider, "w.toml").unwrap();
            let e = parsed.tightens(&base, "w.toml").unwrap_err().to_string();
            assert!(
                e.contains(needle) && e.starts_with("w.toml"),
                "{needle}: {e}"
            );
        }
        for (bad, needle) in [
            (
                "version = \"x\"\n[rpc.\"NoSlash\"]\ngrants = [{ roles = [\"officer\"] }]\nrelation = \"none\"\n",
                "Service/Method",
            ),
            (
                "version = \"x\"\n[rpc.\"a.B/C\"]\ngrants = [{ roles = [\"chief\"] }]\nrelation = \"none\"\n",
                "unknown role",
            ),
            (
                "version = \"x\"\n[rpc.\"a.B/C\"]\ngrants = [{ roles = [\"officer\"], agency_kinds = [\"ARMY\"] }]\nrelation = \"none\"\n",
                "unknown agency kind",
            ),
            (
                "version = \"x\"\n[rpc.\"a.B/C\"]\ngrants = []\nrelation = \"none\"\n",
                "at least one grant",
            ),
            (
                "version = \"x\"\n[rpc.\"a.B/C\"]\ngrants = [{ roles = [\"officer\"] }]\nrelation = \"friend\"\n",
                "unknown relation",
            ),
        ] {
            let e = Permissions::parse(bad, "b.toml").unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }
}
