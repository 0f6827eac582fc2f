//! `WatchInbox`: a server stream of the caller agency's new and changed
//! handoffs, read from the event log, so it works across processes (an event
//! written by any replica is in the log) and resumes from a cursor: a client
//! that reconnects with the last cursor it saw misses nothing and sees
//! nothing twice. Every item goes through the redactor; streaming a new
//! handoff records its delivery.

use refnet_api::v1 as pb;
use refnet_core::{
    AppContext, ServiceError, ServiceResult,
    auth::Principal,
    boundary::{CallInfo, reply},
    domain::referral::timestamp,
    entities::{event, handoff},
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::Instrument;
use uuid::Uuid;

use crate::{lifecycle::Transition, service::to_proto};

/// Events read per query.
const BATCH: u64 = 200;
/// How often an idle stream looks at the log when no in-process signal came
/// (other replicas' writes).

#[derive(Serialize, Deserialize)]
struct StreamCursor {
    agency: String,
    seq: i64,
}

#[derive(Deserialize)]
struct HandoffRef {
    handoff_id: Uuid,
}

/// Seals the position `seq` of `agency`'s stream.
fn seal(ctx: &AppContext, agency: &str, seq: i64) -> ServiceResult<String> {
    let raw = serde_json::to_vec(&StreamCursor {
        agency: agency.to_owned(),
        seq,
    })
    .map_err(|e| ServiceError::internal("cursor", e))?;
    Ok(ctx.keys().tokens.seal(&raw))
}

/// Where a new stream starts: after `cursor`, at the beginning, or now.
pub async fn start(
    ctx: &AppContext,
    principal: &Principal,
    req: &pb::WatchInboxRequest,
) -> ServiceResult<i64> {
    if !req.cursor.is_empty() {
        return ctx
            .keys()
            .tokens
            .open(&req.cursor)
            .and_then(|raw| serde_json::from_slice::<StreamCursor>(&raw).ok())
            .filter(|c| c.agency == principal.agency_id)
            .map(|c| c.seq)
            .ok_or_else(|| {
                ServiceError::invalid("cursor", "is not a cursor of this caller's inbox")
            });
    }
    if req.from_beginning {
        return Ok(0);
    }
    Ok(event::Entity::find()
        .order_by_desc(event::Column::Seq)
        .one(ctx.db())
        .await?
        .map_or(0, |e| e.seq))
}

/// Feeds `tx` until the client goes away.
pub async fn run(
    ctx: AppContext,
    principal: Principal,
    call: CallInfo,
    mut after: i64,
    routing: crate::service::Routing,
    tx: mpsc::Sender<Result<pb::InboxEvent, tonic::Status>>,
) {
    loop {
        let signal = ctx.event_signal().notified();
        tokio::pin!(signal);
        signal.as_mut().enable();
        match next_batch(&ctx, &principal, &call, &routing, after).await {
            Ok((items, last)) => {
                after = last;
                let sent_any = !items.is_empty();
                for item in items {
                    if tx.send(Ok(item)).await.is_err() {
                        return; // the client went away
                    }
                }
                if sent_any {
                    continue;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e.into_status())).await;
                return;
            }
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

/// The stream items after `after`, and the sequence number read up to.
async fn next_batch(
    ctx: &AppContext,
    principal: &Principal,
    call: &CallInfo,
    routing: &crate::service::Routing,
    after: i64,
) -> ServiceResult<(Vec<pb::InboxEvent>, i64)> {
    let events = event::Entity::find()
        .filter(event::Column::Seq.gt(after))
        .filter(event::Column::Kind.starts_with("Handoff"))
        .order_by_asc(event::Column::Seq)
        .limit(BATCH)
        .all(ctx.db())
        .await?;
    let mut last = after;
    let mut items = Vec::new();
    for ev in events {
        last = ev.seq;
        let Ok(r) = serde_json::from_str::<HandoffRef>(&ev.payload) else {
            continue;
        };
        let Some(mut row) = handoff::Entity::find_by_id(r.handoff_id)
            .filter(handoff::Column::ToAgencyId.eq(principal.agency_id.as_str()))
            .one(ctx.db())
            .await?
        else {
            continue;
        };
        // The item continues the trace of the change that caused it.
        let span = tracing::info_span!(
            "stream_item",
            otel.name = "WatchInbox item",
            handoff_id = %row.id,
            event = %ev.kind
        );
        refnet_core::telemetry::continue_trace(&span, ev.trace_context.as_deref());
        let item = async {
            if row.state == pb::HandoffState::Pending.as_str_name()
                && let Some(delivered) = routing
                    .record(
                        principal,
                        row.clone(),
                        Transition::Deliver,
                        crate::service::Effects::default(),
                    )
                    .await?
            {
                row = delivered;
            }
            let item = pb::InboxEvent {
                cursor: seal(ctx, &principal.agency_id, ev.seq)?,
                event: ev.kind.clone(),
                handoff: Some(to_proto(&row)?),
                occurred_at: Some(timestamp(ev.occurred_at)),
                redactions: Vec::new(),
            };
            Ok::<_, refnet_core::ServiceError>(
                reply(ctx, principal, call, None, item).await?.into_inner(),
            )
        }
        .instrument(span)
        .await?;
        items.push(item);
    }
    Ok((items, last))
}
