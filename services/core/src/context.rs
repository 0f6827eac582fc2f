//! The application context: what every service handler shares, built once
//! from the configuration at start-up.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::{
    agencies::{self, AgencyRegistry},
    audit::AuditLog,
    auth::{Authenticator, KeySource},
    config::Config,
    crypto::Keyring,
    db, devkeys,
    policy::Policy,
};

/// Why the application could not start. Names the part that failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created.
    #[error("data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    /// The database could not be reached or migrated.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// The master key is missing or malformed.
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    /// The agency registry could not be loaded.
    #[error("agency registry: {0}")]
    Agencies(#[from] agencies::RegistryError),
    /// The key set could not be loaded.
    #[error("token keys: {0}")]
    Auth(#[from] crate::auth::AuthError),
    /// The development key could not be created.
    #[error(transparent)]
    DevKey(#[from] devkeys::DevKeyError),
    /// The redaction policy file is invalid.
    #[error("redaction policy: {0}")]
    Policy(#[from] crate::policy::PolicyError),
    /// The permissions file is invalid or wider than the built-in permissions.
    #[error("permissions: {0}")]
    Permissions(#[from] crate::permissions::PermissionsError),
    /// The keyring's root could not be loaded.
    #[error("keys: {0}")]
    Keys(#[from] crate::keys::KeysError),
    /// No token key source is configured.
    #[error("no token key source: set auth.jwks_file or auth.jwks_url")]
    NoKeySource,
    /// A TLS setting is wrong (a CA file that does not load).
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// How many records' compiled matchers are kept at most.
const MATCHER_CACHE_CAPACITY: usize = 1024;
/// How long a compiled matcher (and so the identifiers it holds) is kept
/// after it was built.
const MATCHER_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(120);

/// Shared state of a running refnet process.
#[derive(Clone)]
pub struct AppContext {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    db: DatabaseConnection,
    keys: Keyring,
    agencies: Arc<AgencyRegistry>,
    auth: Arc<Authenticator>,
    policy: crate::reload::Shared<Policy>,
    permissions: Arc<crate::reload::Shared<crate::permissions::Permissions>>,
    shared: crate::reload::Registry,
    audit: AuditLog,
    matchers: crate::detect::MatcherCache,
    metrics: Arc<crate::metrics::Metrics>,
    limits: Arc<crate::limits::RateLimits>,
    events: tokio::sync::Notify,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl AppContext {
    /// Connects, migrates (when configured), loads keys and agencies;
    /// metrics go to the global meter provider (see [`crate::telemetry::init`]).
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with_meter(config, &opentelemetry::global::meter("refnet")).await
    }

    /// [`AppContext::build`] with metrics on `meter` (tests read their own).
    pub async fn build_with_meter(
        config: Config,
        meter: &opentelemetry::metrics::Meter,
    ) -> Result<Self, StartError> {
        if config.is_sqlite() || config.generate_master_key || config.dev_keys {
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|e| StartError::DataDir(config.data_dir.display().to_string(), e))?;
        }
        let policy = crate::reload::Shared::new(match &config.redaction_policy_file {
            Some(file) => Policy::load(file)?,
            None => Policy::default_policy()?,
        });
        let permissions = Arc::new(crate::reload::Shared::new(load_permissions(
            config.permissions_file.as_deref(),
        )?));
        let db = db::connect(&config.database_url()).await?;
        if config.migrate_on_start {
            db::migrate(&db).await?;
        }

        let (master, others) = crate::keys::configured(&config, config.generate_master_key)?;
        let keys = crate::keys::load(&db, master, others).await?;

        if let Some(file) = &config.agencies_file {
            agencies::upsert(&db, &agencies::parse_file(file)?).await?;
        } else if config.demo_agencies {
            let existing = agencies::load_all(&db).await?;
            if existing.is_empty() {
                agencies::upsert(&db, &agencies::demo()).await?;
                tracing::info!("demo agencies created");
            }
        }
        let registry = Arc::new(AgencyRegistry::new(agencies::load_all(&db).await?));

        let roots = crate::tls::outbound_roots(&config.tls)?;
        let source = if let Some(url) = &config.auth.jwks_url {
            KeySource::Url(url.clone())
        } else if let Some(file) = &config.auth.jwks_file {
            KeySource::File(file.clone())
        } else if config.dev_keys {
            KeySource::File(devkeys::ensure(&config.data_dir)?)
        } else {
            return Err(StartError::NoKeySource);
        };
        let auth = Arc::new(
            Authenticator::new(config.auth.clone(), source, registry.clone(), roots).await?,
        );
        // Suspensions are in force from the first call, not the first refresh.
        auth.set_suspended(
            crate::revocation::suspended_officers(&db)
                .await?
                .into_iter()
                .map(|s| (s.agency_id, s.officer_id))
                .collect(),
        );

        let limits = Arc::new(crate::limits::RateLimits::new(&config.limits));
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                db,
                keys,
                agencies: registry,
                auth,
                policy,
                permissions,
                shared: crate::reload::Registry::default(),
                audit: AuditLog::default(),
                matchers: crate::detect::MatcherCache::new(
                    MATCHER_CACHE_CAPACITY,
                    MATCHER_CACHE_TTL,
                ),
                metrics: Arc::new(crate::metrics::Metrics::new(meter)),
                limits,
                events: tokio::sync::Notify::new(),
                shutdown: tokio::sync::watch::channel(false).0,
            }),
        })
    }

    /// The process's metric instruments.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.inner.metrics
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The database.
    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    /// The keyring.
    pub fn keys(&self) -> &Keyring {
        &self.inner.keys
    }

    /// The agency registry.
    pub fn agencies(&self) -> &Arc<AgencyRegistry> {
        &self.inner.agencies
    }

    /// Compiled record matchers shared by the replies about one referral.
    pub fn matchers(&self) -> &crate::detect::MatcherCache {
        &self.inner.matchers
    }

    /// The redaction policy in force (replaced by [`AppContext::reload`]).
    pub fn policy(&self) -> Arc<Policy> {
        self.inner.policy.current()
    }

    /// Who may call which RPC (replaced by [`AppContext::reload`]); the auth layer holds this handle.
    pub fn permissions(&self) -> &Arc<crate::reload::Shared<crate::permissions::Permissions>> {
        &self.inner.permissions
    }

    /// The process's one value of type `T` (a service's rule set), made by
    /// `init` the first time any part of the process asks for it.
    pub fn shared<T: std::any::Any + Send + Sync, E>(
        &self,
        init: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        self.inner.shared.get_or_init(init)
    }

    /// Registers a reload hook (a service's data file), run by [`AppContext::reload`].
    /// The hook must not hold this context (it would never be dropped).
    pub fn on_reload(
        &self,
        name: &'static str,
        hook: impl Fn() -> crate::reload::Outcome + Send + Sync + 'static,
    ) {
        self.inner.shared.on_reload(name, hook);
    }

    /// Reloads the redaction policy file (when one is configured) and every
    /// registered data file: each is validated first, and one that fails keeps
    /// the version in force. Logged, and returned, per file. `SIGHUP` runs it.
    pub fn reload(&self) -> Vec<(&'static str, crate::reload::Outcome)> {
        let mut outcomes = Vec::new();
        if let Some(file) = &self.inner.config.redaction_policy_file {
            outcomes.push((
                "redaction policy",
                match Policy::load(file) {
                    Ok(policy) => {
                        self.inner.policy.replace(policy);
                        Ok(file.display().to_string())
                    }
                    Err(e) => Err(e.to_string()),
                },
            ));
        }
        if let Some(file) = &self.inner.config.permissions_file {
            outcomes.push((
                "permissions",
                match load_permissions(Some(file)) {
                    Ok(permissions) => {
                        let version = permissions.version().to_owned();
                        self.inner.permissions.replace(permissions);
                        Ok(version)
                    }
                    Err(e) => Err(e.to_string()),
                },
            ));
        }
        outcomes.extend(self.inner.shared.run_hooks());
        for (name, outcome) in &outcomes {
            match outcome {
                Ok(version) => tracing::info!(file = name, version = %version, "reloaded"),
                Err(why) => {
                    tracing::warn!(file = name, error = %why, "reload refused; the version in force stays")
                }
            }
        }
        outcomes
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.inner.audit
    }

    /// Runs `work` in one write transaction ([`crate::db::write_txn`]) and,
    /// once it has committed, wakes this process's streams: every handler
    /// that appends events writes through here and never wakes them itself.
    pub async fn write<T, F>(&self, work: F) -> Result<T, crate::ServiceError>
    where
        T: Send,
        F: for<'c> FnOnce(
                &'c sea_orm::DatabaseTransaction,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T, crate::ServiceError>> + Send + 'c>,
            > + Send,
    {
        let value = crate::db::write_txn(self.db(), work).await?;
        self.event_signal().notify_waiters();
        Ok(value)
    }

    /// Signalled (in this process) after a transaction that appended events
    /// commits, so consumers wake without waiting for their next poll.
    pub fn event_signal(&self) -> &tokio::sync::Notify {
        &self.inner.events
    }

    /// How long an event consumer waits for a wake-up before polling anyway.
    pub fn event_poll_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.inner.config.event_poll_ms.max(10))
    }

    /// Tells long-running work (open streams) that the process is shutting down.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Resolves once [`Self::begin_shutdown`] was called (at once if it was).
    pub async fn shutting_down(&self) {
        let mut rx = self.inner.shutdown.subscribe();
        // The sender lives as long as the context, so this only ends on `true`.
        let _ = rx.wait_for(|down| *down).await;
    }

    /// The rate limits in force.
    pub fn limits(&self) -> &Arc<crate::limits::RateLimits> {
        &self.inner.limits
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.inner.auth
    }
}

/// The configured permissions override (validated: it may only tighten),
/// else the compiled-in permissions.
fn load_permissions(
    file: Option<&std::path::Path>,
) -> Result<crate::permissions::Permissions, crate::permissions::PermissionsError> {
    match file {
        Some(file) => crate::permissions::Permissions::load_override(file),
        None => crate::permissions::Permissions::default_permissions(),
    }
}
