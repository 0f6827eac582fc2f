//! Subject erasure and retention: when a subject was erased (its data key
//! destroyed) and the age band kept in place of the date of birth, and when
//! a referral was last closed, which the retention worker counts from.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Subjects::Table)
                    .add_column(timestamp_with_time_zone_null(Subjects::ErasedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Subjects::Table)
                    .add_column(string_null(Subjects::AgeBand))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Referrals::Table)
                    .add_column(timestamp_with_time_zone_null(Referrals::ClosedAt))
                    .to_owned(),
            )
            .await?;
        // Referrals closed before this column existed count from their last change.
        manager
            .exec_stmt(
                Query::update()
                    .table(Referrals::Table)
                    .value(Referrals::ClosedAt, Expr::col(Referrals::UpdatedAt))
                    .and_where(Expr::col(Referrals::Status).eq("REFERRAL_STATUS_CLOSED"))
                    .to_owned(),
            )
            .await?;
        // The retention worker's walk: closed referrals, oldest closure first.
        manager
            .create_index(
                Index::create()
                    .name("ix_referrals_closed_at")
                    .table(Referrals::Table)
                    .col(Referrals::ClosedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_referrals_closed_at")
                    .table(Referrals::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Referrals::Table)
                    .drop_column(Referrals::ClosedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Subjects::Table)
                    .drop_column(Subjects::AgeBand)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Subjects::Table)
                    .drop_column(Subjects::ErasedAt)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Subjects {
    Table,
    ErasedAt,
    AgeBand,
}

#[derive(DeriveIden)]
enum Referrals {
    Table,
    ClosedAt,
    UpdatedAt,
    Status,
}
