//! The agency registry: who may call refnet and as what kind of agency.
//!
//! In production the registry comes from a data file in the configuration
//! (`agencies_file`: id, kind, name, county). The embedded default instead
//! creates a demo set, one or more of every agency kind, on first run. Either
//! way the rows live in the `agencies` table and are held in memory for the
//! auth layer.

use std::{collections::HashMap, path::Path, sync::RwLock};

use refnet_api::v1::AgencyKind;
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait, sea_query::OnConflict};
use serde::Deserialize;

use crate::{
    entities::agency,
    principal::{agency_kind_name, parse_agency_kind},
};

/// A registered agency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agency {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: AgencyKind,
    /// Display name.
    pub name: String,
    /// County served; `None` for national.
    pub county: Option<String>,
    /// Active.
    pub active: bool,
}

/// A failure to load the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The data file is wrong; the message names the file and entry.
    #[error("{0}")]
    File(String),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgencyFile {
    #[serde(default)]
    agency: Vec<AgencyEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgencyEntry {
    id: String,
    kind: String,
    name: String,
    #[serde(default)]
    county: Option<String>,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

/// An agency from its parts, checked: an id of 1-64 of `[A-Za-z0-9_-]`, a
/// known kind (`POLICE` or `AGENCY_KIND_POLICE`), a non-empty name and, if
/// given, one of Kenya's 47 counties (stored in its canonical spelling).
pub fn checked(
    id: String,
    kind: &str,
    name: String,
    county: Option<&str>,
    active: bool,
) -> Result<Agency, String> {
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !id_ok {
        return Err("id must be 1-64 of [A-Za-z0-9_-]".into());
    }
    let kind = parse_agency_kind(kind).ok_or_else(|| format!("unknown kind {kind:?}"))?;
    if name.trim().is_empty() || name.len() > 200 {
        return Err("name must be 1-200 characters".into());
    }
    let county = match county.filter(|c| !c.trim().is_empty()) {
        Some(c) => Some(
            crate::domain::canonical_county(c)
                .ok_or_else(|| format!("unknown county {c:?}"))?
                .to_owned(),
        ),
        None => None,
    };
    Ok(Agency {
        id,
        kind,
        name,
        county,
        active,
    })
}

/// Parses an agency data file (TOML, `[[agency]]` tables).
pub fn parse_file(path: &Path) -> Result<Vec<Agency>, RegistryError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RegistryError::File(format!("{}: {e}", path.display())))?;
    let file: AgencyFile = toml::from_str(&text)
        .map_err(|e| RegistryError::File(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, entry) in file.agency.into_iter().enumerate() {
        let at = format!("{}: agency #{} ({:?})", path.display(), i + 1, entry.id);
        if !seen.insert(entry.id.clone()) {
            return Err(RegistryError::File(format!("{at}: duplicate id")));
        }
        let agency = checked(
            entry.id,
            &entry.kind,
            entry.name,
            entry.county.as_deref(),
            entry.active,
        )
        .map_err(|e| RegistryError::File(format!("{at}: {e}")))?;
        out.push(agency);
    }
    Ok(out)
}

/// The demo agencies of the embedded default (fictional names).
pub fn demo() -> Vec<Agency> {
    use AgencyKind as K;
    let rows: [(&str, AgencyKind, &str, Option<&str>); 14] = [
        (
            "police-nairobi",
            K::Police,
            "Demo Police Anti-Trafficking Unit, Nairobi",
            Some("Nairobi"),
        ),
        (
            "police-mombasa",
            K::Police,
            "Demo Police Child Protection Unit, Mombasa",
            Some("Mombasa"),
        ),
        (
            "prosecution-nairobi",
            K::Prosecution,
            "Demo Prosecution Office, Nairobi",
            Some("Nairobi"),
        ),
        (
            "immigration-nairobi",
            K::Immigration,
            "Demo Immigration Border Desk, Nairobi",
            Some("Nairobi"),
        ),
        (
            "immigration-busia",
            K::Immigration,
            "Demo Immigration Border Post, Busia",
            Some("Busia"),
        ),
        (
            "labour-nairobi",
            K::Labour,
            "Demo Labour Office, Nairobi",
            Some("Nairobi"),
        ),
        (
            "children-nairobi",
            K::Children,
            "Demo Sub-County Children Office, Nairobi",
            Some("Nairobi"),
        ),
        (
            "children-mombasa",
            K::Children,
            "Demo Sub-County Children Office, Mombasa",
            Some("Mombasa"),
        ),
        (
            "ngo-shelter-nairobi",
            K::Ngo,
            "Demo Safe Shelter NGO, Nairobi",
            Some("Nairobi"),
        ),
        (
            "ngo-legal-mombasa",
            K::Ngo,
            "Demo Legal Aid NGO, Mombasa",
            Some("Mombasa"),
        ),
        (
            "health-nairobi",
            K::Health,
            "Demo County Referral Hospital, Nairobi",
            Some("Nairobi"),
        ),
        ("wpa", K::Wpa, "Demo Witness Protection Agency", None),
        (
            "trust-fund",
            K::TrustFund,
            "Demo Victims Assistance Trust Fund",
            None,
        ),
        (
            "secretariat",
            K::Secretariat,
            "Demo Counter-Trafficking Secretariat",
            None,
        ),
    ];
    rows.into_iter()
        .map(|(id, kind, name, county)| Agency {
            id: id.to_owned(),
            kind,
            name: name.to_owned(),
            county: county.map(str::to_owned),
            active: true,
        })
        .collect()
}

/// Inserts or updates `agencies` in the database.
pub async fn upsert(db: &DatabaseConnection, agencies: &[Agency]) -> Result<(), RegistryError> {
    if agencies.is_empty() {
        return Ok(());
    }
    let now = chrono::Utc::now();
    let rows = agencies.iter().map(|a| agency::ActiveModel {
        id: Set(a.id.clone()),
        kind: Set(agency_kind_name(a.kind).to_owned()),
        name: Set(a.name.clone()),
        county: Set(a.county.clone()),
        active: Set(a.active),
        created_at: Set(now),
    });
    agency::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(agency::Column::Id)
                .update_columns([
                    agency::Column::Kind,
                    agency::Column::Name,
                    agency::Column::County,
                    agency::Column::Active,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Reads every agency from the database.
pub async fn load_all(db: &DatabaseConnection) -> Result<Vec<Agency>, RegistryError> {
    let rows = agency::Entity::find().all(db).await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let kind = parse_agency_kind(&row.kind)?;
            Some(Agency {
                id: row.id,
                kind,
                name: row.name,
                county: row.county,
                active: row.active,
            })
        })
        .collect())
}

/// The in-memory registry used on every call.
#[derive(Debug, Default)]
pub struct AgencyRegistry {
    by_id: RwLock<HashMap<String, Agency>>,
}

impl AgencyRegistry {
    /// A registry holding `agencies`.
    pub fn new(agencies: Vec<Agency>) -> Self {
        Self {
            by_id: RwLock::new(agencies.into_iter().map(|a| (a.id.clone(), a)).collect()),
        }
    }

    /// The agency with `id`.
    pub fn get(&self, id: &str) -> Option<Agency> {
        self.by_id.read().ok()?.get(id).cloned()
    }

    /// Replaces the registry's contents.
    pub fn replace(&self, agencies: Vec<Agency>) {
        if let Ok(mut map) = self.by_id.write() {
            *map = agencies.into_iter().map(|a| (a.id.clone(), a)).collect();
        }
    }

    /// Every agency, sorted by id.
    pub fn all(&self) -> Vec<Agency> {
        let mut all: Vec<Agency> = self
            .by_id
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// The ids of the active agencies of `kind` (the WPA, the secretariat).
    pub fn active_of_kind(&self, kind: AgencyKind) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|a| a.active && a.kind == kind)
            .map(|a| a.id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_covers_every_kind() {
        let kinds: std::collections::HashSet<_> = demo().into_iter().map(|a| a.kind).collect();
        assert_eq!(kinds.len(), 10);
    }

    #[test]
    fn file_errors_name_the_file_and_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agencies.toml");
        std::fs::write(
            &path,
            "[[agency]]\nid = \"p1\"\nkind = \"POLICE\"\nname = \"P\"\ncounty = \"Nairobi\"\n\
             [[agency]]\nid = \"x\"\nkind = \"SPY\"\nname = \"X\"\n",
        )
        .unwrap();
        let err = parse_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("agencies.toml") && err.contains("#2") && err.contains("SPY"),
            "{err}"
        );

        std::fs::write(
            &path,
            "[[agency]]\nid = \"p1\"\nkind = \"POLICE\"\nname = \"P\"\ncolour = 1\n",
        )
        .unwrap();
        let err = parse_file(&path).unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");

        std::fs::write(
            &path,
            "[[agency]]\nid = \"p1\"\nkind = \"POLICE\"\nname = \"P\"\ncounty = \"nairobi\"\n",
        )
        .unwrap();
        let ok = parse_file(&path).unwrap();
        assert_eq!(ok[0].county.as_deref(), Some("Nairobi"));
    }
}
