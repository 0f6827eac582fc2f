//! `refnet keys`: master-key rotation, and the development signing key and
//! certificates (`dev-jwks`, `dev-tls`) for a deployment without an identity
//! provider or a CA yet.

use std::path::PathBuf;

use clap::Subcommand;
use refnet_core::{config::Config, devkeys};

use crate::database::{DbArgs, apply_db_flags, existing_db};

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Re-wrap every subject's data key and the key root under a new master
    /// key (base64 of 32 bytes in a file), in batches; safe to interrupt and
    /// run again. The configured `master_key` and `previous_master_keys` must
    /// hold every key the data is wrapped by now. See SECURITY.md for the
    /// no-downtime procedure.
    Rotate {
        /// File holding the new master key (e.g. `openssl rand -base64 32 > new.key`).
        #[arg(long)]
        to_key_file: PathBuf,
        /// Data keys per transaction.
        #[arg(long, default_value_t = 500)]
        batch: u64,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Write a development signing key and its JWKS into a directory (kept if
    /// there already): point services at `DIR/jwks.json` (`REFNET_AUTH__JWKS_FILE`)
    /// and mint tokens with `refnet token --key-dir DIR`. For development and
    /// tests only: production tokens come from the agencies' identity provider.
    DevJwks {
        /// The directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a development CA (`ca.pem`), a server certificate for localhost
    /// and each `--host` (`server.pem`, `server.key`) and a client certificate
    /// for mutual TLS (`client.pem`, `client.key`) into a directory: serve with
    /// `--tls-cert DIR/server.pem --tls-key DIR/server.key`, call with
    /// `--ca DIR/ca.pem`. Development and tests only.
    DevTls {
        /// The directory.
        #[arg(long)]
        out: PathBuf,
        /// A host name the server is reached by (repeat), e.g. `intake`.
        #[arg(long)]
        host: Vec<String>,
        /// Leave the directory as it is if it already holds a CA (`ca.pem`):
        /// a restarted development stack keeps the CA its desks trust.
        #[arg(long)]
        keep: bool,
    },
}

/// Runs `refnet keys ...`.
pub(crate) async fn run(mut config: Config, command: KeysCommand) -> anyhow::Result<()> {
    let (to_key_file, batch, db) = match command {
        KeysCommand::Rotate {
            to_key_file,
            batch,
            db,
        } => (to_key_file, batch, db),
        KeysCommand::DevJwks { out } => {
            let jwks = devkeys::ensure(&out)?;
            println!(
                "{}\n  services: REFNET_AUTH__JWKS_FILE={} REFNET_AUTH__ISSUER={} REFNET_AUTH__AUDIENCE={}\n  tokens:   refnet token --key-dir {} --agency ID --role officer",
                jwks.display(),
                jwks.display(),
                config.auth.issuer,
                config.auth.audience,
                out.display()
            );
            return Ok(());
        }
        KeysCommand::DevTls { out, host, keep } => {
            if keep && out.join("ca.pem").exists() {
                println!("{}: kept (it already holds ca.pem)", out.display());
                return Ok(());
            }
            refnet_devtools::certs::write_dev_tls(&out, &host)?;
            println!(
                "{dir}/ca.pem, {dir}/server.pem, {dir}/server.key, {dir}/client.pem, {dir}/client.key\n  serve: --tls-cert {dir}/server.pem --tls-key {dir}/server.key [--tls-client-ca {dir}/ca.pem]\n  desk:  --server https://localhost:50051 --ca {dir}/ca.pem [--client-cert {dir}/client.pem --client-key {dir}/client.key]",
                dir = out.display()
            );
            return Ok(());
        }
    };
    apply_db_flags(&mut config, db.database_url, db.data_dir);
    let conn = existing_db(&config).await?;
    let (master, others) = refnet_core::keys::configured(&config, false)?;
    let keys = refnet_core::keys::load(&conn, master, others).await?;
    let to = refnet_core::crypto::MasterKey::load_or_generate(&to_key_file, false)?;
    let done = refnet_core::keys::rotate(&conn, &keys, &to, batch).await?;
    let left = refnet_core::keys::wrapped_by_others(&conn, to.id()).await?;
    println!(
        "re-wrapped {} data keys{} under master key {}; {left} left under other keys",
        done.data_keys,
        if done.root { " and the key root" } else { "" },
        to.id()
    );
    Ok(())
}
