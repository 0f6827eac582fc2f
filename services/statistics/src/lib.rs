//! StatisticsService: de-identified, k-anonymous figures for the
//! counter-trafficking secretariat and agency supervisors, and the HTCDS
//! export (`refnet export htcds`).
//!
//! Statistics read only what is kept in clear (case facts, codes, the
//! subject's quasi-identifiers; [`records`]); they own no table. [`aggregate`]
//! groups and suppresses, [`export`] generalises case-level records until they
//! are k-anonymous.

pub mod aggregate;
pub mod export;
pub mod records;
pub mod service;

use refnet_api::v1::statistics_service_server::StatisticsServiceServer;
use refnet_core::AppContext;

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "refnet.v1.StatisticsService";

/// The StatisticsService over `ctx`, ready to mount.
pub fn service(ctx: &AppContext) -> StatisticsServiceServer<service::Statistics> {
    StatisticsServiceServer::new(service::Statistics::new(ctx.clone()))
        .max_decoding_message_size(ctx.config().max_request_bytes)
}

/// The HTCDS export of every referral filed since `since`, k-anonymous.
pub async fn export_htcds<C: sea_orm::ConnectionTrait>(
    db: &C,
    since: Option<chrono::DateTime<chrono::Utc>>,
    k: u32,
) -> refnet_core::ServiceResult<export::Export> {
    let records = records::load(db, &records::Scope::All, since, None).await?;
    Ok(export::anonymise(
        &records,
        usize::try_from(k).unwrap_or(usize::MAX),
    ))
}

/// Runs the StatisticsService alone until SIGTERM or Ctrl-C (`refnet-statistics`,
/// `refnet statistics`): production, on PostgreSQL.
pub async fn run(args: refnet_core::server::StandaloneArgs) -> anyhow::Result<()> {
    use refnet_core::server::run_standalone;
    run_standalone("refnet-statistics", args, &[SERVICE_NAME], |ctx, routes| {
        routes.add_service(service(ctx));
        Ok(Vec::new())
    })
    .await
}
