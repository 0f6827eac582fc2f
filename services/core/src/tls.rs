//! Transport security of a listener: TLS (rustls, ring) with an optional
//! client-certificate check (mutual TLS), certificates reloaded when their
//! files change, and the rule that refnet does not listen beyond loopback in
//! plaintext unless told to.
//!
//! gRPC (HTTP/2) and gRPC-Web (HTTP/1.1) share the port: ALPN offers both.
//! A handshake that fails (a plaintext client, a certificate from another CA)
//! closes that connection only, logged at debug.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use rustls::{
    ServerConfig,
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use crate::config::Config;

/// Why TLS could not be set up, naming the file and the setting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or parsed.
    #[error("{setting} {path}: {reason}")]
    File {
        /// The setting (`tls.cert`, `--tls-key`, ...).
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The settings do not fit together.
    #[error("{0}")]
    Settings(String),
    /// rustls refused the configuration.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Checks the listener's transport settings: certificate and key together, a
/// client CA only with them, and no plaintext beyond loopback unless
/// `insecure_plaintext` says so (behind a TLS-terminating proxy, say).
pub fn check(config: &Config) -> Result<(), TlsError> {
    let tls = &config.tls;
    match (&tls.cert, &tls.key) {
        (Some(_), None) | (None, Some(_)) => {
            return Err(TlsError::Settings(
                "TLS needs both a certificate and its key: --tls-cert and --tls-key (tls.cert, tls.key)"
                    .into(),
            ));
        }
        (None, None) if tls.client_ca.is_some() => {
            return Err(TlsError::Settings(
                "--tls-client-ca (tls.client_ca) needs TLS: give --tls-cert and --tls-key too"
                    .into(),
            ));
        }
        (None, None) if !config.listen.ip().is_loopback() && !config.insecure_plaintext => {
            return Err(TlsError::Settings(format!(
                "refusing to listen on {} without TLS: give --tls-cert and --tls-key \
                 (REFNET_TLS__CERT, REFNET_TLS__KEY), or --insecure-plaintext \
                 (REFNET_INSECURE_PLAINTEXT=true) if a proxy in front terminates TLS",
                config.listen
            )));
        }
        _ => {}
    }
    Ok(())
}

/// The extra roots refnet's own HTTPS clients trust (`tls.outbound_ca`), to
/// add to a `reqwest` client beside the system's roots.
pub fn outbound_roots(
    tls: &crate::config::TlsConfig,
) -> Result<Vec<reqwest::Certificate>, TlsError> {
    let Some(path) = &tls.outbound_ca else {
        return Ok(Vec::new());
    };
    let file = |reason: String| TlsError::File {
        setting: "tls.outbound_ca",
        path: path.clone(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| file(e.to_string()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| file(e.to_string()))?;
    if roots.is_empty() {
        return Err(file("no PEM certificate in it".into()));
    }
    Ok(roots)
}

/// The TLS settings of refnet's own gRPC calls (the gateway to the
/// services, the OTLP exporter to a collector): the system's roots and
/// `tls.outbound_ca`, and `tls.outbound_cert` / `tls.outbound_key` as the
/// client certificate when given.
pub fn client_tls(
    tls: &crate::config::TlsConfig,
) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
    let read = |setting: &'static str, path: &PathBuf| {
        std::fs::read(path).map_err(|e| TlsError::File {
            setting,
            path: path.clone(),
            reason: e.to_string(),
        })
    };
    let mut client = tonic::transport::ClientTlsConfig::new().with_native_roots();
    if let Some(ca) = &tls.outbound_ca {
        client = client.ca_certificate(tonic::transport::Certificate::from_pem(read(
            "tls.outbound_ca",
            ca,
        )?));
    }
    match (&tls.outbound_cert, &tls.outbound_key) {
        (Some(cert), Some(key)) => {
            client = client.identity(tonic::transport::Identity::from_pem(
                read("tls.outbound_cert", cert)?,
                read("tls.outbound_key", key)?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(TlsError::Settings(
                "a client certificate needs both tls.outbound_cert and tls.outbound_key".into(),
            ));
        }
    }
    Ok(client)
}

/// The certificate and key files and what was last loaded from them.
#[derive(Debug)]
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Option<SystemTime>)>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(match self.current.read() {
            Ok(current) => current.0.clone(),
            Err(poisoned) => poisoned.into_inner().0.clone(),
        })
    }
}

