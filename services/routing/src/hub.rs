//! The inbox hub: one reader of the event log per process for every
//! `WatchInbox` stream it serves. Each handoff event is read once, with its
//! handoff, and broadcast; each stream keeps the events addressed to its
//! agency. A new handoff's delivery is recorded once per process, however
//! many of the agency's streams are open, and every stream sends the
//! delivered handoff.
//!
//! Batches are contiguous (`after` of one is `last` of the one before), so a
//! stream can tell when it missed some (it subscribed late, or lagged behind
//! the broadcast buffer): it then reads the log itself from its cursor
//! ([`crate::watch`]) and returns to the hub once it has caught up.

use std::sync::{Arc, Once};

use crate::entities::handoff;
use refnet_core::{AppContext, ServiceResult, entities::event};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio::sync::{OnceCell, broadcast};
use uuid::Uuid;

/// Events read per query.
const BATCH: u64 = 200;
/// Batches a slow stream may fall behind before it reads the log itself.
const BUFFER: usize = 1024;

/// A handoff event and its handoff as the hub read it.
pub(crate) struct HubItem {
    /// The event.
    pub(crate) event: event::Model,
    /// The handoff it is about.
    pub(crate) handoff: handoff::Model,
    /// The handoff after its delivery, recorded by the first stream of its
    /// agency to send it; `None` inside when another change won.
    pub(crate) delivered: OnceCell<Option<handoff::Model>>,
}

/// The handoff events after sequence number `after`, up to `last`.
pub(crate) struct HubBatch {
    /// The sequence number read from (exclusive).
    pub(crate) after: i64,
    /// The last sequence number read (events of other kinds included).
    pub(crate) last: i64,
    /// The handoff events, in log order.
    pub(crate) items: Vec<HubItem>,
}

/// The per-process hub (one per RoutingService).
pub(crate) struct InboxHub {
    tx: broadcast::Sender<Arc<HubBatch>>,
    started: Once,
}

impl InboxHub {
    /// A hub that starts reading at its first subscriber.
    pub(crate) fn new() -> Self {
        Self {
            tx: broadcast::channel(BUFFER).0,
            started: Once::new(),
        }
    }

    /// Batches from now on. The reader starts with the first subscription,
    /// reading after that subscriber's position `after`: started from the
    /// log's end instead, it could begin after events the subscriber has not
    /// read yet (the reader task runs later than the subscription under load)
    /// and never send them.
    pub(crate) fn subscribe(
        &self,
        ctx: &AppContext,
        after: i64,
    ) -> broadcast::Receiver<Arc<HubBatch>> {
        let rx = self.tx.subscribe();
        self.started.call_once(|| {
            tokio::spawn(run(ctx.clone(), self.tx.clone(), after));
        });
        rx
    }
}

#[derive(serde::Deserialize)]
struct HandoffRef {
    handoff_id: Uuid,
}

/// The handoff a `Handoff*` event is about.
pub(crate) fn handoff_id(ev: &event::Model) -> Option<Uuid> {
    serde_json::from_str::<HandoffRef>(&ev.payload)
        .ok()
        .map(|r| r.handoff_id)
}

/// Up to [`BATCH`] handoff events after sequence number `after`, in log order.
pub(crate) async fn handoff_events(
    ctx: &AppContext,
    after: i64,
) -> ServiceResult<Vec<event::Model>> {
    Ok(event::Entity::find()
        .filter(event::Column::Seq.gt(after))
        .filter(event::Column::Kind.starts_with("Handoff"))
        .order_by_asc(event::Column::Seq)
        .limit(BATCH)
        .all(ctx.db())
        .await?)
}

/// Reads the log after `after` until shutdown, broadcasting each batch.
async fn run(ctx: AppContext, tx: broadcast::Sender<Arc<HubBatch>>, mut after: i64) {
    loop {
        let signal = ctx.event_signal().notified();
        tokio::pin!(signal);
        signal.as_mut().enable();
        match read(&ctx, after).await {
            Ok(Some(batch)) => {
                after = batch.last;
                // No subscriber is not an error: the next one catches up from the log.
                let _ = tx.send(Arc::new(batch));
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "inbox hub read failed; retrying"),
        }
        tokio::select! {
            () = signal => {}
            () = tokio::time::sleep(ctx.event_poll_interval()) => {}
            () = ctx.shutting_down() => return,
        }
    }
}

/// The last sequence number in the log (0 when empty).
pub(crate) async fn latest(ctx: &AppContext) -> ServiceResult<i64> {
    Ok(event::Entity::find()
        .order_by_desc(event::Column::Seq)
        .one(ctx.db())
        .await?
        .map_or(0, |e| e.seq))
}

/// The next batch after `after`, with the handoffs its events are about
/// (two queries); `None` when the log has nothing new.
async fn read(ctx: &AppContext, after: i64) -> ServiceResult<Option<HubBatch>> {
    let events = handoff_events(ctx, after).await?;
    let Some(last) = events.last().map(|e| e.seq) else {
        return Ok(None);
    };
    let refs: Vec<Option<Uuid>> = events.iter().map(handoff_id).collect();
    let mut ids: Vec<Uuid> = refs.iter().flatten().copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let handoffs: std::collections::HashMap<Uuid, handoff::Model> = handoff::Entity::find()
        .filter(handoff::Column::Id.is_in(ids))
        .all(ctx.db())
        .await?
        .into_iter()
        .map(|h| (h.id, h))
        .collect();
    let items = events
        .into_iter()
        .zip(refs)
        .filter_map(|(event, id)| {
            let handoff = handoffs.get(&id?)?.clone();
            Some(HubItem {
                event,
                handoff,
                delivered: OnceCell::new(),
            })
        })
        .collect();
    Ok(Some(HubBatch { after, last, items }))
}
