//! The development signing key of the embedded default.
//!
//! `refnet serve` generates an Ed25519 key pair in its data directory on first
//! run (`dev-signing-key.pem`, mode 0600, and `jwks.json` with the public key
//! pinned to EdDSA) and trusts that JWKS; `refnet token` signs with the private
//! key. Production trusts the identity provider's JWKS instead and has no
//! private key at all.

use std::path::{Path, PathBuf};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::{auth::agency_kind_name, crypto::write_private};
use refnet_api::v1::AgencyKind;

/// File name of the private key in the data directory.
pub const PRIVATE_KEY_FILE: &str = "dev-signing-key.pem";
/// File name of the public JWKS in the data directory.
pub const JWKS_FILE: &str = "jwks.json";

/// A failure to create, read or use the development key.
#[derive(Debug, thiserror::Error)]
#[error("development key: {0}")]
pub struct DevKeyError(String);

/// The development signer: mints tokens the embedded server accepts.
pub struct DevSigner {
    kid: String,
    key: EncodingKey,
    issuer: String,
    audience: String,
}

/// What a minted token says.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// Officer id (`sub`).
    pub officer_id: String,
    /// Agency id.
    pub agency_id: String,
    /// Agency kind.
    pub agency_kind: AgencyKind,
    /// Roles, as claim strings.
    pub roles: Vec<String>,
    /// Lifetime.
    pub ttl: std::time::Duration,
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    agency_id: &'a str,
    agency_kind: &'a str,
    roles: &'a [String],
}

/// The JWKS path in `data_dir`.
pub fn jwks_path(data_dir: &Path) -> PathBuf {
    data_dir.join(JWKS_FILE)
}

/// Creates the key pair in `data_dir` unless it exists; returns the JWKS path.
pub fn ensure(data_dir: &Path) -> Result<PathBuf, DevKeyError> {
    let private = data_dir.join(PRIVATE_KEY_FILE);
    let jwks = jwks_path(data_dir);
    if private.exists() && jwks.exists() {
        return Ok(jwks);
    }
    let signing = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = signing
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| DevKeyError(e.to_string()))?;
    write_private(&private, pem.as_bytes())
        .map_err(|e| DevKeyError(format!("{}: {e}", private.display())))?;
    let set = jwks_for(&signing);
    std::fs::write(&jwks, set).map_err(|e| DevKeyError(format!("{}: {e}", jwks.display())))?;
    Ok(jwks)
}

fn kid_for(signing: &SigningKey) -> String {
    let digest = crate::crypto::sha256(signing.verifying_key().as_bytes());
    format!("dev-{}", URL_SAFE_NO_PAD.encode(&digest[..9]))
}

fn jwks_for(signing: &SigningKey) -> String {
    serde_json::json!({
        "keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "use": "sig",
            "alg": "EdDSA",
            "kid": kid_for(signing),
            "x": URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes()),
        }]
    })
    .to_string()
}

impl DevSigner {
    /// Loads the private key from `data_dir`.
    pub fn load(data_dir: &Path, issuer: &str, audience: &str) -> Result<Self, DevKeyError> {
        let path = data_dir.join(PRIVATE_KEY_FILE);
        let pem = std::fs::read_to_string(&path).map_err(|e| {
            DevKeyError(format!(
                "{}: {e} (run `refnet serve` once first)",
                path.display()
            ))
        })?;
        let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|e| DevKeyError(e.to_string()))?;
        let key =
            EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| DevKeyError(e.to_string()))?;
        Ok(Self {
            kid: kid_for(&signing),
            key,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// The key id tokens carry.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs a token for `request`.
    pub fn mint(&self, request: &TokenRequest) -> Result<String, DevKeyError> {
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(request.ttl.as_secs()).map_err(|e| DevKeyError(e.to_string()))?;
        let claims = MintedClaims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: &request.officer_id,
            iat: now,
            nbf: now,
            exp: now + ttl,
            agency_id: &request.agency_id,
            agency_kind: agency_kind_name(request.agency_kind),
            roles: &request.roles,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| DevKeyError(e.to_string()))
    }
}