fn read_certs(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = |reason: String| TlsError::File {
        setting,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file(e.to_string()))?;
    if certs.is_empty() {
        return Err(file("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn load_key_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = read_certs("tls.cert", cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
        setting: "tls.key",
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(|e| TlsError::File {
            setting: "tls.key",
            path: key.to_owned(),
            reason: e.to_string(),
        })?;
    let pair = CertifiedKey::new(certs, signing);
    pair.keys_match().map_err(|e| TlsError::File {
        setting: "tls.key",
        path: key.to_owned(),
        reason: format!("does not match the certificate: {e}"),
    })?;
    Ok(Arc::new(pair))
}

fn modified(paths: &[&Path]) -> Option<SystemTime> {
    paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
}

/// A listener's TLS: the acceptor and the certificate it serves, reloaded
/// when its files change.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    certs: Arc<Reloading>,
    reload_every: Duration,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.certs.cert)
            .field("key", &self.certs.key)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// TLS from `config.tls`, or `None` when no certificate is configured
    /// (plaintext, allowed by [`check`]).
    pub fn from_config(config: &Config) -> Result<Option<Self>, TlsError> {
        check(config)?;
        let tls = &config.tls;
        let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
            return Ok(None);
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pair = load_key_pair(cert, key)?;
        let certs = Arc::new(Reloading {
            cert: cert.clone(),
            key: key.clone(),
            current: RwLock::new((pair, modified(&[cert, key]))),
        });
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let mut server = match &tls.client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in read_certs("tls.client_ca", ca)? {
                    roots.add(c)?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::Settings(format!("tls.client_ca: {e}")))?;
                builder
                    .with_client_cert_verifier(verifier)
                    .with_cert_resolver(certs.clone())
            }
            None => builder
                .with_no_client_auth()
                .with_cert_resolver(certs.clone()),
        };
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            certs,
            reload_every: Duration::from_secs(tls.reload_seconds.max(1)),
        }))
    }

    /// Reloads the certificate and key if their files changed since the last
    /// load; a pair that does not load keeps the old one (logged). `true`
    /// when a new pair is in use.
    pub fn reload_if_changed(&self) -> bool {
        let seen = modified(&[&self.certs.cert, &self.certs.key]);
        let last = match self.certs.current.read() {
            Ok(c) => c.1,
            Err(p) => p.into_inner().1,
        };
        if seen == last {
            return false;
        }
        match load_key_pair(&self.certs.cert, &self.certs.key) {
            Ok(pair) => {
                let mut current = match self.certs.current.write() {
                    Ok(c) => c,
                    Err(p) => p.into_inner(),
                };
                *current = (pair, seen);
                tracing::info!(cert = %self.certs.cert.display(), "tls certificate reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "tls certificate reload refused; the old one stays");
                false
            }
        }
    }

    /// Accepts TCP connections on `listener`, completes each TLS handshake on
    /// its own task (a slow or failed one holds up no other) and yields the
    /// established streams; also reloads the certificate when its files
    /// change. Ends when the returned stream is dropped.
    pub fn incoming(
        self,
        listener: TcpListener,
    ) -> tokio_stream::wrappers::ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut reload = tokio::time::interval(self.reload_every);
            reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let accepted = tokio::select! {
                    () = tx.closed() => return,
                    _ = reload.tick() => {
                        self.reload_if_changed();
                        continue;
                    }
                    accepted = listener.accept() => accepted,
                };
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms to
                // replies that span several writes.
                let _ = tcp.set_nodelay(true);
                let acceptor = self.acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(Ok(stream)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "tls handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}
