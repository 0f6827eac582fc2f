//! Routing: handoffs of a referral to receiving agencies, and the checkpoints
//! of event-log consumers.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Handoffs::Table)
                    .if_not_exists()
                    .col(uuid(Handoffs::Id).primary_key())
                    .col(uuid(Handoffs::ReferralId))
                    .col(string(Handoffs::ReferenceCode))
                    .col(string(Handoffs::FromAgencyId))
                    .col(string(Handoffs::ToAgencyId))
                    .col(string(Handoffs::ToAgencyKind))
                    .col(string(Handoffs::Purpose))
                    .col(string(Handoffs::State))
                    .col(big_integer(Handoffs::Version))
                    .col(string(Handoffs::RuleId))
                    .col(string(Handoffs::RuleSetVersion))
                    .col(text(Handoffs::Checklist))
                    .col(timestamp_with_time_zone(Handoffs::AcknowledgeBy))
                    .col(timestamp_with_time_zone_null(Handoffs::DeliveredAt))
                    .col(timestamp_with_time_zone(Handoffs::CreatedAt))
                    .col(timestamp_with_time_zone(Handoffs::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_handoffs_referral")
                            .from(Handoffs::Table, Handoffs::ReferralId)
                            .to(Referrals::Table, Referrals::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_handoffs_to_agency")
                            .from(Handoffs::Table, Handoffs::ToAgencyId)
                            .to(Agencies::Table, Agencies::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // One handoff per referral, receiving agency kind and rule-set version:
        // routing the same referral twice (a retried or duplicated worker) is a no-op.
        manager
            .create_index(
                Index::create()
                    .name("ux_handoffs_route_once")
                    .table(Handoffs::Table)
                    .col(Handoffs::ReferralId)
                    .col(Handoffs::ToAgencyKind)
                    .col(Handoffs::RuleSetVersion)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_handoffs_inbox")
                    .table(Handoffs::Table)
                    .col(Handoffs::ToAgencyId)
                    .col(Handoffs::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ConsumerCheckpoints::Table)
                    .if_not_exists()
                    .col(string(ConsumerCheckpoints::Consumer).primary_key())
                    .col(big_integer(ConsumerCheckpoints::Seq))
                    .col(timestamp_with_time_zone(ConsumerCheckpoints::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(ConsumerCheckpoints::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Handoffs::Table).if_exists().to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Handoffs {
    Table,
    Id,
    ReferralId,
    ReferenceCode,
    FromAgencyId,
    ToAgencyId,
    ToAgencyKind,
    Purpose,
    State,
    Version,
    RuleId,
    RuleSetVersion,
    Checklist,
    AcknowledgeBy,
    DeliveredAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ConsumerCheckpoints {
    Table,
    Consumer,
    Seq,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Referrals {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Agencies {
    Table,
    Id,
}
