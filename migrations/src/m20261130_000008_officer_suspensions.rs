//! Officers whose access is suspended: their tokens are refused even while
//! valid (a lost device, a leaver, an investigation). Agencies are suspended
//! through `agencies.active`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OfficerSuspensions::Table)
                    .col(
                        ColumnDef::new(OfficerSuspensions::AgencyId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OfficerSuspensions::OfficerId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OfficerSuspensions::Reason)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OfficerSuspensions::SuspendedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(OfficerSuspensions::AgencyId)
                            .col(OfficerSuspensions::OfficerId),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OfficerSuspensions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum OfficerSuspensions {
    Table,
    AgencyId,
    OfficerId,
    Reason,
    SuspendedAt,
}
