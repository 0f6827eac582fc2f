//! Where a referral's handoffs stand, and what that makes each recipient: the
//! reads of routing's own table that decide the referral's status (open,
//! completed, waiting in triage) and an agency's party relation (a withdrawn
//! handoff makes its recipient a FORMER party or no party, unless another
//! handoff to it is still live). The party rows themselves are written through
//! [`refnet_core::access`].

use refnet_core::{ServiceError, access, states::HandoffState};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::entities::handoff;

/// Handoff `id` if `agency_id` sends or receives it; NOT_FOUND otherwise
/// (the same answer as for a handoff that does not exist).
pub(crate) async fn visible_handoff<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    agency_id: &str,
) -> Result<handoff::Model, ServiceError> {
    handoff::Entity::find_by_id(id)
        .filter(
            sea_orm::Condition::any()
                .add(handoff::Column::ToAgencyId.eq(agency_id))
                .add(handoff::Column::FromAgencyId.eq(agency_id)),
        )
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)
}

/// Where a referral's handoffs stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoffs {
    /// At least one is open.
    Open,
    /// None is open and at least one was completed.
    Completed,
    /// None is open and none was completed (declined, withdrawn, or none at all).
    NoneCompleted,
}

/// Where `referral_id`'s handoffs stand.
pub async fn handoffs<C: ConnectionTrait>(
    db: &C,
    referral_id: Uuid,
) -> Result<Handoffs, ServiceError> {
    let open = handoff::Entity::find()
        .filter(handoff::Column::ReferralId.eq(referral_id))
        .filter(handoff::Column::State.is_not_in(HandoffState::ENDED))
        .one(db)
        .await?;
    if open.is_some() {
        return Ok(Handoffs::Open);
    }
    let completed = handoff::Entity::find()
        .filter(handoff::Column::ReferralId.eq(referral_id))
        .filter(handoff::Column::State.eq(HandoffState::Completed))
        .one(db)
        .await?;
    Ok(if completed.is_some() {
        Handoffs::Completed
    } else {
        Handoffs::NoneCompleted
    })
}

/// Whether a handoff of `referral_id` to `agency_id` is in none of `over`.
async fn other_handoff<C: ConnectionTrait>(
    db: &C,
    referral_id: Uuid,
    agency_id: &str,
    over: &[HandoffState],
) -> Result<bool, ServiceError> {
    Ok(handoff::Entity::find()
        .filter(handoff::Column::ReferralId.eq(referral_id))
        .filter(handoff::Column::ToAgencyId.eq(agency_id))
        .filter(handoff::Column::State.is_not_in(over.iter().copied()))
        .one(db)
        .await?
        .is_some())
}

/// Makes a recipient whose accepted handoff was withdrawn a FORMER party,
/// unless another handoff to it is still live.
pub async fn retire_recipient<C: ConnectionTrait>(
    db: &C,
    referral_id: Uuid,
    agency_id: &str,
) -> Result<(), ServiceError> {
    if !other_handoff(db, referral_id, agency_id, &HandoffState::ENDED).await? {
        access::make_former(db, referral_id, agency_id).await?;
    }
    Ok(())
}

/// Removes `agency_id` as a recipient party of `referral_id` when no other
/// handoff to it remains (a handoff withdrawn before delivery).
pub async fn drop_recipient<C: ConnectionTrait>(
    db: &C,
    referral_id: Uuid,
    agency_id: &str,
) -> Result<(), ServiceError> {
    if !other_handoff(db, referral_id, agency_id, &[HandoffState::Withdrawn]).await? {
        access::remove_recipient(db, referral_id, agency_id).await?;
    }
    Ok(())
}
