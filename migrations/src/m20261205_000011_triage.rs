//! Nothing ends silently: the triage list of referrals that wait for a
//! supervisor to route them (no rule routed them, a rule found no agency in
//! reach, every handoff was declined or withdrawn), each with its routing
//! deadline; notifications that are not about one handoff (a referral that
//! needs routing), carry a deadline, and are read or unread per officer;
//! and each handoff's next deadline (`due_at`), so a sender's list puts the
//! overdue first.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Triage::Table)
                    .col(uuid(Triage::ReferralId).primary_key())
                    .col(string(Triage::ReferenceCode))
                    .col(string(Triage::FilingAgencyId))
                    .col(string(Triage::Urgency))
                    .col(string(Triage::Reason))
                    .col(text(Triage::EndedHandoffs))
                    .col(timestamp_with_time_zone(Triage::Since))
                    .col(timestamp_with_time_zone(Triage::RouteBy))
                    .col(timestamp_with_time_zone_null(Triage::EscalatedAt))
                    .to_owned(),
            )
            .await?;
        // The supervisors' list (their agency, earliest deadline first) and
        // the deadline worker's walk.
        for (name, cols) in [
            (
                "ix_triage_agency",
                vec![Triage::FilingAgencyId, Triage::RouteBy],
            ),
            ("ix_triage_route_by", vec![Triage::RouteBy]),
        ] {
            let mut index = Index::create();
            index.name(name).table(Triage::Table);
            for c in cols {
                index.col(c);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Handoffs::Table)
                    .add_column(timestamp_with_time_zone_null(Handoffs::DueAt))
                    .to_owned(),
            )
            .await?;
        // The deadline the receiving agency must meet next: acknowledge-by
        // until acknowledged, then decide-by; none once decided or ended.
        let state = |s: &str| Expr::col(Handoffs::State).eq(s);
        for (due, condition) in [
            (
                Handoffs::AcknowledgeBy,
                Cond::any()
                    .add(state("HANDOFF_STATE_PENDING"))
                    .add(state("HANDOFF_STATE_DELIVERED"))
                    .add(
                        Cond::all()
                            .add(state("HANDOFF_STATE_ESCALATED"))
                            .add(Expr::col(Handoffs::AcknowledgedAt).is_null()),
                    ),
            ),
            (
                Handoffs::DecideBy,
                Cond::any().add(state("HANDOFF_STATE_ACKNOWLEDGED")).add(
                    Cond::all()
                        .add(state("HANDOFF_STATE_ESCALATED"))
                        .add(Expr::col(Handoffs::AcknowledgedAt).is_not_null()),
                ),
            ),
        ] {
            manager
                .exec_stmt(
                    Query::update()
                        .table(Handoffs::Table)
                        .value(Handoffs::DueAt, Expr::col(due))
                        .cond_where(condition)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("ix_handoffs_sent")
                    .table(Handoffs::Table)
                    .col(Handoffs::FromAgencyId)
                    .col(Handoffs::DueAt)
                    .col(Handoffs::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NotificationReads::Table)
                    .col(uuid(NotificationReads::NotificationId))
                    .col(string(NotificationReads::OfficerId))
                    .col(timestamp_with_time_zone(NotificationReads::ReadAt))
                    .primary_key(
                        Index::create()
                            .col(NotificationReads::NotificationId)
                            .col(NotificationReads::OfficerId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Notifications::Table)
                    .add_column(timestamp_with_time_zone_null(Notifications::DueBy))
                    .to_owned(),
            )
            .await?;
        // Referral-level notifications carry the nil handoff id, so the
        // referral joins the uniqueness key.
        manager
            .drop_index(
                Index::drop()
                    .name("ux_notifications_once")
                    .table(Notifications::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_notifications_once_per_referral")
                    .table(Notifications::Table)
                    .col(Notifications::ReferralId)
                    .col(Notifications::HandoffId)
                    .col(Notifications::Kind)
                    .col(Notifications::AgencyId)
                    .col(Notifications::Audience)
                    .col(Notifications::Detail)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ux_notifications_once_per_referral")
                    .table(Notifications::Table)
                    .to_owned(),
            )
            .await?;
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
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Notifications::Table)
                    .drop_column(Notifications::DueBy)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(NotificationReads::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ix_handoffs_sent")
                    .table(Handoffs::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Handoffs::Table)
                    .drop_column(Handoffs::DueAt)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Triage::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Triage {
    Table,
    ReferralId,
    ReferenceCode,
    FilingAgencyId,
    Urgency,
    Reason,
    EndedHandoffs,
    Since,
    RouteBy,
    EscalatedAt,
}

#[derive(DeriveIden)]
enum Handoffs {
    Table,
    Id,
    FromAgencyId,
    State,
    AcknowledgeBy,
    DecideBy,
    AcknowledgedAt,
    DueAt,
}

#[derive(DeriveIden)]
enum NotificationReads {
    Table,
    NotificationId,
    OfficerId,
    ReadAt,
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    ReferralId,
    HandoffId,
    Kind,
    AgencyId,
    Audience,
    Detail,
    DueBy,
}
