//! Serving a set of refnet services: gRPC and gRPC-Web (with CORS for the
//! configured browser origins) on one port, metrics and the auth layer in
//! front of every call, gRPC health (SERVING per service) and reflection
//! beside them, and graceful
//! shutdown: health turns NOT_SERVING first, open streams end with
//! UNAVAILABLE (clients resume from their last cursor), in-flight calls finish
//! within `shutdown_grace_seconds`, then the remaining connections are closed.

use std::future::Future;

use tokio::{net::TcpListener, task::JoinHandle};
use tonic::{service::Routes, transport::Server};
use tonic_health::ServingStatus;

use crate::{auth::AuthLayer, context::AppContext};

/// A failure while serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Reflection could not be built from the descriptor set.
    #[error("reflection: {0}")]
    Reflection(String),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Serves `routes` (the services named in `service_names`) on `listener` until
/// `shutdown` resolves.
pub async fn serve(
    ctx: &AppContext,
    routes: Routes,
    service_names: &[&str],
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in service_names {
        health
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    let mut routes = routes.add_service(health_service);
    if ctx.config().reflection {
        let v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(refnet_api::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| ServeError::Reflection(e.to_string()))?;
        let v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(refnet_api::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| ServeError::Reflection(e.to_string()))?;
        routes = routes.add_service(v1).add_service(v1alpha);
    }

    // Wake-ups from other processes (PostgreSQL LISTEN/NOTIFY), for as long as we serve.
    let (stop_listening, listening_stopped) = tokio::sync::oneshot::channel::<()>();
    let listener_task = tokio::spawn(crate::events::listen(ctx.clone(), async move {
        let _ = listening_stopped.await;
    }));

    // Suspended agencies and officers, re-read for as long as we serve.
    let (stop_refreshing, refreshing_stopped) = tokio::sync::oneshot::channel::<()>();
    let refresh_task = tokio::spawn(crate::revocation::refresh_loop(
        ctx.clone(),
        std::time::Duration::from_millis(ctx.config().auth.access_refresh_ms.max(10)),
        async move {
            let _ = refreshing_stopped.await;
        },
    ));

    // Data files (policy, rules) reloaded on SIGHUP, for as long as we serve.
    let (stop_reloading, reloading_stopped) = tokio::sync::oneshot::channel::<()>();
    let reload_task = tokio::spawn(crate::reload::on_hangup(ctx.clone(), async move {
        let _ = reloading_stopped.await;
    }));

    let names: Vec<String> = service_names.iter().map(|s| (*s).to_owned()).collect();
    let (drain_started, drain_begun) = tokio::sync::oneshot::channel::<()>();
    let stopping = ctx.clone();
    let draining = async move {
        shutdown.await;
        tracing::info!("shutting down: health NOT_SERVING, ending streams, draining calls");
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for name in &names {
            health
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        // Open streams end with UNAVAILABLE and a note to resume from their cursor.
        stopping.begin_shutdown();
        let _ = drain_started.send(());
    };
    let grace = std::time::Duration::from_secs(ctx.config().shutdown_grace_seconds);

    let tls = crate::tls::ServerTls::from_config(ctx.config())?;
    let local = listener
        .local_addr()
        .map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
    let mutual = ctx.config().tls.client_ca.is_some();
    tracing::info!(addr = %local, services = ?service_names, tls = tls.is_some(), mutual_tls = mutual, "serving");
    let router = Server::builder()
        // gRPC-Web (HTTP/1.1) beside gRPC, for browser clients.
        .accept_http1(true)
        .trace_fn(crate::telemetry::rpc_span)
        .layer(cors(&ctx.config().cors_allowed_origins))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(crate::metrics::RpcMetricsLayer::new(ctx.metrics().clone()))
        .layer(AuthLayer::new(
            ctx.authenticator().clone(),
            ctx.limits().clone(),
            ctx.permissions().clone(),
        ))
        .add_routes(routes);
    let server: std::pin::Pin<
        Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>,
    > = match tls {
        Some(tls) => {
            Box::pin(router.serve_with_incoming_shutdown(tls.incoming(listener), draining))
        }
        None => Box::pin(
            router.serve_with_incoming_shutdown(
                // Without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms to
                // replies that span several writes.
                tonic::transport::server::TcpIncoming::from(listener)
                    .with_nodelay(Some(true))
                    .with_keepalive(Some(std::time::Duration::from_secs(60))),
                draining,
            ),
        ),
    };
    let served = within_grace(server, drain_begun, grace).await;
    let _ = stop_listening.send(());
    let _ = listener_task.await;
    let _ = stop_refreshing.send(());
    let _ = refresh_task.await;
    let _ = stop_reloading.send(());
    let _ = reload_task.await;
    served?;
    Ok(())
}

/// Runs `server` to its end, or, once `drain_begun` fires (shutdown has
/// started), for at most `grace` longer: then the remaining connections are
/// closed (dropped with the server).
pub async fn within_grace<E>(
    server: impl Future<Output = Result<(), E>>,
    drain_begun: tokio::sync::oneshot::Receiver<()>,
    grace: std::time::Duration,
) -> Result<(), E> {
    tokio::pin!(server);
    let grace_over = async move {
        if drain_begun.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = &mut server => served,
        () = grace_over => {
            tracing::warn!(grace_seconds = grace.as_secs(), "grace period over; closing the remaining connections");
            Ok(())
        }
    }
}

/// CORS for gRPC-Web from `origins` only (none: no cross-origin calls). A
/// preflight is answered before authentication (browsers send it without
/// credentials); the call itself still needs its token.
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use http::{HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| match HeaderValue::from_str(o.trim()) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::warn!(origin = %o, "ignoring an invalid CORS origin");
                None
            }
        })
        .collect();
    let header = HeaderName::from_static;
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            http::header::AUTHORIZATION,
            http::header::CONTENT_TYPE,
            header("x-grpc-web"),
            header("x-user-agent"),
            header("grpc-timeout"),
            header("traceparent"),
        ])
        .expose_headers([
            header("grpc-status"),
            header("grpc-message"),
            header("grpc-status-details-bin"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Command-line flags of a service's own binary.
#[derive(Debug, clap::Parser)]
#[command(version, about = "Serve one refnet service (production: PostgreSQL)")]
pub struct StandaloneArgs {
    /// Configuration file (TOML); `REFNET_...` variables override it.
    #[arg(long, env = "REFNET_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// The service's own flags.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// The flags of one service (`refnet-intake ...` or `refnet intake ...`);
/// each overrides its setting.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServiceArgs {
    /// Database URL (`postgres://...`); overrides the configuration.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Address to listen on.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Data directory (only needed for SQLite or a master key file).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Do not apply migrations at start-up (run `refnet migrate` instead).
    #[arg(long)]
    pub no_migrate: bool,
    /// Transport security.
    #[command(flatten)]
    pub transport: TransportArgs,
}

/// The listener's transport flags, shared by `refnet serve` and every
/// service binary; each overrides its `tls.*` / `insecure_plaintext` setting.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TransportArgs {
    /// Server certificate chain (PEM): speak TLS (with --tls-key).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Require client certificates issued by these CAs (PEM): mutual TLS.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<std::path::PathBuf>,
    /// Listen without TLS on a non-loopback address (a proxy in front terminates TLS).
    #[arg(long)]
    pub insecure_plaintext: bool,
}

impl TransportArgs {
    /// Applies the flags given over the configuration.
    pub fn apply(&self, config: &mut crate::config::Config) {
        if let Some(cert) = &self.tls_cert {
            config.tls.cert = Some(cert.clone());
        }
        if let Some(key) = &self.tls_key {
            config.tls.key = Some(key.clone());
        }
        if let Some(ca) = &self.tls_client_ca {
            config.tls.client_ca = Some(ca.clone());
        }
        if self.insecure_plaintext {
            config.insecure_plaintext = true;
        }
    }
}

/// Runs one service alone (as `process` in logs and traces, e.g.
/// `refnet-intake`) until SIGTERM or Ctrl-C: configuration, telemetry,
/// context, then [`serve`] with the routes `mount` adds. Background tasks
/// `mount` returns (workers) are expected to stop on
/// [`AppContext::shutting_down`]; they get the grace period to finish their
/// current step after the server has stopped.
pub async fn run_standalone(
    process: &str,
    args: StandaloneArgs,
    service_names: &[&'static str],
    mount: impl FnOnce(
        &AppContext,
        &mut tonic::service::RoutesBuilder,
    ) -> anyhow::Result<Vec<JoinHandle<()>>>,
) -> anyhow::Result<()> {
    let mut config = crate::config::Config::load(args.config.as_deref())?;
    let args = args.service;
    if let Some(url) = args.database_url {
        config.database_url = Some(url.into());
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if args.no_migrate {
        config.migrate_on_start = false;
    }
    args.transport.apply(&mut config);
    // Refuse plaintext beyond loopback (and half-configured TLS) before anything starts.
    crate::tls::check(&config)?;
    let telemetry = crate::telemetry::init(
        config.log_format,
        config.otlp_endpoint.as_deref(),
        &config.tls,
        process,
    );
    crate::config::Config::report_unread_env();
    let ctx = AppContext::build(config).await?;
    let mut routes = Routes::builder();
    let background = mount(&ctx, &mut routes)?;
    let listener = TcpListener::bind(ctx.config().listen).await?;
    let served = serve(
        &ctx,
        routes.routes(),
        service_names,
        listener,
        shutdown_signal(),
    )
    .await;
    ctx.begin_shutdown();
    let grace = std::time::Duration::from_secs(ctx.config().shutdown_grace_seconds);
    if tokio::time::timeout(grace, futures_join_all(background))
        .await
        .is_err()
    {
        tracing::warn!("workers did not stop within the grace period");
    }
    telemetry.shutdown();
    served?;
    Ok(())
}

/// Waits for every task (a task that panicked is logged, not propagated).
async fn futures_join_all(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        if let Err(e) = task.await {
            tracing::warn!(error = %e, "background task failed");
        }
    }
}
