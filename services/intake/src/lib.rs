//! IntakeService: a desk officer files a referral, reads it back, lists the
//! referrals their agency is party to, amends it and records consent.
//!
//! Intake owns the subjects, referrals and blind-index tables. [`service`]
//! builds the tonic service that `refnet serve` mounts beside the others and
//! that this crate's own binary serves alone.

pub mod audit_service;
pub mod changes;
pub mod entities;
pub mod erase;
pub mod filing;
pub mod listing;
pub mod seed;
pub mod service;
pub mod store;

use refnet_api::v1::{
    audit_service_server::AuditServiceServer, intake_service_server::IntakeServiceServer,
};
use refnet_core::AppContext;

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "refnet.v1.IntakeService";

/// The audit service, served beside intake (intake owns the referrals it audits).
pub const AUDIT_SERVICE_NAME: &str = "refnet.v1.AuditService";

/// The IntakeService over `ctx`, ready to mount.
pub fn service(ctx: &AppContext) -> IntakeServiceServer<service::Intake> {
    IntakeServiceServer::new(service::Intake::new(ctx.clone()))
        .max_decoding_message_size(ctx.config().max_request_bytes)
}

/// The AuditService over `ctx`, ready to mount.
pub fn audit_service(ctx: &AppContext) -> AuditServiceServer<audit_service::Audit> {
    AuditServiceServer::new(audit_service::Audit::new(ctx.clone()))
        .max_decoding_message_size(ctx.config().max_request_bytes)
}

/// Starts the background task of a process serving IntakeService: the
/// retention worker (when `retention.erase_closed_after_days` is not 0). It
/// stops between steps once [`AppContext::begin_shutdown`] is called.
pub fn background(ctx: &AppContext) -> Vec<tokio::task::JoinHandle<()>> {
    if ctx.config().retention.erase_closed_after_days == 0 {
        return Vec::new();
    }
    let stop = {
        let ctx = ctx.clone();
        async move { ctx.shutting_down().await }
    };
    vec![tokio::spawn(
        erase::RetentionWorker::new(ctx.clone()).run(stop),
    )]
}

/// Runs the IntakeService and the AuditService alone until SIGTERM or Ctrl-C (`refnet-intake`,
/// `refnet intake`): production, on PostgreSQL.
pub async fn run(args: refnet_core::server::StandaloneArgs) -> anyhow::Result<()> {
    use refnet_core::server::run_standalone;
    run_standalone(
        "refnet-intake",
        args,
        &[SERVICE_NAME, AUDIT_SERVICE_NAME],
        |ctx, routes| {
            routes
                .add_service(service(ctx))
                .add_service(audit_service(ctx));
            Ok(background(ctx))
        },
    )
    .await
}
