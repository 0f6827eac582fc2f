//! `WatchProtectionRequests`: a server stream of new and changed protection
//! requests, read from the event log (so it works across processes) and
//! resumable from a cursor: a client that reconnects with the last cursor it
//! saw misses nothing and sees nothing twice. The WPA follows every request;
//! a requesting agency follows its own. Items carry the list form of a
//! request (no free text, no WPA records) and go through the boundary.

use refnet_api::v1 as pb;
use refnet_core::{
    AppContext, ServiceError, ServiceResult,
    auth::Principal,
    boundary::{CallInfo, Concerning, Reply, reply},
    domain::referral::timestamp,
    entities::event,
    events::EventKind,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{Protection, store::request};

/// The events the stream carries.
const KINDS: [EventKind; 3] = [
    EventKind::ProtectionRequested,
    EventKind::ProtectionStateChanged,
    EventKind::ProtectionEscalated,
];

#[derive(Serialize, Deserialize)]
struct StreamCursor {
    agency: String,
    protection: bool,
    seq: i64,
}

#[derive(Deserialize)]
struct Payload {
    request_id: Uuid,
    #[serde(default)]
    detail: String,
}

fn seal(ctx: &AppContext, agency: &str, seq: i64) -> ServiceResult<String> {
    let raw = serde_json::to_vec(&StreamCursor {
        agency: agency.to_owned(),
        protection: true,
        seq,
    })
    .map_err(|e| ServiceError::internal("cursor", e))?;
    Ok(ctx.keys().tokens.seal(&raw))
}

/// Where a new stream starts: after `cursor`, at the beginning, or now.
pub async fn start(
    ctx: &AppContext,
    principal: &Principal,
    req: &pb::WatchProtectionRequestsRequest,
) -> ServiceResult<i64> {
    if !req.cursor.is_empty() {
        return ctx
            .keys()
            .tokens
            .open(&req.cursor)
            .and_then(|raw| serde_json::from_slice::<StreamCursor>(&raw).ok())
            .filter(|c| c.protection && c.agency == principal.agency_id)
            .map(|c| c.seq)
            .ok_or_else(|| {
                ServiceError::invalid(
                    "cursor",
                    "is not a cursor of this caller's protection stream",
                )
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

/// The items after `after` the caller may follow, and the last sequence read.
async fn next_batch(
    protection: &Protection,
    principal: &Principal,
    call: &CallInfo,
    after: i64,
) -> ServiceResult<(Vec<Reply<pb::ProtectionRequestEvent>>, i64)> {
    let ctx = protection.ctx();
    let batch = event::Entity::find()
        .filter(event::Column::Seq.gt(after))
        .filter(event::Column::Kind.is_in(KINDS.map(EventKind::as_str)))
        .order_by_asc(event::Column::Seq)
        .limit(200)
        .all(ctx.db())
        .await?;
    let mut last = after;
    let mut items = Vec::new();
    for ev in batch {
        last = ev.seq;
        let Ok(payload) = serde_json::from_str::<Payload>(&ev.payload) else {
            continue;
        };
        let Some(row) = request::Entity::find_by_id(payload.request_id)
            .one(ctx.db())
            .await?
        else {
            continue;
        };
        if !Protection::may_read(principal, &row) {
            continue;
        }
        let item = pb::ProtectionRequestEvent {
            cursor: seal(ctx, &principal.agency_id, ev.seq)?,
            event: ev.kind.clone(),
            request: Some(protection.list_form(principal, &row).await?),
            occurred_at: Some(timestamp(ev.occurred_at)),
            detail: payload.detail,
            redactions: Vec::new(),
        };
        items.push(reply(ctx, principal, call, Concerning::Nothing, item).await?);
    }
    Ok((items, last))
}

/// Feeds `tx` until the client goes away or the server shuts down.
pub async fn run(
    protection: Protection,
    principal: Principal,
    call: CallInfo,
    mut after: i64,
    tx: mpsc::Sender<Result<Reply<pb::ProtectionRequestEvent>, tonic::Status>>,
) {
    let ctx = protection.ctx().clone();
    loop {
        let signal = ctx.event_signal().notified();
        tokio::pin!(signal);
        signal.as_mut().enable();
        match next_batch(&protection, &principal, &call, after).await {
            Ok((items, last)) => {
                for item in items {
                    if tx.send(Ok(item)).await.is_err() {
                        return;
                    }
                }
                if last > after {
                    after = last;
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
