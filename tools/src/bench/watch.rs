//! `watch`: `WatchInbox` fan-out, from a handoff's creation to its arrival on
//! every open stream.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use refnet_api::v1::{
    self as pb, intake_service_client::IntakeServiceClient,
    routing_service_client::RoutingServiceClient,
};

use super::{
    BenchArgs, Phase, World,
    server::{Tokens, authed},
};

/// Streams open per HTTP/2 connection (servers commonly cap concurrent streams at 200).
const STREAMS_PER_CONNECTION: usize = 100;

/// `WatchInbox` fan-out: `--streams` NGO streams; referrals routed to the NGO
/// filed one every 100 ms; latency from each handoff's creation to its arrival
/// on each stream.
pub(super) async fn watch(
    world: &Arc<World>,
    tokens: &Tokens,
    args: &BenchArgs,
) -> anyhow::Result<()> {
    let ngo = world.ngo.clone();
    let mut channels = Vec::new();
    let endpoint = world.endpoint.clone();
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
