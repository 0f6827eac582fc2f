//! refnet's schema, as sea-orm migrations that run unchanged on PostgreSQL and
//! SQLite. `refnet migrate` applies them, and every server applies them at
//! start-up unless told not to.
//!
//! Column types are chosen to mean the same on both engines: UUIDs, binary
//! ciphertexts, timestamps with time zone, and JSON kept as text so that no
//! engine-specific JSON operator ever creeps into a query.

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_foundation;
mod m20261128_000002_audit;
mod m20261128_000003_routing;
mod m20261128_000004_messages;
mod m20261128_000005_handoff_decisions;
mod m20261128_000006_protection;
mod m20261129_000007_growth_indexes;
mod m20261130_000008_officer_suspensions;
mod m20261130_000009_key_roots;
mod m20261130_000010_erasure;
mod m20261205_000011_triage;
mod m20261205_000012_protection_deadlines;
mod m20261205_000013_webhooks;
mod m20261205_000014_typed_dates;
mod m20261205_000015_route_key;

/// Every migration, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_foundation::Migration),
            Box::new(m20261128_000002_audit::Migration),
            Box::new(m20261128_000003_routing::Migration),
            Box::new(m20261128_000004_messages::Migration),
            Box::new(m20261128_000005_handoff_decisions::Migration),
            Box::new(m20261128_000006_protection::Migration),
            Box::new(m20261129_000007_growth_indexes::Migration),
            Box::new(m20261130_000008_officer_suspensions::Migration),
            Box::new(m20261130_000009_key_roots::Migration),
            Box::new(m20261130_000010_erasure::Migration),
            Box::new(m20261205_000011_triage::Migration),
            Box::new(m20261205_000012_protection_deadlines::Migration),
            Box::new(m20261205_000013_webhooks::Migration),
            Box::new(m20261205_000014_typed_dates::Migration),
            Box::new(m20261205_000015_route_key::Migration),
        ]
    }
}
