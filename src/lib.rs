//! refnet: multi-agency referral messaging for Kenya's National Referral
//! Mechanism for victims of trafficking in persons.
//!
//! This root crate is the `refnet` binary: the command line ([`cli`]) and
//! [`serve_all`], which mounts every service on one port (the embedded default
//! on SQLite). Each service also has its own crate and binary under `services/`.

pub mod cli;
pub mod demo;

use std::future::Future;

use refnet_core::AppContext;
use tokio::net::TcpListener;
use tonic::service::Routes;

/// Serves every refnet service on `listener` until `shutdown` resolves, with
/// the routing worker running beside them (unless configured off).
pub async fn serve_all(
    ctx: &AppContext,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = if ctx.config().routing_worker {
        let worker =
            refnet_routing::worker::RoutingWorker::new(ctx.clone(), refnet_routing::rules(ctx)?);
        let mut stopped_routing = stopped.clone();
        let mut stopped_deadlines = stopped.clone();
        let deadlines = refnet_routing::deadlines::DeadlineWorker::new(ctx.clone());
        Some(tokio::spawn(async move {
            tokio::join!(
                worker.run(async move {
                    let _ = stopped_routing.changed().await;
                }),
                deadlines.run(async move {
                    let _ = stopped_deadlines.changed().await;
                }),
            );
        }))
    } else {
        None
    };
    let mut routes = Routes::builder();
    routes
        .add_service(refnet_intake::service(ctx))
        .add_service(refnet_intake::audit_service(ctx))
        .add_service(refnet_routing::service(ctx))
        .add_service(refnet_protection::service(ctx));
    let served = refnet_core::server::serve(
        ctx,
        routes.routes(),
        &[
            refnet_intake::SERVICE_NAME,
            refnet_intake::AUDIT_SERVICE_NAME,
            refnet_routing::SERVICE_NAME,
            refnet_protection::SERVICE_NAME,
        ],
        listener,
        shutdown,
    )
    .await;
    let _ = stop.send(true);
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    Ok(served?)
}
