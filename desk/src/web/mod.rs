//! The web desk: every agency's daily work in a browser, server-rendered
//! (maud), usable without JavaScript and at 360 px. It is a client like any
//! other: each page calls refnet over gRPC with the signed-in officer's token
//! and shows what the server returned for that token; it redacts, filters
//! and decides nothing (its "withheld" markers are the reply's redaction list).
//!
//! The token stays on this server (see [`session`]); pages carry a CSRF token
//! in every form, a strict Content-Security-Policy (no inline script or
//! style), `Cache-Control: no-store`, and no identifying value in any URL
//! (ids and reference codes only).

mod form;
mod handoff;
mod inbox;
mod pages;
mod referral;
mod session;
mod text;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{
    Router,
    http::{HeaderValue, Request, header},
    middleware::Next,
    response::Response,
    routing::{get, post},
};
use tonic::transport::{Channel, Endpoint};

/// A demo agency of the development sign-in.
#[derive(Debug, Clone)]
pub struct DevAgency {
    /// Its id (the token's `agency_id`).
    pub id: String,
    /// Its name.
    pub name: String,
}

/// The development sign-in: offered only when refnet runs with its
/// development signing key, which is what mints these tokens.
pub trait DevSignIn: Send + Sync {
    /// The agencies one may sign in as.
    fn agencies(&self) -> Vec<DevAgency>;
    /// The roles one may choose.
    fn roles(&self) -> Vec<String>;
    /// A token for an officer of `agency` with `roles`.
    fn mint(&self, agency: &str, roles: &[String]) -> anyhow::Result<String>;
}

/// Where the web desk finds refnet and how officers sign in.
pub struct WebOptions {
    /// The gRPC server: `http://127.0.0.1:50051` or `https://HOST:PORT`.
    pub server: String,
    /// CA certificate(s) (PEM) for an https:// server, instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// The development sign-in, when the server runs with refnet's development key.
    pub dev: Option<Arc<dyn DevSignIn>>,
}

/// The web desk's shared state.
pub(crate) struct Web {
    channel: Channel,
    sessions: session::Sessions,
    dev: Option<Arc<dyn DevSignIn>>,
}

/// The routes of the web desk.
pub fn router(options: WebOptions) -> anyhow::Result<Router> {
    let mut endpoint = Endpoint::from_shared(options.server.clone())
        .with_context(|| format!("{} is not a server URL", options.server))?
        .connect_timeout(Duration::from_secs(10));
    if options.server.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = &options.ca {
            let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    let web = Arc::new(Web {
        channel: endpoint.connect_lazy(),
        sessions: session::Sessions::default(),
        dev: options.dev,
    });
    Ok(Router::new()
        .route("/", get(pages::home))
        .route("/sign-in", get(pages::sign_in))
        .route("/sign-in/dev", post(pages::sign_in_dev))
        .route("/sign-out", post(pages::sign_out))
        .route("/lang/{code}", get(pages::language))
        .route("/inbox", get(inbox::show))
        .route("/inbox/rows", get(inbox::fragment))
        .route("/inbox/events", get(inbox::events))
        .route(
            "/referrals/new",
            get(referral::new_referral).post(referral::file_referral),
        )
        .route("/referrals/{id}", get(referral::referral))
        .route("/referrals/{id}/messages", post(referral::post_message))
        .route("/handoffs/{id}", get(handoff::show))
        .route("/handoffs/{id}/checklist", post(handoff::checklist))
        .route("/handoffs/{id}/{action}", post(handoff::act))
        .route("/static/desk.css", get(pages::css))
        .route("/static/desk.js", get(pages::js))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(web))
}

/// The Content-Security-Policy of every page: our own script and style only,
/// no inline code, no framing, forms posting to this desk only.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Headers on every response; pages (which may show a person) are never stored.
async fn security_headers(request: Request<axum::body::Body>, next: Next) -> Response {
    let asset = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if asset {
            "public, max-age=3600"
        } else {
            "no-store"
        }),
    );
    response
}

/// Serves the web desk on `listener` until `shutdown` resolves; requests in
/// flight then get a few seconds to finish (open event streams, which never
/// finish by themselves, are closed after them).
pub async fn serve(
    listener: tokio::net::TcpListener,
    options: WebOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = router(options)?;
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopping.send(());
    });
    let grace_over = async move {
        if stopped.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    tokio::select! {
        served = server => served?,
        () = grace_over => {}
    }
    Ok(())
}
