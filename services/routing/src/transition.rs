//! One handoff transition: checked against the state machine, the row
//! updated where its version is still the one read, the event appended and
//! the side effects made (decline reason, notifications), in one
//! transaction. Every handoff state change goes through here: the handlers,
//! delivery by a stream or a list, and escalation by the deadline worker.

use chrono::Utc;
use refnet_core::{
    AppContext, ServiceResult,
    auth::Principal,
    events,
    states::HandoffState,
    versioned::{self, Appended},
};
use sea_orm::ActiveValue::Set;
use serde::Serialize;
use uuid::Uuid;

use crate::{
    decisions,
    entities::handoff,
    lifecycle::{Transition, check_row},
};

/// Side effects of a transition beyond the state change and its event, made
/// in the same transaction.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// The sealed decline reason to store.
    pub(crate) reason_ct: Option<Vec<u8>>,
    /// Operational detail for the event and the notifications ("acknowledge").
    pub(crate) detail: Option<String>,
    /// Agencies to notify, each with its audience.
    pub(crate) notify: Vec<(String, &'static str)>,
}

/// Within `txn`: moves `row` to `to` by `t` if its version is still current,
/// appends the event and makes the `effects`; `None` when another change won.
pub(crate) async fn apply_in(
    txn: &sea_orm::DatabaseTransaction,
    actor: &Principal,
    row: &handoff::Model,
    t: Transition,
    to: HandoffState,
    effects: Effects,
) -> ServiceResult<Option<handoff::Model>> {
    let now = Utc::now();
    let mut changes = handoff::ActiveModel {
        state: Set(to),
        ..Default::default()
    };
    match t {
        Transition::Deliver => changes.delivered_at = Set(Some(now)),
        Transition::Acknowledge => {
            changes.acknowledged_at = Set(Some(now));
            changes.due_at = Set(row.decide_by);
        }
        // The missed deadline stays due: the sender's list shows it first.
        Transition::Escalate => {}
        Transition::Accept
        | Transition::Decline
        | Transition::Complete
        | Transition::Withdraw
        | Transition::Reassign => changes.due_at = Set(None),
    }
    if let Some(sealed) = effects.reason_ct {
        changes.decline_reason_ct = Set(Some(sealed));
    }
    let Some(updated) =
        versioned_update(txn, actor, row, changes, t.event(), effects.detail.clone()).await?
    else {
        return Ok(None);
    };
    let detail = effects.detail.as_deref().unwrap_or_default();
    for (agency, audience) in &effects.notify {
        decisions::notify(txn, agency, audience, t.event(), &updated, detail).await?;
    }
    Ok(Some(updated))
}

/// Within `txn`: writes `changes` to `row` if its version is still the one
/// read (bumping it), appends `event` with the new version, state and
/// `detail`, and reads the row back; `None` when another change won. Every
/// versioned handoff write goes through here (transitions, checklists).
pub(crate) async fn versioned_update(
    txn: &sea_orm::DatabaseTransaction,
    actor: &Principal,
    row: &handoff::Model,
    changes: handoff::ActiveModel,
    event: events::EventKind,
    detail: Option<String>,
) -> ServiceResult<Option<handoff::Model>> {
    let state = match &changes.state {
        sea_orm::ActiveValue::Set(s) | sea_orm::ActiveValue::Unchanged(s) => *s,
        sea_orm::ActiveValue::NotSet => row.state,
    };
    versioned::change::<handoff::Entity, _, _>(
        txn,
        row.id,
        row.version,
        changes,
        Appended {
            kind: event,
            referral: Some(row.referral_id),
            // Deadlines act as refnet itself, not as an agency.
            actor: (!actor.agency_id.is_empty()).then_some(actor),
            payload: &TransitionPayload {
                handoff_id: row.id,
                version: row.version + 1,
                state: state.stored(),
                detail,
            },
        },
    )
    .await
}

#[derive(Serialize)]
struct TransitionPayload {
    handoff_id: Uuid,
    version: i64,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

/// Applies `t` to `row` in its own transaction if its version is still
/// current, waking the streams after commit; `None` when another change won
/// (delivery by a list or a stream, escalation by the deadline worker).
pub(crate) async fn apply(
    ctx: &AppContext,
    principal: &Principal,
    row: handoff::Model,
    t: Transition,
    effects: Effects,
) -> ServiceResult<Option<handoff::Model>> {
    let to = check_row(&row, t)?;
    let actor = principal.clone();
    ctx.write(move |txn| Box::pin(async move { apply_in(txn, &actor, &row, t, to, effects).await }))
        .await
}
