//! `refnet health`: is a service SERVING? The gRPC health check (no token),
//! over TLS and mutual TLS like every desk command: the container probes of a
//! deployment whose listeners all speak TLS (Kubernetes' own gRPC probe
//! cannot).

use anyhow::bail;
use clap::Args;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{Connection, open_channel};

/// Flags of `refnet health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    #[command(flatten)]
    connection: Connection,
    /// The service to ask about (e.g. `refnet.v1.IntakeService`) [default: the server as a whole].
    #[arg(long, default_value = "", hide_default_value = true)]
    service: String,
}

/// Asks the server; succeeds (exit 0) only when the answer is SERVING.
pub async fn health(args: HealthArgs) -> anyhow::Result<()> {
    let (channel, server) = open_channel(&args.connection).await?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: args.service.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{server}: {}: {}", s.code(), s.message()))?
        .into_inner();
    let status = ServingStatus::try_from(reply.status).unwrap_or(ServingStatus::Unknown);
    let what = if args.service.is_empty() {
        server
    } else {
        format!("{server} {}", args.service)
    };
    if status != ServingStatus::Serving {
        bail!("{what}: {}", status.as_str_name());
    }
    println!("{what}: SERVING");
    Ok(())
}
