//! The web desk as `refnet serve` and `refnet desk` run it: where it listens,
//! and the development sign-in, offered only when tokens are signed with
//! refnet's development key (the embedded default), for the agencies of the
//! registry.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;

use crate::database::existing_db;

use refnet_core::{
    AppContext, agencies,
    agencies::Agency,
    auth::Role,
    config::Config,
    devkeys::{DevSigner, TokenRequest},
    principal::agency_kind_name,
};
use refnet_desk::web::{DevAgency, DevSignIn};

/// Development tokens for the web desk's sign-in page.
struct DevTokens {
    signer: DevSigner,
    agencies: Vec<Agency>,
}

impl DevSignIn for DevTokens {
    fn agencies(&self) -> Vec<DevAgency> {
        self.agencies
            .iter()
            .filter(|a| a.active)
            .map(|a| DevAgency {
                id: a.id.clone(),
                name: format!("{} · {}", a.name, agency_kind_name(a.kind)),
            })
            .collect()
    }

    fn roles(&self) -> Vec<String> {
        Role::ALL.iter().map(|r| r.as_str().to_owned()).collect()
    }

    fn mint(&self, agency: &str, roles: &[String]) -> anyhow::Result<String> {
        let Some(found) = self.agencies.iter().find(|a| a.id == agency && a.active) else {
            anyhow::bail!("no active agency {agency:?}");
        };
        anyhow::ensure!(!roles.is_empty(), "choose at least one role");
        Ok(self.signer.mint(&TokenRequest {
            officer_id: format!("web-{}", found.id),
            agency_id: found.id.clone(),
            agency_kind: found.kind,
            roles: roles.to_vec(),
            ttl: Duration::from_secs(8 * 3600),
        })?)
    }
}

/// The development sign-in with the key in `key_dir` for `agencies`, or
/// `None` (logged) when the key is not there.
pub(crate) fn dev_sign_in(
    key_dir: &Path,
    issuer: &str,
    audience: &str,
    agencies: Vec<Agency>,
) -> Option<Arc<dyn DevSignIn>> {
    match DevSigner::load(key_dir, issuer, audience) {
        Ok(signer) => Some(Arc::new(DevTokens { signer, agencies })),
        Err(e) => {
            tracing::warn!(error = %e, "web desk: no development sign-in");
            None
        }
    }
}

/// The web desk speaks plain HTTP (TLS for it is still to come): it listens
/// on a loopback address, behind a TLS proxy, unless told otherwise.
pub(crate) fn check_listen(addr: SocketAddr, insecure_plaintext: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        addr.ip().is_loopback() || insecure_plaintext,
        "refusing to serve the web desk on {addr} without TLS: listen on a loopback address behind a \
         TLS-terminating proxy, or give --insecure-plaintext (REFNET_INSECURE_PLAINTEXT=true) if the proxy \
         reaches it over a private network"
    );
    Ok(())
}

/// Tells whoever started refnet where the web desk is: a line for a person
/// (`refnet web desk on http://...`), or, with JSON logs, a log record (so a
/// collector reads nothing but JSON).
pub(crate) fn announce(format: refnet_core::config::LogFormat, addr: SocketAddr, note: &str) {
    use std::io::Write as _;
    if format == refnet_core::config::LogFormat::Pretty {
        let _ = writeln!(
            std::io::stderr(),
            "{} http://{addr}{note}",
            refnet_core::announce::WEB
        );
    } else {
        tracing::info!(%addr, "web desk serving");
    }
}

/// Binds the web desk's address; a taken address is a warning, not the end
/// of the gRPC server (`--web-listen` names another).
pub(crate) async fn bind(addr: SocketAddr) -> Option<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(%addr, error = %e, "web desk not started: give --web-listen another address");
            None
        }
    }
}

/// `refnet desk`: the web desk in front of a running refnet.
pub(crate) async fn desk(
    mut config: Config,
    server: String,
    ca: Option<PathBuf>,
    listen: SocketAddr,
    dev_key_dir: Option<PathBuf>,
    database_url: Option<String>,
) -> anyhow::Result<()> {
    let telemetry = refnet_core::telemetry::init(
        config.log_format,
        config.otlp_endpoint.as_deref(),
        &config.tls,
        "refnet-desk",
    );
    refnet_core::config::Config::report_unread_env();
    let dev = match (&dev_key_dir, database_url) {
        (Some(dir), Some(url)) => {
            config.database_url = Some(url.into());
            let db = existing_db(&config).await?;
            let agencies = agencies::load_all(&db).await?;
            dev_sign_in(dir, &config.auth.issuer, &config.auth.audience, agencies)
        }
        _ => None,
    };
    check_listen(listen, config.insecure_plaintext)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    announce(config.log_format, addr, &format!(" (refnet at {server})"));
    let served = refnet_desk::web::serve(
        listener,
        refnet_desk::web::WebOptions { server, ca, dev },
        refnet_core::server::shutdown_signal(),
    )
    .await;
    telemetry.shutdown();
    served
}

/// The web desk of `refnet serve` on `web_addr`, calling the server at
/// `grpc` like any client; the development sign-in when tokens are signed
/// with the development key in `data_dir`.
pub(crate) async fn start(
    ctx: &AppContext,
    data_dir: &std::path::Path,
    grpc: SocketAddr,
    web_addr: SocketAddr,
) -> anyhow::Result<Option<tokio::task::JoinHandle<anyhow::Result<()>>>> {
    let Some(web_listener) = bind(web_addr).await else {
        return Ok(None);
    };
    let web_addr = web_listener.local_addr()?;
    let config = ctx.config();
    let dev = if config.auth.jwks_file.is_none() && config.auth.jwks_url.is_none() {
        let agencies = agencies::load_all(ctx.db()).await?;
        dev_sign_in(
            data_dir,
            &config.auth.issuer,
            &config.auth.audience,
            agencies,
        )
    } else {
        None
    };
    // Over TLS the certificate names the host (localhost, as `refnet keys
    // dev-tls` writes it); in plaintext, the address itself.
    let server = if config.tls.cert.is_some() {
        format!("https://localhost:{}", grpc.port())
    } else if grpc.ip().is_unspecified() {
        format!("http://127.0.0.1:{}", grpc.port())
    } else {
        format!("http://{grpc}")
    };
    let options = refnet_desk::web::WebOptions {
        server,
        ca: config.tls.outbound_ca.clone(),
        dev,
    };
    announce(config.log_format, web_addr, "");
    Ok(Some(tokio::spawn(refnet_desk::web::serve(
        web_listener,
        options,
        refnet_core::server::shutdown_signal(),
    ))))
}
