//! What makes a handoff happen once moves out of `rule_set_version` into its own
//! column, `route_key`: the rule-set version for the worker's handoffs (once per
//! referral, agency kind and rule set, as before), `manual:AGENCY:KEY` for one made
//! by hand, `second-choice:ID` and `reassigned:ID` for those made from another.
//! `rule_set_version` then says, on every handoff, which rule set was in force
//! when it was made. Rows from before keep their values (`route_key` copies
//! `rule_set_version`), so no handoff is made twice.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Handoffs {
    Table,
    RouteKey,
}

/// Moves the unique index to `column`, in one batch (on SQLite the statements
/// of a migration must run on one connection).
async fn unique_on(manager: &SchemaManager<'_>, column: &str) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(&format!(
            "DROP INDEX ux_handoffs_route_once;\n\
             CREATE UNIQUE INDEX ux_handoffs_route_once ON handoffs (referral_id, to_agency_kind, {column})"
        ))
        .await
        .map(|_| ())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Handoffs::Table)
                    .add_column(string(Handoffs::RouteKey).default(""))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared("UPDATE handoffs SET route_key = rule_set_version")
            .await?;
        unique_on(manager, "route_key").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        unique_on(manager, "rule_set_version").await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Handoffs::Table)
                    .drop_column(Handoffs::RouteKey)
                    .to_owned(),
            )
            .await
    }
}
