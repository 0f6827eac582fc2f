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

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use refnet_api::v1::{
    self as pb, intake_service_client::IntakeServiceClient,
    routing_service_client::RoutingServiceClient,
};
use refnet_core::devkeys::{DevSigner, TokenRequest};
use tonic::{Request, transport::Channel};

use crate::fixtures::Fixture;

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

/// The server under test, killed on drop.
struct Server {
    child: Child,
    addr: String,
    _dir: Option<tempfile::TempDir>,
    data_dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(database_url: Option<&str>, data_dir: Option<&Path>) -> anyhow::Result<Self> {
        let (dir, data_dir) = match data_dir {
            Some(d) => (None, d.to_owned()),
            None => {
                let dir = tempfile::tempdir()?;
                let data_dir = dir.path().join("data");
                (Some(dir), data_dir)
            }
        };
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .env("RUST_LOG", "warn")
            .env_remove("REFNET_OTLP_ENDPOINT")
            // The load tool measures throughput, not the rate limits: a few
            // simulated officers make thousands of calls a second.
            .env("REFNET_LIMITS__OFFICER_PER_SECOND", "0")
            .env("REFNET_LIMITS__AGENCY_PER_SECOND", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match database_url {
            Some(url) => command.args(["--database-url", url]),
            None => command.env_remove("REFNET_DATABASE_URL"),
        };
        let mut child = command.spawn().context("starting refnet serve")?;
        let stderr = child.stderr.take().context("server stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = refnet_core::announce::served_address(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.to_owned());
                } else if tx.is_some() {
                    eprintln!("server: {line}");
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .context("refnet serve did not start")?;
        Ok(Self {
            child,
            addr,
            _dir: dir,
            data_dir,
        })
    }

    /// (current, peak) resident set size in MiB.
    fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .map_or(f64::NAN, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// Tokens for the demo agencies, minted once.
struct Tokens {
    signer: DevSigner,
}

impl Tokens {
    fn officer(&self, agency: &str) -> anyhow::Result<String> {
        self.with_role(agency, "officer")
    }

    fn with_role(&self, agency: &str, role: &str) -> anyhow::Result<String> {
        let kind = match agency.split('-').next().unwrap_or_default() {
            "police" => pb::AgencyKind::Police,
            "prosecution" => pb::AgencyKind::Prosecution,
            "immigration" => pb::AgencyKind::Immigration,
            "labour" => pb::AgencyKind::Labour,
            "children" => pb::AgencyKind::Children,
            "ngo" => pb::AgencyKind::Ngo,
            "health" => pb::AgencyKind::Health,
            other => bail!("no demo agency kind for {other}"),
        };
        Ok(self.signer.mint(&TokenRequest {
            officer_id: "bench-officer".into(),
            agency_id: agency.into(),
            agency_kind: kind,
            roles: vec![role.into()],
            ttl: Duration::from_secs(3600),
        })?)
    }
}

fn authed<T>(message: T, token: &str) -> anyhow::Result<Request<T>> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}

/// What the read scenarios act on: filed referrals and their filers' tokens.
struct World {
    /// The server's address.
    addr: String,
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
    let server = Server::start(args.database_url.as_deref(), args.data_dir.as_deref())?;
    let backend = if args.database_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let channel = Channel::from_shared(format!("http://{}", server.addr))?
        .connect()
        .await?;
    let tokens = Tokens {
        signer: DevSigner::load(&server.data_dir, "refnet-dev", "refnet")?,
    };
    let mut filer_tokens = Vec::new();
    for f in &fixtures {
        let agency = f.filer().context("a fixture without a demo filer")?;
        filer_tokens.push(Arc::<str>::from(tokens.officer(agency)?));
    }
    let mut world = World {
        addr: server.addr.clone(),
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

/// Up to 1,000 referrals drawn at random from every stored one, each with its
/// filer's token, when the database holds more than the prefill filed (a
/// seeded data directory); empty otherwise.
async fn stored_sample(
    server: &Server,
    database_url: Option<&str>,
    tokens: &Tokens,
    role: &str,
) -> anyhow::Result<Vec<(String, Arc<str>)>> {
    use sea_orm::{ConnectionTrait, Statement};
    let url = database_url.map_or_else(
        || {
            format!(
                "sqlite://{}?mode=ro",
                server.data_dir.join("refnet.db").display()
            )
        },
        str::to_owned,
    );
    let db = sea_orm::Database::connect(url).await?;
    let backend = db.get_database_backend();
    let count = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT COUNT(*) AS n FROM referrals",
        ))
        .await?
        .context("count")?
        .try_get::<i64>("", "n")?;
    if count <= 2000 {
        return Ok(Vec::new());
    }
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT id, filing_agency_id FROM referrals ORDER BY RANDOM() LIMIT 1000",
        ))
        .await?;
    let mut tokens_by_agency: std::collections::HashMap<String, Arc<str>> = Default::default();
    let mut sample = Vec::with_capacity(rows.len());
    for row in rows {
        let id: uuid::Uuid = row.try_get("", "id")?;
        let agency: String = row.try_get("", "filing_agency_id")?;
        let token = match tokens_by_agency.get(&agency) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = tokens.with_role(&agency, role)?.into();
                tokens_by_agency.insert(agency, t.clone());
                t
            }
        };
        sample.push((id.to_string(), token));
    }
    db.close().await?;
    Ok(sample)
}

