//! Where a command's database is: the `--data-dir` / `--database-url` flags
//! and the connection to a database `refnet serve` (or `migrate`) created.
//! Shared by the command modules (`cli`, `keys`, `registry`).

use std::path::PathBuf;

use anyhow::bail;
use refnet_core::{config::Config, db};

/// Where the command's database is.
#[derive(Debug, clap::Args)]
pub(crate) struct DbArgs {
    /// Data directory.
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Database URL, instead of SQLite in the data directory.
    #[arg(long)]
    pub(crate) database_url: Option<String>,
}

/// Applies `--database-url` and `--data-dir` over the configuration.
pub(crate) fn apply_db_flags(
    config: &mut Config,
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
) {
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    if let Some(url) = database_url {
        config.database_url = Some(url.into());
    }
}

/// Connects to a database that `refnet serve` (or `migrate`) already created.
pub(crate) async fn existing_db(config: &Config) -> anyhow::Result<sea_orm::DatabaseConnection> {
    if config.is_sqlite() && config.database_url.is_none() {
        let file = config.data_dir.join("refnet.db");
        if !file.exists() {
            bail!(
                "no refnet data in {}: run `refnet serve --data-dir {}` once first",
                config.data_dir.display(),
                config.data_dir.display()
            );
        }
    }
    Ok(db::connect(&config.database_url()).await?)
}
