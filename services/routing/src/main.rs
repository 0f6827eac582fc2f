//! `refnet-routing`: the RoutingService and the routing worker, for production (PostgreSQL).

use clap::Parser;
use refnet_core::server::{StandaloneArgs, run_standalone};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = StandaloneArgs::parse();
    run_standalone(args, &[refnet_routing::SERVICE_NAME], |ctx, routes| {
        routes.add_service(refnet_routing::service(ctx));
        if ctx.config().routing_worker {
            match refnet_routing::rules(ctx) {
                Ok(rules) => {
                    let worker = refnet_routing::worker::RoutingWorker::new(ctx.clone(), rules);
                    // Stops with the process; every step is one transaction, so
                    // an interrupted step is simply handled again on restart.
                    tokio::spawn(worker.run(std::future::pending::<()>()));
                    let deadlines = refnet_routing::deadlines::DeadlineWorker::new(ctx.clone());
                    tokio::spawn(deadlines.run(std::future::pending::<()>()));
                }
                Err(e) => {
                    tracing::error!(error = %e, "routing rules invalid; worker not started");
                    std::process::exit(2);
                }
            }
        }
    })
    .await
}