/// Gives the draft's subject identifiers no earlier filing of this run used.
fn distinct_identifiers(draft: &mut pb::ReferralDraft) {
    static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    crate::fixtures::number_identifiers(draft, n);
}

/// Files `n` fixture referrals (cycling), `concurrency` at a time.
async fn prefill(
    world: &World,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<(String, usize)>> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.min(n.max(1)) {
        let next = next.clone();
        let channel = world.channel.clone();
        let repeat = world.repeat_identities;
        let drafts: Vec<(pb::ReferralDraft, Arc<str>)> = world
            .fixtures
            .iter()
            .zip(&world.filer_tokens)
            .map(|(f, t)| (f.draft(), t.clone()))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut client = IntakeServiceClient::new(channel);
            let mut filed = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(filed);
                }
                let fixture = i % drafts.len();
                let (draft, token) = &drafts[fixture];
                let mut draft = draft.clone();
                if !repeat {
                    distinct_identifiers(&mut draft);
                }
                let reply = client
                    .file_referral(authed(
                        pb::FileReferralRequest {
                            idempotency_key: format!("bench-{}", uuid::Uuid::new_v4().simple()),
                            draft: Some(draft),
                        },
                        token,
                    )?)
                    .await
                    .map_err(|s| anyhow::anyhow!("prefill: {}: {}", s.code(), s.message()))?;
                if let Some(r) = reply.into_inner().referral {
                    filed.push((r.id, fixture));
                }
            }
        }));
    }
    let mut filed = Vec::new();
    for t in tasks {
        filed.extend(t.await??);
    }
    Ok(filed)
}

