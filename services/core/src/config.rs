//! Layered configuration: built-in defaults, then an optional TOML file, then
//! `REFNET_...` environment variables (nested keys with `__`, e.g.
//! `REFNET_AUTH__ISSUER`), then command-line flags applied by the binary.
//!
//! Secrets (the database URL may carry a password; the master key) are held in
//! [`secrecy::SecretString`] so they never reach a log line or a `Debug` print.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The keys `REFNET_...` variables may set (after `__` became `.`), lower case.
pub const ENV_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "database_url",
    "master_key",
    "previous_master_keys",
    "migrate_on_start",
    "agencies_file",
    "redaction_policy_file",
    "permissions_file",
    "routing_rules_file",
    "routing_worker",
    "event_poll_ms",
    "shutdown_grace_seconds",
    "metrics_sample_ms",
    "cors_allowed_origins",
    "otlp_endpoint",
    "demo_agencies",
    "dev_keys",
    "log_format",
    "reflection",
    "max_request_bytes",
    "webhook_allow_plain_http",
    "insecure_plaintext",
    "tls.cert",
    "tls.key",
    "tls.client_ca",
    "tls.reload_seconds",
    "tls.outbound_ca",
    "tls.outbound_cert",
    "tls.outbound_key",
    "gateway.intake",
    "gateway.routing",
    "gateway.protection",
    "gateway.statistics",
    "auth.issuer",
    "auth.audience",
    "auth.jwks_file",
    "auth.jwks_url",
    "auth.leeway_seconds",
    "auth.refresh_min_interval_seconds",
    "auth.access_refresh_ms",
    "limits.officer_per_second",
    "limits.officer_burst",
    "limits.agency_per_second",
    "limits.agency_burst",
    "retention.erase_closed_after_days",
    "retention.interval_seconds",
    "retention.batch",
    "statistics.k",
];

/// `REFNET_...` variables that are not configuration: the binaries' flags
/// and the command-line clients' settings. Any other one a server is given
/// is reported at start (see [`Config::unread_env`]).
pub const CLIENT_ENV: &[&str] = &[
    "REFNET_CONFIG",
    "REFNET_TOKEN",
    "REFNET_SERVER",
    "REFNET_CA",
    "REFNET_CLIENT_CERT",
    "REFNET_CLIENT_KEY",
    "REFNET_FIXTURES",
    "REFNET_TEST_DATABASE_URL",
];

/// Whether `key` (as figment sees it after the prefix: `DATABASE_URL`,
/// `AUTH.ISSUER`) is one `REFNET_...` variables may set. Figment hands keys
/// over in their original case, so compare without it.
fn allowed_env_key(key: &str) -> bool {
    ENV_KEYS.contains(&key.to_ascii_lowercase().as_str())
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Token verification settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Expected `iss` claim.
    pub issuer: String,
    /// Expected `aud` claim.
    pub audience: String,
    /// JWKS file; re-read when a token names an unknown key id.
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL (the identity provider's); fetched at start and on unknown key ids.
    pub jwks_url: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
    /// Minimum time between two refreshes of the key set, in seconds.
    pub refresh_min_interval_seconds: u64,
    /// How often suspended agencies and officers are re-read, in
    /// milliseconds: a suspension takes effect within this interval.
    pub access_refresh_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: "refnet-dev".into(),
            audience: "refnet".into(),
            jwks_file: None,
            jwks_url: None,
            leeway_seconds: 30,
            refresh_min_interval_seconds: 30,
            access_refresh_ms: 5_000,
        }
    }
}

/// Transport security of the listener (`[tls]`, `REFNET_TLS__...`,
/// `--tls-cert`, `--tls-key`, `--tls-client-ca`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The server certificate chain (PEM); with `key`, the listener speaks TLS.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// CA certificates (PEM) a client certificate must chain to: mutual TLS,
    /// for service-to-service calls and agency gateways.
    pub client_ca: Option<PathBuf>,
    /// How often the certificate and key files are checked for a change
    /// (rotation without restart).
    pub reload_seconds: u64,
    /// CA certificates (PEM) refnet trusts for its own HTTPS calls (the JWKS
    /// URL, agency webhooks) besides the system's roots: a private CA.
    pub outbound_ca: Option<PathBuf>,
    /// The client certificate (PEM) refnet presents on its own calls to a
    /// peer that asks for one: the gateway to the services behind it under
    /// mutual TLS. Re-read when the files change.
    pub outbound_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub outbound_key: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            client_ca: None,
            reload_seconds: 10,
            outbound_ca: None,
            outbound_cert: None,
            outbound_key: None,
        }
    }
}

