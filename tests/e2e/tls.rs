//! Encrypted in transit: `refnet serve` with a certificate speaks TLS (gRPC
//! and the desk client over `https://`), refuses plaintext clients, checks
//! client certificates against its CA when mutual TLS is on, picks up a
//! rotated certificate without a restart, and refuses to listen beyond
//! loopback in plaintext unless told to. Certificates come from a test CA made
//! here (rcgen); nothing is shared with other tests.

use std::{path::Path, process::Command, time::Duration};

use refnet_devtools::certs::DevCa;
use tempfile::TempDir;

use crate::cli::{officer_token, spawn_serve};

const REFNET: &str = env!("CARGO_BIN_EXE_refnet");

/// A test CA (the development CA of `refnet_devtools::certs`) that signs
/// certificates into files.
struct Ca(DevCa);

impl Ca {
    fn new(name: &str) -> Self {
        Self(DevCa::new(name).expect("ca"))
    }

    /// Writes `NAME.pem` and `NAME.key` in `dir`: a certificate for `names`
    /// (host names or IP addresses) signed by this CA.
    fn sign(&self, dir: &Path, name: &str, names: &[&str]) -> (String, String) {
        let (cert, key) = self.0.write_signed(dir, name, names).expect("sign");
        (cert.display().to_string(), key.display().to_string())
    }

    fn write(&self, dir: &Path, name: &str) -> String {
        self.0
            .write(dir, name)
            .expect("write ca")
            .display()
            .to_string()
    }
}

/// `refnet keys dev-tls --out DIR`: (ca, server cert, server key, client cert, client key).
fn dev_tls(dir: &Path) -> [String; 5] {
    let out = dir.join("tls");
    let made = Command::new(REFNET)
        .args(["keys", "dev-tls", "--out"])
        .arg(&out)
        .args(["--host", "intake"])
        .output()
        .expect("run refnet");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    [
        "ca.pem",
        "server.pem",
        "server.key",
        "client.pem",
        "client.key",
    ]
    .map(|f| out.join(f).display().to_string())
}

/// `refnet inbox list` against `server` with extra flags; (success, stderr).
fn inbox(server: &str, token: &str, flags: &[&str]) -> (bool, String) {
    let out = Command::new(REFNET)
        .args(["inbox", "list", "--server", server])
        .args(flags)
        .env_remove("REFNET_SERVER")
        .env_remove("REFNET_CA")
        .env_remove("REFNET_CLIENT_CERT")
        .env_remove("REFNET_CLIENT_KEY")
        .env("REFNET_TOKEN", token)
        .output()
        .expect("run refnet");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn port(addr: &str) -> &str {
    addr.rsplit(':').next().expect("port")
}

/// TLS on: the desk client reaches the server over `https://` with the test
/// CA; a plaintext client and a client that trusts only the system's roots
/// are refused; a certificate rotated in place is served without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desk_speaks_tls_and_plaintext_is_refused() {
    let dir = TempDir::new().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let [ca_file, cert, key, _, _] = dev_tls(dir.path());
    let (_server, addr, log) = spawn_serve(
        data,
        &[
            ("REFNET_TLS__CERT", &cert),
            ("REFNET_TLS__KEY", &key),
            ("REFNET_TLS__RELOAD_SECONDS", "1"),
        ],
    )
    .await;
    let token = officer_token(data, "ngo-shelter-nairobi");
    let https = format!("https://localhost:{}", port(&addr));

    let (ok, err) = inbox(&https, &token, &["--ca", &ca_file]);
    assert!(
        ok,
        "over TLS with the test CA: {err}\n{}",
        log.lock().expect("log")
    );
    let (ok, _) = inbox(&format!("http://{addr}"), &token, &[]);
    assert!(!ok, "a plaintext client is refused by a TLS listener");
    let (ok, _) = inbox(&https, &token, &[]);
    assert!(!ok, "the test CA is not among the system's roots");

    // Rotation: a certificate from another CA, written over the files; the
    // server serves it within its reload interval, no restart.
    let next = Ca::new("refnet next CA");
    let next_file = next.write(dir.path(), "next-ca");
    let (new_cert, new_key) = next.sign(dir.path(), "rotated", &["localhost", "127.0.0.1"]);
    std::fs::copy(&new_key, &key).expect("key");
    std::fs::copy(&new_cert, &cert).expect("cert");
    let mut rotated = false;
    for _ in 0..60 {
        if inbox(&https, &token, &["--ca", &next_file]).0 {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        rotated,
        "the rotated certificate is served: {}",
        log.lock().expect("log")
    );
    let (ok, _) = inbox(&https, &token, &["--ca", &ca_file]);
    assert!(!ok, "the old CA no longer verifies the server");
}

/// Mutual TLS: only a client certificate issued by the configured CA gets
/// through; none, or one from another CA, is refused in the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_client_certificate_from_another_ca() {
    let dir = TempDir::new().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let [ca_file, cert, key, client_cert, client_key] = dev_tls(dir.path());
    let stranger = Ca::new("someone else's CA");
    let (other_cert, other_key) = stranger.sign(dir.path(), "stranger", &["stranger.example"]);
    let (_server, addr, log) = spawn_serve(
        data,
        &[
            ("REFNET_TLS__CERT", &cert),
            ("REFNET_TLS__KEY", &key),
            ("REFNET_TLS__CLIENT_CA", &ca_file),
        ],
    )
    .await;
    let token = officer_token(data, "ngo-shelter-nairobi");
    let https = format!("https://localhost:{}", port(&addr));

    let (ok, err) = inbox(
        &https,
        &token,
        &[
            "--ca",
            &ca_file,
            "--client-cert",
            &client_cert,
            "--client-key",
            &client_key,
        ],
    );
    assert!(
        ok,
        "a client certificate from the CA: {err}\n{}",
        log.lock().expect("log")
    );
    let (ok, _) = inbox(&https, &token, &["--ca", &ca_file]);
    assert!(!ok, "no client certificate is refused");
    let (ok, _) = inbox(
        &https,
        &token,
        &[
            "--ca",
            &ca_file,
            "--client-cert",
            &other_cert,
            "--client-key",
            &other_key,
        ],
    );
    assert!(!ok, "a client certificate from another CA is refused");
}

