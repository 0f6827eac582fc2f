//! Notifications that reach people outside refnet: each agency's webhook
//! (URL, sealed HMAC key, on or off) and the outbox of deliveries, written in
//! the transaction that records the notification, so a delivery survives a
//! restart and is retried until the receiver acknowledges it; and the
//! notification kinds each officer has switched off for themselves.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Webhooks::Table)
                    .col(string(Webhooks::AgencyId).primary_key())
                    .col(string(Webhooks::Url))
                    .col(text(Webhooks::SecretCt))
                    .col(boolean(Webhooks::Enabled))
                    .col(string(Webhooks::UpdatedBy))
                    .col(timestamp_with_time_zone(Webhooks::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookOutbox::Table)
                    .col(uuid(WebhookOutbox::Id).primary_key())
                    .col(string(WebhookOutbox::AgencyId))
                    .col(uuid_uniq(WebhookOutbox::NotificationId))
                    .col(text(WebhookOutbox::Payload))
                    .col(integer(WebhookOutbox::Attempts))
                    .col(timestamp_with_time_zone(WebhookOutbox::NextAttemptAt))
                    .col(timestamp_with_time_zone_null(WebhookOutbox::DeliveredAt))
                    .col(timestamp_with_time_zone_null(WebhookOutbox::FailedAt))
                    .col(string_null(WebhookOutbox::LastError))
                    .col(timestamp_with_time_zone(WebhookOutbox::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NotificationMutes::Table)
                    .col(string(NotificationMutes::AgencyId))
                    .col(string(NotificationMutes::OfficerId))
                    .col(string(NotificationMutes::Kind))
                    .col(timestamp_with_time_zone(NotificationMutes::MutedAt))
                    .primary_key(
                        Index::create()
                            .col(NotificationMutes::AgencyId)
                            .col(NotificationMutes::OfficerId)
                            .col(NotificationMutes::Kind),
                    )
                    .to_owned(),
            )
            .await?;
        // The dispatcher's walk: pending deliveries, earliest due first.
        manager
            .create_index(
                Index::create()
                    .name("ix_webhook_outbox_due")
                    .table(WebhookOutbox::Table)
                    .col(WebhookOutbox::DeliveredAt)
                    .col(WebhookOutbox::FailedAt)
                    .col(WebhookOutbox::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_webhook_outbox_agency")
                    .table(WebhookOutbox::Table)
                    .col(WebhookOutbox::AgencyId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(NotificationMutes::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(WebhookOutbox::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Webhooks::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    AgencyId,
    Url,
    SecretCt,
    Enabled,
    UpdatedBy,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookOutbox {
    Table,
    Id,
    AgencyId,
    NotificationId,
    Payload,
    Attempts,
    NextAttemptAt,
    DeliveredAt,
    FailedAt,
    LastError,
    CreatedAt,
}

#[derive(DeriveIden)]
enum NotificationMutes {
    Table,
    AgencyId,
    OfficerId,
    Kind,
    MutedAt,
}
