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
    /// The receiving agency declined it, with a reason.
    HandoffDeclined,
    /// Its acknowledge-by or decide-by deadline passed.
    HandoffEscalated,
    /// An item of its supporting-documents checklist was marked provided or not.
    HandoffChecklistUpdated,
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
    /// The referral waits for a supervisor of the filing agency to route it
    /// (no rule routed it, no agency in reach, every handoff ended).
    ReferralNeedsRouting,
    /// Its routing deadline passed; the escalation agency was notified.
    TriageEscalated,
    /// A supervisor of the filing agency closed it, with a reason.
    ReferralClosed,
    /// Police or prosecution asked the WPA to protect the subject (not on the timeline).
    ProtectionRequested,
    /// A protection request changed state (not on the timeline).
    ProtectionStateChanged,
    /// A protection request missed its assessment or decision deadline (not on the timeline).
    ProtectionEscalated,
    /// The subject is protected from now on (on the timeline; reveals nothing).
    ProtectionApplied,
    /// The WPA restored the subject's identity to other parties (on the timeline).
    ProtectionLifted,
    /// The subject's data key was destroyed: identity, location and sealed
    /// text are gone (on the timeline, with the ground).
    SubjectErased,
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
            Self::HandoffDeclined => "HandoffDeclined",
            Self::HandoffEscalated => "HandoffEscalated",
            Self::HandoffChecklistUpdated => "HandoffChecklistUpdated",
            Self::HandoffCompleted => "HandoffCompleted",
            Self::HandoffWithdrawn => "HandoffWithdrawn",
            Self::HandoffReassigned => "HandoffReassigned",
            Self::MessagePosted => "MessagePosted",
            Self::RoutingGap => "RoutingGap",
            Self::ReferralNeedsRouting => "ReferralNeedsRouting",
            Self::TriageEscalated => "TriageEscalated",
            Self::ReferralClosed => "ReferralClosed",
            Self::ProtectionRequested => "ProtectionRequested",
            Self::ProtectionStateChanged => "ProtectionStateChanged",
            Self::ProtectionEscalated => "ProtectionEscalated",
            Self::ProtectionApplied => "ProtectionApplied",
            Self::ProtectionLifted => "ProtectionLifted",
            Self::SubjectErased => "SubjectErased",
        }
    }
}

/// The PostgreSQL channel on which every append notifies (on commit).
pub const CHANNEL: &str = "refnet_events";

/// Key of the advisory lock that orders event appends on PostgreSQL.
pub const APPEND_LOCK: i64 = 0x7265_666e_6576; // "refnev"

/// Appends one event on `db` (pass the open transaction; append last in it).
///
/// Consumers read the log by sequence number and checkpoint on it, so a
/// smaller number must never become visible after a larger one. On
/// PostgreSQL, sequence values are handed out in statement order but
/// transactions commit in any order; a transaction-scoped advisory lock taken
/// here, held until commit, makes appends (and so their commits) follow
/// sequence order. SQLite has one writer at a time and needs nothing.
///
/// On PostgreSQL the same statement queues a `NOTIFY` on [`CHANNEL`], which
/// PostgreSQL delivers to every listening process when (and only if) the
/// transaction commits: see [`listen`].
pub async fn append<C: ConnectionTrait>(
    db: &C,
    kind: EventKind,
    referral_id: Option<Uuid>,
    actor: Option<&Principal>,
    payload: &impl Serialize,
) -> Result<(), ServiceError> {
    let mut one = Deferred::default();
    one.push(kind, referral_id, actor, payload)?;
    one.flush(db).await
}

/// Events built as a transaction goes and written together by
/// [`Deferred::flush`], its last statement before commit: on PostgreSQL the
/// ordering lock is then held for that one insert and the commit, not for
/// everything the transaction does after its first event (the routing
/// worker's batches). Each event keeps the trace context current when it was
/// pushed.
#[derive(Default)]
pub struct Deferred(Vec<event::ActiveModel>);

impl Deferred {
    /// Builds an event now (time and trace context as of now).
    pub fn push(
        &mut self,
        kind: EventKind,
        referral_id: Option<Uuid>,
        actor: Option<&Principal>,
        payload: &impl Serialize,
    ) -> Result<(), ServiceError> {
        let payload = serde_json::to_string(payload)
            .map_err(|e| ServiceError::internal("event payload", e))?;
        self.0.push(event::ActiveModel {
            id: Set(Uuid::now_v7()),
            referral_id: Set(referral_id),
            kind: Set(kind.as_str().to_owned()),
            payload: Set(payload),
            agency_id: Set(actor.map(|p| p.agency_id.clone())),
            officer_id: Set(actor.map(|p| p.officer_id.clone())),
            trace_context: Set(crate::telemetry::current_traceparent()),
            occurred_at: Set(chrono::Utc::now()),
            ..Default::default()
        });
        Ok(())
    }

    /// Takes the ordering lock (PostgreSQL; it notifies listeners on commit)
    /// and inserts the events, in the order they were pushed.
    pub async fn flush<C: ConnectionTrait>(self, db: &C) -> Result<(), ServiceError> {
        if self.0.is_empty() {
            return Ok(());
        }
        if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            db.execute_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1), pg_notify($2, '')",
                [APPEND_LOCK.into(), CHANNEL.into()],
            ))
            .await?;
        }
        // One multi-row insert (a routing batch's events: far below parameter limits).
        event::Entity::insert_many(self.0)
            .exec_without_returning(db)
            .await?;
        Ok(())
    }
}

/// Wakes this process's event consumers (the routing worker, streams) when
/// another process appends events: on PostgreSQL, LISTEN on [`CHANNEL`] and
/// signal [`AppContext::event_signal`] on each notification. Returns at once on
/// SQLite, where every writer is in this process and signals directly.
///
/// A lost listener connection is re-established; every consumer also polls
/// (the configured `event_poll_ms`), so a notification missed while
/// reconnecting delays an event, never loses it.
pub async fn listen(ctx: crate::AppContext, shutdown: impl std::future::Future<Output = ()>) {
    use sea_orm::sqlx::postgres::PgListener;
    if ctx.db().get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return;
    }
    tokio::pin!(shutdown);
    let pool = ctx.db().get_postgres_connection_pool().clone();
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for events; polling meanwhile");
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(2)) => continue,
                }
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed; polling meanwhile");
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(2)) => continue,
            }
        }
        tracing::debug!(channel = CHANNEL, "listening for events");
        // Whatever was appended while not listening is picked up now.
        ctx.event_signal().notify_waiters();
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                received = listener.recv() => match received {
                    Ok(_) => ctx.event_signal().notify_waiters(),
                    Err(e) => {
                        tracing::warn!(error = %e, "event listener lost its connection; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}
