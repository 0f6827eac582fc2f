//! `ListReferrals`: the referrals the caller's agency is party to, newest
//! first, filtered and paged.

use chrono::Utc;
use refnet_core::{AppContext, ServiceResult, auth::Principal, entities::referral_party};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::entities::referral;

use crate::store::*;

/// Filters of a list call, validated.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    /// Statuses (proto names).
    pub statuses: Vec<refnet_core::states::ReferralStatus>,
    /// Urgencies (proto names).
    pub urgencies: Vec<String>,
    /// County.
    pub county: Option<String>,
    /// Filing agency.
    pub filing_agency_id: Option<String>,
    /// Filed at or after.
    pub filed_after: Option<chrono::DateTime<Utc>>,
    /// Filed before.
    pub filed_before: Option<chrono::DateTime<Utc>>,
}

impl ListFilter {
    /// True when no filter is set (every referral the agency is party to).
    fn is_empty(&self) -> bool {
        self.statuses.is_empty()
            && self.urgencies.is_empty()
            && self.county.is_none()
            && self.filing_agency_id.is_none()
            && self.filed_after.is_none()
            && self.filed_before.is_none()
    }
}

/// One page of referrals visible to `principal`, newest first, after `cursor`.
/// Keyset pagination on the UUIDv7 id: cost does not grow with the page number.
pub async fn list(
    ctx: &AppContext,
    principal: &Principal,
    filter: &ListFilter,
    cursor: Option<Uuid>,
    page_size: u64,
) -> ServiceResult<(Vec<referral::Model>, bool)> {
    if filter.is_empty() {
        return list_unfiltered(ctx, principal, cursor, page_size).await;
    }
    let mut q =
        joined_to_parties().filter(referral_party::Column::AgencyId.eq(&principal.agency_id));
    if !filter.statuses.is_empty() {
        q = q.filter(referral::Column::Status.is_in(filter.statuses.clone()));
    }
    if !filter.urgencies.is_empty() {
        q = q.filter(referral::Column::Urgency.is_in(filter.urgencies.clone()));
    }
    if let Some(county) = &filter.county {
        q = q.filter(referral::Column::County.eq(county.as_str()));
    }
    if let Some(agency) = &filter.filing_agency_id {
        q = q.filter(referral::Column::FilingAgencyId.eq(agency.as_str()));
    }
    if let Some(after) = filter.filed_after {
        q = q.filter(referral::Column::FiledAt.gte(after));
    }
    if let Some(before) = filter.filed_before {
        q = q.filter(referral::Column::FiledAt.lt(before));
    }
    if let Some(cursor) = cursor {
        // On both sides of the join: PostgreSQL merge-joins the two indexes
        // backwards, and without the bound on `referrals` it walked every
        // referral newer than the cursor (deeper pages cost more).
        q = q
            .filter(referral_party::Column::ReferralId.lt(cursor))
            .filter(referral::Column::Id.lt(cursor));
    }
    let mut rows = q
        .order_by_desc(referral_party::Column::ReferralId)
        .limit(page_size + 1)
        .all(ctx.db())
        .await?;
    let more = rows.len() as u64 > page_size;
    rows.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
    Ok((rows, more))
}

/// [`list`] with no filter: the page's ids from the party index alone, then
/// their rows. Joined in one statement, PostgreSQL without table statistics
/// (autovacuum off; BENCHMARKS.md, the soak's drift) planned the page as a
/// scan of every party row of the agency below the cursor, a look-up of each
/// referral and a sort; on one table it walks the index backwards and stops
/// at the page, whatever the statistics.
async fn list_unfiltered(
    ctx: &AppContext,
    principal: &Principal,
    cursor: Option<Uuid>,
    page_size: u64,
) -> ServiceResult<(Vec<referral::Model>, bool)> {
    let mut q = referral_party::Entity::find()
        .select_only()
        .column(referral_party::Column::ReferralId)
        .filter(referral_party::Column::AgencyId.eq(&principal.agency_id));
    if let Some(cursor) = cursor {
        q = q.filter(referral_party::Column::ReferralId.lt(cursor));
    }
    let mut ids: Vec<Uuid> = q
        .order_by_desc(referral_party::Column::ReferralId)
        .limit(page_size + 1)
        .into_tuple()
        .all(ctx.db())
        .await?;
    let more = ids.len() as u64 > page_size;
    ids.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
    if ids.is_empty() {
        return Ok((Vec::new(), more));
    }
    let rows = referral::Entity::find()
        .filter(referral::Column::Id.is_in(ids))
        .order_by_desc(referral::Column::Id)
        .all(ctx.db())
        .await?;
    Ok((rows, more))
}
