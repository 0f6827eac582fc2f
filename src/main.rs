//! The `refnet` command: see `refnet --help`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    refnet_core::exit::code(refnet::cli::run().await)
}