/// Drives `scenario` (or the health baseline) for `duration`.
async fn drive(
    world: &Arc<World>,
    scenario: Option<Scenario>,
    concurrency: usize,
    duration: Duration,
) -> Phase {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let world = world.clone();
        tasks.push(tokio::spawn(async move {
            let mut phase = Phase::default();
            let mut client = Client::new(&world.channel);
            let mut i = worker;
            let mut page_token = String::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let result = client.call(&world, scenario, i, &mut page_token).await;
                let micros = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                match result {
                    Ok(()) => {
                        phase.ok += 1;
                        phase.micros.push(micros);
                    }
                    Err(e) => {
                        phase.errors += 1;
                        phase.first_error.get_or_insert(e);
                    }
                }
                i += concurrency;
            }
            phase
        }));
    }
    let mut total = Phase::default();
    for t in tasks {
        if let Ok(p) = t.await {
            total.ok += p.ok;
            total.errors += p.errors;
            total.micros.extend(p.micros);
            if total.first_error.is_none() {
                total.first_error = p.first_error;
            }
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// One task's clients.
struct Client {
    health: tonic_health::pb::health_client::HealthClient<Channel>,
    intake: IntakeServiceClient<Channel>,
    routing: RoutingServiceClient<Channel>,
}

impl Client {
    fn new(channel: &Channel) -> Self {
        Self {
            health: tonic_health::pb::health_client::HealthClient::new(channel.clone()),
            intake: IntakeServiceClient::new(channel.clone()),
            routing: RoutingServiceClient::new(channel.clone()),
        }
    }

    /// One call of `scenario` (`None`: the health baseline); the `i`th of its task.
    async fn call(
        &mut self,
        world: &World,
        scenario: Option<Scenario>,
        i: usize,
        page_token: &mut String,
    ) -> Result<(), String> {
        let status = |s: tonic::Status| format!("{}: {}", s.code(), s.message());
        let bad = |e: anyhow::Error| e.to_string();
        let Some(scenario) = scenario else {
            self.health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map_err(status)?;
            return Ok(());
        };
        match scenario {
            Scenario::File => {
                let n = world.fixtures.len();
                let mut draft = world.fixtures[i % n].draft();
                if !world.repeat_identities {
                    distinct_identifiers(&mut draft);
                }
                self.intake
                    .file_referral(
                        authed(
                            pb::FileReferralRequest {
                                idempotency_key: format!("bench-{}", uuid::Uuid::new_v4().simple()),
                                draft: Some(draft),
                            },
                            &world.filer_tokens[i % n],
                        )
                        .map_err(bad)?,
                    )
                    .await
                    .map_err(status)?;
            }
            Scenario::Get => {
                let (id, token) = &world.reads[i % world.reads.len()];
                self.intake
                    .get_referral(
                        authed(
                            pb::GetReferralRequest {
                                referral: id.clone(),
                            },
                            token,
                        )
                        .map_err(bad)?,
                    )
                    .await
                    .map_err(status)?;
            }
            Scenario::List => {
                let page = self
                    .intake
                    .list_referrals(
                        authed(
                            pb::ListReferralsRequest {
                                page_size: 50,
                                page_token: std::mem::take(page_token),
                                ..Default::default()
                            },
                            &world.lister,
                        )
                        .map_err(bad)?,
                    )
                    .await
                    .map_err(status)?;
                *page_token = page.into_inner().next_page_token;
            }
            Scenario::Inbox => {
                let page = self
                    .routing
                    .list_inbox(
                        authed(
                            pb::ListInboxRequest {
                                page_size: 50,
                                page_token: std::mem::take(page_token),
                                ..Default::default()
                            },
                            &world.ngo,
                        )
                        .map_err(bad)?,
                    )
                    .await
                    .map_err(status)?;
                *page_token = page.into_inner().next_page_token;
            }
            Scenario::Message => {
                let (id, token) = &world.filed[i % world.filed.len()];
                self.routing
                    .post_message(
                        authed(
                            pb::PostMessageRequest {
                                referral_id: id.clone(),
                                idempotency_key: format!("bench-{}", uuid::Uuid::new_v4().simple()),
                                body: "Synthetic update: a bed is ready at the shelter.".into(),
                            },
                            token,
                        )
                        .map_err(bad)?,
                    )
                    .await
                    .map_err(status)?;
            }
            Scenario::Watch | Scenario::Soak => {
                return Err(format!("{scenario:?} is not a single RPC"));
            }
        }
        Ok(())
    }
}

/// The soak's mix, in turn: one filing (routed by the worker), three reads,
/// a referral page and an inbox page.
const SOAK_MIX: [Scenario; 6] = [
    Scenario::File,
    Scenario::Get,
    Scenario::Get,
    Scenario::Get,
    Scenario::List,
    Scenario::Inbox,
];

/// The RPCs of [`SOAK_MIX`], each reported on its own too.
const SOAK_RPCS: [Scenario; 4] = [
    Scenario::File,
    Scenario::Get,
    Scenario::List,
    Scenario::Inbox,
];

/// Windows a soak is reported in.
const SOAK_WINDOWS: usize = 10;

/// `soak`: [`SOAK_MIX`] at `--rate` calls/s from up to 32 paced clients for
/// `--duration`; per window: achieved rate, errors, p50/p99, server RSS; then
/// errors, memory growth and p99 drift from the second window (the first warms
/// up) to the last.
async fn soak(world: &Arc<World>, server: &Server, args: &BenchArgs) {
    let duration: Duration = args.duration.into();
    let window = duration / SOAK_WINDOWS as u32;
    let workers = args.concurrency.clamp(1, 32);
    let period = Duration::from_secs_f64(workers as f64 / f64::from(args.rate.max(1)));
    let started = Instant::now();
    let end = started + duration;
    // Per window: all calls, then each RPC of the mix (file, get, list, inbox).
    let stats: Arc<std::sync::Mutex<Vec<[Phase; 5]>>> = Arc::new(std::sync::Mutex::new(
        (0..SOAK_WINDOWS).map(|_| Default::default()).collect(),
    ));
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let (world, stats) = (world.clone(), stats.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(&world.channel);
            let (mut list_token, mut inbox_token) = (String::new(), String::new());
            let mut next = started + period.mul_f64(worker as f64 / workers as f64);
            let mut i = worker;
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                next += period;
                let scenario = SOAK_MIX[i % SOAK_MIX.len()];
                let page_token = if scenario == Scenario::Inbox {
                    &mut inbox_token
                } else {
                    &mut list_token
                };
                let t = Instant::now();
                let result = client.call(&world, Some(scenario), i, page_token).await;
                let micros = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                let w = ((t - started).as_nanos() / window.as_nanos().max(1)) as usize;
                let rpc = 1 + SOAK_RPCS.iter().position(|s| *s == scenario).unwrap_or(0);
                if let Ok(mut stats) = stats.lock() {
                    let window = &mut stats[w.min(SOAK_WINDOWS - 1)];
                    for k in [0, rpc] {
                        let phase = &mut window[k];
                        match &result {
                            Ok(()) => {
                                phase.ok += 1;
                                phase.micros.push(micros);
                            }
                            Err(e) => {
                                phase.errors += 1;
                                phase.first_error.get_or_insert(e.clone());
                            }
                        }
                    }
                }
                i += workers;
            }
        }));
    }
    let mut rss = Vec::new();
    for w in 1..=SOAK_WINDOWS {
        tokio::time::sleep_until((started + window * w as u32).into()).await;
        rss.push(server.rss_mib().0);
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut stats = match Arc::try_unwrap(stats).map(|m| m.into_inner()) {
        Ok(Ok(stats)) => stats,
        _ => {
            println!("soak: the workers' figures could not be collected");
            return;
        }
    };
    println!(
        "soak: {} calls/s target ({} clients), {} windows of {}",
        args.rate,
        workers,
        SOAK_WINDOWS,
        humantime::format_duration(window)
    );
    println!(
        "{:<8} {:>6} {:>9} {:>7} {:>20} {:>9}",
        "soak", "window", "calls/s", "errors", "p50/p99/p999 ms", "RSS MiB"
    );
    let mut p99 = Vec::new();
    let mut errors = 0;
    for (w, phases) in stats.iter_mut().enumerate() {
        let phase = &mut phases[0];
        phase.elapsed = window;
        errors += phase.errors;
        p99.push(phase.percentile(99.0));
        let (rate, latencies) = (phase.rate(), phase.latencies());
        println!(
            "{:<8} {:>6} {:>9.1} {:>7} {:>20} {:>9.1}",
            "soak",
            w + 1,
            rate,
            phase.errors,
            latencies,
            rss[w]
        );
        if let Some(e) = &phase.first_error {
            println!("         first error: {e}");
        }
    }
    let calls: u64 = stats.iter().map(|w| w[0].ok + w[0].errors).sum();
    let (first, last) = (1.min(SOAK_WINDOWS - 1), SOAK_WINDOWS - 1);
    for (k, rpc) in SOAK_RPCS.iter().enumerate() {
        let (a, b) = (
            stats[first][k + 1].percentile(99.0),
            stats[last][k + 1].percentile(99.0),
        );
        let (a50, b50) = (
            stats[first][k + 1].percentile(50.0),
            stats[last][k + 1].percentile(50.0),
        );
        println!(
            "soak rpc {:<6} p50 {a50:.2} -> {b50:.2} ms, p99 {a:.2} -> {b:.2} ms (drift x{:.2}), window {} to {}",
            format!("{rpc:?}").to_lowercase(),
            b / a,
            first + 1,
            last + 1
        );
    }
    println!(
        "soak: {calls} calls, {errors} errors; RSS {:.1} -> {:.1} MiB (growth {:+.1} MiB); p99 {:.2} -> {:.2} ms (drift x{:.2}), window {} to {}",
        rss[first],
        rss[last],
        rss[last] - rss[first],
        p99[first],
        p99[last],
        p99[last] / p99[first],
        first + 1,
        last + 1
    );
    println!(
        "summary scenario=soak calls={calls} errors={errors} rss_growth_mib={:.1} p99_drift={:.3}\n",
        rss[last] - rss[first],
        p99[last] / p99[first]
    );
}

