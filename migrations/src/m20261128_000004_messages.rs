//! Messages on a referral's thread. Bodies are free text that may name the
//! subject, so they are sealed under the subject's data key like identity.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .if_not_exists()
                    .col(uuid(Messages::Id).primary_key())
                    .col(uuid(Messages::ReferralId))
                    .col(string(Messages::AuthorAgencyId))
                    .col(string(Messages::AuthorOfficer))
                    .col(binary(Messages::BodyCt))
                    .col(string(Messages::IdempotencyKey))
                    .col(timestamp_with_time_zone(Messages::PostedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_messages_referral")
                            .from(Messages::Table, Messages::ReferralId)
                            .to(Referrals::Table, Referrals::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_messages_idempotency")
                    .table(Messages::Table)
                    .col(Messages::ReferralId)
                    .col(Messages::AuthorAgencyId)
                    .col(Messages::IdempotencyKey)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Messages::Table).if_exists().to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    ReferralId,
    AuthorAgencyId,
    AuthorOfficer,
    BodyCt,
    IdempotencyKey,
    PostedAt,
}

#[derive(DeriveIden)]
enum Referrals {
    Table,
    Id,
}
