//! Identity: every call carries a JWT bearer token, verified here before any
//! handler runs.
//!
//! - Keys come from a JWKS (file or URL), cached by key id. A token naming an
//!   unknown key id triggers one refresh, at most once per configured interval,
//!   so a rotated-in key works without a restart and a flood of made-up key ids
//!   cannot hammer the identity provider. Several keys are valid at once.
//! - The algorithm is pinned per key by the JWK's `alg`: a token whose header
//!   names another algorithm is refused, which shuts out `none` and the
//!   HMAC-signed-with-the-public-key trick. Symmetric keys are never loaded.
//! - Issuer, audience, expiry and not-before are checked.
//! - The agency named in the token must be registered, active and of the kind
//!   the token claims.
//!
//! tonic interceptors are synchronous and a key refresh is not, so the check is
//! a tower layer ([`AuthLayer`]) that puts the [`Principal`] into the request's
//! extensions.

use std::{
    collections::{BTreeSet, HashMap},
    path::PathBuf,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    jwk::{JwkSet, KeyAlgorithm},
};
use serde::Deserialize;
use sha2::Digest as _;
use tokio::sync::{Mutex, RwLock};

use crate::{agencies::AgencyRegistry, config::AuthConfig, error::ServiceError};

pub use crate::principal::{Principal, Role, agency_kind_name, parse_agency_kind};

/// The gRPC method path of the call (`/package.Service/Method`), put into the
/// request's extensions by [`AuthLayer`] for the audit record.
#[derive(Debug, Clone)]
pub struct RpcPath(pub String);

/// The claims refnet reads from a token.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    agency_id: String,
    agency_kind: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// Where keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A JWKS file on disk.
    File(PathBuf),
    /// A JWKS URL.
    Url(String),
}

/// A verification key with its pinned algorithm.
#[derive(Clone)]
struct PinnedKey {
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Why a token was refused (all answered UNAUTHENTICATED).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No or malformed `authorization` metadata.
    #[error("missing bearer token")]
    Missing,
    /// The token is malformed, badly signed, expired, or for someone else.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token's key id is not in the key set.
    #[error("unknown signing key")]
    UnknownKey,
    /// The agency is unknown, inactive, or not of the claimed kind.
    #[error("agency not registered or not active")]
    Agency,
    /// The officer's access is suspended.
    #[error("officer suspended")]
    Suspended,
    /// The token carries a role refnet does not know, or none.
    #[error("unknown role")]
    Role,
    /// The key set could not be loaded.
    #[error("key set unavailable: {0}")]
    KeySet(String),
}

impl From<AuthError> for ServiceError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Role => {
                ServiceError::PermissionDenied("role not recognised by refnet".into())
            }
            AuthError::KeySet(e) => ServiceError::Unavailable(format!("key set: {e}")),
            other => ServiceError::Unauthenticated(other.to_string()),
        }
    }
}

/// Verifies tokens and turns them into [`Principal`]s.
pub struct Authenticator {
    config: AuthConfig,
    source: KeySource,
    keys: RwLock<Arc<HashMap<String, PinnedKey>>>,
    last_refresh: Mutex<Option<Instant>>,
    agencies: Arc<AgencyRegistry>,
    http: reqwest::Client,
    verified: std::sync::Mutex<HashMap<[u8; 32], Verified>>,
    /// Suspended officers, as (agency id, officer id).
    suspended: std::sync::RwLock<std::collections::HashSet<(String, String)>>,
}

/// A token that passed every check, remembered by its SHA-256 so the next
/// call with it skips the signature check (tens of microseconds of Ed25519 or
/// RSA). Expiry, the key's presence in the current key set and the agency's
/// registration are checked again on every use.
#[derive(Clone)]
struct Verified {
    principal: Principal,
    exp: i64,
    kid: String,
}

/// Verified tokens remembered at most; the cache is emptied when full.
const VERIFIED_CAPACITY: usize = 10_000;

