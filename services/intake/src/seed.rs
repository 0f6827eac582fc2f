//! Seeding: many synthetic referrals written in batches, for the growth
//! benchmark (`refnet seed`). The rows are built exactly as filing builds them
//! (sealed identity and location under a data key per subject, blind-index
//! digests, the filer as party) and written with one multi-row insert per
//! table per batch. Seeded referrals are closed history: they carry no event,
//! so the routing worker has nothing to route, and no handoff.

use chrono::Utc;
use refnet_core::{
    AppContext, ServiceResult,
    auth::Principal,
    domain::{referral::ReferralContent, seeded_reference_code},
    entities::referral_party,
};
use sea_orm::{ActiveValue::Set, EntityTrait, PaginatorTrait};

use crate::{
    entities::{referral, subject, subject_identifier},
    filing::NewReferral,
};

/// Rows per INSERT statement: far below SQLite's 32,766 and PostgreSQL's
/// 65,535 bound parameters for the widest table (22 columns).
const ROWS_PER_STATEMENT: usize = 500;

/// How many referrals are stored, to number the next seeded reference codes.
pub async fn stored(ctx: &AppContext) -> ServiceResult<u64> {
    Ok(referral::Entity::find().count(ctx.db()).await?)
}

/// Writes `items` as closed referrals filed by their principals, in one
/// transaction; reference codes are `seeded_reference_code(year, first..)`.
pub async fn write_batch(
    ctx: &AppContext,
    items: Vec<(Principal, ReferralContent)>,
    year: i32,
    first: u64,
) -> ServiceResult<()> {
    let now = Utc::now();
    let mut subjects = Vec::with_capacity(items.len());
    let mut referrals = Vec::with_capacity(items.len());
    let mut identifiers = Vec::new();
    let mut parties = Vec::with_capacity(items.len());
    for (n, (principal, content)) in (first..).zip(items) {
        let rows = NewReferral::build(
            ctx.keys(),
            &principal,
            content,
            None,
            now,
            format!("seed-{n}"),
            Vec::new(),
        )?;
        let mut referral_row = rows.referral.clone();
        referral_row.reference_code = Set(seeded_reference_code(year, n));
        referral_row.status = Set(refnet_core::states::ReferralStatus::Closed);
        referral_row.closed_at = Set(Some(now));
        identifiers.extend(rows.identifier_rows());
        parties.push(rows.filer_party(&principal.agency_id));
        subjects.push(rows.subject);
        referrals.push(referral_row);
    }
    refnet_core::db::write_txn(ctx.db(), move |txn| {
        Box::pin(async move {
            insert_chunked::<subject::Entity, _>(txn, subjects).await?;
            insert_chunked::<referral::Entity, _>(txn, referrals).await?;
            insert_chunked::<subject_identifier::Entity, _>(txn, identifiers).await?;
            insert_chunked::<referral_party::Entity, _>(txn, parties).await?;
            Ok(())
        })
    })
    .await
}

async fn insert_chunked<E, A>(txn: &sea_orm::DatabaseTransaction, rows: Vec<A>) -> ServiceResult<()>
where
    E: EntityTrait,
    A: sea_orm::ActiveModelTrait<Entity = E> + Send,
{
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        E::insert_many(chunk).exec_without_returning(txn).await?;
    }
    Ok(())
}
