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
    boundary::{CallInfo, Concerning, Reply, reply},
    domain::referral::timestamp,
    entities::event,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::entities::handoff;
use crate::{hub::InboxHub, lifecycle::Transition, transition, wire::to_proto};

#[derive(Serialize, Deserialize)]
struct StreamCursor {
    agency: String,
    seq: i64,
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
    crate::hub::latest(ctx).await
}

/// Feeds `tx` until the client goes away: from the log until caught up,
/// then from the process's inbox hub (back to the log whenever the hub's
/// batches do not follow on from the cursor).
pub(crate) async fn run(
    ctx: AppContext,
    principal: Principal,
    call: CallInfo,
    mut after: i64,
    hub: std::sync::Arc<InboxHub>,
    tx: mpsc::Sender<Result<Reply<pb::InboxEvent>, tonic::Status>>,
) {
    // Subscribe first: whatever is appended while catching up is buffered.
    let mut hub = hub.subscribe(&ctx, after);
    let mut catching_up = true;
    loop {
        if catching_up {
            match next_batch(&ctx, &principal, &call, after).await {
                Ok((items, last)) => {
                    catching_up = last != after;
                    after = last;
                    for item in items {
                        if tx.send(Ok(item)).await.is_err() {
                            return; // the client went away
                        }
                    }
                    continue;
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into_status())).await;
                    return;
                }
            }
        }
        tokio::select! {
            () = tx.closed() => return,
            received = hub.recv() => match received {
                Ok(batch) => {
                    if batch.last <= after {
                        continue; // already read from the log
                    }
                    if batch.after > after {
                        catching_up = true; // events between: read the log
                        continue;
                    }
                    for hub_item in batch.items.iter().filter(|i| {
                        i.event.seq > after && i.handoff.to_agency_id == principal.agency_id
                    }) {
                        let item = item(
                            &ctx,
                            &principal,
                            &call,
                            &hub_item.event,
                            hub_item.handoff.clone(),
                            Some(&hub_item.delivered),
                        )
                        .await;
                        match item {
                            Ok(item) => {
                                if tx.send(Ok(item)).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e.into_status())).await;
                                return;
                            }
                        }
                    }
                    after = batch.last;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => catching_up = true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    let _ = tx.send(Err(refnet_core::error::resumable_shutdown())).await;
                    return;
                }
            },
            () = ctx.shutting_down() => {
                let _ = tx.send(Err(refnet_core::error::resumable_shutdown())).await;
                return;
            }
        }
    }
}

/// The stream items after `after` read from the log (each handoff looked
/// up), and the sequence number read up to (`after` when nothing was new).
async fn next_batch(
    ctx: &AppContext,
    principal: &Principal,
    call: &CallInfo,
    after: i64,
) -> ServiceResult<(Vec<Reply<pb::InboxEvent>>, i64)> {
    let events = crate::hub::handoff_events(ctx, after).await?;
    let mut last = after;
    let mut items = Vec::new();
    for ev in events {
        last = ev.seq;
        let Some(id) = crate::hub::handoff_id(&ev) else {
            continue;
        };
        let Some(row) = handoff::Entity::find_by_id(id)
            .filter(handoff::Column::ToAgencyId.eq(principal.agency_id.as_str()))
            .one(ctx.db())
            .await?
        else {
            continue;
        };
        items.push(item(ctx, principal, call, &ev, row, None).await?);
    }
    Ok((items, last))
}

/// The redacted stream item for `ev` about `row`; a pending handoff's
/// delivery is recorded first (once per process when `delivered` is the
/// hub's shared cell).
async fn item(
    ctx: &AppContext,
    principal: &Principal,
    call: &CallInfo,
    ev: &event::Model,
    mut row: handoff::Model,
    delivered: Option<&tokio::sync::OnceCell<Option<handoff::Model>>>,
) -> ServiceResult<Reply<pb::InboxEvent>> {
    // The item continues the trace of the change that caused it.
    let span = tracing::info_span!(
        "stream_item",
        otel.name = "WatchInbox item",
        handoff_id = %row.id,
        event = %ev.kind
    );
    refnet_core::telemetry::continue_trace(&span, ev.trace_context.as_deref());
    async {
        if row.state == refnet_core::states::HandoffState::Pending {
            let deliver = || {
                transition::apply(
                    ctx,
                    principal,
                    row.clone(),
                    Transition::Deliver,
                    transition::Effects::default(),
                )
            };
            let updated = match delivered {
                Some(cell) => cell.get_or_try_init(deliver).await?.clone(),
                None => deliver().await?,
            };
            if let Some(updated) = updated {
                row = updated;
            }
        }
        let item = pb::InboxEvent {
            cursor: seal(ctx, &principal.agency_id, ev.seq)?,
            event: ev.kind.clone(),
            handoff: Some(to_proto(&row)?),
            occurred_at: Some(timestamp(ev.occurred_at)),
            redactions: Vec::new(),
        };
        reply(ctx, principal, call, Concerning::Nothing, item).await
    }
    .instrument(span)
    .await
}