impl Authenticator {
    /// Loads the key set from `source` (a URL over HTTPS verified against the
    /// system's roots and `roots`); fails when it cannot be read or holds no usable key.
    pub async fn new(
        config: AuthConfig,
        source: KeySource,
        agencies: Arc<AgencyRegistry>,
        roots: Vec<reqwest::Certificate>,
    ) -> Result<Self, AuthError> {
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(10));
        for root in roots {
            http = http.add_root_certificate(root);
        }
        let http = http.build().map_err(|e| AuthError::KeySet(e.to_string()))?;
        let auth = Self {
            config,
            source,
            keys: RwLock::new(Arc::new(HashMap::new())),
            last_refresh: Mutex::new(None),
            agencies,
            http,
            verified: std::sync::Mutex::new(HashMap::new()),
            suspended: std::sync::RwLock::new(std::collections::HashSet::new()),
        };
        let keys = auth.fetch_keys().await?;
        if keys.is_empty() {
            return Err(AuthError::KeySet(
                "no usable signing key in the key set".into(),
            ));
        }
        *auth.keys.write().await = Arc::new(keys);
        *auth.last_refresh.lock().await = Some(Instant::now());
        Ok(auth)
    }

    async fn fetch_keys(&self) -> Result<HashMap<String, PinnedKey>, AuthError> {
        let text = match &self.source {
            KeySource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| AuthError::KeySet(format!("{}: {e}", path.display())))?,
            KeySource::Url(url) => self
                .http
                .get(url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| AuthError::KeySet(e.to_string()))?
                .text()
                .await
                .map_err(|e| AuthError::KeySet(e.to_string()))?,
        };
        parse_jwks(&text)
    }

    /// Refreshes the key set unless it was refreshed within the minimum interval.
    async fn refresh(&self) -> Result<(), AuthError> {
        let mut last = self.last_refresh.lock().await;
        let min = Duration::from_secs(self.config.refresh_min_interval_seconds);
        if last.is_some_and(|t| t.elapsed() < min) {
            return Ok(());
        }
        *last = Some(Instant::now());
        match self.fetch_keys().await {
            Ok(keys) if !keys.is_empty() => {
                *self.keys.write().await = Arc::new(keys);
                tracing::info!("signing key set refreshed");
                Ok(())
            }
            Ok(_) => {
                tracing::warn!("refreshed key set holds no usable key; keeping the old one");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "key set refresh failed; keeping the old one");
                Ok(())
            }
        }
    }

    async fn key_for(&self, kid: &str) -> Result<PinnedKey, AuthError> {
        if let Some(key) = self.keys.read().await.get(kid) {
            return Ok(key.clone());
        }
        self.refresh().await?;
        self.keys
            .read()
            .await
            .get(kid)
            .cloned()
            .ok_or(AuthError::UnknownKey)
    }

    /// Replaces the set of suspended officers, as (agency id, officer id).
    pub fn set_suspended(&self, suspended: std::collections::HashSet<(String, String)>) {
        match self.suspended.write() {
            Ok(mut set) => *set = suspended,
            Err(poisoned) => *poisoned.into_inner() = suspended,
        }
    }

    /// Whether `principal`'s officer is suspended. Closed on a poisoned lock.
    fn is_suspended(&self, principal: &Principal) -> bool {
        self.suspended.read().map_or(true, |set| {
            set.contains(&(principal.agency_id.clone(), principal.officer_id.clone()))
        })
    }

    /// Verifies a bearer token from `authorization` metadata.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let principal = self.verify(authorization).await?;
        if self.is_suspended(&principal) {
            return Err(AuthError::Suspended);
        }
        Ok(principal)
    }

    /// The token's principal, every check but suspension done.
    async fn verify(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(principal) = self.remembered(&digest).await {
            return Ok(principal);
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Invalid("token names no key id".into()))?;
        let pinned = self.key_for(&kid).await?;
        if header.alg != pinned.algorithm {
            return Err(AuthError::Invalid(
                "algorithm not allowed for this key".into(),
            ));
        }
        let mut validation = Validation::new(pinned.algorithm);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = self.config.leeway_seconds;
        let data = jsonwebtoken::decode::<Claims>(token, &pinned.key, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let kind = parse_agency_kind(&claims.agency_kind).ok_or(AuthError::Agency)?;
        match self.agencies.get(&claims.agency_id) {
            Some(agency) if agency.active && agency.kind == kind => {}
            _ => return Err(AuthError::Agency),
        }
        let mut roles = BTreeSet::new();
        for role in &claims.roles {
            roles.insert(Role::parse(role).ok_or(AuthError::Role)?);
        }
        if roles.is_empty() {
            return Err(AuthError::Role);
        }
        if claims.sub.is_empty() || claims.sub.len() > 128 {
            return Err(AuthError::Invalid("bad subject".into()));
        }
        let principal = Principal {
            officer_id: claims.sub,
            agency_id: claims.agency_id,
            agency_kind: kind,
            roles,
        };
        if let Ok(mut verified) = self.verified.lock() {
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
            verified.insert(
                digest,
                Verified {
                    principal: principal.clone(),
                    exp: claims.exp,
                    kid,
                },
            );
        }
        Ok(principal)
    }

    /// The principal of a token verified before, if it is still good: not
    /// expired (with the same leeway), its key still in the key set, its
    /// agency still registered, active and of the same kind.
    async fn remembered(&self, digest: &[u8; 32]) -> Option<Principal> {
        let hit = self.verified.lock().ok()?.get(digest).cloned()?;
        let now = chrono::Utc::now().timestamp();
        let leeway = i64::try_from(self.config.leeway_seconds).unwrap_or(0);
        let agency_ok = self
            .agencies
            .get(&hit.principal.agency_id)
            .is_some_and(|a| a.active && a.kind == hit.principal.agency_kind);
        if now > hit.exp.saturating_add(leeway)
            || !agency_ok
            || !self.keys.read().await.contains_key(&hit.kid)
        {
            if let Ok(mut verified) = self.verified.lock() {
                verified.remove(digest);
            }
            return None;
        }
        Some(hit.principal)
    }
}

