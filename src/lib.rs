//! refnet: multi-agency referral messaging for Kenya's National Referral
//! Mechanism for victims of trafficking in persons.
//!
//! This root crate is the `refnet` binary: the command line ([`cli`]) and
//! [`serve_all`], which mounts every service on one port (the embedded default
//! on SQLite). Each service also has its own crate and binary under `services/`.

pub mod cli;
mod database;
pub mod demo;
mod files;
mod keys;
mod registry;
mod web;

use std::future::Future;

use refnet_core::AppContext;
use tokio::net::TcpListener;
use tonic::service::Routes;

/// Serves every refnet service on `listener` until `shutdown` resolves, with
/// the routing and deadline workers (unless configured off), the retention
/// worker (unless its period is 0) and the metrics sampler running beside them.
pub async fn serve_all(
    ctx: &AppContext,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut background = refnet_routing::background(ctx)?;
    background.extend(refnet_intake::background(ctx));
    background.extend(refnet_protection::background(ctx));
    let mut routes = Routes::builder();
    routes
        .add_service(refnet_intake::service(ctx))
        .add_service(refnet_intake::audit_service(ctx))
        .add_service(refnet_routing::service(ctx))
        .add_service(refnet_protection::service(ctx))
        .add_service(refnet_statistics::service(ctx));
    let served = refnet_core::server::serve(
        ctx,
        routes.routes(),
        &[
            refnet_intake::SERVICE_NAME,
            refnet_intake::AUDIT_SERVICE_NAME,
            refnet_routing::SERVICE_NAME,
            refnet_protection::SERVICE_NAME,
            refnet_statistics::SERVICE_NAME,
        ],
        listener,
        shutdown,
    )
    .await;
    // Workers stop between steps; they get the grace period to finish one.
    ctx.begin_shutdown();
    let grace = std::time::Duration::from_secs(ctx.config().shutdown_grace_seconds);
    let joined = tokio::time::timeout(grace, async {
        for task in background {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "background task failed");
            }
        }
    })
    .await;
    if joined.is_err() {
        tracing::warn!("workers did not stop within the grace period");
    }
    Ok(served?)
}
