//! A subject's protected state, on the shared tables only: the WPA's
//! pseudonym on the subject (and every subject that is the same person by a
//! blind-indexed identifier) and a `ProtectionApplied` / `ProtectionLifted`
//! event on each of their referrals. The protection service decides when;
//! this module is the only writer of `subjects.protected_pseudonym`.

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait, Query},
};
use uuid::Uuid;

use crate::{
    ServiceError, ServiceResult,
    entities::{referral, subject, subject_identifier},
    events::{self, EventKind},
};

/// The subjects that are the same person as `subject_id` as far as refnet can
/// tell: itself and every subject sharing a blind-indexed identifier (ID,
/// passport, refugee ID or phone number) with it. Protection covers them all,
/// so another referral about the same witness does not reveal them.
async fn same_person<C: ConnectionTrait>(db: &C, subject_id: Uuid) -> ServiceResult<Vec<Uuid>> {
    let digests = Query::select()
        .column(subject_identifier::Column::Digest)
        .from(subject_identifier::Entity)
        .and_where(Expr::col(subject_identifier::Column::SubjectId).eq(subject_id))
        .to_owned();
    let mut ids: Vec<Uuid> = subject_identifier::Entity::find()
        .select_only()
        .column(subject_identifier::Column::SubjectId)
        .filter(subject_identifier::Column::Digest.in_subquery(digests))
        .into_tuple::<Uuid>()
        .all(db)
        .await?;
    ids.push(subject_id);
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Appends `kind` (with an empty payload: it reveals nothing) on every
/// referral about one of `subjects`.
async fn mark_referrals<C: ConnectionTrait>(
    db: &C,
    subjects: &[Uuid],
    kind: EventKind,
) -> ServiceResult<()> {
    let referrals: Vec<Uuid> = referral::Entity::find()
        .select_only()
        .column(referral::Column::Id)
        .filter(referral::Column::SubjectId.is_in(subjects.iter().copied()))
        .into_tuple::<Uuid>()
        .all(db)
        .await?;
    for id in referrals {
        events::append(db, kind, Some(id), None, &serde_json::json!({})).await?;
    }
    Ok(())
}

/// From now on every viewer but the WPA sees `subject_id` (and the subjects
/// that are the same person) as `pseudonym`: in every reply and stream, over
/// old and new free text. A `ProtectionApplied` event marks each referral's
/// timeline (open streams pick the change up with their next item).
pub async fn protect<C: ConnectionTrait>(
    db: &C,
    subject_id: Uuid,
    pseudonym: &str,
) -> ServiceResult<()> {
    let subjects = same_person(db, subject_id).await?;
    subject::Entity::update_many()
        .col_expr(subject::Column::ProtectedPseudonym, Expr::value(pseudonym))
        .filter(subject::Column::Id.is_in(subjects.iter().copied()))
        .exec(db)
        .await?;
    mark_referrals(db, &subjects, EventKind::ProtectionApplied).await
}

/// Restores the identity of the subjects protected as `pseudonym` to other
/// parties (only ever on the WPA's explicit word).
pub async fn lift<C: ConnectionTrait>(db: &C, pseudonym: &str) -> ServiceResult<()> {
    let subjects: Vec<Uuid> = subject::Entity::find()
        .select_only()
        .column(subject::Column::Id)
        .filter(subject::Column::ProtectedPseudonym.eq(pseudonym))
        .into_tuple::<Uuid>()
        .all(db)
        .await?;
    if subjects.is_empty() {
        return Ok(());
    }
    subject::Entity::update_many()
        .col_expr(
            subject::Column::ProtectedPseudonym,
            Expr::value(Option::<String>::None),
        )
        .filter(subject::Column::Id.is_in(subjects.iter().copied()))
        .exec(db)
        .await?;
    mark_referrals(db, &subjects, EventKind::ProtectionLifted).await
}

/// Whether `subject_id` is protected now.
pub async fn is_protected<C: ConnectionTrait>(db: &C, subject_id: Uuid) -> ServiceResult<bool> {
    Ok(subject::Entity::find_by_id(subject_id)
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::Internal("request without subject".into()))?
        .protected_pseudonym
        .is_some())
}
