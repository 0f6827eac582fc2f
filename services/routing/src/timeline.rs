//! The timeline of a referral: every event on it, as its parties may see it
//! (event payloads hold ids, versions and rule ids, never identifying
//! values), by pages (`GetTimeline`) or live (`WatchReferral`, resumable from
//! a cursor, across processes because it reads the event log).

use crate::entities::handoff;
use refnet_api::redact::Redact;
use refnet_api::v1 as pb;
use refnet_core::boundary::Call;
use refnet_core::{
    AppContext, ServiceError, ServiceResult, access,
    auth::Principal,
    boundary::{CallInfo, Concerning, Reply, reply},
    domain::{ReferralRef, referral::timestamp},
    entities::event,
    error::Violations,
    events::EventKind,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::Instrument;
use uuid::Uuid;

#[derive(Serialize, Deserialize)]
struct TimelineCursor {
    referral: Uuid,
    agency: String,
    seq: i64,
}

/// Seals a position on `referral`'s timeline for `agency`.
fn seal(ctx: &AppContext, referral: Uuid, agency: &str, seq: i64) -> ServiceResult<String> {
    let raw = serde_json::to_vec(&TimelineCursor {
        referral,
        agency: agency.to_owned(),
        seq,
    })
    .map_err(|e| ServiceError::internal("cursor", e))?;
    Ok(ctx.keys().tokens.seal(&raw))
}

/// Opens a cursor issued for `referral` and `agency`.
pub fn open(ctx: &AppContext, token: &str, referral: Uuid, agency: &str) -> Option<i64> {
    ctx.keys()
        .tokens
        .open(token)
        .and_then(|raw| serde_json::from_slice::<TimelineCursor>(&raw).ok())
        .filter(|c| c.referral == referral && c.agency == agency)
        .map(|c| c.seq)
}

fn text(payload: &serde_json::Value, key: &str) -> String {
    payload
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The timeline item of one event.
fn item(
    ctx: &AppContext,
    referral: Uuid,
    agency: &str,
    ev: &event::Model,
) -> ServiceResult<pb::TimelineEvent> {
    let payload: serde_json::Value = serde_json::from_str(&ev.payload).unwrap_or_default();
    Ok(pb::TimelineEvent {
        cursor: seal(ctx, referral, agency, ev.seq)?,
        event: ev.kind.clone(),
        occurred_at: Some(timestamp(ev.occurred_at)),
        actor_agency_id: ev.agency_id.clone().unwrap_or_default(),
        handoff_id: text(&payload, "handoff_id"),
        to_agency_id: text(&payload, "to_agency_id"),
        rule_id: text(&payload, "rule_id"),
        rule_set_version: text(&payload, "rule_set_version"),
        version: payload
            .get("version")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or_default(),
        reason: String::new(),
        detail: text(&payload, "detail"),
        redactions: Vec::new(),
    })
}

/// The events of `referral` after `after`, at most `limit`, that `agency`
/// may follow: a former recipient (its accepted handoff was withdrawn at
/// `until`) sees the events up to its withdrawal, nothing newer.
pub async fn events_after(
    ctx: &AppContext,
    referral: Uuid,
    until: Option<chrono::DateTime<chrono::Utc>>,
    after: i64,
    limit: u64,
) -> ServiceResult<Vec<event::Model>> {
    let mut q = event::Entity::find()
        .filter(event::Column::ReferralId.eq(referral))
        .filter(event::Column::Seq.gt(after));
    if let Some(until) = until {
        q = q.filter(event::Column::OccurredAt.lte(until));
    }
    Ok(q.order_by_asc(event::Column::Seq)
        .limit(limit)
        .all(ctx.db())
        .await?)
}

/// The last event of `referral`, 0 when it has none.
pub async fn latest_seq(ctx: &AppContext, referral: Uuid) -> ServiceResult<i64> {
    Ok(event::Entity::find()
        .filter(event::Column::ReferralId.eq(referral))
        .order_by_desc(event::Column::Seq)
        .one(ctx.db())
        .await?
        .map_or(0, |e| e.seq))
}

/// The timeline items of `events`, not yet redacted: a page goes through the
/// boundary once (as one `GetTimelineResponse`), a stream item once (by
/// [`redacted`]). Decline and withdrawal reasons are opened here.
pub async fn items(
    ctx: &AppContext,
    principal: &Principal,
    referral: Uuid,
    events: &[event::Model],
) -> ServiceResult<Vec<pb::TimelineEvent>> {
    let with_reason = [
        EventKind::HandoffDeclined.as_str(),
        EventKind::HandoffWithdrawn.as_str(),
    ];
    let mut out = Vec::with_capacity(events.len());
    for ev in events {
        let mut it = item(ctx, referral, &principal.agency_id, ev)?;
        if with_reason.contains(&ev.kind.as_str())
            && let Ok(id) = Uuid::parse_str(&it.handoff_id)
            && let Some(row) = handoff::Entity::find_by_id(id).one(ctx.db()).await?
        {
            it.reason = crate::decisions::open_reason(ctx, &row).await?;
        }
        out.push(it);
    }
    Ok(out)
}

/// `message` about `referral` through the boundary, with the referral's
/// subject when it holds free text (a reason) and without it otherwise.
pub async fn redacted<T: Redact>(
    ctx: &AppContext,
    principal: &Principal,
    call: &CallInfo,
    referral: Uuid,
    message: T,
) -> ServiceResult<Reply<T>> {
    let about = if message.holds_free_text() {
        Concerning::Referral(referral)
    } else {
        Concerning::Nothing
    };
    reply(ctx, principal, call, about, message).await
}

/// The stream's next events after `after`; when they hold a withdrawal of a
/// handoff to `agency`, its cutoff is read into `until` and applied.
async fn next_events(
    ctx: &AppContext,
    referral: Uuid,
    agency: &str,
    until: &mut Option<chrono::DateTime<chrono::Utc>>,
    after: i64,
) -> ServiceResult<Vec<event::Model>> {
    let mut batch = events_after(ctx, referral, *until, after, 200).await?;
    let withdrawn = EventKind::HandoffWithdrawn.as_str();
    if until.is_none() && batch.iter().any(|e| e.kind == withdrawn) {
        *until = refnet_core::access::former_since(ctx.db(), referral, agency).await?;
        if let Some(cutoff) = *until {
            batch.retain(|e| e.occurred_at <= cutoff);
        }
    }
    Ok(batch)
}

/// Feeds `tx` with `referral`'s events after `after` until the client goes away.
pub async fn run(
    ctx: AppContext,
    principal: Principal,
    call: CallInfo,
    referral: Uuid,
    mut after: i64,
    tx: mpsc::Sender<Result<Reply<pb::TimelineEvent>, tonic::Status>>,
) {
    // A former recipient's cutoff, read once, and again only when the stream
    // meets a withdrawal (the only change that sets it).
    let mut until =
        match refnet_core::access::former_since(ctx.db(), referral, &principal.agency_id).await {
            Ok(u) => u,
            Err(e) => {
                let _ = tx.send(Err(e.into_status())).await;
                return;
            }
        };
    loop {
        let signal = ctx.event_signal().notified();
        tokio::pin!(signal);
        signal.as_mut().enable();
        let batch = match next_events(&ctx, referral, &principal.agency_id, &mut until, after).await
        {
            Ok(b) => b,
            Err(e) => {
                let _ = tx.send(Err(e.into_status())).await;
                return;
            }
        };
        if let Some(last) = batch.last() {
            after = last.seq;
            for ev in &batch {
                // Each item continues the trace of the change that caused it.
                let span = tracing::info_span!(
                    "stream_item",
                    otel.name = "WatchReferral item",
                    referral_id = %referral,
                    event = %ev.kind
                );
                refnet_core::telemetry::continue_trace(&span, ev.trace_context.as_deref());
                let list = async {
                    let mut out = Vec::new();
                    for it in items(&ctx, &principal, referral, std::slice::from_ref(ev)).await? {
                        out.push(redacted(&ctx, &principal, &call, referral, it).await?);
                    }
                    ServiceResult::Ok(out)
                }
                .instrument(span)
                .await;
                match list {
                    Ok(list) => {
                        for it in list {
                            if tx.send(Ok(it)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into_status())).await;
                        return;
                    }
                }
            }
            continue;
        }
        tokio::select! {
            () = tx.closed() => return,
            () = signal => {}
            () = tokio::time::sleep(ctx.event_poll_interval()) => {}
            () = ctx.shutting_down() => {
                let _ = tx.send(Err(refnet_core::error::resumable_shutdown())).await;
                return;
            }
        }
    }
}

/// GetTimeline: a referral's events for a party, oldest first, by pages.
pub(crate) async fn get(
    ctx: &AppContext,
    request: Call<pb::GetTimelineRequest>,
) -> ServiceResult<Reply<pb::GetTimelineResponse>> {
    let (principal, call, req) = request.parts();
    let mut v = Violations::new();
    let reference = v.check("referral", ReferralRef::parse(&req.referral));
    let page_size = v.page_size(req.page_size, 100, 500);
    let (reference, page_size) = v.finish(|| Some((reference?, page_size?)))?;
    let (referral, until) =
        access::visible_party(ctx.db(), &principal.agency_id, &reference).await?;
    let after = if req.page_token.is_empty() {
        0
    } else {
        open(ctx, &req.page_token, referral, &principal.agency_id).ok_or_else(|| {
            ServiceError::invalid(
                "page_token",
                "is not a page token for this caller and referral",
            )
        })?
    };
    let mut events = events_after(ctx, referral, until, after, page_size + 1).await?;
    let more = events.len() as u64 > page_size;
    events.truncate(page_size as usize);
    let items = items(ctx, &principal, referral, &events).await?;
    let next_page_token = if more {
        items.last().map(|i| i.cursor.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    let response = pb::GetTimelineResponse {
        events: items,
        next_page_token,
        redactions: Vec::new(),
    };
    redacted(ctx, &principal, &call, referral, response).await
}
