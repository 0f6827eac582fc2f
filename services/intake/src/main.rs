//! `refnet-intake`: the IntakeService and the AuditService alone, for production (PostgreSQL);
//! the same as `refnet intake`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    refnet_core::exit::code(refnet_intake::run(refnet_core::server::StandaloneArgs::parse()).await)
}