/// refnet's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory for the embedded database, generated keys and the dev key pair.
    pub data_dir: PathBuf,
    /// Database URL (`postgres://...` or `sqlite://...`); default: SQLite in `data_dir`.
    pub database_url: Option<SecretString>,
    /// Master key, base64 of 32 bytes; default: `data_dir/master.key`.
    pub master_key: Option<SecretString>,
    /// Other master keys, base64, that unwrap but never wrap: the old key
    /// after a rotation, or the next one before it (see `refnet keys rotate`).
    pub previous_master_keys: Vec<SecretString>,
    /// Generate `data_dir/master.key` when it is missing (the embedded default only).
    pub generate_master_key: bool,
    /// Apply migrations at start-up.
    pub migrate_on_start: bool,
    /// Agency registry data file (TOML); production's source of agencies.
    pub agencies_file: Option<PathBuf>,
    /// Redaction policy file (TOML); default: the policy compiled into refnet.
    pub redaction_policy_file: Option<PathBuf>,
    /// Permissions override (TOML): who may call which RPC; it may only
    /// tighten the permissions compiled into refnet.
    pub permissions_file: Option<PathBuf>,
    /// Routing rules file (TOML); default: the rules compiled into refnet.
    pub routing_rules_file: Option<PathBuf>,
    /// Run the routing worker in processes that serve RoutingService.
    pub routing_worker: bool,
    /// How often event consumers (the routing worker, streams) poll the event
    /// log when no wake-up arrives, in milliseconds. Wake-ups come in-process
    /// and, on PostgreSQL, by LISTEN/NOTIFY from other processes; polling is
    /// the fallback.
    pub event_poll_ms: u64,
    /// OTLP/gRPC endpoint of an OpenTelemetry collector for traces (default:
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, else no export).
    pub otlp_endpoint: Option<String>,
    /// On SIGTERM: how long in-flight calls may take to finish before the
    /// remaining connections are closed, in seconds.
    pub shutdown_grace_seconds: u64,
    /// How often the routing process samples the database for the gauges
    /// (handoffs by state, overdue handoffs, routing lag), in milliseconds.
    pub metrics_sample_ms: u64,
    /// Browser origins (`https://desk.example.org`) allowed to call the
    /// services over gRPC-Web (CORS). Empty: no cross-origin browser calls.
    /// gRPC-Web itself is always accepted (HTTP/1.1 on the same port).
    pub cors_allowed_origins: Vec<String>,
    /// Create the demo agencies on first run (the embedded default only).
    pub demo_agencies: bool,
    /// Generate and trust a development signing key in `data_dir` when no JWKS is configured.
    pub dev_keys: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Serve gRPC server reflection.
    pub reflection: bool,
    /// The largest request message accepted, in bytes (encoded); a larger
    /// one is refused before it is decoded. The largest valid referral is
    /// well under 200 KiB.
    pub max_request_bytes: usize,
    /// Accept `http://` webhook URLs (not only `https://`): for a receiver on
    /// the same host or in tests. Off by default: notifications leave refnet
    /// encrypted.
    pub webhook_allow_plain_http: bool,
    /// Listen in plaintext on a non-loopback address (a proxy in front
    /// terminates TLS). Off: without `tls` refnet listens on loopback only.
    pub insecure_plaintext: bool,
    /// Transport security of the listener.
    pub tls: TlsConfig,
    /// Token verification.
    pub auth: AuthConfig,
    /// Per-officer and per-agency rate limits.
    pub limits: crate::limits::LimitsConfig,
    /// The retention policy: when the subjects of closed referrals are erased.
    pub retention: RetentionConfig,
    /// De-identified statistics.
    pub statistics: StatisticsConfig,
    /// The services behind `refnet gateway`.
    pub gateway: GatewayConfig,
}

/// Where `refnet gateway` sends each service's calls (`[gateway]`,
/// `REFNET_GATEWAY__INTAKE`, ...): `https://HOST:PORT` (verified against the
/// system's roots and `tls.outbound_ca`, presenting `tls.outbound_cert`) or
/// `http://` on a private network. A service left out answers UNIMPLEMENTED.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// The intake service (IntakeService, AuditService).
    pub intake: Option<String>,
    /// The routing service.
    pub routing: Option<String>,
    /// The witness protection service.
    pub protection: Option<String>,
    /// The statistics service.
    pub statistics: Option<String>,
}

/// De-identified statistics (`[statistics]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct StatisticsConfig {
    /// The smallest group a figure may describe: smaller cells are suppressed,
    /// and every record of the HTCDS export shares its quasi-identifiers with
    /// at least k-1 others. At least 2.
    pub k: u32,
}

impl Default for StatisticsConfig {
    fn default() -> Self {
        // The Counter Trafficking Data Collaborative publishes with k = 11.
        Self { k: 11 }
    }
}

