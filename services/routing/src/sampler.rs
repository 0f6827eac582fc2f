//! The sampled gauges of [`refnet_core::metrics`]: handoffs by state,
//! overdue handoffs and the routing worker's lag, read from the database
//! every `metrics_sample_ms` by the process that runs the routing worker.
//! Three aggregate queries, whatever the number of handoffs' indexes allow;
//! they read counts, never rows.

use chrono::{DateTime, Utc};
use refnet_core::{AppContext, ServiceResult, entities::event, metrics::Sample};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::entities::{consumer_checkpoint, handoff};
use crate::worker::CONSUMER;
use refnet_core::states::HandoffState;

/// States a handoff can still be acted on in.
const OPEN: [HandoffState; 4] = [
    HandoffState::Pending,
    HandoffState::Delivered,
    HandoffState::Acknowledged,
    HandoffState::Escalated,
];

/// Reads the gauges' values at `now`.
pub async fn sample_at(ctx: &AppContext, now: DateTime<Utc>) -> ServiceResult<Sample> {
    let db = ctx.db();
    let counts: Vec<(HandoffState, i64)> = handoff::Entity::find()
        .select_only()
        .column(handoff::Column::State)
        .column_as(handoff::Column::Id.count(), "n")
        .group_by(handoff::Column::State)
        .into_tuple()
        .all(db)
        .await?;
    // Every state, reported even at zero so a dashboard's series do not vanish.
    let handoffs_by_state = <HandoffState as sea_orm::Iterable>::iter()
        .map(|s| {
            let name = s.stored();
            let n = counts
                .iter()
                .find(|(state, _)| *state == s)
                .map_or(0, |(_, n)| u64::try_from(*n).unwrap_or(0));
            (name.to_owned(), n)
        })
        .collect();

    let overdue = handoff::Entity::find()
        .filter(handoff::Column::State.is_in(OPEN))
        .filter(
            Condition::any()
                .add(
                    Condition::all()
                        .add(handoff::Column::AcknowledgedAt.is_null())
                        .add(handoff::Column::AcknowledgeBy.lt(now)),
                )
                .add(handoff::Column::DecideBy.lt(now)),
        )
        .count(db)
        .await?;

    let checkpoint = consumer_checkpoint::Entity::find_by_id(CONSUMER.to_owned())
        .one(db)
        .await?
        .map_or(0, |c| c.seq);
    let newest = event::Entity::find()
        .order_by_desc(event::Column::Seq)
        .one(db)
        .await?
        .map_or(0, |e| e.seq);
    Ok(Sample {
        handoffs_by_state,
        overdue,
        routing_lag: u64::try_from(newest.saturating_sub(checkpoint)).unwrap_or(0),
    })
}

/// Samples every `metrics_sample_ms` until shutdown begins.
pub async fn run(ctx: AppContext) {
    let every = std::time::Duration::from_millis(ctx.config().metrics_sample_ms.max(10));
    loop {
        match sample_at(&ctx, Utc::now()).await {
            Ok(sample) => ctx.metrics().set_sample(sample),
            Err(e) => tracing::warn!(error = %e, "metrics sample failed; retrying"),
        }
        tokio::select! {
            () = ctx.shutting_down() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
