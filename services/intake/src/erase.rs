//! Subject erasure and the retention policy.
//!
//! Erasing a subject destroys its data key: the wrapped key is overwritten in
//! the same transaction that clears the sealed identity, location and
//! referral text, drops the date of birth (an age band at filing is kept for
//! statistics), the sub-county and languages, and deletes the blind-index
//! digests, and appends `SubjectErased`. Everything else sealed under that
//! key (messages, decline reasons, protection notes and measure details)
//! becomes unrecoverable with it, wherever it is stored. Case facts,
//! handoffs, the timeline and the clear quasi-identifiers statistics count
//! (sex, nationality, county of origin, child or adult) remain.
//!
//! [`RetentionWorker`] erases the subjects of referrals closed longer ago
//! than `retention.erase_closed_after_days`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use refnet_api::v1 as pb;
use refnet_core::{
    AppContext, ServiceError, ServiceResult,
    audit::AuditEntry,
    auth::Principal,
    entities::referral_party,
    events::{self, EventKind},
    subjects::ERASED_KEY_ID,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};
use serde::Serialize;
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    changes::bump_version,
    entities::{referral, subject, subject_identifier},
    store::RELATION_FILER,
};

/// What an erasure destroys, as the audit record's field paths.
pub const ERASED_PATHS: &[&str] = &[
    "referral.draft.subject",
    "referral.draft.location",
    "referral.draft.narrative",
    "referral.draft.special",
    "referral.draft.suspects",
    "messages.body",
    "handoffs.decline_reason",
    "protection_requests.sealed",
];

/// The RPC path recorded for the retention worker's erasures.
pub const RETENTION_RPC: &str = "refnet/retention";

#[derive(Serialize)]
struct ErasedPayload<'a> {
    version: i64,
    ground: &'a str,
    detail: String,
}

/// Why a subject was erased, in words for the timeline.
fn ground_words(ground: pb::ErasureGround) -> &'static str {
    use pb::ErasureGround as G;
    match ground {
        G::SubjectRequest => "at the subject's request",
        G::CourtOrder => "by court order",
        G::Protection => "for the subject's protection",
        G::NoLongerNeeded => "no longer needed",
        G::Retention => "retention period after closure passed",
        G::Unspecified => "unspecified",
    }
}

/// The checks that depend on the referral, for a caller its agency is party
/// to: a data-protection officer erases only its own agency's filings, a
/// protected witness is erased only by the WPA, and not while a protection
/// request is open.
async fn check_referral(
    ctx: &AppContext,
    principal: &Principal,
    row: &referral::Model,
) -> ServiceResult<()> {
    let wpa = principal.agency_kind == pb::AgencyKind::Wpa;
    if !wpa {
        let party = referral_party::Entity::find_by_id((row.id, principal.agency_id.clone()))
            .one(ctx.db())
            .await?;
        if party.map(|p| p.relation) != Some(RELATION_FILER.to_owned()) {
            return Err(ServiceError::PermissionDenied(
                "only the filing agency's data-protection officer or the WPA may erase a subject"
                    .into(),
            ));
        }
        let protected = subject::Entity::find_by_id(row.subject_id)
            .one(ctx.db())
            .await?
            .is_some_and(|s| s.protected_pseudonym.is_some() && s.erased_at.is_none());
        if protected {
            return Err(ServiceError::PermissionDenied(
                "a protected witness is erased only by the WPA".into(),
            ));
        }
    }
    if refnet_core::access::open_protection_request(ctx.db(), row.id).await? {
        return Err(ServiceError::FailedPrecondition(
            "a protection request on this referral is open; it must be closed, declined or withdrawn first"
                .into(),
        ));
    }
    Ok(())
}

/// Erases the subject of `reference` for `principal` (an RPC caller):
/// NOT_FOUND for non-parties, PERMISSION_DENIED for parties that may not;
/// audited. Returns the referral id and whether it was erased before.
pub async fn erase_for(
    ctx: &AppContext,
    principal: &Principal,
    rpc: &str,
    trace_id: Option<String>,
    reference: &refnet_core::domain::ReferralRef,
    ground: pb::ErasureGround,
) -> ServiceResult<(Uuid, bool)> {
    let row = crate::store::find_visible(ctx.db(), &principal.agency_id, reference).await?;
    let erased = erase(ctx, row.id, ground, Some(principal)).await?;
    let already = match erased {
        Erased::Now => false,
        Erased::Before => true,
        Erased::Refused(err) => return Err(err),
    };
    // The event appended with the erasure names the officer and agency in
    // the same transaction; the audit record follows it (a retry of a call
    // whose record failed records it then).
    ctx.audit()
        .append(
            ctx.db(),
            principal,
            AuditEntry {
                rpc: rpc.to_owned(),
                referral_id: Some(row.id),
                field_paths: ERASED_PATHS.iter().map(|p| (*p).to_owned()).collect(),
                trace_id,
            },
        )
        .await?;
    Ok((row.id, already))
}

