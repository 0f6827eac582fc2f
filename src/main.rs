//! The `refnet` command: see `refnet --help`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    refnet::cli::run().await
}
