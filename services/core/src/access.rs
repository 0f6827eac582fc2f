//! The small access model every service reads: which agencies are party to a
//! referral, and how (the receiving agency's handoff state and purpose, which
//! the redaction policy's location exception depends on).

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::{Alias, Expr, ExprTrait, Query},
};
use uuid::Uuid;

use crate::{
    error::ServiceError,
    policy::Relation,
    states::{HandoffState, ProtectionState, ReferralStatus},
};

/// The viewer agency's relation to a referral: its most recent handoff's state
/// and purpose. Routing owns the handoffs table; this is the one query outside
/// routing that reads it, by name, and only these two columns.
pub async fn relation<C: ConnectionTrait>(
    db: &C,
    referral_id: Uuid,
    agency_id: &str,
) -> Result<Relation, ServiceError> {
    let query = Query::select()
        .columns([Alias::new("state"), Alias::new("purpose")])
        .from(Alias::new("handoffs"))
        .and_where(Expr::col(Alias::new("referral_id")).eq(referral_id))
        .and_where(Expr::col(Alias::new("to_agency_id")).eq(agency_id))
        .order_by(Alias::new("id"), sea_orm::sea_query::Order::Desc)
        .limit(1)
        .to_owned();
    let handoff = match db.query_one(&query).await? {
        Some(row) => {
            let stored: String = row.try_get("", "state")?;
            let state = <HandoffState as sea_orm::ActiveEnum>::try_from_value(&stored)
                .map_err(|e| ServiceError::Internal(format!("stored handoff state: {e}")))?;
            Some((
                state.label().to_owned(),
                row.try_get::<String>("", "purpose")?,
            ))
        }
        None => None,
    };
    Ok(Relation { handoff })
}

/// Marks a referral as routed (it has an open handoff): a filed one, one
/// waiting in triage, or a closed one that got a new handoff (it is open
/// again, and its retention period will count from its next closure).
/// Routing's status, not a content change: the referral's version is not bumped.
pub async fn mark_routed<C: ConnectionTrait>(
    db: &C,
    referral_id: Uuid,
) -> Result<(), ServiceError> {
    let statement = Query::update()
        .table(Alias::new("referrals"))
        .value(Alias::new("status"), ReferralStatus::Routed.stored())
        .value(
            Alias::new("closed_at"),
            Option::<chrono::DateTime<chrono::Utc>>::None,
        )
        .and_where(Expr::col(Alias::new("id")).eq(referral_id))
        .and_where(Expr::col(Alias::new("status")).is_in([
            ReferralStatus::Filed.stored(),
            ReferralStatus::Closed.stored(),
            ReferralStatus::NeedsRouting.stored(),
        ]))
        .to_owned();
    db.execute(&statement).await?;
    Ok(())
}

/// On PostgreSQL, locks the referral's row for the rest of the transaction
/// (take it before anything that appends an event: every writer keeps that
/// order). SQLite has one writer at a time and needs none.
pub async fn lock_referral<C: ConnectionTrait>(
    db: &C,
    referral_id: Uuid,
) -> Result<(), ServiceError> {
    if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(());
    }
    use sea_orm::QuerySelect;
    crate::entities::referral::Entity::find_by_id(referral_id)
        .lock(sea_orm::sea_query::LockType::NoKeyUpdate)
        .one(db)
        .await?;
    Ok(())
}

/// On PostgreSQL, locks the referral rows a batch routes before anything
/// else, in id order. Other writers (an amendment, a manual handoff) take a
/// referral's row before the event-log lock; taking the rows first here too
/// keeps the lock order the same everywhere, so the two never deadlock.
pub async fn lock_referrals<C: ConnectionTrait>(
    db: &C,
    ids: impl Iterator<Item = Uuid>,
) -> Result<(), ServiceError> {
    use sea_orm::{QueryOrder, QuerySelect};
    if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(()); // SQLite: one writer at a time
    }
    let mut ids: Vec<Uuid> = ids.collect();
    if ids.is_empty() {
        return Ok(());
    }
    ids.sort();
    ids.dedup();
    crate::entities::referral::Entity::find()
        .filter(crate::entities::referral::Column::Id.is_in(ids))
        .order_by_asc(crate::entities::referral::Column::Id)
        .lock(sea_orm::sea_query::LockType::NoKeyUpdate)
        .all(db)
        .await?;
    Ok(())
}

