//! `refnet-intake`: the IntakeService alone, for production (PostgreSQL).

use clap::Parser;
use refnet_core::server::{StandaloneArgs, run_standalone};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = StandaloneArgs::parse();
    refnet_core::exit::code(
        run_standalone(
            args,
            &[
                refnet_intake::SERVICE_NAME,
                refnet_intake::AUDIT_SERVICE_NAME,
            ],
            |ctx, routes| {
                routes
                    .add_service(refnet_intake::service(ctx))
                    .add_service(refnet_intake::audit_service(ctx));
                refnet_intake::background(ctx)
            },
        )
        .await,
    )
}
