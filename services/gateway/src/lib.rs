//! `refnet gateway`: the one address desks call in a split deployment. It
//! terminates TLS (the desk → gateway hop), reads the gRPC service name from
//! each call's path and forwards the call, unchanged and streamed both ways,
//! to the service that serves it over TLS with the gateway's own client
//! certificate (the service → service hop, mutual TLS). It holds no policy:
//! tokens, permissions and redaction are the services' business, so a call
//! through the gateway gets exactly the answer the service would give.
//! gRPC-Web (HTTP/1.1) is forwarded as it came; the services translate it.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use axum::extract::State;
use refnet_api::v1::{
    audit_service_server, intake_service_server, routing_service_server, statistics_service_server,
    witness_protection_service_server,
};
use refnet_core::{
    config::{Config, GatewayConfig, TlsConfig},
    server::{TransportArgs, shutdown_signal},
    tls::ServerTls,
};
use tonic::transport::{Channel, Endpoint};
use tower::{Service, ServiceExt};

/// The command line of `refnet-gateway`; each flag overrides its setting
/// (`[gateway]`, `listen`, `[tls]`).
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(name = "refnet-gateway", version)]
pub struct GatewayCommand {
    /// Configuration file (TOML); `REFNET_...` variables override it.
    #[arg(long, env = "REFNET_CONFIG")]
    pub config: Option<PathBuf>,
    /// The gateway's own flags.
    #[command(flatten)]
    pub gateway: GatewayArgs,
}

/// The flags of the gateway (`refnet-gateway ...` or `refnet gateway ...`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GatewayArgs {
    /// Address to listen on.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The intake service (`https://HOST:PORT`).
    #[arg(long, value_name = "URL")]
    pub intake: Option<String>,
    /// The routing service.
    #[arg(long, value_name = "URL")]
    pub routing: Option<String>,
    /// The witness protection service.
    #[arg(long, value_name = "URL")]
    pub protection: Option<String>,
    /// The statistics service.
    #[arg(long, value_name = "URL")]
    pub statistics: Option<String>,
    /// Transport security of the gateway's own listener.
    #[command(flatten)]
    pub transport: TransportArgs,
}

/// The gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No service to forward to.
    #[error(
        "the gateway forwards to no service: give --intake, --routing, --protection and \
         --statistics (REFNET_GATEWAY__INTAKE, ...)"
    )]
    NoBackend,
    /// A service address or the client TLS settings are unusable.
    #[error("gateway.{backend}: {reason}")]
    Backend {
        /// Which service.
        backend: &'static str,
        /// Why.
        reason: String,
    },
}

/// The services behind the gateway and the gRPC services each serves.
const BACKENDS: [(&str, &[&str]); 4] = [
    (
        "intake",
        &[
            intake_service_server::SERVICE_NAME,
            audit_service_server::SERVICE_NAME,
        ],
    ),
    ("routing", &[routing_service_server::SERVICE_NAME]),
    (
        "protection",
        &[witness_protection_service_server::SERVICE_NAME],
    ),
    ("statistics", &[statistics_service_server::SERVICE_NAME]),
];

/// Reflection describes the whole contract on every service: any one answers.
const REFLECTION: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

fn url_of<'a>(config: &'a GatewayConfig, backend: &str) -> Option<&'a str> {
    match backend {
        "intake" => config.intake.as_deref(),
        "routing" => config.routing.as_deref(),
        "protection" => config.protection.as_deref(),
        "statistics" => config.statistics.as_deref(),
        _ => None,
    }
}

/// One service behind the gateway: a lazily connecting channel, rebuilt
/// when the client certificate files change.
struct Backend {
    name: &'static str,
    services: &'static [&'static str],
    url: String,
    channel: RwLock<Channel>,
}

