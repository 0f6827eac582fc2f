//! `refnet agencies`: the agency registry in the configured database, which
//! operators manage here. Every running process re-reads it within
//! `auth.access_refresh_ms`, so an added agency's tokens are accepted and a
//! deactivated one's refused without a restart. Every change is recorded in
//! the audit log (`refnet audit list`) as the operator who made it.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use refnet_core::{
    agencies::{self, Agency},
    audit::{AuditEntry, AuditLog},
    auth::Principal,
    config::Config,
    principal::agency_kind_name,
};

/// What `refnet agencies` does (listing when no subcommand is given).
#[derive(Debug, Subcommand)]
pub(crate) enum AgenciesCommand {
    /// List the registered agencies: id, kind, name, county, active (tab-separated).
    List,
    /// Register an agency.
    Add {
        /// Id (1-64 of A-Z a-z 0-9 _ -), as tokens carry it in `agency_id`.
        #[arg(long)]
        id: String,
        /// Kind: POLICE, IMMIGRATION, LABOUR, CHILDREN, PROSECUTION, WPA, HEALTH, NGO, TRUST_FUND, SECRETARIAT, ...
        #[arg(long)]
        kind: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// County served (one of Kenya's 47); none for a national agency.
        #[arg(long)]
        county: Option<String>,
    },
    /// Change an agency's name or county (its id and kind stay).
    Update {
        /// Id.
        #[arg(long)]
        id: String,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New county; `--county ''` makes it national.
        #[arg(long)]
        county: Option<String>,
    },
    /// Refuse every token of an agency from now on (it stays in the registry).
    Deactivate {
        /// Id.
        #[arg(long)]
        id: String,
    },
    /// Accept an agency's tokens again.
    Activate {
        /// Id.
        #[arg(long)]
        id: String,
    },
    /// Add or update every agency of a registry file (TOML `[[agency]]` tables:
    /// id, kind, name, county, active); agencies not in the file are left as they are.
    Import {
        /// The file.
        file: PathBuf,
    },
}

/// The operator, as the audit log records a registry change.
fn operator() -> Principal {
    let who = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    Principal {
        officer_id: format!("operator:{who}"),
        agency_id: String::new(),
        agency_kind: refnet_api::v1::AgencyKind::Unspecified,
        roles: Default::default(),
    }
}

async fn audited(
    db: &sea_orm::DatabaseConnection,
    verb: &str,
    changed: Vec<String>,
) -> anyhow::Result<()> {
    AuditLog::default()
        .append(
            db,
            &operator(),
            AuditEntry {
                rpc: format!("refnet agencies {verb}"),
                referral_id: None,
                field_paths: changed,
                trace_id: None,
            },
        )
        .await
        .context("audit log")?;
    Ok(())
}

fn row(a: &Agency) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}",
        a.id,
        agency_kind_name(a.kind),
        a.name,
        a.county.as_deref().unwrap_or("-"),
        if a.active { "active" } else { "inactive" }
    )
}

async fn find(db: &sea_orm::DatabaseConnection, id: &str) -> anyhow::Result<Agency> {
    agencies::load_all(db)
        .await?
        .into_iter()
        .find(|a| a.id == id)
        .with_context(|| format!("no agency {id:?}: see `refnet agencies list`"))
}

async fn set_active(
    db: &sea_orm::DatabaseConnection,
    id: &str,
    active: bool,
) -> anyhow::Result<()> {
    if !refnet_core::revocation::set_agency_active(db, id, active).await? {
        bail!("no agency {id:?}: see `refnet agencies list`");
    }
    let verb = if active { "activate" } else { "deactivate" };
    audited(db, verb, vec![format!("agencies.{id}.active")]).await?;
    println!("{}", row(&find(db, id).await?));
    Ok(())
}

/// Runs `command` on the configured database.
pub(crate) async fn run(config: &Config, command: AgenciesCommand) -> anyhow::Result<()> {
    let db = crate::database::existing_db(config).await?;
    match command {
        AgenciesCommand::List => {
            let mut all = agencies::load_all(&db).await?;
            all.sort_by(|a, b| a.id.cmp(&b.id));
            for a in &all {
                println!("{}", row(a));
            }
        }
        AgenciesCommand::Add {
            id,
            kind,
            name,
            county,
        } => {
            let agency = agencies::checked(id, &kind, name, county.as_deref(), true)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if agencies::load_all(&db)
                .await?
                .iter()
                .any(|a| a.id == agency.id)
            {
                bail!(
                    "agency {:?} exists: change it with `refnet agencies update`",
                    agency.id
                );
            }
            agencies::upsert(&db, std::slice::from_ref(&agency)).await?;
            audited(&db, "add", vec![format!("agencies.{}", agency.id)]).await?;
            println!("{}", row(&agency));
        }
        AgenciesCommand::Update { id, name, county } => {
            let old = find(&db, &id).await?;
            let agency = agencies::checked(
                old.id.clone(),
                agency_kind_name(old.kind),
                name.unwrap_or_else(|| old.name.clone()),
                county.as_deref().or(old.county.as_deref()),
                old.active,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut changed = Vec::new();
            if agency.name != old.name {
                changed.push(format!("agencies.{id}.name"));
            }
            if agency.county != old.county {
                changed.push(format!("agencies.{id}.county"));
            }
            if changed.is_empty() {
                bail!("nothing to change: give --name or --county");
            }
            agencies::upsert(&db, std::slice::from_ref(&agency)).await?;
            audited(&db, "update", changed).await?;
            println!("{}", row(&agency));
        }
        AgenciesCommand::Deactivate { id } => set_active(&db, &id, false).await?,
        AgenciesCommand::Activate { id } => set_active(&db, &id, true).await?,
        AgenciesCommand::Import { file } => {
            let listed = agencies::parse_file(&file)?;
            agencies::upsert(&db, &listed).await?;
            audited(
                &db,
                "import",
                listed
                    .iter()
                    .map(|a| format!("agencies.{}", a.id))
                    .collect(),
            )
            .await?;
            println!("{} agencies imported from {}", listed.len(), file.display());
        }
    }
    Ok(())
}
