//! The server under test (`refnet serve` as a child process, killed on drop)
//! and the development tokens the load tool calls it with.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use refnet_api::v1 as pb;
use refnet_core::devkeys::{DevSigner, TokenRequest};
use tonic::{
    Request,
    transport::{Certificate, ClientTlsConfig, Endpoint},
};

/// A CA and a certificate for `localhost` it signed, for `--tls` runs: the
/// CA's PEM, and the directory holding `server.pem` and `server.key`.
fn test_certificate() -> anyhow::Result<(String, tempfile::TempDir)> {
    let ca = crate::certs::DevCa::new("refnet bench CA")?;
    let dir = tempfile::tempdir()?;
    ca.write_signed(dir.path(), "server", &["localhost"])?;
    Ok((ca.pem().to_owned(), dir))
}

/// The server under test, killed on drop.
pub(super) struct Server {
    child: Child,
    pub(super) addr: String,
    _dir: Option<tempfile::TempDir>,
    pub(super) data_dir: PathBuf,
    /// With `--tls`: the CA (PEM) that signed the server's certificate, and
    /// the directory holding them.
    tls: Option<(String, tempfile::TempDir)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub(super) fn start(
        database_url: Option<&str>,
        data_dir: Option<&Path>,
        tls: bool,
    ) -> anyhow::Result<Self> {
        let (dir, data_dir) = match data_dir {
            Some(d) => (None, d.to_owned()),
            None => {
                let dir = tempfile::tempdir()?;
                let data_dir = dir.path().join("data");
                (Some(dir), data_dir)
            }
        };
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .env("RUST_LOG", "warn")
            .env_remove("REFNET_OTLP_ENDPOINT")
            // The load tool measures throughput, not the rate limits: a few
            // simulated officers make thousands of calls a second.
            .env("REFNET_LIMITS__OFFICER_PER_SECOND", "0")
            .env("REFNET_LIMITS__AGENCY_PER_SECOND", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match database_url {
            Some(url) => command.args(["--database-url", url]),
            None => command.env_remove("REFNET_DATABASE_URL"),
        };
        let tls = if tls {
            let (ca, dir) = test_certificate()?;
            command
                .arg("--tls-cert")
                .arg(dir.path().join("server.pem"))
                .arg("--tls-key")
                .arg(dir.path().join("server.key"));
            Some((ca, dir))
        } else {
            None
        };
        let mut child = command.spawn().context("starting refnet serve")?;
        let stderr = child.stderr.take().context("server stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = refnet_core::announce::served_address(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.to_owned());
                } else if tx.is_some() {
                    eprintln!("server: {line}");
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .context("refnet serve did not start")?;
        Ok(Self {
            child,
            addr,
            _dir: dir,
            data_dir,
            tls,
        })
    }

    /// Where clients connect: `http://ADDR`, or with `--tls`
    /// `https://localhost:PORT` verified against the CA made for this run.
    pub(super) fn endpoint(&self) -> anyhow::Result<Endpoint> {
        Ok(match &self.tls {
            None => Endpoint::from_shared(format!("http://{}", self.addr))?,
            Some((ca, _)) => {
                let port = self.addr.rsplit(':').next().unwrap_or_default();
                Endpoint::from_shared(format!("https://localhost:{port}"))?
                    .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))?
            }
        })
    }

    /// (current, peak) resident set size in MiB.
    pub(super) fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .map_or(f64::NAN, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// Tokens for the demo agencies, minted once.
pub(super) struct Tokens {
    pub(super) signer: DevSigner,
}

impl Tokens {
    pub(super) fn officer(&self, agency: &str) -> anyhow::Result<String> {
        self.with_role(agency, "officer")
    }

    pub(super) fn with_role(&self, agency: &str, role: &str) -> anyhow::Result<String> {
        let kind = match agency.split('-').next().unwrap_or_default() {
            "police" => pb::AgencyKind::Police,
            "prosecution" => pb::AgencyKind::Prosecution,
            "immigration" => pb::AgencyKind::Immigration,
            "labour" => pb::AgencyKind::Labour,
            "children" => pb::AgencyKind::Children,
            "ngo" => pb::AgencyKind::Ngo,
            "health" => pb::AgencyKind::Health,
            other => bail!("no demo agency kind for {other}"),
        };
        Ok(self.signer.mint(&TokenRequest {
            officer_id: "bench-officer".into(),
            agency_id: agency.into(),
            agency_kind: kind,
            roles: vec![role.into()],
            ttl: Duration::from_secs(3600),
        })?)
    }
}

pub(super) fn authed<T>(message: T, token: &str) -> anyhow::Result<Request<T>> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}