/// The retention policy (`[retention]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Erase the subject of a referral this many days after it closed
    /// (identity, location and sealed text; case facts stay). 0 turns the
    /// policy off: subjects are then kept until erased with `EraseSubject`.
    pub erase_closed_after_days: u32,
    /// How often the retention worker looks for subjects due, in seconds.
    pub interval_seconds: u64,
    /// How many referrals the worker reads per query.
    pub batch: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        // Seven years after closure: longer than a trafficking prosecution and
        // its appeals usually take; set it from the agencies' own schedule.
        Self {
            erase_closed_after_days: 7 * 365,
            interval_seconds: 3_600,
            batch: 100,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: PathBuf::from("refnet-data"),
            database_url: None,
            master_key: None,
            previous_master_keys: Vec::new(),
            generate_master_key: false,
            migrate_on_start: true,
            agencies_file: None,
            redaction_policy_file: None,
            permissions_file: None,
            routing_rules_file: None,
            routing_worker: true,
            event_poll_ms: 500,
            shutdown_grace_seconds: 20,
            metrics_sample_ms: 15_000,
            cors_allowed_origins: Vec::new(),
            otlp_endpoint: None,
            demo_agencies: false,
            dev_keys: false,
            log_format: LogFormat::Pretty,
            reflection: true,
            max_request_bytes: 1024 * 1024,
            webhook_allow_plain_http: false,
            insecure_plaintext: false,
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            limits: crate::limits::LimitsConfig::default(),
            retention: RetentionConfig::default(),
            statistics: StatisticsConfig::default(),
            gateway: GatewayConfig::default(),
        }
    }
}

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Defaults, then `file` (when given), then `REFNET_...` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError(format!("{}: no such file", file.display())));
            }
            figment = figment.merge(Toml::file(file));
        }
        // An empty variable is unset: compose's `${VAR:-}` can leave a
        // setting to the file or the default.
        let empty: Vec<String> = std::env::vars_os()
            .filter_map(|(k, v)| {
                let k = k.to_str()?.strip_prefix("REFNET_")?.to_owned();
                v.is_empty()
                    .then(|| k.replace("__", ".").to_ascii_lowercase())
            })
            .collect();
        let env = Env::prefixed("REFNET_").split("__").filter(move |key| {
            let key = key.as_str().to_ascii_lowercase();
            allowed_env_key(&key) && !empty.contains(&key)
        });
        figment
            .merge(env)
            .extract()
            .map_err(|e| ConfigError(e.to_string()))
    }

    /// The `REFNET_...` variables in this process's environment that no
    /// setting reads (a typo such as `REFNET_TLS_CERT` for `REFNET_TLS__CERT`
    /// would otherwise be silently ignored); servers log each at start.
    pub fn unread_env() -> Vec<String> {
        let mut unread: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| {
                k.strip_prefix("REFNET_").is_some_and(|key| {
                    !allowed_env_key(&key.replace("__", ".")) && !CLIENT_ENV.contains(&k.as_str())
                })
            })
            .collect();
        unread.sort();
        unread
    }

    /// Logs a warning naming each variable [`Config::unread_env`] finds.
    pub fn report_unread_env() {
        for key in Self::unread_env() {
            tracing::warn!(variable = %key, "ignored: no setting reads this REFNET_ variable (a typo?)");
        }
    }

    /// The database URL in force: the configured one, or SQLite in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose_secret().to_owned(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("refnet.db").display()
            ),
        }
    }

    /// True when the database in force is SQLite.
    pub fn is_sqlite(&self) -> bool {
        self.database_url().starts_with("sqlite:")
    }

    /// The embedded default of `refnet serve`: SQLite, generated keys and demo agencies.
    pub fn embedded(mut self) -> Self {
        self.generate_master_key = true;
        self.dev_keys = true;
        if self.agencies_file.is_none() {
            self.demo_agencies = true;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_override_defaults_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("refnet.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:6000\"\n[auth]\nissuer = \"idp\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.listen.port(), 6000);
        assert_eq!(config.auth.issuer, "idp");
        assert_eq!(config.auth.audience, "refnet");

        std::fs::write(&file, "lissten = \"127.0.0.1:6000\"\n").unwrap();
        let err = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("lissten"), "{err}");
    }

    #[test]
    fn environment_keys_are_matched_whatever_their_case() {
        assert!(allowed_env_key("DATABASE_URL"));
        assert!(allowed_env_key("AUTH.ISSUER"));
        assert!(allowed_env_key("shutdown_grace_seconds"));
        assert!(!allowed_env_key("CONFIG"));
        assert!(!allowed_env_key("TEST_DATABASE_URL"));
    }

    #[test]
    fn secrets_are_not_printed() {
        let config = Config {
            master_key: Some("c2VjcmV0LW1hc3Rlci1rZXk=".to_owned().into()),
            database_url: Some("postgres://u:hunter2@db/refnet".to_owned().into()),
            ..Config::default()
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"));
        assert!(!printed.contains("c2VjcmV0"));
    }
}