/// A referral's stored row: the shared case record other services read
/// (routing's facts and urgency, protection's subject), never write.
pub async fn referral<C: ConnectionTrait>(
    db: &C,
    referral_id: Uuid,
) -> Result<Option<crate::entities::referral::Model>, ServiceError> {
    Ok(crate::entities::referral::Entity::find_by_id(referral_id)
        .one(db)
        .await?)
}

/// Marks a filed or routed referral as waiting for a supervisor to route it;
/// `false` when it was not filed or routed (closed, or already waiting).
pub async fn mark_needs_routing<C: ConnectionTrait>(
    db: &C,
    referral_id: Uuid,
) -> Result<bool, ServiceError> {
    let statement = Query::update()
        .table(Alias::new("referrals"))
        .value(Alias::new("status"), ReferralStatus::NeedsRouting.stored())
        .and_where(Expr::col(Alias::new("id")).eq(referral_id))
        .and_where(Expr::col(Alias::new("status")).is_in([
            ReferralStatus::Filed.stored(),
            ReferralStatus::Routed.stored(),
        ]))
        .to_owned();
    Ok(db.execute(&statement).await?.rows_affected() == 1)
}

/// Marks a referral CLOSED (now, if it was not already).
pub async fn mark_closed<C: ConnectionTrait>(
    db: &C,
    referral_id: Uuid,
) -> Result<(), ServiceError> {
    // Only on the change to CLOSED: `closed_at` is when it closed.
    let statement = Query::update()
        .table(Alias::new("referrals"))
        .value(Alias::new("status"), ReferralStatus::Closed.stored())
        .value(Alias::new("closed_at"), chrono::Utc::now())
        .and_where(Expr::col(Alias::new("id")).eq(referral_id))
        .and_where(Expr::col(Alias::new("status")).ne(ReferralStatus::Closed.stored()))
        .to_owned();
    db.execute(&statement).await?;
    Ok(())
}

/// The party relation of an agency whose accepted handoff was withdrawn: it
/// keeps what it saw up to then (and its own messages), nothing newer.
pub const FORMER: &str = "FORMER";

