//! Deadlines and escalation: a handoff still unacknowledged when its
//! acknowledge-by deadline passes (set from the urgency when routed: CRITICAL
//! 1 h, HIGH 4 h, NORMAL 24 h, LOW 72 h, wall-clock) becomes ESCALATED. The
//! `HandoffEscalated` event is the notification: it reaches the receiving
//! agency's `WatchInbox` (its supervisors act on it) and the referral's
//! timeline and `WatchReferral` (the sender sees it).
//!
//! Time is a parameter of [`DeadlineWorker::step_at`], so tests run it at any
//! instant without sleeping.

use std::time::Duration;

use chrono::{DateTime, Utc};
use refnet_api::v1 as pb;
use refnet_core::{AppContext, ServiceResult, auth::Principal, entities::handoff};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::{lifecycle::Transition, service::Routing};

/// How often the worker looks for overdue handoffs.
const INTERVAL: Duration = Duration::from_secs(30);

/// Escalates overdue handoffs.
#[derive(Clone)]
pub struct DeadlineWorker {
    ctx: AppContext,
    routing: Routing,
}

impl DeadlineWorker {
    /// A worker over `ctx`.
    pub fn new(ctx: AppContext) -> Self {
        Self {
            routing: Routing::new(ctx.clone()),
            ctx,
        }
    }

    /// Runs until `shutdown` resolves, checking every 30 seconds.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.step_at(Utc::now()).await {
                tracing::warn!(error = %e, "deadline step failed; retrying");
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(INTERVAL) => {}
            }
        }
    }

    /// Escalates every handoff overdue at `now`; returns how many.
    pub async fn step_at(&self, now: DateTime<Utc>) -> ServiceResult<usize> {
        let overdue = handoff::Entity::find()
            .filter(handoff::Column::State.is_in([
                pb::HandoffState::Pending.as_str_name(),
                pb::HandoffState::Delivered.as_str_name(),
            ]))
            .filter(handoff::Column::AcknowledgeBy.lt(now))
            .order_by_asc(handoff::Column::AcknowledgeBy)
            .limit(500)
            .all(self.ctx.db())
            .await?;
        let system = Principal {
            officer_id: "refnet-deadlines".into(),
            agency_id: String::new(),
            agency_kind: pb::AgencyKind::Unspecified,
            roles: Default::default(),
        };
        let mut escalated = 0;
        for row in overdue {
            let (id, kind) = (row.id, row.to_agency_id.clone());
            if self
                .routing
                .record(&system, row, Transition::Escalate)
                .await?
                .is_some()
            {
                escalated += 1;
                tracing::info!(handoff_id = %id, to_agency = %kind, "handoff escalated: acknowledge-by deadline passed");
            }
        }
        Ok(escalated)
    }
}
