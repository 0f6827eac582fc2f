//! Handoff decisions and notifications: the decide-by deadline, when a
//! handoff was acknowledged, the decline reason (free text that may name the
//! subject, so sealed under the subject's data key), and the notifications
//! table that tells supervisors and senders about escalations and declines.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            timestamp_with_time_zone_null(Handoffs::DecideBy),
            timestamp_with_time_zone_null(Handoffs::AcknowledgedAt),
            binary_null(Handoffs::DeclineReasonCt),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(Handoffs::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .if_not_exists()
                    .col(uuid(Notifications::Id).primary_key())
                    .col(string(Notifications::AgencyId))
                    .col(string(Notifications::Audience))
                    .col(string(Notifications::Kind))
                    .col(uuid(Notifications::ReferralId))
                    .col(string(Notifications::ReferenceCode))
                    .col(uuid(Notifications::HandoffId))
                    .col(string(Notifications::Detail))
                    .col(timestamp_with_time_zone(Notifications::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_notifications_agency")
                    .table(Notifications::Table)
                    .col(Notifications::AgencyId)
                    .col(Notifications::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // One notification per handoff, event, recipient and detail: two
        // deadline workers escalating the same miss notify once, while the
        // acknowledge miss and a later decide miss are two notifications.
        manager
            .create_index(
                Index::create()
                    .name("ux_notifications_once")
                    .table(Notifications::Table)
                    .col(Notifications::HandoffId)
                    .col(Notifications::Kind)
                    .col(Notifications::AgencyId)
                    .col(Notifications::Audience)
                    .col(Notifications::Detail)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_handoffs_decide_by")
                    .table(Handoffs::Table)
                    .col(Handoffs::State)
                    .col(Handoffs::DecideBy)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(Notifications::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ix_handoffs_decide_by")
                    .table(Handoffs::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            Handoffs::DecideBy,
            Handoffs::AcknowledgedAt,
            Handoffs::DeclineReasonCt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Handoffs::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Handoffs {
    Table,
    State,
    DecideBy,
    AcknowledgedAt,
    DeclineReasonCt,
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    AgencyId,
    Audience,
    Kind,
    ReferralId,
    ReferenceCode,
    HandoffId,
    Detail,
    CreatedAt,
}
