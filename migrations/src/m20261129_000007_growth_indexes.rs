//! Indexes found missing by the growth benchmark (1M referrals): the blind
//! index by subject, which protection reads to find every referral about the
//! same person (without it, a scan of every identifier row).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("ix_subject_identifiers_subject")
                    .table(SubjectIdentifiers::Table)
                    .col(SubjectIdentifiers::SubjectId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_subject_identifiers_subject")
                    .table(SubjectIdentifiers::Table)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum SubjectIdentifiers {
    Table,
    SubjectId,
}
