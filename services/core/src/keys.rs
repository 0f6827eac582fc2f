//! The keyring's root, kept in the database, and master-key rotation.
//!
//! The root is 32 bytes that the blind-index, page-token and pseudonym keys
//! are derived from, stored in `key_roots` wrapped by a master key. At a
//! deployment's first start it is the master key's own bytes (so nothing
//! derived changes when roots were introduced). [`rotate`] re-wraps every
//! subject's data key and the root under a new master key, batch by batch;
//! it can be interrupted and run again.
//!
//! Rotation without downtime (SECURITY.md): (1) give every process the new key
//! in `previous_master_keys` (it can then unwrap what the new key wraps);
//! (2) run `refnet keys rotate --to-key-file NEW`; (3) make the new key
//! `master_key` and the old one `previous_master_keys` everywhere; (4) run the
//! rotation again for what was filed meanwhile; (5) drop the old key.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait, sea_query::OnConflict,
};

use crate::{
    crypto::{CryptoError, Keyring, MasterKey},
    entities::{key_root, subject},
};

/// A failure to load the root or to rotate.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// A key is missing or does not open what it should.
    #[error("{0}")]
    Crypto(#[from] CryptoError),
}

/// The configured master key (`master_key`, else `data_dir/master.key`,
/// generated there when `generate` is set) and the `previous_master_keys`.
pub fn configured(
    config: &crate::config::Config,
    generate: bool,
) -> Result<(MasterKey, Vec<MasterKey>), CryptoError> {
    let master = match &config.master_key {
        Some(encoded) => MasterKey::from_base64(encoded)?,
        None => MasterKey::load_or_generate(&config.data_dir.join("master.key"), generate)?,
    };
    let others = config
        .previous_master_keys
        .iter()
        .map(MasterKey::from_base64)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((master, others))
}

/// The keyring for `master` (and `others`, unwrap only), its root read from
/// the database, or created from `master` at a deployment's first start.
pub async fn load(
    db: &DatabaseConnection,
    master: MasterKey,
    others: Vec<MasterKey>,
) -> Result<Keyring, KeysError> {
    let row = match key_root::Entity::find_by_id(1).one(db).await? {
        Some(row) => row,
        None => {
            // Replicas starting together: one insert wins, all read it back.
            key_root::Entity::insert(key_root::ActiveModel {
                id: Set(1),
                key_id: Set(master.id().to_owned()),
                wrapped: Set(master.wrap_root(&master)?),
                updated_at: Set(chrono::Utc::now()),
            })
            .on_conflict(
                OnConflict::column(key_root::Column::Id)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
            key_root::Entity::find_by_id(1)
                .one(db)
                .await?
                .ok_or_else(|| DbErr::RecordNotFound("key_roots".into()))?
        }
    };
    let unwrapping = Keyring::with_root(master.clone(), others.clone(), &master);
    let wrapper = unwrapping.master_with_id(&row.key_id).ok_or_else(|| {
        CryptoError::MasterKey(format!(
            "the key root is wrapped by master key {}, which is not configured \
             (set it as master_key or in previous_master_keys)",
            row.key_id
        ))
    })?;
    let root = wrapper.unwrap_root(&row.wrapped)?;
    Ok(Keyring::with_root(master, others, &root))
}

/// What [`rotate`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    /// Data keys re-wrapped.
    pub data_keys: u64,
    /// Whether the root was re-wrapped (false: it already was).
    pub root: bool,
}

/// Re-wraps every data key not yet wrapped by `to`, and the root, under `to`;
/// `keys` must hold every master key they are wrapped by now.
pub async fn rotate(
    db: &DatabaseConnection,
    keys: &Keyring,
    to: &MasterKey,
    batch: u64,
) -> Result<Rotated, KeysError> {
    let mut done = Rotated::default();
    loop {
        let rows = subject::Entity::find()
            .select_only()
            .columns([
                subject::Column::Id,
                subject::Column::KeyId,
                subject::Column::WrappedKey,
            ])
            .filter(subject::Column::KeyId.ne(to.id()))
            // An erased subject has no key left to wrap.
            .filter(subject::Column::KeyId.ne(crate::subjects::ERASED_KEY_ID))
            .order_by_asc(subject::Column::Id)
            .limit(batch.max(1))
            .into_tuple::<(uuid::Uuid, String, Vec<u8>)>()
            .all(db)
            .await?;
        if rows.is_empty() {
            break;
        }
        let txn = db.begin().await?;
        for (id, key_id, wrapped) in rows {
            let from = keys.master_with_id(&key_id).ok_or_else(|| {
                CryptoError::MasterKey(format!(
                    "subject data key wrapped by master key {key_id}, which is not configured"
                ))
            })?;
            let rewrapped = to.rewrap_data_key(from, id, &wrapped)?;
            // Only if nobody changed it meanwhile (another rotation).
            let updated = subject::Entity::update_many()
                .col_expr(subject::Column::KeyId, to.id().into())
                .col_expr(subject::Column::WrappedKey, rewrapped.into())
                .filter(subject::Column::Id.eq(id))
                .filter(subject::Column::KeyId.eq(key_id))
                .exec(&txn)
                .await?;
            done.data_keys += updated.rows_affected;
        }
        txn.commit().await?;
    }
    let root = key_root::Entity::find_by_id(1)
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("key_roots".into()))?;
    if root.key_id != to.id() {
        key_root::Entity::update_many()
            .col_expr(key_root::Column::KeyId, to.id().into())
            .col_expr(key_root::Column::Wrapped, keys.wrapped_root(to)?.into())
            .col_expr(key_root::Column::UpdatedAt, chrono::Utc::now().into())
            .filter(key_root::Column::Id.eq(1))
            .exec(db)
            .await?;
        done.root = true;
    }
    Ok(done)
}

/// How many subjects are still wrapped by a master key other than `id`.
pub async fn wrapped_by_others<C: ConnectionTrait>(db: &C, id: &str) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    subject::Entity::find()
        .filter(subject::Column::KeyId.ne(id))
        .filter(subject::Column::KeyId.ne(crate::subjects::ERASED_KEY_ID))
        .count(db)
        .await
}
