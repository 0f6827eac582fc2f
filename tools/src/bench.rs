//! `refnet bench`: the load tool. It starts `refnet serve` as a child process
//! (SQLite in a temporary directory, or `--database-url`), mints development
//! tokens for a mix of agencies, files the fixture referrals it needs, then
//! drives one RPC at a set concurrency for a set time, alternating with a
//! baseline on the same server stack (the gRPC health check: a trivial unary
//! call through the same transport, layers and runtime), round after round.
//! It prints throughput, p50/p99/p999 latency, errors, the ratio to the
//! baseline of the same round, and the server's resident memory (idle, and
//! peak from `/proc/PID/status`).
//!
//! `watch` is different: it opens `--streams` `WatchInbox` streams for one
//! agency, files referrals routed to it, and reports how long each handoff
//! took from its creation (the event's time) to arrival on every stream.

mod drive;
mod server;
mod soak;
mod watch;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use refnet_core::devkeys::DevSigner;
use tonic::transport::Channel;

use crate::fixtures::Fixture;
use drive::{drive, prefill, stored_sample};
use server::{Server, Tokens};
use soak::soak;
use watch::watch;

/// What `refnet bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// `FileReferral`: a fixture referral per call, by its filing agency.
    File,
    /// `GetReferral` of a filed referral by its filer (full redaction pass).
    Get,
    /// `ListReferrals` pages of 50, each client walking to the last page and over again.
    List,
    /// `ListInbox` pages of 50 for the NGO that receives most handoffs.
    Inbox,
    /// `PostMessage` on a filed referral by its filer.
    Message,
    /// `WatchInbox` fan-out: handoff creation to arrival on every open stream.
    Watch,
    /// Soak: a steady mix (file, get ×3, list, inbox) at `--rate` calls/s for
    /// `--duration`, reported in ten windows: errors, latency drift, memory growth.
    Soak,
}

/// `refnet bench` flags.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Scenarios to run, in order (repeat the flag; default: all but watch).
    #[arg(long, value_enum)]
    scenario: Vec<Scenario>,
    /// Concurrent client tasks (one HTTP/2 connection, as performance.md's echo baseline).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Length of each measured phase (and of each baseline phase).
    #[arg(long, default_value = "5s")]
    duration: humantime::Duration,
    /// Rounds of baseline + scenario.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Referrals filed before the read scenarios.
    #[arg(long, default_value_t = 1000)]
    prefill: usize,
    /// Open streams for `watch`.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// `soak`: calls per second, all clients together.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Referrals filed during `watch` (one every 100 ms).
    #[arg(long, default_value_t = 20)]
    watch_referrals: usize,
    /// The server's database (default: SQLite in the data directory).
    #[arg(long)]
    database_url: Option<String>,
    /// Serve this data directory (kept afterwards), e.g. one loaded by
    /// `refnet seed`; default: a fresh temporary one. When it holds more
    /// referrals than the prefill, `get` reads a random sample of them all.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Role of the reading tokens (`get`, `list`, `inbox`): `officer` (identity
    /// shown and audited) or `auditor` (operational data only: no audit record).
    #[arg(long, default_value = "officer")]
    read_role: String,
    /// File the fixtures with their own phone numbers, IDs and emails, so the
    /// same 500 people are filed again and again (each filing then matches
    /// every earlier one in the duplicate check). Default: each filing gets
    /// identifiers of its own, as real filings mostly do.
    #[arg(long)]
    repeat_identities: bool,
    /// Serve TLS (a certificate from a CA made for the run) and call over
    /// `https://`, to measure what encryption in transit costs.
    #[arg(long)]
    tls: bool,
    /// Payloads [default: tests/fixtures/referrals.jsonl].
    #[arg(long)]
    fixtures: Option<PathBuf>,
}

/// Latencies and counts of one phase.
#[derive(Debug, Default)]
struct Phase {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    micros: Vec<u64>,
    elapsed: Duration,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn percentile(&mut self, p: f64) -> f64 {
        if self.micros.is_empty() {
            return f64::NAN;
        }
        self.micros.sort_unstable();
        let rank = ((p / 100.0) * self.micros.len() as f64).ceil() as usize;
        self.micros[rank.clamp(1, self.micros.len()) - 1] as f64 / 1000.0
    }

