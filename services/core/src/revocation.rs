//! Revoking access without waiting for tokens to expire: an agency is
//! suspended by marking it inactive, an officer by a row in
//! `officer_suspensions`. Every process re-reads both every
//! `auth.access_refresh_seconds` (and at start), so a suspension takes effect
//! everywhere within that interval; from then on the suspended party's tokens
//! are answered UNAUTHENTICATED, remembered tokens included.

use std::{collections::HashSet, future::Future, time::Duration};

use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    sea_query::OnConflict,
};

use crate::{AppContext, agencies, entities::officer_suspension};

/// Suspends `officer_id` of `agency_id`; suspending twice keeps the first
/// record's time and updates the reason.
pub async fn suspend_officer(
    db: &DatabaseConnection,
    agency_id: &str,
    officer_id: &str,
    reason: &str,
) -> Result<(), DbErr> {
    officer_suspension::Entity::insert(officer_suspension::ActiveModel {
        agency_id: Set(agency_id.to_owned()),
        officer_id: Set(officer_id.to_owned()),
        reason: Set(reason.to_owned()),
        suspended_at: Set(chrono::Utc::now()),
    })
    .on_conflict(
        OnConflict::columns([
            officer_suspension::Column::AgencyId,
            officer_suspension::Column::OfficerId,
        ])
        .update_column(officer_suspension::Column::Reason)
        .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Lifts a suspension; false when the officer was not suspended.
pub async fn reinstate_officer(
    db: &DatabaseConnection,
    agency_id: &str,
    officer_id: &str,
) -> Result<bool, DbErr> {
    let deleted = officer_suspension::Entity::delete_many()
        .filter(officer_suspension::Column::AgencyId.eq(agency_id))
        .filter(officer_suspension::Column::OfficerId.eq(officer_id))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected > 0)
}

/// Every suspension, oldest first.
pub async fn suspended_officers(
    db: &DatabaseConnection,
) -> Result<Vec<officer_suspension::Model>, DbErr> {
    officer_suspension::Entity::find()
        .order_by_asc(officer_suspension::Column::SuspendedAt)
        .all(db)
        .await
}

/// Marks an agency active or not; false when there is no such agency.
pub async fn set_agency_active(
    db: &DatabaseConnection,
    agency_id: &str,
    active: bool,
) -> Result<bool, DbErr> {
    use crate::entities::agency;
    let updated = agency::Entity::update_many()
        .col_expr(
            agency::Column::Active,
            sea_orm::sea_query::Expr::value(active),
        )
        .filter(agency::Column::Id.eq(agency_id))
        .exec(db)
        .await?;
    Ok(updated.rows_affected > 0)
}

/// Re-reads the agency registry and the officer suspensions into `ctx`.
pub async fn refresh(ctx: &AppContext) -> Result<(), agencies::RegistryError> {
    let all = agencies::load_all(ctx.db()).await?;
    let suspended: HashSet<(String, String)> = suspended_officers(ctx.db())
        .await?
        .into_iter()
        .map(|s| (s.agency_id, s.officer_id))
        .collect();
    ctx.agencies().replace(all);
    ctx.authenticator().set_suspended(suspended);
    Ok(())
}

/// Refreshes every `interval` until `stop` resolves. A failed refresh keeps
/// what was loaded before and is logged.
pub async fn refresh_loop(ctx: AppContext, interval: Duration, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticker.tick() => {
                if let Err(e) = refresh(&ctx).await {
                    tracing::warn!(error = %e, "access refresh failed; keeping the previous registry and suspensions");
                }
            }
        }
    }
}
