//! Development certificates: a CA made on the spot and the certificates it
//! signs, for `refnet keys dev-tls`, `refnet bench --tls` and the tests. Never
//! for production: there, certificates come from the operator's CA or
//! cert-manager.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A development CA.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl DevCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate (PEM).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A certificate for `names` (host names or IP addresses), named `name`:
    /// (certificate PEM, private key PEM).
    pub fn sign(&self, name: &str, names: &[&str]) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Writes the CA as `DIR/NAME.pem`; returns the path.
    pub fn write(&self, dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, &self.pem)?;
        Ok(path)
    }

    /// Signs a certificate for `names` and writes `DIR/NAME.pem` and
    /// `DIR/NAME.key`; returns their paths.
    pub fn write_signed(
        &self,
        dir: &Path,
        name: &str,
        names: &[&str],
    ) -> anyhow::Result<(PathBuf, PathBuf)> {
        let (cert, key) = self.sign(name, names)?;
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert)?;
        std::fs::write(&key_path, key)?;
        restrict(&key_path)?;
        Ok((cert_path, key_path))
    }
}

#[cfg(unix)]
fn restrict(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Writes a development CA (`ca.pem`), a server certificate for `hosts` and
/// `localhost` (`server.pem`, `server.key`) and a client certificate for
/// mutual TLS (`client.pem`, `client.key`) into `out`.
pub fn write_dev_tls(out: &Path, hosts: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let ca = DevCa::new("refnet development CA")?;
    ca.write(out, "ca")?;
    let mut names: Vec<&str> = vec!["localhost", "127.0.0.1"];
    names.extend(hosts.iter().map(String::as_str));
    ca.write_signed(out, "server", &names)?;
    ca.write_signed(out, "client", &["refnet-client"])?;
    Ok(())
}
