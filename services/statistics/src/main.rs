//! `refnet-statistics`: the StatisticsService alone, for production (PostgreSQL).

use clap::Parser;
use refnet_core::server::{StandaloneArgs, run_standalone};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = StandaloneArgs::parse();
    refnet_core::exit::code(
        run_standalone(args, &[refnet_statistics::SERVICE_NAME], |ctx, routes| {
            routes.add_service(refnet_statistics::service(ctx));
            Vec::new()
        })
        .await,
    )
}