impl Backend {
    fn channel(&self) -> Channel {
        match self.channel.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// The forwarding table.
struct Gateway {
    backends: Vec<Backend>,
    tls: TlsConfig,
}

impl Gateway {
    fn new(config: &Config) -> Result<Self, GatewayError> {
        let mut backends = Vec::new();
        for (name, services) in BACKENDS {
            let Some(url) = url_of(&config.gateway, name) else {
                continue;
            };
            backends.push(Backend {
                name,
                services,
                url: url.to_owned(),
                channel: RwLock::new(channel(name, url, &config.tls)?),
            });
        }
        if backends.is_empty() {
            return Err(GatewayError::NoBackend);
        }
        Ok(Self {
            backends,
            tls: config.tls.clone(),
        })
    }

    /// The service that serves `service` (a fully qualified gRPC service name).
    fn backend(&self, service: &str) -> Option<&Backend> {
        if REFLECTION.contains(&service) {
            return self.backends.first();
        }
        self.backends.iter().find(|b| b.services.contains(&service))
    }

    /// Rebuilds every channel with the client certificate and CA as they
    /// are now on disk (a new connection presents the new certificate;
    /// calls in flight finish on the old one).
    fn reconnect(&self) {
        for backend in &self.backends {
            match channel(backend.name, &backend.url, &self.tls) {
                Ok(new) => {
                    let mut current = match backend.channel.write() {
                        Ok(c) => c,
                        Err(p) => p.into_inner(),
                    };
                    *current = new;
                    tracing::info!(backend = backend.name, "client certificate reloaded");
                }
                Err(e) => {
                    tracing::warn!(backend = backend.name, error = %e, "client certificate reload refused; the old one stays")
                }
            }
        }
    }
}

/// A channel to `url`: over TLS for `https://`, trusting the system's roots
/// and `tls.outbound_ca`, presenting `tls.outbound_cert` when given.
fn channel(backend: &'static str, url: &str, tls: &TlsConfig) -> Result<Channel, GatewayError> {
    let invalid = |reason: String| GatewayError::Backend { backend, reason };
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| invalid(format!("{url}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    match endpoint.uri().scheme_str() {
        Some("https") => {
            let client = refnet_core::tls::client_tls(tls).map_err(|e| invalid(e.to_string()))?;
            endpoint = endpoint
                .tls_config(client)
                .map_err(|e| invalid(format!("{url}: {e}")))?;
        }
        Some("http") => {}
        _ => {
            return Err(invalid(format!(
                "{url}: not an https:// or http:// address"
            )));
        }
    }
    Ok(endpoint.connect_lazy())
}

/// Hop-by-hop headers: they describe the desk's connection, not the call,
/// and HTTP/2 forbids them.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Forwards one call to its service and streams the answer back.
async fn forward(
    State(gateway): State<Arc<Gateway>>,
    request: http::Request<axum::body::Body>,
) -> http::Response<axum::body::Body> {
    let content_type = request.headers().get(http::header::CONTENT_TYPE).cloned();
    let service = request
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let Some(backend) = gateway.backend(&service) else {
        return status(
            tonic::Status::unimplemented(format!("no service {service} behind this gateway")),
            content_type,
        );
    };
    let (mut parts, body) = request.into_parts();
    for header in HOP_BY_HOP {
        parts.headers.remove(header);
    }
    parts.version = http::Version::HTTP_2;
    // The service's span is a child of the gateway's.
    if let Some(traceparent) = refnet_core::telemetry::current_traceparent()
        && let Ok(value) = http::HeaderValue::from_str(&traceparent)
    {
        parts.headers.insert("traceparent", value);
    }
    let request = http::Request::from_parts(parts, tonic::body::Body::new(body));
    let mut channel = backend.channel();
    let answered = match channel.ready().await {
        Ok(ready) => ready.call(request).await,
        Err(e) => Err(e),
    };
    match answered {
        Ok(response) => response.map(axum::body::Body::new),
        Err(e) => {
            tracing::warn!(backend = backend.name, url = %backend.url, error = %e, "service unreachable");
            status(
                tonic::Status::unavailable(format!("the {} service is unreachable", backend.name)),
                content_type,
            )
        }
    }
}

/// A gRPC status as a trailers-only answer, in the caller's content type
/// (gRPC or gRPC-Web).
fn status(
    status: tonic::Status,
    content_type: Option<http::HeaderValue>,
) -> http::Response<axum::body::Body> {
    let mut response = status.into_http::<axum::body::Body>();
    if let Some(ct) = content_type
        && ct.as_bytes().starts_with(b"application/grpc")
    {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, ct);
    }
    response
}

/// The newest modification time of the client TLS files, to notice a rotation.
fn modified(tls: &TlsConfig) -> Option<SystemTime> {
    [&tls.outbound_cert, &tls.outbound_key, &tls.outbound_ca]
        .into_iter()
        .flatten()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
}

/// Runs the gateway until SIGTERM or Ctrl-C.
pub async fn run(command: GatewayCommand) -> anyhow::Result<()> {
    let mut config = Config::load(command.config.as_deref())?;
    let args = command.gateway;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    for (setting, flag) in [
        (&mut config.gateway.intake, args.intake),
        (&mut config.gateway.routing, args.routing),
        (&mut config.gateway.protection, args.protection),
        (&mut config.gateway.statistics, args.statistics),
    ] {
        if flag.is_some() {
            *setting = flag;
        }
    }
    args.transport.apply(&mut config);
    let tls = ServerTls::from_config(&config)?;
    let telemetry = refnet_core::telemetry::init(
        config.log_format,
        config.otlp_endpoint.as_deref(),
        &config.tls,
        "refnet-gateway",
    );
    Config::report_unread_env();
    let gateway = Arc::new(Gateway::new(&config)?);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let served = serve(gateway, &config, tls, listener, shutdown_signal()).await;
    telemetry.shutdown();
    served
}

/// Serves the gateway on `listener` until `shutdown` resolves, then lets
/// calls in flight finish within `shutdown_grace_seconds`.
async fn serve(
    gateway: Arc<Gateway>,
    config: &Config,
    tls: Option<ServerTls>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let routes = tonic::service::Routes::from(
        axum::Router::new()
            .fallback(forward)
            .with_state(gateway.clone()),
    )
    .add_service(health_service);

    // The client certificate, re-read when its files change.
    let reload_every = Duration::from_secs(config.tls.reload_seconds.max(1));
    let watched = gateway.clone();
    let reloader = tokio::spawn(async move {
        let mut seen = modified(&watched.tls);
        let mut tick = tokio::time::interval(reload_every);
        loop {
            tick.tick().await;
            let now = modified(&watched.tls);
            if now != seen {
                seen = now;
                watched.reconnect();
            }
        }
    });

    let (drain_started, drain_begun) = tokio::sync::oneshot::channel::<()>();
    let draining = async move {
        shutdown.await;
        tracing::info!("shutting down: health NOT_SERVING, draining calls");
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        let _ = drain_started.send(());
    };
    let forwards: Vec<String> = gateway
        .backends
        .iter()
        .map(|b| format!("{}={}", b.name, b.url))
        .collect();
    tracing::info!(addr = %config.listen, tls = tls.is_some(), mutual_tls = config.tls.client_ca.is_some(), ?forwards, "gateway serving");
    let router = tonic::transport::Server::builder()
        .accept_http1(true)
        .trace_fn(refnet_core::telemetry::rpc_span)
        .add_routes(routes);
    let server: std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), tonic::transport::Error>> + Send>,
    > = match tls {
        Some(tls) => {
            Box::pin(router.serve_with_incoming_shutdown(tls.incoming(listener), draining))
        }
        None => Box::pin(router.serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            draining,
        )),
    };
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let served = refnet_core::server::within_grace(server, drain_begun, grace).await;
    reloader.abort();
    served?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every service of the contract has a backend: a new service added to
    /// the contract without a route here fails this test.
    #[test]
    fn every_service_of_the_contract_is_forwarded() {
        for name in refnet_api::SERVICE_NAMES {
            assert!(
                BACKENDS
                    .iter()
                    .any(|(_, services)| services.contains(&name)),
                "{name} has no backend in the gateway"
            );
        }
    }

    #[test]
    fn a_gateway_without_services_refuses_to_start() {
        assert!(matches!(
            Gateway::new(&Config::default()),
            Err(GatewayError::NoBackend)
        ));
    }

    #[test]
    fn a_service_address_must_be_http_or_https() {
        let mut config = Config::default();
        config.gateway.intake = Some("ftp://intake:50051".into());
        let error = Gateway::new(&config).err().map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("not an https://")),
            "{error:?}"
        );
    }
}
