//! Appending to the event log. Every state change appends its event in the
//! same transaction as the change itself (a transactional outbox), so a
//! consumer never sees a change without its event or an event without its change.

use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use serde::Serialize;
use uuid::Uuid;

use crate::{auth::Principal, entities::event, error::ServiceError};

/// The kinds of event refnet records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A referral was filed.
    ReferralFiled,
    /// A referral's content was amended.
    ReferralAmended,
    /// Consent was recorded.
    ConsentRecorded,
    /// Consent was withdrawn.
    ConsentWithdrawn,
    /// Routing handed the referral to an agency.
    HandoffCreated,
    /// The receiving agency first saw the handoff.
    HandoffDelivered,
    /// The receiving agency acknowledged it.
    HandoffAcknowledged,
    /// The receiving agency accepted it.
    HandoffAccepted,
    /// A rule fired but no agency of the kind it names is registered.
    RoutingGap,
}

impl EventKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReferralFiled => "ReferralFiled",
            Self::ReferralAmended => "ReferralAmended",
            Self::ConsentRecorded => "ConsentRecorded",
            Self::ConsentWithdrawn => "ConsentWithdrawn",
            Self::HandoffCreated => "HandoffCreated",
            Self::HandoffDelivered => "HandoffDelivered",
            Self::HandoffAcknowledged => "HandoffAcknowledged",
            Self::HandoffAccepted => "HandoffAccepted",
            Self::RoutingGap => "RoutingGap",
        }
    }
}

/// Appends one event on `db` (pass the open transaction).
pub async fn append<C: ConnectionTrait>(
    db: &C,
    kind: EventKind,
    referral_id: Option<Uuid>,
    actor: Option<&Principal>,
    payload: &impl Serialize,
) -> Result<(), ServiceError> {
    let payload =
        serde_json::to_string(payload).map_err(|e| ServiceError::internal("event payload", e))?;
    let row = event::ActiveModel {
        id: Set(Uuid::now_v7()),
        referral_id: Set(referral_id),
        kind: Set(kind.as_str().to_owned()),
        payload: Set(payload),
        agency_id: Set(actor.map(|p| p.agency_id.clone())),
        officer_id: Set(actor.map(|p| p.officer_id.clone())),
        trace_context: Set(None),
        occurred_at: Set(chrono::Utc::now()),
        ..Default::default()
    };
    event::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    Ok(())
}
