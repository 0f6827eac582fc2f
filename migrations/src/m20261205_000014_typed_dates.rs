//! Dates stored as dates: a subject's date of birth and a protection
//! measure's start and end (an open-ended measure has no end: NULL, where it
//! was an empty string). On PostgreSQL the columns become `date`; SQLite keeps
//! ISO-8601 text (the form sea-orm reads and writes dates in) and only the
//! empty strings become NULL.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const POSTGRES_UP: &[&str] = &[
    "ALTER TABLE subjects ALTER COLUMN date_of_birth TYPE date USING NULLIF(date_of_birth, '')::date",
    "ALTER TABLE protection_measures ALTER COLUMN starts_on TYPE date USING starts_on::date",
    "ALTER TABLE protection_measures ALTER COLUMN ends_on DROP NOT NULL",
    "ALTER TABLE protection_measures ALTER COLUMN ends_on TYPE date USING NULLIF(ends_on, '')::date",
];

/// SQLite cannot drop NOT NULL in place: the end date moves to a new
/// nullable column. The statements run as one batch on one connection.
const SQLITE_UP: &[&str] = &[
    "UPDATE subjects SET date_of_birth = NULL WHERE date_of_birth = ''",
    "ALTER TABLE protection_measures ADD COLUMN ends_on_date TEXT NULL",
    "UPDATE protection_measures SET ends_on_date = NULLIF(ends_on, '')",
    "ALTER TABLE protection_measures DROP COLUMN ends_on",
    "ALTER TABLE protection_measures RENAME COLUMN ends_on_date TO ends_on",
];

const POSTGRES_DOWN: &[&str] = &[
    "ALTER TABLE protection_measures ALTER COLUMN ends_on TYPE varchar USING COALESCE(ends_on::text, '')",
    "ALTER TABLE protection_measures ALTER COLUMN ends_on SET NOT NULL",
    "ALTER TABLE protection_measures ALTER COLUMN starts_on TYPE varchar USING starts_on::text",
    "ALTER TABLE subjects ALTER COLUMN date_of_birth TYPE varchar USING date_of_birth::text",
];

const SQLITE_DOWN: &[&str] = &[
    "ALTER TABLE protection_measures ADD COLUMN ends_on_text TEXT NOT NULL DEFAULT ''",
    "UPDATE protection_measures SET ends_on_text = COALESCE(ends_on, '')",
    "ALTER TABLE protection_measures DROP COLUMN ends_on",
    "ALTER TABLE protection_measures RENAME COLUMN ends_on_text TO ends_on",
];

async fn run(manager: &SchemaManager<'_>, postgres: &[&str], sqlite: &[&str]) -> Result<(), DbErr> {
    let statements = match manager.get_database_backend() {
        DatabaseBackend::Postgres => postgres,
        _ => sqlite,
    };
    let db = manager.get_connection();
    match manager.get_database_backend() {
        DatabaseBackend::Postgres => {
            for statement in statements {
                db.execute_unprepared(statement).await?;
            }
        }
        _ => {
            db.execute_unprepared(&statements.join(";\n")).await?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, POSTGRES_UP, SQLITE_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, POSTGRES_DOWN, SQLITE_DOWN).await
    }
}
