//! The audit log: every reply that reveals IDENTITY or LOCATION, and every
//! read of the audit trail, appends a record (who, which agency and roles,
//! which RPC, which referral, which field paths, when, the trace id).
//!
//! The log is append-only and hash-chained: each record's hash covers the
//! previous record's hash and its own content, and a one-row head holds the
//! last sequence number and hash. [`verify`] recomputes the chain and names
//! the first record that was modified, deleted or reordered (a deleted tail
//! shows against the head). Appends take the head row's write lock inside
//! their transaction, so they serialise across processes on PostgreSQL and
//! SQLite alike.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    auth::{Principal, agency_kind_name},
    entities::{audit_head, audit_log},
    error::ServiceError,
};

/// What one audit record says.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// RPC path, e.g. `/refnet.v1.IntakeService/GetReferral`.
    pub rpc: String,
    /// The referral.
    pub referral_id: Option<Uuid>,
    /// Field paths revealed.
    pub field_paths: Vec<String>,
    /// W3C trace id of the call.
    pub trace_id: Option<String>,
}

#[derive(Serialize)]
struct Canonical<'a> {
    seq: i64,
    id: String,
    officer_id: &'a str,
    agency_id: &'a str,
    agency_kind: &'a str,
    roles: &'a str,
    rpc: &'a str,
    referral_id: Option<String>,
    field_paths: &'a str,
    trace_id: Option<&'a str>,
    occurred_at: String,
}

/// The hash of `row` chained on `prev`.
fn record_hash(prev: &[u8], row: &audit_log::Model) -> Vec<u8> {
    let canonical = Canonical {
        seq: row.seq,
        id: row.id.to_string(),
        officer_id: &row.officer_id,
        agency_id: &row.agency_id,
        agency_kind: &row.agency_kind,
        roles: &row.roles,
        rpc: &row.rpc,
        referral_id: row.referral_id.map(|r| r.to_string()),
        field_paths: &row.field_paths,
        trace_id: row.trace_id.as_deref(),
        occurred_at: row.occurred_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    };
    let mut hasher = Sha256::new();
    hasher.update(b"refnet/audit/v1");
    hasher.update(prev);
    hasher.update(serde_json::to_vec(&canonical).unwrap_or_default());
    hasher.finalize().to_vec()
}

/// One record waiting to be written, and who waits for its sequence number.
struct Pending {
    record: Unwritten,
    done: tokio::sync::oneshot::Sender<Result<i64, ServiceError>>,
}

/// A record's content before it has a place in the chain.
struct Unwritten {
    officer_id: String,
    agency_id: String,
    agency_kind: String,
    roles: String,
    rpc: String,
    referral_id: Option<Uuid>,
    field_paths: String,
    trace_id: Option<String>,
}

/// Most records written in one transaction.
const BATCH: usize = 256;

/// Appends the audit log with group commit: concurrent appends are written
/// together, in one transaction that chains them in arrival order, and each
/// caller gets its record's sequence number only after that transaction
/// committed (a reply that reveals identity still waits for its record).
/// Across processes appends serialise on the head row, which every batch
/// reads and updates inside its transaction, so the chain is intact whoever
/// writes.
#[derive(Default)]
pub struct AuditLog {
    queue: std::sync::Mutex<Vec<Pending>>,
    writer: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Appends one record for `who`; returns its sequence number once committed.
    pub async fn append(
        &self,
        db: &DatabaseConnection,
        who: &Principal,
        entry: AuditEntry,
    ) -> Result<i64, ServiceError> {
        let roles: Vec<&str> = who.roles.iter().map(|r| r.as_str()).collect();
        let record = Unwritten {
            officer_id: who.officer_id.clone(),
            agency_id: who.agency_id.clone(),
            agency_kind: agency_kind_name(who.agency_kind).to_owned(),
            roles: serde_json::to_string(&roles).map_err(|e| ServiceError::internal("audit", e))?,
            rpc: entry.rpc,
            referral_id: entry.referral_id,
            field_paths: serde_json::to_string(&entry.field_paths)
                .map_err(|e| ServiceError::internal("audit", e))?,
            trace_id: entry.trace_id,
        };
        let (done, mut written) = tokio::sync::oneshot::channel();
        self.queue
            .lock()
            .map_err(|_| ServiceError::Internal("audit queue poisoned".into()))?
            .push(Pending { record, done });
        // Whoever holds the writer lock writes everything queued so far; the
        // lock is fair, so by the time a caller gets it its record has
        // usually been written by the holder before it.
        let _writer = self.writer.lock().await;
        if let Ok(result) = written.try_recv() {
            return result;
        }
        loop {
            let batch: Vec<Pending> = {
                let mut queue = self
                    .queue
                    .lock()
                    .map_err(|_| ServiceError::Internal("audit queue poisoned".into()))?;
                let n = queue.len().min(BATCH);
                queue.drain(..n).collect()
            };
            if batch.is_empty() {
                break;
            }
            // The write runs as its own task: a caller that goes away mid-batch
            // does not abandon the others' records.
            let db = db.clone();
            let (records, waiters): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|p| (p.record, p.done)).unzip();
            let outcome = tokio::spawn(async move { write_batch(&db, records).await })
                .await
                .unwrap_or_else(|e| Err(ServiceError::internal("audit writer", e)));
            match outcome {
                Ok(first) => {
                    for (i, waiter) in waiters.into_iter().enumerate() {
                        let _ = waiter.send(Ok(first + i as i64));
                    }
                }
                Err(e) => {
                    for waiter in waiters {
                        let _ = waiter.send(Err(e.clone()));
                    }
                }
            }
            if let Ok(result) = written.try_recv() {
                return result;
            }
        }
        written
            .await
            .unwrap_or_else(|_| Err(ServiceError::Internal("audit record lost".into())))
    }
}

