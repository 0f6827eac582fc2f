//! Protection request deadlines: begin the assessment by, decide by (set
//! per urgency at submission), and which deadline was last escalated.
//! Requests submitted before this migration have none.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            timestamp_with_time_zone_null(ProtectionRequests::AssessBy),
            timestamp_with_time_zone_null(ProtectionRequests::DecideBy),
            string_null(ProtectionRequests::Escalated),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(ProtectionRequests::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("ix_protection_requests_subject_state")
                    .table(ProtectionRequests::Table)
                    .col(ProtectionRequests::SubjectId)
                    .col(ProtectionRequests::State)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_protection_requests_subject_state")
                    .table(ProtectionRequests::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            ProtectionRequests::Escalated,
            ProtectionRequests::DecideBy,
            ProtectionRequests::AssessBy,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ProtectionRequests::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum ProtectionRequests {
    Table,
    SubjectId,
    State,
    AssessBy,
    DecideBy,
    Escalated,
}
