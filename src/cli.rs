//! The `refnet` command line: `serve`, `migrate`, `agencies` and `token`, and
//! the desk client's commands (`referral`, `inbox`, `handoff`, `message`,
//! `timeline`, `protection`, `triage`, `notifications`; the `refnet-desk` crate in `desk/`).

use std::{net::SocketAddr, path::PathBuf};

use std::io::Write as _;

use anyhow::{Context, bail};

use crate::database::{DbArgs, apply_db_flags, existing_db};
use clap::{Parser, Subcommand};
use refnet_core::{
    AppContext, agencies,
    auth::Role,
    config::{Config, LogFormat},
    db, devkeys,
};

/// The role names `refnet token` accepts (and its `--help` lists): every
/// [`Role`] refnet knows.
fn role_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(Role::ALL.map(Role::as_str))
}

/// refnet: referral messaging for the National Referral Mechanism.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file (TOML); `REFNET_...` variables override it.
    #[arg(long, global = true, env = "REFNET_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the police → NGO → WPA scenario on a fresh embedded server and
    /// print what each agency sees (synthetic data; nothing is kept).
    Demo {
        /// Keep the demo's data directory here instead of a temporary one.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run every service on one port (embedded default: SQLite in the data directory).
    Serve {
        /// Address to listen on [default: 127.0.0.1:50051].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory [default: ./refnet-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Database URL, instead of SQLite in the data directory.
        #[arg(long)]
        database_url: Option<String>,
        /// Transport security.
        #[command(flatten)]
        transport: refnet_core::server::TransportArgs,
        /// Where the web desk listens [default: 127.0.0.1:8080; port 0 picks one].
        #[arg(long, value_name = "ADDR")]
        web_listen: Option<SocketAddr>,
        /// Do not serve the web desk.
        #[arg(long, conflicts_with = "web_listen")]
        no_web: bool,
    },
    /// The web desk in front of a running refnet (a deployed stack's
    /// gateway): officers sign in and work in a browser.
    Desk {
        /// The refnet server: `https://HOST:PORT` (TLS) or `http://` on this machine.
        #[arg(long, env = "REFNET_SERVER", value_name = "URL")]
        server: String,
        /// CA certificate(s) (PEM) to verify an https:// server with, instead of the system's roots.
        #[arg(long, env = "REFNET_CA", value_name = "FILE")]
        ca: Option<PathBuf>,
        /// Where the web desk listens.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Offer the development sign-in with the key in this directory
        /// (`refnet keys dev-jwks --out DIR`); needs the registry (--database-url).
        #[arg(long, value_name = "DIR", requires = "database_url")]
        dev_key_dir: Option<PathBuf>,
        /// The database whose registry lists the agencies of the development sign-in.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Run one service alone, as in a split deployment (production,
    /// PostgreSQL): the same as its own binary (`refnet-intake`, ...).
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Apply database migrations and exit.
    Migrate {
        /// Database URL; default: SQLite in the data directory.
        #[arg(long)]
        database_url: Option<String>,
        /// Data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The agency registry: list (the default), add, update, deactivate, activate, import FILE.
    Agencies {
        /// Data directory.
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
        /// Database URL, instead of SQLite in the data directory.
        #[arg(long, global = true)]
        database_url: Option<String>,
        #[command(subcommand)]
        command: Option<crate::registry::AgenciesCommand>,
    },
    /// Suspend or reinstate agencies and officers: their tokens are refused
    /// within `auth.access_refresh_ms` on every running process.
    Access {
        #[command(subcommand)]
        command: AccessCommand,
    },
    /// Master-key rotation.
    Keys {
        #[command(subcommand)]
        command: crate::keys::KeysCommand,
    },
    /// De-identified exports for the counter-trafficking secretariat.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// Redaction policy files.
    Policy {
        #[command(subcommand)]
        command: crate::files::PolicyCommand,
    },
    /// Who may call which RPC: prints the table (one line per RPC), or
    /// checks an override file (it may only tighten).
    Permissions {
        #[command(subcommand)]
        command: Option<crate::files::PermissionsCommand>,
    },
    /// Routing rule files.
    Rules {
        #[command(subcommand)]
        command: crate::files::RulesCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print a development token that `refnet serve` on this data directory accepts.
    Token {
        /// Data directory holding the development key (and, for SQLite, the registry).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Directory holding the development key instead (`refnet keys dev-jwks --out DIR`).
        #[arg(long)]
        key_dir: Option<PathBuf>,
        /// Database whose registry names the agency, instead of SQLite in the data directory.
        #[arg(long)]
        database_url: Option<String>,
        /// Agency id (see `refnet agencies`).
        #[arg(long)]
        agency: String,
        /// Role (repeat, or separate with commas, for several).
        #[arg(long, required = true, value_delimiter = ',', value_parser = role_names())]
        role: Vec<String>,
        /// Officer id [default: officer-1].
        #[arg(long, default_value = "officer-1")]
        officer: String,
        /// Lifetime, e.g. 30m, 8h [default: 8h].
        #[arg(long, default_value = "8h")]
        ttl: humantime::Duration,
    },
    /// Load synthetic referrals quickly (batched inserts) for the growth
    /// benchmark: closed history, no events or handoffs (see BENCHMARKS.md).
    Seed {
        /// How many referrals to add.
        #[arg(long)]
        count: u64,
        /// Referrals per transaction.
        #[arg(long, default_value_t = 2000)]
        batch: u64,
        /// Data directory (SQLite, master key, development keys).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Database URL, instead of SQLite in the data directory.
        #[arg(long)]
        database_url: Option<String>,
        /// Payloads [default: tests/fixtures/referrals.jsonl].
        #[arg(long)]
        fixtures: Option<PathBuf>,
    },
    /// The load tool: drive RPCs against a fresh `refnet serve` and compare
    /// them with the health-check baseline of the same run (see BENCHMARKS.md).
    Bench(refnet_devtools::bench::BenchArgs),
    /// Desk client: file a referral from JSON, show one, list them, close one (needs --token).
    Referral(refnet_desk::ReferralArgs),
    /// Desk client: your agency's inbox of handoffs, listed or watched live (needs --token).
    Inbox(refnet_desk::InboxArgs),
    /// Desk client: show, acknowledge, accept, decline, complete or withdraw a handoff;
    /// create one by hand; list those your agency sent (needs --token).
    Handoff(refnet_desk::HandoffArgs),
    /// Desk client: post a message on a referral's thread (needs --token).
    Message(refnet_desk::MessageArgs),
    /// Desk client: a referral's events and messages, oldest first (needs --token).
    Timeline(refnet_desk::TimelineArgs),
    /// Desk client: request, show and list witness protection (needs --token).
    Protection(refnet_desk::ProtectionArgs),
    /// Desk client: referrals nothing routed, waiting for a supervisor (needs --token).
    Triage(refnet_desk::TriageArgs),
    /// Desk client: your notifications, listed or marked read (needs --token).
    Notifications(refnet_desk::NotificationsArgs),
    /// Is the server (or one --service) SERVING? The gRPC health check, no
    /// token needed; exit 0 only if so (container probes over TLS).
    Health(refnet_desk::HealthArgs),
    /// Any RPC of the contract, e.g. `refnet call IntakeService/GetReferral
    /// --data '{"referral":"CODE"}'` (proto3 JSON in and out); `--list` names them.
    Call(refnet_desk::CallArgs),
}

#[derive(Debug, Subcommand)]
enum AccessCommand {
    /// Refuse every token of an agency (marks it inactive).
    SuspendAgency {
        /// Agency id.
        agency: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Accept an agency's tokens again.
    ReinstateAgency {
        /// Agency id.
        agency: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Refuse every token of one officer, however long they are valid.
    SuspendOfficer {
        /// The officer's agency id.
        #[arg(long)]
        agency: String,
        /// The officer id (the tokens' `sub`).
        #[arg(long)]
        officer: String,
        /// Why, for the record.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Lift an officer's suspension.
    ReinstateOfficer {
        /// The officer's agency id.
        #[arg(long)]
        agency: String,
        /// The officer id.
        #[arg(long)]
        officer: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List suspended agencies and officers (tab-separated).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ExportCommand {
    /// Case-level records with HTCDS column names, generalised until every
    /// combination of quasi-identifiers occurs at least k times (records that
    /// cannot be are dropped and counted); no identity, location, free text
    /// or suspect detail. The column mapping is in the README.
    Htcds {
        /// Referrals filed on or after this date (YYYY-MM-DD); default: all.
        #[arg(long)]
        since: Option<chrono::NaiveDate>,
        /// The CSV file to write.
        #[arg(long)]
        out: PathBuf,
        /// k; default: the configured `statistics.k` (11).
        #[arg(long)]
        k: Option<u32>,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain; name the first broken record.
    Verify {
        /// Database URL, instead of SQLite in the data directory.
        #[arg(long)]
        database_url: Option<String>,
        /// Data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// The services `refnet service` runs.
#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// The intake and audit services (`refnet-intake`).
    Intake(refnet_core::server::ServiceArgs),
    /// The routing service and its worker (`refnet-routing`).
    Routing(refnet_core::server::ServiceArgs),
    /// The witness protection service (`refnet-protection`).
    Protection(refnet_core::server::ServiceArgs),
    /// The statistics service (`refnet-statistics`).
    Statistics(refnet_core::server::ServiceArgs),
    /// One TLS address for desks in front of the other services: forwards
    /// each call to the service that serves it (`refnet-gateway`).
    Gateway(refnet_gateway::GatewayArgs),
}

/// Runs one service until SIGTERM or Ctrl-C.
async fn run_service(config: Option<PathBuf>, command: ServiceCommand) -> anyhow::Result<()> {
    use refnet_core::server::StandaloneArgs;
    match command {
        ServiceCommand::Intake(service) => {
            refnet_intake::run(StandaloneArgs { config, service }).await
        }
        ServiceCommand::Routing(service) => {
            refnet_routing::run(StandaloneArgs { config, service }).await
        }
        ServiceCommand::Protection(service) => {
            refnet_protection::run(StandaloneArgs { config, service }).await
        }
        ServiceCommand::Statistics(service) => {
            refnet_statistics::run(StandaloneArgs { config, service }).await
        }
        ServiceCommand::Gateway(gateway) => {
            refnet_gateway::run(refnet_gateway::GatewayCommand { config, gateway }).await
        }
    }
}

/// Parses the command line and runs the command.
pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Demo { data_dir } => demo(data_dir).await?,
        Command::Serve {
            listen,
            data_dir,
            database_url,
            transport,
            web_listen,
            no_web,
        } => {
            transport.apply(&mut config);
            let web =
                (!no_web).then(|| web_listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))));
            serve(config, listen, data_dir, database_url, web).await?
        }
        Command::Desk {
            server,
            ca,
            listen,
            dev_key_dir,
            database_url,
        } => crate::web::desk(config, server, ca, listen, dev_key_dir, database_url).await?,
        Command::Service(service) => run_service(cli.config, service).await?,
        Command::Migrate {
            database_url,
            data_dir,
        } => migrate(config, database_url, data_dir).await?,
        Command::Agencies {
            data_dir,
            database_url,
            command,
        } => {
            apply_db_flags(&mut config, database_url, data_dir);
            crate::registry::run(
                &config,
                command.unwrap_or(crate::registry::AgenciesCommand::List),
            )
            .await?
        }
        Command::Access { command } => run_access(&mut config, command).await?,
        Command::Keys { command } => crate::keys::run(config, command).await?,
        Command::Export { command } => export(config, command).await?,
        Command::Policy { command } => crate::files::policy(command)?,
        Command::Permissions { command } => crate::files::permissions(command)?,
        Command::Rules { command } => crate::files::rules(command)?,
        Command::Audit { command } => audit(config, command).await?,
        Command::Token {
            data_dir,
            key_dir,
            database_url,
            agency,
            role,
            officer,
            ttl,
        } => {
            apply_db_flags(&mut config, database_url, data_dir);
            let key_dir = key_dir.unwrap_or_else(|| config.data_dir.clone());
            token(config, &key_dir, agency, role, officer, ttl).await?
        }
        Command::Seed {
            count,
            batch,
            data_dir,
            database_url,
            fixtures,
        } => seed(config, count, batch, data_dir, database_url, fixtures).await?,
        Command::Bench(args) => refnet_devtools::bench::run(args).await?,
        Command::Referral(args) => refnet_desk::referral(args).await?,
        Command::Inbox(args) => refnet_desk::inbox(args).await?,
        Command::Handoff(args) => refnet_desk::handoff(args).await?,
        Command::Message(args) => refnet_desk::message(args).await?,
        Command::Timeline(args) => refnet_desk::timeline(args).await?,
        Command::Protection(args) => refnet_desk::protection(args).await?,
        Command::Triage(args) => refnet_desk::triage(args).await?,
        Command::Notifications(args) => refnet_desk::notifications(args).await?,
        Command::Health(args) => refnet_desk::health(args).await?,
        Command::Call(args) => refnet_desk::call(args).await?,
    }
    Ok(())
}

/// `refnet demo`.
async fn demo(data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let (dir, temporary) = match data_dir {
        Some(dir) => (dir, false),
        None => (
            std::env::temp_dir().join(format!("refnet-demo-{}", uuid::Uuid::new_v4().simple())),
            true,
        ),
    };
    // No log subscriber: the demo prints its own story.
    let result = crate::demo::run(dir.clone()).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result?;
    Ok(())
}

/// `refnet serve`: every service on one port until SIGTERM or Ctrl-C, and
/// the web desk on `web` unless it is `None`.
async fn serve(
    mut config: Config,
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    web: Option<SocketAddr>,
) -> anyhow::Result<()> {
    if let Some(listen) = listen {
        config.listen = listen;
    }
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    if let Some(url) = database_url {
        config.database_url = Some(url.into());
    }
    // Refuse plaintext beyond loopback (and half-configured TLS) before anything starts.
    refnet_core::tls::check(&config)?;
    if let Some(web_addr) = web {
        crate::web::check_listen(web_addr, config.insecure_plaintext)?;
    }
    let config = config.embedded();
    let telemetry = refnet_core::telemetry::init(
        config.log_format,
        config.otlp_endpoint.as_deref(),
        &config.tls,
        "refnet",
    );
    refnet_core::config::Config::report_unread_env();
    let data_dir = config.data_dir.clone();
    let log_format = config.log_format;
    let ctx = AppContext::build(config).await?;
    let listener = tokio::net::TcpListener::bind(ctx.config().listen)
        .await
        .with_context(|| format!("cannot listen on {}", ctx.config().listen))?;
    let addr = listener.local_addr()?;
    // For a person (JSON logs carry the address in their "serving"
    // line instead, so a collector reads nothing but JSON). A closed
    // stderr must not bring the server down: ignore write errors.
    if log_format == LogFormat::Pretty {
        let _ = writeln!(
            std::io::stderr(),
            "{} {addr}{tls} (data in {dir})\n  agencies: refnet agencies --data-dir {dir}\n  token:    refnet token --data-dir {dir} --agency police-nairobi --role officer",
            refnet_core::announce::SERVING,
            tls = if ctx.config().tls.cert.is_some() {
                " with TLS"
            } else {
                ""
            },
            dir = data_dir.display()
        );
    }
    let web_task = match web {
        Some(web_addr) => crate::web::start(&ctx, &data_dir, addr, web_addr).await?,
        None => None,
    };
    let served = crate::serve_all(&ctx, listener, refnet_core::server::shutdown_signal()).await;
    if let Some(task) = web_task {
        task.abort();
    }
    telemetry.shutdown();
    served?;
    Ok(())
}

/// `refnet migrate`.
async fn migrate(
    mut config: Config,
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    apply_db_flags(&mut config, database_url, data_dir);
    refnet_core::telemetry::init(config.log_format, None, &config.tls, "refnet");
    if config.is_sqlite() {
        std::fs::create_dir_all(&config.data_dir)?;
    }
    let conn = db::connect(&config.database_url()).await?;
    db::migrate(&conn).await?;
    println!("migrations applied");
    Ok(())
}

/// `refnet export htcds`.
async fn export(mut config: Config, command: ExportCommand) -> anyhow::Result<()> {
    let ExportCommand::Htcds { since, out, k, db } = command;
    apply_db_flags(&mut config, db.database_url, db.data_dir);
    let conn = existing_db(&config).await?;
    let k = k.unwrap_or(config.statistics.k).max(2);
    let since = since
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc());
    let export = refnet_statistics::export_htcds(&conn, since, k).await?;
    std::fs::write(&out, refnet_statistics::export::to_csv(&export))
        .with_context(|| out.display().to_string())?;
    println!(
        "wrote {} records to {} (k = {k}, generalisation level {} of {}); dropped {} that stayed in groups under k",
        export.rows.len(),
        out.display(),
        export.level,
        refnet_statistics::export::TOP_LEVEL,
        export.dropped
    );
    Ok(())
}

/// `refnet audit verify`.
async fn audit(mut config: Config, command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify {
        database_url,
        data_dir,
    } = command;
    apply_db_flags(&mut config, database_url, data_dir);
    let conn = existing_db(&config).await?;
    match refnet_core::audit::verify(&conn).await? {
        Ok(n) => println!("audit log intact: {n} records"),
        Err(broken) => bail!("audit log broken: {broken}"),
    }
    Ok(())
}

/// `refnet token`: a development token `refnet serve` on this data directory accepts.
async fn token(
    config: Config,
    key_dir: &std::path::Path,
    agency: String,
    role: Vec<String>,
    officer: String,
    ttl: humantime::Duration,
) -> anyhow::Result<()> {
    let roles = role;
    let conn = existing_db(&config).await?;
    let Some(found) = agencies::load_all(&conn)
        .await?
        .into_iter()
        .find(|a| a.id == agency)
    else {
        bail!("no agency {agency:?}: see `refnet agencies`");
    };
    let signer = devkeys::DevSigner::load(key_dir, &config.auth.issuer, &config.auth.audience)?;
    let token = signer.mint(&devkeys::TokenRequest {
        officer_id: officer,
        agency_id: found.id,
        agency_kind: found.kind,
        roles,
        ttl: ttl.into(),
    })?;
    println!("{token}");
    Ok(())
}

/// `refnet seed`: synthetic closed history for the growth benchmark.
async fn seed(
    mut config: Config,
    count: u64,
    batch: u64,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    fixtures: Option<PathBuf>,
) -> anyhow::Result<()> {
    apply_db_flags(&mut config, database_url, data_dir);
    refnet_core::telemetry::init(config.log_format, None, &config.tls, "refnet");
    let fixtures = refnet_devtools::fixtures::load(
        &fixtures.unwrap_or_else(refnet_devtools::fixtures::default_path),
    )?;
    // The same set-up as `refnet serve` (migrations, keys, demo
    // agencies), without serving.
    let ctx = AppContext::build(config.embedded()).await?;
    refnet_devtools::seed::run(&ctx, &fixtures, count, batch).await?;
    Ok(())
}

/// `refnet access ...`.
async fn run_access(config: &mut Config, command: AccessCommand) -> anyhow::Result<()> {
    use refnet_core::revocation;
    let db_args = match &command {
        AccessCommand::SuspendAgency { db, .. }
        | AccessCommand::ReinstateAgency { db, .. }
        | AccessCommand::SuspendOfficer { db, .. }
        | AccessCommand::ReinstateOfficer { db, .. }
        | AccessCommand::List { db } => db,
    };
    apply_db_flags(
        config,
        db_args.database_url.clone(),
        db_args.data_dir.clone(),
    );
    let conn = existing_db(config).await?;
    match command {
        AccessCommand::SuspendAgency { agency, .. } => {
            if !revocation::set_agency_active(&conn, &agency, false).await? {
                bail!("no agency {agency:?}: see `refnet agencies`");
            }
            println!("agency {agency} suspended");
        }
        AccessCommand::ReinstateAgency { agency, .. } => {
            if !revocation::set_agency_active(&conn, &agency, true).await? {
                bail!("no agency {agency:?}: see `refnet agencies`");
            }
            println!("agency {agency} reinstated");
        }
        AccessCommand::SuspendOfficer {
            agency,
            officer,
            reason,
            ..
        } => {
            if agencies::load_all(&conn)
                .await?
                .iter()
                .all(|a| a.id != agency)
            {
                bail!("no agency {agency:?}: see `refnet agencies`");
            }
            if officer.trim().is_empty() || reason.trim().is_empty() {
                bail!("--officer and --reason must not be empty");
            }
            revocation::suspend_officer(&conn, &agency, &officer, &reason).await?;
            println!("officer {officer} of {agency} suspended");
        }
        AccessCommand::ReinstateOfficer {
            agency, officer, ..
        } => {
            if !revocation::reinstate_officer(&conn, &agency, &officer).await? {
                bail!("officer {officer:?} of {agency:?} was not suspended");
            }
            println!("officer {officer} of {agency} reinstated");
        }
        AccessCommand::List { .. } => {
            for agency in agencies::load_all(&conn).await? {
                if !agency.active {
                    println!("agency\t{}\t{}", agency.id, agency.name);
                }
            }
            for s in revocation::suspended_officers(&conn).await? {
                println!(
                    "officer\t{}\t{}\t{}\t{}",
                    s.agency_id,
                    s.officer_id,
                    s.suspended_at.to_rfc3339(),
                    s.reason
                );
            }
        }
    }
    Ok(())
}
