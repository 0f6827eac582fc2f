//! `refnet-routing`: the RoutingService and its worker alone, for production (PostgreSQL);
//! the same as `refnet routing`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    refnet_core::exit::code(refnet_routing::run(refnet_core::server::StandaloneArgs::parse()).await)
}
