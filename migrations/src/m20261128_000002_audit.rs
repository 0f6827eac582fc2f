//! The audit log: append-only and hash-chained. `audit_head` holds the last
//! sequence number and hash, so appends serialise on one row and a deleted
//! tail is detected.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .if_not_exists()
                    .col(big_integer(AuditLog::Seq).primary_key())
                    .col(uuid_uniq(AuditLog::Id))
                    .col(binary(AuditLog::PrevHash))
                    .col(binary(AuditLog::Hash))
                    .col(string(AuditLog::OfficerId))
                    .col(string(AuditLog::AgencyId))
                    .col(string(AuditLog::AgencyKind))
                    .col(text(AuditLog::Roles))
                    .col(string(AuditLog::Rpc))
                    .col(uuid_null(AuditLog::ReferralId))
                    .col(text(AuditLog::FieldPaths))
                    .col(string_null(AuditLog::TraceId))
                    .col(timestamp_with_time_zone(AuditLog::OccurredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_log_referral")
                    .table(AuditLog::Table)
                    .col(AuditLog::ReferralId)
                    .col(AuditLog::Seq)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditHead::Table)
                    .if_not_exists()
                    .col(integer(AuditHead::Id).primary_key())
                    .col(big_integer(AuditHead::Seq))
                    .col(binary(AuditHead::Hash))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(AuditHead::Table)
                    .columns([AuditHead::Id, AuditHead::Seq, AuditHead::Hash])
                    .values_panic([1.into(), 0i64.into(), vec![0u8; 32].into()])
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditHead::Table).if_exists().to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AuditLog::Table).if_exists().to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Seq,
    Id,
    PrevHash,
    Hash,
    OfficerId,
    AgencyId,
    AgencyKind,
    Roles,
    Rpc,
    ReferralId,
    FieldPaths,
    TraceId,
    OccurredAt,
}

#[derive(DeriveIden)]
enum AuditHead {
    Table,
    Id,
    Seq,
    Hash,
}