/// Secure by default: beyond loopback without TLS, `refnet serve` refuses to
/// start and names the flags; half a TLS configuration is refused too.
#[test]
fn plaintext_beyond_loopback_is_refused_at_start() {
    let dir = TempDir::new().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8");
    let refused = Command::new(REFNET)
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir", data])
        .env_remove("REFNET_DATABASE_URL")
        .output()
        .expect("run refnet");
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("without TLS")
            && said.contains("--tls-cert")
            && said.contains("--insecure-plaintext"),
        "{said}"
    );
    let half = Command::new(REFNET)
        .args([
            "serve",
            "--data-dir",
            data,
            "--tls-cert",
            "/nonexistent.pem",
        ])
        .env_remove("REFNET_DATABASE_URL")
        .output()
        .expect("run refnet");
    assert!(!half.status.success());
    assert!(String::from_utf8_lossy(&half.stderr).contains("--tls-key"));
}

/// PostgreSQL over TLS: with `sslmode=verify-full` and the test CA, refnet
/// connects, migrates, files and reads back a referral; a server certificate
/// from another CA, or a host name the certificate does not name, is refused
/// with an error that says so. (PostgreSQL suite only: a server of the test's
/// own, `ssl=on`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_is_verified() {
    let dir = TempDir::new().expect("tempdir");
    let ca = Ca::new("refnet test database CA");
    let (cert, key) = ca.sign(dir.path(), "db", &["localhost"]);
    let read = |p: &str| std::fs::read_to_string(p).expect("pem");
    let Some(server) = crate::pg::PrivateServer::start_with(Some((&read(&cert), &read(&key))))
    else {
        return;
    };
    let ca_file = ca.write(dir.path(), "ca");
    let other_file = Ca::new("another CA").write(dir.path(), "other-ca");
    let url = |host: &str, root: &str| {
        format!(
            "postgres://postgres@{host}:{}/postgres?sslmode=verify-full&sslrootcert={root}",
            server.port()
        )
    };

    let app = crate::common::TestApp::spawn_with(Some(url("localhost", &ca_file)), |_| {}).await;
    let filed = app
        .file("police-nairobi", crate::common::canary_draft())
        .await;
    let referral = filed.referral.expect("referral");
    let read_back = app.get_as("police-nairobi", &referral.id).await;
    assert_eq!(
        read_back.referral.expect("referral").reference_code,
        referral.reference_code
    );
    app.stop().await;

    for (bad, why) in [
        (
            url("localhost", &other_file),
            "a certificate from another CA",
        ),
        (
            url("127.0.0.1", &ca_file),
            "a host name the certificate does not name",
        ),
    ] {
        let out = Command::new(REFNET)
            .args(["migrate", "--database-url", &bad])
            .output()
            .expect("run refnet");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{why} is refused");
        assert!(
            said.to_ascii_lowercase().contains("certificate"),
            "{why}: the error names the certificate: {said}"
        );
    }
}

