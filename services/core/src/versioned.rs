//! One versioned change, used by every service for every row that carries a
//! version (referrals, handoffs, protection requests): update where the
//! version is still the one read (bumping it and `updated_at`), append the
//! event that records the change, and read the row back, all in the caller's
//! transaction. Streams are woken after commit by [`AppContext::write`]
//! (crate::AppContext::write), never by the handler.
//!
//! ```ignore
//! let updated = versioned::change::<request::Entity, _>(
//!     txn, row.id, row.version, changes,
//!     Appended { kind: EventKind::ProtectionStateChanged, referral: None, actor: Some(&actor), payload: &p },
//! ).await?; // None: another change won (ABORTED for the caller)
//! ```

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PrimaryKeyTrait, QueryFilter,
    Value,
};
use serde::Serialize;
use uuid::Uuid;

use crate::{ServiceResult, auth::Principal, events};

/// A table whose rows carry a version for optimistic concurrency.
pub trait Versioned: EntityTrait {
    /// The id column (a UUID primary key).
    fn id_column() -> Self::Column;
    /// The version column (starts at 1, bumped by every change).
    fn version_column() -> Self::Column;
    /// The last-changed column.
    fn updated_column() -> Self::Column;
}

/// The event a change appends.
pub struct Appended<'a, P: Serialize> {
    /// What happened.
    pub kind: events::EventKind,
    /// The referral it is about, if any.
    pub referral: Option<Uuid>,
    /// Who did it; `None` for refnet itself (a deadline).
    pub actor: Option<&'a Principal>,
    /// The payload (ids, versions, states: never identifying values).
    pub payload: &'a P,
}

/// Writes `changes` to row `id` if its version is still `version`, setting
/// the version to `version + 1` and `updated_at` to now; `false` when another
/// change won.
pub async fn bump<E, C>(
    db: &C,
    id: Uuid,
    version: i64,
    mut changes: E::ActiveModel,
) -> ServiceResult<bool>
where
    E: Versioned,
    E::ActiveModel: ActiveModelTrait<Entity = E> + Send,
    C: ConnectionTrait,
{
    changes.set(E::version_column(), Value::from(version + 1));
    changes.set(E::updated_column(), Value::from(chrono::Utc::now()));
    let result = E::update_many()
        .set(changes)
        .filter(E::id_column().eq(id))
        .filter(E::version_column().eq(version))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// [`bump`], then appends `event` and reads the row back; `None` when
/// another change won (nothing written).
pub async fn change<E, C, P>(
    db: &C,
    id: Uuid,
    version: i64,
    changes: E::ActiveModel,
    event: Appended<'_, P>,
) -> ServiceResult<Option<E::Model>>
where
    E: Versioned,
    E::ActiveModel: ActiveModelTrait<Entity = E> + Send,
    E::PrimaryKey: PrimaryKeyTrait<ValueType = Uuid>,
    C: ConnectionTrait,
    P: Serialize,
{
    if !bump::<E, C>(db, id, version, changes).await? {
        return Ok(None);
    }
    events::append(db, event.kind, event.referral, event.actor, event.payload).await?;
    Ok(E::find_by_id(id).one(db).await?)
}

/// Implements [`Versioned`] for the entity of the module it is invoked in,
/// which must have `id`, `version` and `updated_at` columns.
#[macro_export]
macro_rules! versioned_entity {
    () => {
        impl $crate::versioned::Versioned for Entity {
            fn id_column() -> Self::Column {
                Column::Id
            }
            fn version_column() -> Self::Column {
                Column::Version
            }
            fn updated_column() -> Self::Column {
                Column::UpdatedAt
            }
        }
    };
}
