//! Witness protection: requests to the WPA and the measures in force, and the
//! subject's protected state (the pseudonym every viewer but the WPA sees).
//! Free text (grounds, assessments, WPA notes, measure details) is sealed under
//! the subject's data key like identity.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Subjects::Table)
                    .add_column(string_null(Subjects::ProtectedPseudonym))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProtectionRequests::Table)
                    .if_not_exists()
                    .col(uuid(ProtectionRequests::Id).primary_key())
                    .col(uuid(ProtectionRequests::ReferralId))
                    .col(uuid(ProtectionRequests::SubjectId))
                    .col(string(ProtectionRequests::ReferenceCode))
                    .col(string(ProtectionRequests::RequesterAgencyId))
                    .col(string(ProtectionRequests::RequesterOfficer))
                    .col(string(ProtectionRequests::IdempotencyKey))
                    .col(string(ProtectionRequests::RequestDigest))
                    .col(string(ProtectionRequests::State))
                    .col(big_integer(ProtectionRequests::Version))
                    .col(string(ProtectionRequests::Urgency))
                    .col(text(ProtectionRequests::MeasuresRequested))
                    .col(text(ProtectionRequests::InterimMeasures))
                    .col(binary(ProtectionRequests::SealedCt))
                    .col(string_null(ProtectionRequests::Pseudonym))
                    .col(string_null(ProtectionRequests::PseudonymKey))
                    .col(timestamp_with_time_zone(ProtectionRequests::SubmittedAt))
                    .col(timestamp_with_time_zone_null(ProtectionRequests::DecidedAt))
                    .col(timestamp_with_time_zone_null(ProtectionRequests::ClosedAt))
                    .col(timestamp_with_time_zone(ProtectionRequests::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_protection_requests_referral")
                            .from(ProtectionRequests::Table, ProtectionRequests::ReferralId)
                            .to(Referrals::Table, Referrals::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // A pseudonym is unique system-wide (compared case- and space-insensitively).
        manager
            .create_index(
                Index::create()
                    .name("ux_protection_pseudonym")
                    .table(ProtectionRequests::Table)
                    .col(ProtectionRequests::PseudonymKey)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_protection_idempotency")
                    .table(ProtectionRequests::Table)
                    .col(ProtectionRequests::RequesterAgencyId)
                    .col(ProtectionRequests::IdempotencyKey)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_protection_referral")
                    .table(ProtectionRequests::Table)
                    .col(ProtectionRequests::ReferralId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProtectionMeasures::Table)
                    .if_not_exists()
                    .col(uuid(ProtectionMeasures::Id).primary_key())
                    .col(uuid(ProtectionMeasures::RequestId))
                    .col(string(ProtectionMeasures::Measure))
                    .col(string(ProtectionMeasures::StartsOn))
                    .col(string(ProtectionMeasures::EndsOn))
                    .col(binary(ProtectionMeasures::DetailsCt))
                    .col(string(ProtectionMeasures::RecordedBy))
                    .col(timestamp_with_time_zone(ProtectionMeasures::RecordedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_protection_measures_request")
                            .from(ProtectionMeasures::Table, ProtectionMeasures::RequestId)
                            .to(ProtectionRequests::Table, ProtectionRequests::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_protection_measures_request")
                    .table(ProtectionMeasures::Table)
                    .col(ProtectionMeasures::RequestId)
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
                    .table(ProtectionMeasures::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(ProtectionRequests::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Subjects::Table)
                    .drop_column(Subjects::ProtectedPseudonym)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Subjects {
    Table,
    ProtectedPseudonym,
}

#[derive(DeriveIden)]
enum Referrals {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum ProtectionRequests {
    Table,
    Id,
    ReferralId,
    SubjectId,
    ReferenceCode,
    RequesterAgencyId,
    RequesterOfficer,
    IdempotencyKey,
    RequestDigest,
    State,
    Version,
    Urgency,
    MeasuresRequested,
    InterimMeasures,
    SealedCt,
    Pseudonym,
    PseudonymKey,
    SubmittedAt,
    DecidedAt,
    ClosedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ProtectionMeasures {
    Table,
    Id,
    RequestId,
    Measure,
    StartsOn,
    EndsOn,
    DetailsCt,
    RecordedBy,
    RecordedAt,
}
