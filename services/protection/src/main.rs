//! `refnet-protection`: the WitnessProtectionService alone, for production (PostgreSQL);
//! the same as `refnet protection`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    refnet_core::exit::code(
        refnet_protection::run(refnet_core::server::StandaloneArgs::parse()).await,
    )
}
