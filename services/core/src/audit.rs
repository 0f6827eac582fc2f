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

/// Appends the audit log (serialised in-process, and across processes by the head row).
#[derive(Debug, Default)]
pub struct AuditLog {
    lock: tokio::sync::Mutex<()>,
}

impl AuditLog {
    /// Appends one record for `who`.
    pub async fn append(
        &self,
        db: &DatabaseConnection,
        who: &Principal,
        entry: AuditEntry,
    ) -> Result<i64, ServiceError> {
        let _guard = self.lock.lock().await;
        let roles: Vec<&str> = who.roles.iter().map(|r| r.as_str()).collect();
        let roles =
            serde_json::to_string(&roles).map_err(|e| ServiceError::internal("audit", e))?;
        let field_paths = serde_json::to_string(&entry.field_paths)
            .map_err(|e| ServiceError::internal("audit", e))?;
        let officer = who.officer_id.clone();
        let agency = who.agency_id.clone();
        let kind = agency_kind_name(who.agency_kind).to_owned();
        let seq = crate::db::write_txn(db, move |txn| {
            Box::pin(async move {
                // Take the head's write lock first: concurrent appends queue here.
                audit_head::Entity::update_many()
                    .col_expr(
                        audit_head::Column::Seq,
                        Expr::col(audit_head::Column::Seq).add(1),
                    )
                    .filter(audit_head::Column::Id.eq(1))
                    .exec(txn)
                    .await?;
                let head = audit_head::Entity::find_by_id(1)
                    .one(txn)
                    .await?
                    .ok_or_else(|| ServiceError::Internal("audit head missing".into()))?;
                let mut row = audit_log::Model {
                    seq: head.seq,
                    id: Uuid::now_v7(),
                    prev_hash: head.hash.clone(),
                    hash: Vec::new(),
                    officer_id: officer,
                    agency_id: agency,
                    agency_kind: kind,
                    roles,
                    rpc: entry.rpc,
                    referral_id: entry.referral_id,
                    field_paths,
                    trace_id: entry.trace_id,
                    occurred_at: now_micros(),
                };
                row.hash = record_hash(&head.hash, &row);
                let seq = row.seq;
                let hash = row.hash.clone();
                audit_log::Entity::insert(audit_log::ActiveModel::from(row))
                    .exec_without_returning(txn)
                    .await?;
                audit_head::Entity::update_many()
                    .col_expr(audit_head::Column::Hash, Expr::value(hash))
                    .filter(audit_head::Column::Id.eq(1))
                    .exec(txn)
                    .await?;
                Ok(seq)
            })
        })
        .await?;
        Ok(seq)
    }
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