/// What [`erase`] did.
#[derive(Debug)]
pub enum Erased {
    /// The subject was erased by this call.
    Now,
    /// It had been erased before; nothing changed.
    Before,
    /// The caller may not erase it (or not yet); nothing changed.
    Refused(ServiceError),
}

/// Erases the subject of referral `referral_id` in one transaction,
/// retrying when a concurrent change to the referral wins. `by` is the
/// caller (checked against the referral), `None` for the retention worker.
pub async fn erase(
    ctx: &AppContext,
    referral_id: Uuid,
    ground: pb::ErasureGround,
    by: Option<&Principal>,
) -> ServiceResult<Erased> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let row = referral::Entity::find_by_id(referral_id)
            .one(ctx.db())
            .await?
            .ok_or(ServiceError::NotFound)?;
        let checked = match by {
            Some(principal) => check_referral(ctx, principal, &row).await,
            // The retention worker leaves a subject the WPA still protects.
            None if refnet_core::access::open_protection_request(ctx.db(), row.id).await? => Err(
                ServiceError::FailedPrecondition("a protection request is open".into()),
            ),
            None => Ok(()),
        };
        if let Err(refused) = checked {
            // Already erased answers the same whoever asks (idempotent).
            if is_erased(ctx, row.subject_id).await? {
                return Ok(Erased::Before);
            }
            return Ok(Erased::Refused(refused));
        }
        let actor = by.cloned();
        let result = ctx
            .write(move |txn| {
                Box::pin(async move { erase_in(txn, &row, ground, actor.as_ref()).await })
            })
            .await;
        match result {
            Ok(true) => {
                if by.is_some() {
                    refnet_core::db::purge_freed(ctx.db()).await?;
                }
                tracing::info!(referral_id = %referral_id, ground = ground.as_str_name(), "subject erased");
                return Ok(Erased::Now);
            }
            Ok(false) => return Ok(Erased::Before),
            // An amendment or consent change in between: read again and retry.
            Err(ServiceError::Aborted(_)) if attempt < 5 => continue,
            Err(e) => return Err(e),
        }
    }
}

async fn is_erased(ctx: &AppContext, subject_id: Uuid) -> ServiceResult<bool> {
    Ok(subject::Entity::find_by_id(subject_id)
        .one(ctx.db())
        .await?
        .is_some_and(|s| s.erased_at.is_some()))
}

/// The erasure's writes, inside `txn`; false when the subject was already erased.
async fn erase_in(
    txn: &sea_orm::DatabaseTransaction,
    row: &referral::Model,
    ground: pb::ErasureGround,
    actor: Option<&Principal>,
) -> ServiceResult<bool> {
    let subj = subject::Entity::find_by_id(row.subject_id)
        .one(txn)
        .await?
        .ok_or_else(|| ServiceError::Internal("referral without subject".into()))?;
    if subj.erased_at.is_some() {
        return Ok(false);
    }
    // The referral's row first (the order every writer keeps), at the
    // version read: a concurrent amendment makes this ABORTED, not a mix.
    bump_version(
        txn,
        row,
        referral::ActiveModel {
            sealed: Set(Vec::new()),
            // A digest of the whole filed draft could confirm a guess of it.
            request_digest: Set(Vec::new()),
            ..Default::default()
        },
    )
    .await?;
    let now = Utc::now();
    let age_band = subj
        .date_of_birth
        .map(|d| refnet_core::domain::age_broad(d, row.filed_at.date_naive()).to_owned());
    let updated = subject::Entity::update_many()
        .col_expr(subject::Column::KeyId, Expr::value(ERASED_KEY_ID))
        .col_expr(subject::Column::WrappedKey, Expr::value(Vec::<u8>::new()))
        .col_expr(subject::Column::IdentityCt, Expr::value(Vec::<u8>::new()))
        .col_expr(subject::Column::LocationCt, Expr::value(Vec::<u8>::new()))
        .col_expr(
            subject::Column::DateOfBirth,
            Expr::value(Option::<chrono::NaiveDate>::None),
        )
        .col_expr(subject::Column::AgeBand, Expr::value(age_band))
        .col_expr(subject::Column::SubCountyOfOrigin, Expr::value(""))
        .col_expr(subject::Column::Languages, Expr::value("[]"))
        .col_expr(subject::Column::ErasedAt, Expr::value(now))
        .col_expr(subject::Column::UpdatedAt, Expr::value(now))
        .filter(subject::Column::Id.eq(subj.id))
        .filter(subject::Column::ErasedAt.is_null())
        .exec(txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(refnet_core::error::changed_concurrently("subject"));
    }
    subject_identifier::Entity::delete_many()
        .filter(subject_identifier::Column::SubjectId.eq(subj.id))
        .exec(txn)
        .await?;
    events::append(
        txn,
        EventKind::SubjectErased,
        Some(row.id),
        actor,
        &ErasedPayload {
            version: row.version + 1,
            ground: ground.as_str_name(),
            detail: format!(
                "identity, location and sealed text erased ({})",
                ground_words(ground)
            ),
        },
    )
    .await?;
    Ok(true)
}

