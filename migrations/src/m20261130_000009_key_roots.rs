//! The keyring's root, wrapped by the master key, so the master key can be
//! rotated without changing blind-index digests or pseudonyms.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(KeyRoots::Table)
                    .col(
                        ColumnDef::new(KeyRoots::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(KeyRoots::KeyId).string().not_null())
                    .col(ColumnDef::new(KeyRoots::Wrapped).binary().not_null())
                    .col(
                        ColumnDef::new(KeyRoots::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(KeyRoots::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum KeyRoots {
    Table,
    Id,
    KeyId,
    Wrapped,
    UpdatedAt,
}
