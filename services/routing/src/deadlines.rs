//! Deadlines and escalation: a handoff still unacknowledged when its
//! acknowledge-by deadline passes, or acknowledged but neither accepted nor
//! declined when its decide-by deadline passes, becomes ESCALATED. Deadlines
//! are set from the referral's urgency when the handoff is made (the rule
//! set's `[deadlines]`; defaults CRITICAL 1 h / 4 h, HIGH 4 h / 24 h, NORMAL
//! 24 h / 72 h, LOW 72 h / 7 days, wall-clock).
//!
//! Escalation notifies, in the same transaction: the receiving agency's
//! supervisors and the sending agency (`ListNotifications`), and every party
//! through the `HandoffEscalated` event on the timeline, `WatchReferral` and
//! the receiving agency's `WatchInbox`. Notifications are unique per handoff,
//! event and recipient, so two deadline workers at once notify once.
//!
//! Referrals waiting in triage past their routing deadline are escalated too
//! ([`DeadlineWorker::triage_step_at`], see [`crate::triage`]).
//!
//! Time is a parameter of [`DeadlineWorker::step_at`], so tests run it at any
//! instant without sleeping.

use std::time::Duration;

use chrono::{DateTime, Utc};
use refnet_api::v1 as pb;
use refnet_core::{AppContext, ServiceError, ServiceResult, auth::Principal, states::HandoffState};

use crate::entities::handoff;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tracing::Instrument;

use crate::{
    decisions,
    lifecycle::Transition,
    transition::{self, Effects},
};

/// How often the worker looks for overdue handoffs.
const INTERVAL: Duration = Duration::from_secs(30);

/// Escalates overdue handoffs.
#[derive(Clone)]
pub struct DeadlineWorker {
    ctx: AppContext,
}

impl DeadlineWorker {
    /// A worker over `ctx`.
    pub fn new(ctx: AppContext) -> Self {
        Self { ctx }
    }

    /// Runs until `shutdown` resolves, checking every 30 seconds.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let span = tracing::info_span!(
                "deadline_step",
                escalated = tracing::field::Empty,
                triage_escalated = tracing::field::Empty
            );
            let now = Utc::now();
            match self.step_at(now).instrument(span.clone()).await {
                Ok(n) => {
                    span.record("escalated", n);
                }
                Err(e) => tracing::warn!(error = %e, "deadline step failed; retrying"),
            }
            match self.triage_step_at(now).instrument(span.clone()).await {
                Ok(n) => {
                    span.record("triage_escalated", n);
                }
                Err(e) => tracing::warn!(error = %e, "triage deadline step failed; retrying"),
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(INTERVAL) => {}
            }
        }
    }

    /// Escalates every referral whose routing deadline (in triage) passed by
    /// `now`: the filing agency's supervisors and those of the rule set's
    /// fallback agency kind are notified; returns how many.
    pub async fn triage_step_at(&self, now: DateTime<Utc>) -> ServiceResult<usize> {
        let rules =
            crate::rules(&self.ctx).map_err(|e| ServiceError::internal("routing rules", e))?;
        crate::triage::escalate_overdue(&self.ctx, &rules, now).await
    }

    /// Escalates every handoff overdue at `now`; returns how many.
    pub async fn step_at(&self, now: DateTime<Utc>) -> ServiceResult<usize> {
        let unacknowledged = [HandoffState::Pending, HandoffState::Delivered];
        let overdue = handoff::Entity::find()
            .filter(
                Condition::any()
                    .add(
                        Condition::all()
                            .add(handoff::Column::State.is_in(unacknowledged))
                            .add(handoff::Column::AcknowledgeBy.lt(now)),
                    )
                    .add(
                        Condition::all()
                            .add(handoff::Column::State.eq(HandoffState::Acknowledged))
                            .add(handoff::Column::DecideBy.lt(now)),
                    ),
            )
            .order_by_asc(handoff::Column::Id)
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
            let (id, to) = (row.id, row.to_agency_id.clone());
            let deadline = if unacknowledged.contains(&row.state) {
                "acknowledge deadline passed"
            } else {
                "decide deadline passed"
            };
            let effects = Effects {
                reason_ct: None,
                detail: Some(deadline.to_owned()),
                notify: vec![
                    (row.to_agency_id.clone(), decisions::SUPERVISORS),
                    (row.from_agency_id.clone(), decisions::ALL),
                ],
            };
            // None: someone acted on it (or another worker escalated it) first.
            if transition::apply(&self.ctx, &system, row, Transition::Escalate, effects)
                .await?
                .is_some()
            {
                escalated += 1;
                tracing::info!(handoff_id = %id, to_agency = %to, deadline, "handoff escalated");
            }
        }
        Ok(escalated)
    }
}