/// Erases the subjects of referrals closed longer ago than the retention period.
#[derive(Clone)]
pub struct RetentionWorker {
    ctx: AppContext,
}

impl RetentionWorker {
    /// A worker over `ctx`.
    pub fn new(ctx: AppContext) -> Self {
        Self { ctx }
    }

    /// Runs until `shutdown` resolves, one step every `retention.interval_seconds`.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let every = Duration::from_secs(self.ctx.config().retention.interval_seconds.max(1));
        loop {
            let span = tracing::info_span!("retention_step", erased = tracing::field::Empty);
            match self.step_at(Utc::now()).instrument(span.clone()).await {
                Ok(n) => {
                    span.record("erased", n);
                }
                Err(e) => tracing::warn!(error = %e, "retention step failed; retrying"),
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Erases every subject due at `now` (in batches); returns how many.
    /// Off (0) when `erase_closed_after_days` is 0.
    pub async fn step_at(&self, now: DateTime<Utc>) -> ServiceResult<u64> {
        let cfg = &self.ctx.config().retention;
        if cfg.erase_closed_after_days == 0 {
            return Ok(0);
        }
        let cutoff = now - chrono::Duration::days(i64::from(cfg.erase_closed_after_days));
        let batch = cfg.batch.max(1);
        let system = system_principal();
        let mut erased = 0;
        let mut after: Option<(DateTime<Utc>, Uuid)> = None;
        loop {
            // Closed referrals, oldest closure first, whose subject is not yet erased.
            let subject_of: sea_orm::RelationDef = referral::Entity::belongs_to(subject::Entity)
                .from(referral::Column::SubjectId)
                .to(subject::Column::Id)
                .into();
            let mut q = referral::Entity::find()
                .join(sea_orm::JoinType::InnerJoin, subject_of)
                .select_only()
                .column(referral::Column::Id)
                .column(referral::Column::ClosedAt)
                .filter(referral::Column::Status.eq(pb::ReferralStatus::Closed.as_str_name()))
                .filter(referral::Column::ClosedAt.lt(cutoff))
                .filter(subject::Column::ErasedAt.is_null());
            if let Some((at, id)) = after {
                q = q.filter(
                    sea_orm::Condition::any()
                        .add(referral::Column::ClosedAt.gt(at))
                        .add(
                            sea_orm::Condition::all()
                                .add(referral::Column::ClosedAt.eq(at))
                                .add(referral::Column::Id.gt(id)),
                        ),
                );
            }
            let due: Vec<(Uuid, Option<DateTime<Utc>>)> = q
                .order_by_asc(referral::Column::ClosedAt)
                .order_by_asc(referral::Column::Id)
                .limit(batch)
                .into_tuple()
                .all(self.ctx.db())
                .await?;
            let Some(&(last_id, Some(last_at))) = due.last() else {
                break;
            };
            after = Some((last_at, last_id));
            for (id, _) in &due {
                if let Erased::Now =
                    erase(&self.ctx, *id, pb::ErasureGround::Retention, None).await?
                {
                    self.ctx
                        .audit()
                        .append(
                            self.ctx.db(),
                            &system,
                            AuditEntry {
                                rpc: RETENTION_RPC.to_owned(),
                                referral_id: Some(*id),
                                field_paths: ERASED_PATHS.iter().map(|p| (*p).to_owned()).collect(),
                                trace_id: None,
                            },
                        )
                        .await?;
                    erased += 1;
                }
            }
            if (due.len() as u64) < batch {
                break;
            }
        }
        if erased > 0 {
            refnet_core::db::purge_freed(self.ctx.db()).await?;
            tracing::info!(
                erased,
                "retention: subjects of long-closed referrals erased"
            );
        }
        Ok(erased)
    }
}

/// The principal the audit log records for the retention worker.
fn system_principal() -> Principal {
    Principal {
        officer_id: "refnet-retention".into(),
        agency_id: "refnet".into(),
        agency_kind: pb::AgencyKind::Unspecified,
        roles: std::collections::BTreeSet::new(),
    }
}