    fn latencies(&mut self) -> String {
        format!(
            "{:.2}/{:.2}/{:.2}",
            self.percentile(50.0),
            self.percentile(99.0),
            self.percentile(99.9)
        )
    }
}

/// What the read scenarios act on: filed referrals and their filers' tokens.
struct World {
    /// Where clients connect (plaintext or TLS).
    endpoint: tonic::transport::Endpoint,
    /// Keep the fixtures' identifiers (see `--repeat-identities`).
    repeat_identities: bool,
    channel: Channel,
    fixtures: Vec<Fixture>,
    /// (referral id, filer's token)
    filed: Vec<(String, Arc<str>)>,
    /// What `get` reads: `filed`, or a sample of every stored referral.
    reads: Vec<(String, Arc<str>)>,
    /// The agency whose lists are paged, and its token.
    lister: Arc<str>,
    /// The NGO receiving most handoffs, and its token.
    ngo: Arc<str>,
    /// Tokens per filing agency, in fixture order.
    filer_tokens: Vec<Arc<str>>,
}

/// Runs the load tool.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let scenarios = if args.scenario.is_empty() {
        vec![
            Scenario::File,
            Scenario::Get,
            Scenario::List,
            Scenario::Inbox,
            Scenario::Message,
        ]
    } else {
        args.scenario.clone()
    };
    let fixtures = crate::fixtures::load(
        &args
            .fixtures
            .clone()
            .unwrap_or_else(crate::fixtures::default_path),
    )?;
    if fixtures.is_empty() {
        bail!("no fixtures");
    }
    let server = Server::start(
        args.database_url.as_deref(),
        args.data_dir.as_deref(),
        args.tls,
    )?;
    let backend = if args.database_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let endpoint = server.endpoint()?;
    let channel = endpoint.connect().await?;
    let tokens = Tokens {
        signer: DevSigner::load(&server.data_dir, "refnet-dev", "refnet")?,
    };
    let mut filer_tokens = Vec::new();
    for f in &fixtures {
        let agency = f.filer().context("a fixture without a demo filer")?;
        filer_tokens.push(Arc::<str>::from(tokens.officer(agency)?));
    }
    let mut world = World {
        endpoint,
        repeat_identities: args.repeat_identities,
        channel: channel.clone(),
        fixtures,
        filed: Vec::new(),
        reads: Vec::new(),
        lister: tokens.with_role("police-nairobi", &args.read_role)?.into(),
        ngo: tokens
            .with_role("ngo-shelter-nairobi", &args.read_role)?
            .into(),
        filer_tokens,
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle, _) = server.rss_mib();
    println!(
        "refnet bench: {backend}, {} concurrent clients on one connection, {} rounds of {} baseline + {} measured (soak: one run of {})",
        args.concurrency, args.rounds, args.duration, args.duration, args.duration
    );
    println!("server idle RSS {idle:.1} MiB\n");

    let needs_prefill = scenarios.iter().any(|s| {
        matches!(
            s,
            Scenario::Get | Scenario::List | Scenario::Inbox | Scenario::Message | Scenario::Soak
        )
    });
    if needs_prefill {
        let started = Instant::now();
        // Each referral is read by its filing agency, with the reading role.
        let mut readers: std::collections::HashMap<&str, Arc<str>> = Default::default();
        for (id, fixture) in prefill(&world, args.prefill, args.concurrency).await? {
            let agency = world.fixtures[fixture]
                .filer()
                .context("a fixture without a demo filer")?;
            let token = match readers.get(agency) {
                Some(t) => t.clone(),
                None => {
                    let t: Arc<str> = tokens.with_role(agency, &args.read_role)?.into();
                    readers.insert(agency, t.clone());
                    t
                }
            };
            world.filed.push((id, token));
        }
        println!(
            "prefill: {} referrals filed in {:.1} s\n",
            world.filed.len(),
            started.elapsed().as_secs_f64()
        );
        world.reads = stored_sample(
            &server,
            args.database_url.as_deref(),
            &tokens,
            &args.read_role,
        )
        .await?;
        if world.reads.is_empty() {
            world.reads = world.filed.clone();
        } else {
            println!(
                "get reads a random sample of {} of the stored referrals\n",
                world.reads.len()
            );
        }
    }
    let world = Arc::new(world);
    let unary = scenarios
        .iter()
        .any(|s| !matches!(s, Scenario::Watch | Scenario::Soak));
    if unary {
        println!(
            "{:<8} {:>5} {:>12} {:>20} {:>12} {:>20} {:>7} {:>7}",
            "scenario",
            "round",
            "health/s",
            "p50/p99/p999 ms",
            "rpc/s",
            "p50/p99/p999 ms",
            "errors",
            "ratio"
        );
    }
    // sqlite-insert (performance.md): the 4-row transaction, one writer, on a
    // scratch database with refnet's own connection settings, run after each
    // FileReferral phase on SQLite. PostgreSQL's pg-insert is pgbench's
    // (scripts/bench-pg).
    let scratch = tempfile::tempdir()?;
    let sqlite_insert = if args.database_url.is_none() && scenarios.contains(&Scenario::File) {
        let db = refnet_core::db::connect(&format!(
            "sqlite://{}?mode=rwc",
            scratch.path().join("sqlite-insert.db").display()
        ))
        .await?;
        crate::insert_baseline::schema(&db).await?;
        Some(db)
    } else {
        None
    };
    for scenario in scenarios {
        if scenario == Scenario::Watch {
            watch(&world, &tokens, &args).await?;
            continue;
        }
        if scenario == Scenario::Soak {
            soak(&world, &server, &args).await;
            continue;
        }
        let mut ratios = Vec::new();
        let mut rates = Vec::new();
        let mut insert_ratios = Vec::new();
        for round in 1..=args.rounds.max(1) {
            let mut base = drive(&world, None, args.concurrency, args.duration.into()).await;
            let mut measured = drive(
                &world,
                Some(scenario),
                args.concurrency,
                args.duration.into(),
            )
            .await;
            let ratio = measured.rate() / base.rate();
            ratios.push(ratio);
            rates.push(measured.rate());
            println!(
                "{:<8} {:>5} {:>12.0} {:>20} {:>12.0} {:>20} {:>7} {:>7.3}",
                format!("{scenario:?}").to_lowercase(),
                round,
                base.rate(),
                base.latencies(),
                measured.rate(),
                measured.latencies(),
                measured.errors,
                ratio
            );
            if let Some(e) = &measured.first_error {
                println!("         first error: {e}");
            }
            if scenario == Scenario::File
                && let Some(db) = &sqlite_insert
            {
                let tps = crate::insert_baseline::run(db, 1, args.duration.into()).await?;
                let ratio = measured.rate() / tps;
                insert_ratios.push(ratio);
                println!(
                    "         sqlite-insert {tps:.0} tx/s (one writer); FileReferral / sqlite-insert {ratio:.3}"
                );
            }
        }
        if !insert_ratios.is_empty() {
            insert_ratios.sort_by(f64::total_cmp);
            println!(
                "file     ratio to sqlite-insert: min {:.3} median {:.3} max {:.3} (target >= 0.6)",
                insert_ratios[0],
                insert_ratios[insert_ratios.len() / 2],
                insert_ratios[insert_ratios.len() - 1]
            );
        }
        ratios.sort_by(f64::total_cmp);
        rates.sort_by(f64::total_cmp);
        let name = format!("{scenario:?}").to_lowercase();
        println!(
            "{name:<8} ratio to health: min {:.3} median {:.3} max {:.3}",
            ratios[0],
            ratios[ratios.len() / 2],
            ratios[ratios.len() - 1]
        );
        // One line for scripts (scripts/bench-pg).
        println!(
            "summary scenario={name} min_rps={:.1} median_rps={:.1} max_rps={:.1} median_ratio={:.4}\n",
            rates[0],
            rates[rates.len() / 2],
            rates[rates.len() - 1],
            ratios[ratios.len() / 2]
        );
    }
    let (now, peak) = server.rss_mib();
    println!("server RSS now {now:.1} MiB, peak {peak:.1} MiB");
    Ok(())
}