/// When `agency_id` stopped being a full party to `referral_id` (its
/// accepted handoff was withdrawn); `None` for a full party or a non-party.
pub async fn former_since<C: ConnectionTrait>(
    db: &C,
    referral_id: Uuid,
    agency_id: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ServiceError> {
    use crate::entities::referral_party;
    Ok(
        referral_party::Entity::find_by_id((referral_id, agency_id.to_owned()))
            .one(db)
            .await?
            .filter(|p| p.relation == FORMER)
            .map(|p| p.since),
    )
}

/// Makes a recipient a FORMER party (its accepted handoff was withdrawn and
/// routing found no other live handoff to it): it keeps what it saw up to now.
pub async fn make_former<C: ConnectionTrait>(
    db: &C,
    referral_id: Uuid,
    agency_id: &str,
) -> Result<(), ServiceError> {
    use crate::entities::referral_party;
    referral_party::Entity::update_many()
        .col_expr(referral_party::Column::Relation, Expr::value(FORMER))
        .col_expr(
            referral_party::Column::Since,
            Expr::value(chrono::Utc::now()),
        )
        .filter(referral_party::Column::ReferralId.eq(referral_id))
        .filter(referral_party::Column::AgencyId.eq(agency_id))
        .filter(referral_party::Column::Relation.eq("RECIPIENT"))
        .exec(db)
        .await?;
    Ok(())
}

/// The id of the referral named by `reference` if `agency_id` is party to it;
/// NOT_FOUND otherwise (the same answer as for a referral that does not exist).
pub async fn visible_referral<C: ConnectionTrait>(
    db: &C,
    agency_id: &str,
    reference: &crate::domain::ReferralRef,
) -> Result<Uuid, ServiceError> {
    Ok(visible_party(db, agency_id, reference).await?.0)
}

/// [`visible_referral`], with when the agency stopped being a full party
/// (a FORMER recipient, see [`former_since`]), read in the same query.
pub async fn visible_party<C: ConnectionTrait>(
    db: &C,
    agency_id: &str,
    reference: &crate::domain::ReferralRef,
) -> Result<(Uuid, Option<chrono::DateTime<chrono::Utc>>), ServiceError> {
    use crate::{domain::ReferralRef, entities::referral_party};
    let id = match reference {
        ReferralRef::Id(id) => Some(*id),
        ReferralRef::Code(code) => {
            let query = Query::select()
                .column(Alias::new("id"))
                .from(Alias::new("referrals"))
                .and_where(Expr::col(Alias::new("reference_code")).eq(code.as_str()))
                .to_owned();
            match db.query_one(&query).await? {
                Some(row) => Some(row.try_get::<Uuid>("", "id")?),
                None => None,
            }
        }
    };
    let Some(id) = id else {
        return Err(ServiceError::NotFound);
    };
    referral_party::Entity::find_by_id((id, agency_id.to_owned()))
        .one(db)
        .await?
        .map(|p| (id, (p.relation == FORMER).then_some(p.since)))
        .ok_or(ServiceError::NotFound)
}

/// Removes `agency_id` as a recipient party of `referral_id` (routing found no
/// other handoff to it after one was withdrawn before delivery).
pub async fn remove_recipient<C: ConnectionTrait>(
    db: &C,
    referral_id: Uuid,
    agency_id: &str,
) -> Result<(), ServiceError> {
    use crate::entities::referral_party;
    referral_party::Entity::delete_many()
        .filter(referral_party::Column::ReferralId.eq(referral_id))
        .filter(referral_party::Column::AgencyId.eq(agency_id))
        .filter(referral_party::Column::Relation.eq("RECIPIENT"))
        .exec(db)
        .await?;
    Ok(())
}

/// Whether `referral_id` has a protection request still open (submitted,
/// under assessment, under interim measures, admitted or active). Read here
/// because intake must not erase a subject the WPA is still deciding on or
/// protecting.
pub async fn open_protection_request<C: ConnectionTrait>(
    db: &C,
    referral_id: Uuid,
) -> Result<bool, ServiceError> {
    let query = Query::select()
        .column(Alias::new("id"))
        .from(Alias::new("protection_requests"))
        .and_where(Expr::col(Alias::new("referral_id")).eq(referral_id))
        .and_where(
            Expr::col(Alias::new("state"))
                .is_not_in(ProtectionState::ENDED.map(ProtectionState::stored)),
        )
        .limit(1)
        .to_owned();
    Ok(db.query_one(&query).await?.is_some())
}

/// The reference code of a referral.
pub async fn reference_code<C: ConnectionTrait>(
    db: &C,
    referral_id: Uuid,
) -> Result<String, ServiceError> {
    let query = Query::select()
        .column(Alias::new("reference_code"))
        .from(Alias::new("referrals"))
        .and_where(Expr::col(Alias::new("id")).eq(referral_id))
        .to_owned();
    let row = db.query_one(&query).await?.ok_or(ServiceError::NotFound)?;
    Ok(row.try_get::<String>("", "reference_code")?)
}

/// Makes `agency_id` a party to `referral_id` as `relation` ("RECIPIENT",
/// "PROTECTION"); a no-op when it already is one, except that a FORMER party
/// given a new handoff is a full party again.
pub async fn add_party<C: ConnectionTrait>(
    db: &C,
    referral_id: Uuid,
    agency_id: &str,
    relation: &str,
) -> Result<(), ServiceError> {
    use crate::entities::referral_party;
    use sea_orm::{ActiveValue::Set, sea_query::OnConflict};
    referral_party::Entity::insert(referral_party::ActiveModel {
        referral_id: Set(referral_id),
        agency_id: Set(agency_id.to_owned()),
        relation: Set(relation.to_owned()),
        since: Set(chrono::Utc::now()),
    })
    .on_conflict(
        OnConflict::columns([
            referral_party::Column::ReferralId,
            referral_party::Column::AgencyId,
        ])
        .update_columns([
            referral_party::Column::Relation,
            referral_party::Column::Since,
        ])
        .action_and_where(
            Expr::col((referral_party::Entity, referral_party::Column::Relation)).eq(FORMER),
        )
        .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}
