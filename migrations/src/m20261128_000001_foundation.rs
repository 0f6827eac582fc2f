//! The foundation schema: agencies, subjects (identity and location sealed),
//! the blind index, referrals, who is party to them, and the event log.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Agencies::Table)
                    .if_not_exists()
                    .col(string(Agencies::Id).primary_key())
                    .col(string(Agencies::Kind))
                    .col(string(Agencies::Name))
                    .col(string_null(Agencies::County))
                    .col(boolean(Agencies::Active).default(true))
                    .col(timestamp_with_time_zone(Agencies::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Subjects::Table)
                    .if_not_exists()
                    .col(uuid(Subjects::Id).primary_key())
                    .col(string(Subjects::KeyId))
                    .col(binary(Subjects::WrappedKey))
                    .col(binary(Subjects::IdentityCt))
                    .col(binary(Subjects::LocationCt))
                    .col(string_null(Subjects::DateOfBirth))
                    .col(string(Subjects::Sex))
                    .col(string(Subjects::Nationality))
                    .col(string(Subjects::CountyOfOrigin))
                    .col(string(Subjects::SubCountyOfOrigin))
                    .col(text(Subjects::Languages))
                    .col(boolean(Subjects::IsChild))
                    .col(timestamp_with_time_zone(Subjects::CreatedAt))
                    .col(timestamp_with_time_zone(Subjects::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Referrals::Table)
                    .if_not_exists()
                    .col(uuid(Referrals::Id).primary_key())
                    .col(string_uniq(Referrals::ReferenceCode))
                    .col(big_integer(Referrals::Version))
                    .col(string(Referrals::Status))
                    .col(uuid(Referrals::SubjectId))
                    .col(string(Referrals::FilingAgencyId))
                    .col(string(Referrals::FilingAgencyKind))
                    .col(string(Referrals::FiledByOfficer))
                    .col(string(Referrals::Urgency))
                    .col(string(Referrals::Classification))
                    .col(string(Referrals::IdentifiedBy))
                    .col(string(Referrals::County))
                    .col(boolean(Referrals::IsChild))
                    .col(text(Referrals::CaseFacts))
                    .col(text(Referrals::Needs))
                    .col(text(Referrals::MissingElements))
                    .col(text(Referrals::Consent))
                    .col(binary(Referrals::Sealed))
                    .col(string(Referrals::IdempotencyKey))
                    .col(binary(Referrals::RequestDigest))
                    .col(timestamp_with_time_zone(Referrals::FiledAt))
                    .col(timestamp_with_time_zone(Referrals::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_referrals_subject")
                            .from(Referrals::Table, Referrals::SubjectId)
                            .to(Subjects::Table, Subjects::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_referrals_filing_agency")
                            .from(Referrals::Table, Referrals::FilingAgencyId)
                            .to(Agencies::Table, Agencies::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_referrals_idempotency")
                    .table(Referrals::Table)
                    .col(Referrals::FilingAgencyId)
                    .col(Referrals::IdempotencyKey)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_referrals_subject")
                    .table(Referrals::Table)
                    .col(Referrals::SubjectId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SubjectIdentifiers::Table)
                    .if_not_exists()
                    .col(binary(SubjectIdentifiers::Digest))
                    .col(uuid(SubjectIdentifiers::ReferralId))
                    .col(string(SubjectIdentifiers::Kind))
                    .col(uuid(SubjectIdentifiers::SubjectId))
                    .primary_key(
                        Index::create()
                            .col(SubjectIdentifiers::Digest)
                            .col(SubjectIdentifiers::ReferralId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_subject_identifiers_referral")
                            .from(SubjectIdentifiers::Table, SubjectIdentifiers::ReferralId)
                            .to(Referrals::Table, Referrals::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_subject_identifiers_referral")
                    .table(SubjectIdentifiers::Table)
                    .col(SubjectIdentifiers::ReferralId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ReferralParties::Table)
                    .if_not_exists()
                    .col(uuid(ReferralParties::ReferralId))
                    .col(string(ReferralParties::AgencyId))
                    .col(string(ReferralParties::Relation))
                    .col(timestamp_with_time_zone(ReferralParties::Since))
                    .primary_key(
                        Index::create()
                            .col(ReferralParties::ReferralId)
                            .col(ReferralParties::AgencyId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_referral_parties_referral")
                            .from(ReferralParties::Table, ReferralParties::ReferralId)
                            .to(Referrals::Table, Referrals::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_referral_parties_agency")
                            .from(ReferralParties::Table, ReferralParties::AgencyId)
                            .to(Agencies::Table, Agencies::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_referral_parties_agency")
                    .table(ReferralParties::Table)
                    .col(ReferralParties::AgencyId)
                    .col(ReferralParties::ReferralId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .if_not_exists()
                    .col(pk_auto(Events::Seq).big_integer())
                    .col(uuid_uniq(Events::Id))
                    .col(uuid_null(Events::ReferralId))
                    .col(string(Events::Kind))
                    .col(text(Events::Payload))
                    .col(string_null(Events::AgencyId))
                    .col(string_null(Events::OfficerId))
                    .col(string_null(Events::TraceContext))
                    .col(timestamp_with_time_zone(Events::OccurredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_events_referral")
                    .table(Events::Table)
                    .col(Events::ReferralId)
                    .col(Events::Seq)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Events::Table.into_iden(),
            ReferralParties::Table.into_iden(),
            SubjectIdentifiers::Table.into_iden(),
            Referrals::Table.into_iden(),
            Subjects::Table.into_iden(),
            Agencies::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Agencies {
    Table,
    Id,
    Kind,
    Name,
    County,
    Active,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Subjects {
    Table,
    Id,
    KeyId,
    WrappedKey,
    IdentityCt,
    LocationCt,
    DateOfBirth,
    Sex,
    Nationality,
    CountyOfOrigin,
    SubCountyOfOrigin,
    Languages,
    IsChild,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Referrals {
    Table,
    Id,
    ReferenceCode,
    Version,
    Status,
    SubjectId,
    FilingAgencyId,
    FilingAgencyKind,
    FiledByOfficer,
    Urgency,
    Classification,
    IdentifiedBy,
    County,
    IsChild,
    CaseFacts,
    Needs,
    MissingElements,
    Consent,
    Sealed,
    IdempotencyKey,
    RequestDigest,
    FiledAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SubjectIdentifiers {
    Table,
    Digest,
    ReferralId,
    Kind,
    SubjectId,
}

#[derive(DeriveIden)]
enum ReferralParties {
    Table,
    ReferralId,
    AgencyId,
    Relation,
    Since,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Seq,
    Id,
    ReferralId,
    Kind,
    Payload,
    AgencyId,
    OfficerId,
    TraceContext,
    OccurredAt,
}