/// Writes `records` in one transaction after the head; returns the first
/// record's sequence number.
async fn write_batch(
    db: &DatabaseConnection,
    records: Vec<Unwritten>,
) -> Result<i64, ServiceError> {
    let n = i64::try_from(records.len()).map_err(|e| ServiceError::internal("audit", e))?;
    crate::db::write_txn(db, move |txn| {
        Box::pin(async move {
            // Take the head's write lock first: other writers queue here.
            audit_head::Entity::update_many()
                .col_expr(
                    audit_head::Column::Seq,
                    Expr::col(audit_head::Column::Seq).add(n),
                )
                .filter(audit_head::Column::Id.eq(1))
                .exec(txn)
                .await?;
            let head = audit_head::Entity::find_by_id(1)
                .one(txn)
                .await?
                .ok_or_else(|| ServiceError::Internal("audit head missing".into()))?;
            let first = head.seq - n + 1;
            let occurred_at = now_micros();
            let mut prev = head.hash.clone();
            let mut rows = Vec::with_capacity(records.len());
            for (i, r) in records.into_iter().enumerate() {
                let mut row = audit_log::Model {
                    seq: first + i as i64,
                    id: Uuid::now_v7(),
                    prev_hash: prev.clone(),
                    hash: Vec::new(),
                    officer_id: r.officer_id,
                    agency_id: r.agency_id,
                    agency_kind: r.agency_kind,
                    roles: r.roles,
                    rpc: r.rpc,
                    referral_id: r.referral_id,
                    field_paths: r.field_paths,
                    trace_id: r.trace_id,
                    occurred_at,
                };
                row.hash = record_hash(&prev, &row);
                prev = row.hash.clone();
                rows.push(audit_log::ActiveModel::from(row));
            }
            audit_log::Entity::insert_many(rows)
                .exec_without_returning(txn)
                .await?;
            audit_head::Entity::update_many()
                .col_expr(audit_head::Column::Hash, Expr::value(prev))
                .filter(audit_head::Column::Id.eq(1))
                .exec(txn)
                .await?;
            Ok(first)
        })
    })
    .await
}

fn now_micros() -> DateTime<Utc> {
    // Stored timestamps keep microseconds (PostgreSQL); hash what is stored.
    Utc::now().trunc_subsecs(6)
}

/// The records of `referral_id` after `after_seq`, oldest first.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    referral_id: Uuid,
    after_seq: i64,
    limit: u64,
) -> Result<Vec<audit_log::Model>, ServiceError> {
    Ok(audit_log::Entity::find()
        .filter(audit_log::Column::ReferralId.eq(referral_id))
        .filter(audit_log::Column::Seq.gt(after_seq))
        .order_by_asc(audit_log::Column::Seq)
        .limit(limit)
        .all(db)
        .await?)
}

/// Why the chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A record's content no longer matches its hash.
    #[error("audit record {seq} was modified: its hash does not match its content")]
    Modified {
        /// The record.
        seq: i64,
    },
    /// A record does not follow the one before it.
    #[error(
        "audit record {seq} does not follow record {expected_after}: a record before it was deleted or the records were reordered"
    )]
    Broken {
        /// The first record out of chain.
        seq: i64,
        /// The record it should follow.
        expected_after: i64,
    },
    /// The log ends before the head says it does.
    #[error(
        "the audit log ends at record {last} but the head records {head}: records at the end were deleted"
    )]
    Truncated {
        /// The last record present.
        last: i64,
        /// The head's sequence number.
        head: i64,
    },
    /// The head row is missing.
    #[error("the audit head is missing")]
    NoHead,
}

/// Recomputes the chain; `Ok(n)` with the number of records when it is intact.
pub async fn verify(db: &DatabaseConnection) -> Result<Result<i64, ChainError>, ServiceError> {
    let Some(head) = audit_head::Entity::find_by_id(1).one(db).await? else {
        return Ok(Err(ChainError::NoHead));
    };
    let mut prev_hash = vec![0u8; 32];
    let mut prev_seq = 0i64;
    let mut after = 0i64;
    loop {
        let rows = audit_log::Entity::find()
            .filter(audit_log::Column::Seq.gt(after))
            .order_by_asc(audit_log::Column::Seq)
            .limit(1000)
            .all(db)
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            if row.seq != prev_seq + 1 || row.prev_hash != prev_hash {
                // A stored record whose content was edited fails here only when its
                // successor no longer chains; check its own hash first.
                if row.seq == prev_seq + 1 && record_hash(&row.prev_hash, &row) != row.hash {
                    return Ok(Err(ChainError::Modified { seq: row.seq }));
                }
                return Ok(Err(ChainError::Broken {
                    seq: row.seq,
                    expected_after: prev_seq,
                }));
            }
            if record_hash(&prev_hash, &row) != row.hash {
                return Ok(Err(ChainError::Modified { seq: row.seq }));
            }
            prev_hash = row.hash;
            prev_seq = row.seq;
            after = row.seq;
        }
    }
    if prev_seq != head.seq || prev_hash != head.hash {
        if prev_seq < head.seq {
            return Ok(Err(ChainError::Truncated {
                last: prev_seq,
                head: head.seq,
            }));
        }
        return Ok(Err(ChainError::Modified { seq: prev_seq }));
    }
    Ok(Ok(prev_seq))
}
