//! The unary scenarios: the prefill that files the referrals they act on (or
//! a sample of a seeded database's), and the timed drive of one RPC, or the
//! health baseline, from concurrent tasks each with its own [`Client`].

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use refnet_api::v1::{
    self as pb, intake_service_client::IntakeServiceClient,
    routing_service_client::RoutingServiceClient,
};
use tonic::transport::Channel;

use super::{
    Phase, Scenario, World,
    server::{Server, Tokens, authed},
};

/// Up to 1,000 referrals drawn at random from every stored one, each with its
/// filer's token, when the database holds more than the prefill filed (a
/// seeded data directory); empty otherwise.
pub(super) async fn stored_sample(
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
pub(super) async fn prefill(
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
pub(super) async fn drive(
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
pub(super) struct Client {
    health: tonic_health::pb::health_client::HealthClient<Channel>,
    intake: IntakeServiceClient<Channel>,
    routing: RoutingServiceClient<Channel>,
}

impl Client {
    pub(super) fn new(channel: &Channel) -> Self {
        Self {
            health: tonic_health::pb::health_client::HealthClient::new(channel.clone()),
            intake: IntakeServiceClient::new(channel.clone()),
            routing: RoutingServiceClient::new(channel.clone()),
        }
    }

    /// One call of `scenario` (`None`: the health baseline); the `i`th of its task.
    pub(super) async fn call(
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
