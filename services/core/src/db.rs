//! Database connections and migrations.
//!
//! SQLite (the embedded default) runs in WAL mode with `synchronous=NORMAL`
//! and foreign keys on; PostgreSQL is production. Migrations on PostgreSQL run
//! inside one transaction holding an advisory lock, so replicas starting
//! together apply them once and never half-way.

use std::time::Duration;

use refnet_migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr,
    Statement, TransactionTrait,
};

/// An arbitrary, fixed key for the migration advisory lock.
const MIGRATION_LOCK: i64 = 0x7265_666e_6574; // "refnet"

/// Connects to `url`.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let sqlite = url.starts_with("sqlite:");
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(if sqlite { 8 } else { 32 })
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        // Per connection, every connection of the pool: a PRAGMA run once
        // through the pool would set only the connection that ran it.
        .map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5))
                // Zero what a change frees inside the pages it writes anyway
                // (no extra I/O): an erased subject's old key does not linger
                // in the page beside its replacement.
                .pragma("secure_delete", "FAST")
        });
    Database::connect(options).await
}

/// After an erasure: on SQLite, checkpoints the write-ahead log into the
/// database file and truncates it, so the log's older copies of the changed
/// pages (which still hold the erased values) are gone from disk too. A
/// no-op on PostgreSQL, whose dead row versions and WAL are reclaimed by
/// autovacuum and WAL recycling (SECURITY.md: erasure and backups).
pub async fn purge_freed(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() != DatabaseBackend::Sqlite {
        return Ok(());
    }
    let row = db
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Sqlite,
            "PRAGMA wal_checkpoint(TRUNCATE)",
        ))
        .await?;
    // (busy, log frames, frames checkpointed): busy = 1 when readers kept
    // part of the log; the next checkpoint finishes it.
    if let Some(row) = row
        && row.try_get_by_index::<i32>(0).unwrap_or(0) != 0
    {
        tracing::warn!(
            "checkpoint after erasure incomplete (readers active); the next one finishes it"
        );
    }
    Ok(())
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            let txn = db.begin().await?;
            txn.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [MIGRATION_LOCK.into()],
            ))
            .await?;
            Migrator::up(&txn, None).await?;
            txn.commit().await
        }
        _ => Migrator::up(db, None).await,
    }
}

/// Runs `work` in one write transaction: committed when it returns `Ok`,
/// rolled back otherwise.
///
/// On SQLite the transaction starts `IMMEDIATE`, taking the write lock at
/// `BEGIN`: a deferred transaction that reads first and writes later would
/// fail with "database is locked" when another writer got in between, where
/// an immediate one waits its turn (busy timeout). PostgreSQL ignores the mode.
pub async fn write_txn<T, F>(db: &DatabaseConnection, work: F) -> Result<T, crate::ServiceError>
where
    T: Send,
    F: for<'c> FnOnce(
            &'c sea_orm::DatabaseTransaction,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, crate::ServiceError>> + Send + 'c>,
        > + Send,
{
    use sea_orm::{SqliteTransactionMode, TransactionOptions};
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?;
    match work(&txn).await {
        Ok(value) => {
            txn.commit().await?;
            Ok(value)
        }
        Err(err) => {
            if let Err(rollback) = txn.rollback().await {
                tracing::warn!(error = %rollback, "rollback failed");
            }
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pooled connection runs with the pragmas, not only the first.
    #[tokio::test]
    async fn every_sqlite_connection_has_the_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = connect(&url).await.unwrap();
        // Open transactions hold distinct connections.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(db.begin().await.unwrap());
        }
        for txn in &held {
            let pragma = |sql: &'static str| async move {
                txn.query_one_raw(Statement::from_string(DatabaseBackend::Sqlite, sql))
                    .await
                    .unwrap()
                    .unwrap()
                    .try_get_by_index::<i64>(0)
                    .unwrap()
            };
            assert_eq!(pragma("PRAGMA synchronous").await, 1, "NORMAL");
            assert_eq!(pragma("PRAGMA foreign_keys").await, 1);
        }
    }
}
