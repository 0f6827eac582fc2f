//! `refnet-routing`: the RoutingService and the routing worker, for production (PostgreSQL).

use clap::Parser;
use refnet_core::server::{StandaloneArgs, run_standalone};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = StandaloneArgs::parse();
    refnet_core::exit::code(
        run_standalone(args, &[refnet_routing::SERVICE_NAME], |ctx, routes| {
            routes.add_service(refnet_routing::service(ctx));
            match refnet_routing::background(ctx) {
                Ok(tasks) => tasks,
                Err(e) => {
                    tracing::error!(error = %e, "routing rules invalid; worker not started");
                    std::process::exit(2);
                }
            }
        })
        .await,
    )
}
