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
    /// Its acknowledge-by deadline passed unacknowledged.
    HandoffEscalated,
    /// The receiving agency completed it.
    HandoffCompleted,
    /// The sending agency withdrew it.
    HandoffWithdrawn,
    /// A supervisor sent it elsewhere (a new handoff follows).
    HandoffReassigned,
    /// A message was posted on the referral's thread.
    MessagePosted,
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
            Self::HandoffEscalated => "HandoffEscalated",
            Self::HandoffCompleted => "HandoffCompleted",
            Self::HandoffWithdrawn => "HandoffWithdrawn",
            Self::HandoffReassigned => "HandoffReassigned",
            Self::MessagePosted => "MessagePosted",
            Self::RoutingGap => "RoutingGap",
        }
    }
}

/// Key of the advisory lock that orders event appends on PostgreSQL.
const APPEND_LOCK: i64 = 0x7265_666e_6576; // "refnev"

/// Appends one event on `db` (pass the open transaction; append last in it).
///
/// Consumers read the log by sequence number and checkpoint on it, so a
/// smaller number must never become visible after a larger one. On
/// PostgreSQL, sequence values are handed out in statement order but
/// transactions commit in any order; a transaction-scoped advisory lock taken
/// here, held until commit, makes appends (and so their commits) follow
/// sequence order. SQLite has one writer at a time and needs nothing.
pub async fn append<C: ConnectionTrait>(
    db: &C,
    kind: EventKind,
    referral_id: Option<Uuid>,
    actor: Option<&Principal>,
    payload: &impl Serialize,
) -> Result<(), ServiceError> {
    let payload =
        serde_json::to_string(payload).map_err(|e| ServiceError::internal("event payload", e))?;
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        db.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [APPEND_LOCK.into()],
        ))
        .await?;
    }
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