/// TLS connections on a fresh loopback port, served with `cert`/`key`
/// through refnet's own listener code (`refnet_core::tls`): the established
/// streams, and the port.
pub(crate) async fn tls_incoming(
    cert: &Path,
    key: &Path,
) -> (
    impl tokio_stream::Stream<
        Item = std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
    > + use<>,
    u16,
) {
    let config = refnet_core::config::Config {
        tls: refnet_core::config::TlsConfig {
            cert: Some(cert.to_owned()),
            key: Some(key.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    let tls = refnet_core::tls::ServerTls::from_config(&config)
        .expect("tls")
        .expect("configured");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (tls.incoming(listener), port)
}

/// Serves `body` as JSON over HTTPS (HTTP/1.1) with `cert`/`key`; returns the
/// URL of `/.well-known/jwks.json`.
async fn https_json(cert: &str, key: &str, body: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_stream::StreamExt;
    let (incoming, port) = tls_incoming(Path::new(cert), Path::new(key)).await;
    let mut incoming = Box::pin(incoming);
    tokio::spawn(async move {
        while let Some(Ok(mut stream)) = incoming.next().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    format!("https://localhost:{port}/.well-known/jwks.json")
}

/// Service -> identity provider over TLS with a private CA: refnet fetches
/// the JWKS from an `https://` URL verified against `tls.outbound_ca` and
/// accepts tokens signed by it; without that CA the key set cannot be
/// fetched and refnet does not start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_is_fetched_over_tls_from_a_private_ca() {
    use refnet_core::devkeys;
    let dir = TempDir::new().expect("tempdir");
    let [ca_file, cert, key, _, _] = dev_tls(dir.path());
    let idp = dir.path().join("idp");
    devkeys::ensure(&idp).expect("idp key");
    let jwks = std::fs::read_to_string(devkeys::jwks_path(&idp)).expect("jwks");
    let url = https_json(&cert, &key, jwks).await;

    let untrusted = {
        let data = TempDir::new().expect("tempdir");
        let mut config = refnet_core::config::Config {
            data_dir: data.path().to_path_buf(),
            ..Default::default()
        }
        .embedded();
        config.auth.jwks_url = Some(url.clone());
        refnet_core::AppContext::build(config).await.map(|_| ())
    };
    let refused = untrusted.expect_err("the JWKS server's CA is not trusted");
    assert!(
        refused.to_string().contains("token keys"),
        "the error names the key set: {refused}"
    );

    let app = crate::common::TestApp::spawn_with(None, |c| {
        c.auth.jwks_url = Some(url);
        c.tls.outbound_ca = Some(ca_file.clone().into());
    })
    .await;
    let signer = devkeys::DevSigner::load(&idp, "refnet-dev", "refnet").expect("signer");
    let token = signer
        .mint(&devkeys::TokenRequest {
            officer_id: "officer-1".into(),
            agency_id: "police-nairobi".into(),
            agency_kind: refnet_api::v1::AgencyKind::Police,
            roles: vec!["officer".into()],
            ttl: Duration::from_secs(600),
        })
        .expect("token");
    let listed = app
        .intake()
        .await
        .list_referrals(crate::common::authed(
            refnet_api::v1::ListReferralsRequest::default(),
            &token,
        ))
        .await;
    assert!(
        listed.is_ok(),
        "a token of the JWKS fetched over TLS: {listed:?}"
    );
    app.stop().await;
}

/// A collector's OTLP trace endpoint: what it receives, as "SERVICE SPAN".
#[derive(Clone, Default)]
pub(crate) struct Collector(pub(crate) std::sync::Arc<std::sync::Mutex<Vec<String>>>);

/// An OTLP trace collector over TLS with `cert` and `key`, on 127.0.0.1:port.
pub(crate) async fn otlp_collector(cert: &Path, key: &Path) -> (Collector, u16) {
    let (incoming, port) = tls_incoming(cert, key).await;
    let collector = Collector::default();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer::new(
                    collector.clone(),
                ),
            )
            .serve_with_incoming(incoming),
    );
    (collector, port)
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for Collector
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let mut seen = self.0.lock().expect("collector");
        for spans in request.into_inner().resource_spans {
            let service = spans
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s),
                    ) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in spans.scope_spans {
                for span in scope.spans {
                    seen.push(format!("{service} {}", span.name));
                }
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

/// Traces leave refnet over TLS: to a collector whose certificate comes from
/// a private CA, export works with that CA as `tls.outbound_ca` and not
/// without it (refnet serves either way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_are_exported_to_a_collector_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [ca, cert, key, ..] = dev_tls(dir.path());
    let (collector, port) = otlp_collector(Path::new(&cert), Path::new(&key)).await;
    let received = collector.0.clone();
    let endpoint = format!("https://localhost:{port}");
    for trusted in [true, false] {
        received.lock().expect("collector").clear();
        let data = dir.path().join(format!("data-{trusted}"));
        let data = data.to_str().expect("utf-8 path");
        let mut env = vec![
            ("REFNET_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RUST_LOG", "info"),
        ];
        if trusted {
            env.push(("REFNET_TLS__OUTBOUND_CA", ca.as_str()));
        }
        let (_server, addr, log) = crate::cli::spawn_serve(data, &env).await;
        let token = crate::cli::officer_token(data, "police-nairobi");
        let (listed, stderr) = inbox(&format!("http://{addr}"), &token, &[]);
        assert!(listed, "{stderr}");
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(if trusted { 20 } else { 3 });
        let exported = loop {
            let seen = received.lock().expect("collector").clone();
            if seen.iter().any(|s| s.starts_with("refnet "))
                || tokio::time::Instant::now() > deadline
            {
                break seen;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if trusted {
            assert!(
                exported
                    .iter()
                    .any(|s| s.contains("/refnet.v1.RoutingService/ListInbox")),
                "spans over TLS: {exported:?}\n{}",
                log.lock().expect("log")
            );
        } else {
            assert!(
                exported.is_empty(),
                "exported to a collector refnet cannot verify: {exported:?}"
            );
        }
    }
}

/// The gateway's client certificate rotates without a restart: against a
/// service that requires certificates of another CA, its calls are refused
/// (UNAVAILABLE, named) until a certificate of that CA is written over its
/// files; then they pass, within `tls.reload_seconds`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_client_certificate_rotates_without_a_restart() {
    let dir = TempDir::new().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let [ca_file, cert, key, client_cert, client_key] = dev_tls(dir.path());
    let clients = Ca::new("refnet gateway clients CA");
    let clients_file = clients.write(dir.path(), "clients-ca");
    let (_server, addr, log) = spawn_serve(
        data,
        &[
            ("REFNET_TLS__CERT", &cert),
            ("REFNET_TLS__KEY", &key),
            ("REFNET_TLS__CLIENT_CA", &clients_file),
        ],
    )
    .await;
    let token = officer_token(data, "ngo-shelter-nairobi");
    let backend = format!("https://localhost:{}", port(&addr));
    // The gateway starts with the development client certificate (the
    // service's own CA, which the service does not accept from clients).
    let outbound_cert = dir.path().join("gateway-client.pem");
    let outbound_key = dir.path().join("gateway-client.key");
    std::fs::copy(&client_cert, &outbound_cert).expect("cert");
    std::fs::copy(&client_key, &outbound_key).expect("key");
    let gateway_port = crate::processes::free_port();
    let gateway = Command::new(REFNET)
        .args(["service", "gateway", "--listen"])
        .arg(format!("127.0.0.1:{gateway_port}"))
        .args(["--intake", &backend, "--routing", &backend])
        .args(["--protection", &backend, "--statistics", &backend])
        .env_remove("REFNET_CONFIG")
        .env("REFNET_TLS__OUTBOUND_CA", &ca_file)
        .env("REFNET_TLS__OUTBOUND_CERT", &outbound_cert)
        .env("REFNET_TLS__OUTBOUND_KEY", &outbound_key)
        .env("REFNET_TLS__RELOAD_SECONDS", "1")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the gateway");
    let _gateway = KillOnDrop(gateway);
    let through = format!("http://127.0.0.1:{gateway_port}");
    let mut refused = String::new();
    for _ in 0..100 {
        let (ok, err) = inbox(&through, &token, &[]);
        assert!(
            !ok,
            "the service accepted a client certificate of another CA"
        );
        refused = err;
        if refused.contains("UNAVAILABLE") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused.contains("the routing service is unreachable"),
        "{refused}"
    );

    let (next_cert, next_key) = clients.sign(dir.path(), "gateway", &["refnet-gateway"]);
    std::fs::copy(&next_key, &outbound_key).expect("key");
    std::fs::copy(&next_cert, &outbound_cert).expect("cert");
    let mut passed = false;
    for _ in 0..60 {
        if inbox(&through, &token, &[]).0 {
            passed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        passed,
        "the rotated client certificate is presented: {}",
        log.lock().expect("log")
    );
}

/// A child process killed on drop.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