/// Streams open per HTTP/2 connection (servers commonly cap concurrent streams at 200).
const STREAMS_PER_CONNECTION: usize = 100;

/// `WatchInbox` fan-out: `--streams` NGO streams; referrals routed to the NGO
/// filed one every 100 ms; latency from each handoff's creation to its arrival
/// on each stream.
async fn watch(world: &Arc<World>, tokens: &Tokens, args: &BenchArgs) -> anyhow::Result<()> {
    let ngo = world.ngo.clone();
    let mut channels = Vec::new();
    let endpoint = Channel::from_shared(format!("http://{}", world.addr))?;
    for _ in 0..args.streams.div_ceil(STREAMS_PER_CONNECTION) {
        channels.push(endpoint.connect().await?);
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, u64)>();
    let mut streams = Vec::new();
    for s in 0..args.streams {
        let mut client = RoutingServiceClient::new(channels[s / STREAMS_PER_CONNECTION].clone());
        let stream = client
            .watch_inbox(authed(pb::WatchInboxRequest::default(), &ngo)?)
            .await
            .map_err(|s| anyhow::anyhow!("open stream: {}: {}", s.code(), s.message()))?
            .into_inner();
        let tx = tx.clone();
        streams.push(tokio::spawn(async move {
            let mut stream = stream;
            while let Ok(Some(item)) = stream.message().await {
                if item.event != "HandoffCreated" {
                    continue;
                }
                let Some(at) = item.occurred_at else { continue };
                let created = std::time::UNIX_EPOCH
                    + Duration::new(
                        u64::try_from(at.seconds).unwrap_or(0),
                        u32::try_from(at.nanos).unwrap_or(0),
                    );
                let micros = std::time::SystemTime::now()
                    .duration_since(created)
                    .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
                let id = item.handoff.map(|h| h.id).unwrap_or_default();
                if tx.send((id, micros)).is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    // A referral the NGO receives: an adult who needs shelter, consent to NGOs.
    let police = tokens.officer("police-nairobi")?;
    let fixture = world
        .fixtures
        .iter()
        .find(|f| {
            f.needs.iter().any(|n| n == "SHELTER")
                && f.consent.given
                && f.consent.agency_kinds.iter().any(|k| k == "NGO")
        })
        .unwrap_or(&world.fixtures[0]);
    let mut intake = IntakeServiceClient::new(world.channel.clone());
    let started = Instant::now();
    for _ in 0..args.watch_referrals {
        let mut draft = fixture.draft();
        draft.identified_by = pb::IdentifiedBy::Police as i32;
        // Routing picks the NGO of the referral's county.
        draft.county = "Nairobi".into();
        intake
            .file_referral(authed(
                pb::FileReferralRequest {
                    idempotency_key: format!("bench-{}", uuid::Uuid::new_v4().simple()),
                    draft: Some(draft),
                },
                &police,
            )?)
            .await
            .map_err(|s| anyhow::anyhow!("file: {}: {}", s.code(), s.message()))?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Collect until every stream has had its items or things go quiet.
    let mut phase = Phase::default();
    let mut handoffs = std::collections::HashSet::new();
    while let Ok(Some((id, micros))) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await
    {
        handoffs.insert(id);
        phase.ok += 1;
        phase.micros.push(micros);
    }
    phase.elapsed = started.elapsed();
    for s in streams {
        s.abort();
    }
    let expected = (handoffs.len() * args.streams) as u64;
    let latencies = phase.latencies();
    println!(
        "watch    {} streams, {} handoffs to the NGO: {} of {} deliveries, creation -> arrival p50/p99/p999 {} ms (target p99 <= 200 ms)\n",
        args.streams,
        handoffs.len(),
        phase.ok,
        expected,
        latencies
    );
    Ok(())
}
