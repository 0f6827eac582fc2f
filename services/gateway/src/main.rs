//! `refnet-gateway`: one TLS entry point for desks in front of the services;
//! the same as `refnet gateway`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    refnet_core::exit::code(refnet_gateway::run(refnet_gateway::GatewayCommand::parse()).await)
}