/// Parses a JWKS, keeping only asymmetric keys with a pinned, allowed `alg` and a `kid`.
fn parse_jwks(text: &str) -> Result<HashMap<String, PinnedKey>, AuthError> {
    let set: JwkSet =
        serde_json::from_str(text).map_err(|e| AuthError::KeySet(format!("not a JWKS: {e}")))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            tracing::warn!("JWKS key without kid ignored");
            continue;
        };
        let algorithm = match jwk.common.key_algorithm {
            Some(KeyAlgorithm::EdDSA) => Algorithm::EdDSA,
            Some(KeyAlgorithm::ES256) => Algorithm::ES256,
            Some(KeyAlgorithm::ES384) => Algorithm::ES384,
            Some(KeyAlgorithm::RS256) => Algorithm::RS256,
            Some(KeyAlgorithm::PS256) => Algorithm::PS256,
            other => {
                tracing::warn!(kid = %kid, alg = ?other, "JWKS key with no or disallowed alg ignored");
                continue;
            }
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid, PinnedKey { algorithm, key });
            }
            Err(e) => tracing::warn!(kid = %kid, error = %e, "unusable JWKS key ignored"),
        }
    }
    Ok(keys)
}

/// Paths served without a token: health checks (for probes) and reflection (the schema only).
fn is_public(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
}

/// A tower layer that authenticates every call but health and reflection,
/// then applies the caller's rate limits.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
    limits: Arc<crate::limits::RateLimits>,
    permissions: Permissions,
}

/// The process's permission table, as the layer reads it.
type Permissions = Arc<crate::reload::Shared<crate::permissions::Permissions>>;

impl AuthLayer {
    /// A layer verifying with `auth`, limiting with `limits` and checking the
    /// caller's roles and agency kind against `permissions`.
    pub fn new(
        auth: Arc<Authenticator>,
        limits: Arc<crate::limits::RateLimits>,
        permissions: Permissions,
    ) -> Self {
        Self {
            auth,
            limits,
            permissions,
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
            limits: self.limits.clone(),
            permissions: self.permissions.clone(),
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
    limits: Arc<crate::limits::RateLimits>,
    permissions: Permissions,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone is the one that was not polled ready; swap so the ready one serves.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        let limits = self.limits.clone();
        let permissions = self.permissions.clone();
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            request.extensions_mut().insert(RpcPath(path));
            if is_public(request.uri().path()) {
                return inner.call(request).await;
            }
            let header = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match auth.authenticate(header).await {
                Ok(principal) => {
                    if let Err(limited) = limits.check(&principal) {
                        tracing::info!(
                            path = request.uri().path(),
                            scope = limited.scope,
                            "call refused: rate limit"
                        );
                        return Ok(ServiceError::ResourceExhausted {
                            scope: limited.scope,
                            retry_after: limited.retry_after,
                        }
                        .into_status()
                        .into_http());
                    }
                    tracing::Span::current().record(
                        "refnet.agency_kind",
                        agency_kind_name(principal.agency_kind),
                    );
                    // Roles and agency kind, from the permission table,
                    // before any handler runs.
                    if let Err(denied) = permissions
                        .current()
                        .check(request.uri().path(), &principal)
                    {
                        tracing::info!(path = request.uri().path(), "call refused: permissions");
                        return Ok(denied.into_status().into_http());
                    }
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Err(err) => {
                    tracing::info!(path = request.uri().path(), reason = %err, "call refused");
                    Ok(ServiceError::from(err).into_status().into_http())
                }
            }
        })
    }
}
