//! `refnet-protection`: the WitnessProtectionService alone, for production (PostgreSQL).

use clap::Parser;
use refnet_core::server::{StandaloneArgs, run_standalone};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = StandaloneArgs::parse();
    refnet_core::exit::code(
        run_standalone(args, &[refnet_protection::SERVICE_NAME], |ctx, routes| {
            routes.add_service(refnet_protection::service(ctx));
            refnet_protection::background(ctx)
        })
        .await,
    )
}
