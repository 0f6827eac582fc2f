//! `refnet-routing`: the RoutingService and the routing worker, for production (PostgreSQL).

use clap::Parser;
use refnet_core::server::{StandaloneArgs, run_standalone};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = StandaloneArgs::parse();
    run_standalone(args, &[refnet_routing::SERVICE_NAME], |ctx, routes| {
        routes.add_service(refnet_routing::service(ctx));
        if !ctx.config().routing_worker {
            return Vec::new();
        }
        match refnet_routing::rules(ctx) {
            Ok(rules) => {
                // Both stop between steps when shutdown begins; every step is
                // one transaction, so its checkpoint is committed or not at all.
                let stop = |ctx: &refnet_core::AppContext| {
                    let ctx = ctx.clone();
                    async move { ctx.shutting_down().await }
                };
                let worker = refnet_routing::worker::RoutingWorker::new(ctx.clone(), rules);
                let deadlines = refnet_routing::deadlines::DeadlineWorker::new(ctx.clone());
                vec![
                    tokio::spawn(worker.run(stop(ctx))),
                    tokio::spawn(deadlines.run(stop(ctx))),
                ]
            }
            Err(e) => {
                tracing::error!(error = %e, "routing rules invalid; worker not started");
                std::process::exit(2);
            }
        }
    })
    .await
}
