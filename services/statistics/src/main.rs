//! `refnet-statistics`: the StatisticsService alone, for production (PostgreSQL);
//! the same as `refnet statistics`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    refnet_core::exit::code(
        refnet_statistics::run(refnet_core::server::StandaloneArgs::parse()).await,
    )
}
