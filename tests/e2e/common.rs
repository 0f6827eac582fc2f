//! The test harness: spawns refnet in-process on 127.0.0.1:0 with a fresh
//! data directory (and a fresh PostgreSQL database when asked), mints tokens
//! with the data directory's development key, and maps the synthetic fixtures
//! to protos.

#![allow(dead_code)]

use std::{
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
};

use refnet::serve_all;
use refnet_api::v1::{self as pb, intake_service_client::IntakeServiceClient};
use refnet_core::{
    AppContext,
    config::Config,
    devkeys::{DevSigner, TokenRequest},
};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tempfile::TempDir;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::{Request, transport::Channel};

/// Everything logged by this test binary, at DEBUG and above.
pub fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::prelude::*;
        // Spans go to an in-memory exporter too, so tests can follow a trace.
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(spans().clone())
            .build();
        let tracer = provider.tracer("refnet-test");
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::DEBUG)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || Capture(writer.clone())),
            )
            .with(tracing_opentelemetry::layer().with_tracer(tracer));
        // If another test installed a subscriber first, this capture sees nothing and
        // the assertion below would pass vacuously; so insist on being first-or-only.
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this binary");
        buffer
    })
    .clone()
}

/// Every span this test binary finished, as OpenTelemetry exported it.
pub fn spans() -> &'static opentelemetry_sdk::trace::InMemorySpanExporter {
    static SPANS: OnceLock<opentelemetry_sdk::trace::InMemorySpanExporter> = OnceLock::new();
    SPANS.get_or_init(opentelemetry_sdk::trace::InMemorySpanExporter::default)
}

pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running refnet.
pub struct TestApp {
    pub addr: SocketAddr,
    pub data_dir: TempDir,
    pub backend: Backend,
    pub database_url: String,
    pub ctx: AppContext,
    signer: DevSigner,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

/// Runs a scenario on SQLite and, when configured, on PostgreSQL.
#[macro_export]
macro_rules! on_both {
    // `on_both!(config = adjust; name, ...)`: the configuration adjusted by `adjust`.
    (config = $adjust:path; $($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::common::TestApp::spawn_configured($crate::common::Backend::Sqlite, $adjust)
                    .await
                    .expect("sqlite");
                super::$name(&app).await;
                app.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(app) = $crate::common::TestApp::spawn_configured($crate::common::Backend::Postgres, $adjust).await else { return };
                super::$name(&app).await;
                app.stop().await;
            }
        }
    )*};
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::common::TestApp::spawn($crate::common::Backend::Sqlite).await;
                super::$name(&app).await;
                app.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(app) = $crate::common::TestApp::spawn_postgres().await else { return };
                super::$name(&app).await;
                app.stop().await;
            }
        }
    )*};
}

/// Rate limits off: for tests that make thousands of calls as a few
/// officers in seconds (the leak test), where the limits are not what is
/// tested (`access.rs` tests them).
pub fn without_rate_limits(config: &mut Config) {
    config.limits.officer_per_second = 0;
    config.limits.agency_per_second = 0;
}

fn postgres_admin_url() -> Option<String> {
    match std::env::var("REFNET_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "REFNET_TEST_DATABASE_URL must be set under CI=true: the PostgreSQL suite may not be skipped"
            );
            eprintln!("skipping PostgreSQL run: REFNET_TEST_DATABASE_URL is not set");
            record_skip();
            None
        }
    }
}

/// Notes that the running test skips its PostgreSQL run: one line with the
/// test's name in the file `REFNET_TEST_SKIP_LOG` names (`scripts/test` sets
/// it and counts these tests as skipped, not passed; libtest cannot mark a
/// test skipped at run time). Every caller returns from its test at once.
pub fn record_skip() {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("REFNET_TEST_SKIP_LOG") else {
        return;
    };
    let name = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_owned();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open REFNET_TEST_SKIP_LOG");
    // One write per line: appends from parallel tests do not interleave.
    file.write_all(format!("{name}\n").as_bytes())
        .expect("write REFNET_TEST_SKIP_LOG");
}

/// Replaces the database name in a PostgreSQL URL.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let host = path_start.map_or(base, |i| &base[..i]);
    match query {
        Some(q) => format!("{host}/{name}?{q}"),
        None => format!("{host}/{name}"),
    }
}

impl TestApp {
    /// Spawns refnet on `backend`. Panics (the test fails) if PostgreSQL is asked for but not configured.
    pub async fn spawn(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::spawn_with(None, |_| {}).await,
            Backend::Postgres => Self::spawn_postgres()
                .await
                .expect("REFNET_TEST_DATABASE_URL is not set"),
        }
    }

    /// Spawns refnet on `backend` with the configuration adjusted by `adjust`;
    /// `None` (with a note) for PostgreSQL when it is not configured.
    pub async fn spawn_configured(
        backend: Backend,
        adjust: impl FnOnce(&mut Config),
    ) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self::spawn_with(None, adjust).await),
            Backend::Postgres => {
                let admin = postgres_admin_url()?;
                Some(Self::spawn_with(Some(fresh_postgres_database(&admin).await), adjust).await)
            }
        }
    }

    /// Spawns refnet on a fresh PostgreSQL database, or `None` (with a note) when not configured.
    pub async fn spawn_postgres() -> Option<Self> {
        let admin = postgres_admin_url()?;
        Some(Self::spawn_with(Some(fresh_postgres_database(&admin).await), |_| {}).await)
    }

    /// Spawns refnet with the configuration adjusted by `adjust`.
    pub async fn spawn_with(
        database_url: Option<String>,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        Self::spawn_metered(
            database_url,
            adjust,
            &opentelemetry::global::meter("refnet"),
        )
        .await
    }

    /// [`TestApp::spawn_with`], recording metrics on `meter`.
    pub async fn spawn_metered(
        database_url: Option<String>,
        adjust: impl FnOnce(&mut Config),
        meter: &opentelemetry::metrics::Meter,
    ) -> Self {
        captured_logs();
        let data_dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            data_dir: data_dir.path().to_path_buf(),
            database_url: database_url.clone().map(Into::into),
            ..Config::default()
        }
        .embedded();
        // Tests rotate keys within a second of start; production keeps the 30 s floor.
        config.auth.refresh_min_interval_seconds = 0;
        adjust(&mut config);
        let backend = if database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres"))
        {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let database_url = config.database_url();
        let ctx = AppContext::build_with_meter(config, meter)
            .await
            .expect("refnet starts");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let serving = ctx.clone();
        let handle = tokio::spawn(async move {
            serve_all(&serving, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
        });
        // A development key exists even when the server trusts another source,
        // so tests can show such tokens are refused.
        refnet_core::devkeys::ensure(data_dir.path()).expect("dev key");
        let signer = DevSigner::load(data_dir.path(), "refnet-dev", "refnet").expect("dev key");
        Self {
            addr,
            data_dir,
            backend,
            database_url,
            ctx,
            signer,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }

    /// The development signer.
    pub fn signer(&self) -> &DevSigner {
        &self.signer
    }

    /// A token for an officer of `agency` (a demo agency id) with `roles`.
    pub fn token(&self, agency: &str, roles: &[&str]) -> String {
        let found = self
            .ctx
            .agencies()
            .get(agency)
            .unwrap_or_else(|| panic!("no demo agency {agency}"));
        self.signer
            .mint(&TokenRequest {
                officer_id: format!("officer-{agency}"),
                agency_id: found.id,
                agency_kind: found.kind,
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                ttl: std::time::Duration::from_secs(600),
            })
            .expect("mint")
    }

    /// An officer token for `agency`.
    pub fn officer(&self, agency: &str) -> String {
        self.token(agency, &["officer"])
    }

    /// A gRPC channel to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    /// An IntakeService client.
    pub async fn intake(&self) -> IntakeServiceClient<Channel> {
        IntakeServiceClient::new(self.channel().await)
    }

    /// A direct connection to the database, for assertions on what is stored.
    pub async fn db(&self) -> DatabaseConnection {
        Database::connect(self.database_url.clone())
            .await
            .expect("db")
    }

    /// Rows in `table`.
    pub async fn count(&self, table: &str) -> i64 {
        count_rows(
            &self.db().await,
            &format!("SELECT COUNT(*) AS n FROM {table}"),
        )
        .await
    }

    /// Makes `agency` party to `referral_id` (as a recipient), as routing will
    /// once handoffs exist.
    pub async fn make_party(&self, referral_id: &str, agency: &str) {
        // Through the server's own pool: the leak test calls this over a
        // thousand times, and a new pool per call (each with its maintenance
        // task) once left a SQLite pool's maintenance task spinning on a
        // worker thread, which stalled the test.
        let db = self.ctx.db();
        let id = uuid::Uuid::parse_str(referral_id).expect("referral id");
        use sea_orm::{ActiveValue::Set, EntityTrait};
        refnet_core::entities::referral_party::Entity::insert(
            refnet_core::entities::referral_party::ActiveModel {
                referral_id: Set(id),
                agency_id: Set(agency.to_owned()),
                relation: Set("RECIPIENT".to_owned()),
                since: Set(chrono::Utc::now()),
            },
        )
        .exec_without_returning(db)
        .await
        .expect("insert party");
    }

    /// An officer of `agency`'s `WatchInbox` stream, from now.
    pub async fn watch_inbox(&self, agency: &str) -> tonic::Streaming<pb::InboxEvent> {
        pb::routing_service_client::RoutingServiceClient::new(self.channel().await)
            .watch_inbox(authed(
                pb::WatchInboxRequest::default(),
                &self.officer(agency),
            ))
            .await
            .expect("watch inbox")
            .into_inner()
    }

    /// Reads a referral as an officer of `agency`.
    pub async fn get_as(&self, agency: &str, referral: &str) -> pb::GetReferralResponse {
        self.intake()
            .await
            .get_referral(authed(
                pb::GetReferralRequest {
                    referral: referral.to_owned(),
                },
                &self.officer(agency),
            ))
            .await
            .expect("get referral")
            .into_inner()
    }

    /// Files `draft` as an officer of `agency`, with a fresh idempotency key.
    pub async fn file(&self, agency: &str, draft: pb::ReferralDraft) -> pb::FileReferralResponse {
        let mut client = self.intake().await;
        client
            .file_referral(authed(
                pb::FileReferralRequest {
                    idempotency_key: new_key(),
                    draft: Some(draft),
                },
                &self.officer(agency),
            ))
            .await
            .expect("file referral")
            .into_inner()
    }
}

/// The URL of a fresh PostgreSQL database, or `None` (with a note) when not
/// configured (a failure under `CI=true`).
pub async fn fresh_postgres_url() -> Option<String> {
    let admin = postgres_admin_url()?;
    Some(fresh_postgres_database(&admin).await)
}

async fn fresh_postgres_database(admin_url: &str) -> String {
    let admin = Database::connect(admin_url.to_owned())
        .await
        .expect("connect to PostgreSQL");
    let name = format!("refnet_test_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    with_database(admin_url, &name)
}

/// The events intake appends (routing adds its own beside them).
pub const INTAKE_EVENTS: &str = "events WHERE kind IN ('ReferralFiled', 'ReferralAmended', 'ConsentRecorded', 'ConsentWithdrawn')";

/// The `n` column of the one row `sql` returns (e.g. `SELECT COUNT(*) AS n ...`).
pub async fn count_rows(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(sea_orm::Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .expect("query")
    .expect("row")
    .try_get::<i64>("", "n")
    .expect("n")
}

/// A random master key, base64 of 32 bytes (v4 UUIDs carry 122 random bits each).
pub fn random_master_key() -> String {
    use base64::Engine;
    let bytes: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| *u.as_bytes())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A fresh idempotency key.
pub fn new_key() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

/// `message` with a bearer token.
pub fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request
}

/// The field paths of a status's BadRequest details.
pub fn violations(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

// ---- fixtures -------------------------------------------------------------

pub use refnet_devtools::fixtures::Fixture;

/// The synthetic fixture referrals (a copy of shared/fixtures/referrals.jsonl).
pub fn fixtures() -> &'static [Fixture] {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let path = refnet_devtools::fixtures::default_path();
        refnet_devtools::fixtures::load(&path)
            .unwrap_or_else(|e| panic!("fixtures at {}: {e}", path.display()))
    })
}

/// A draft with every field set, each identifying value a unique canary.
pub fn canary_draft() -> pb::ReferralDraft {
    pb::ReferralDraft {
        subject: Some(pb::Subject {
            given_name: "Canarygiven Zqx".into(),
            family_name: "Canaryfamily Zqx".into(),
            aliases: vec!["Canaryalias Zqx".into()],
            national_id: "31415926".into(),
            passport_number: "ZQ7271828".into(),
            refugee_id: "RAS-9988776".into(),
            phones: vec!["+254700111222".into(), "+256772987654".into()],
            email: "canary.email.zqx@example.org".into(),
            home_address: "Canaryhome Estate, House 77, Kisumu".into(),
            next_of_kin: vec![pb::NextOfKin {
                name: "Canarykin Zqx".into(),
                phone: "+254733444555".into(),
                relationship: "Canaryrelation".into(),
            }],
            current_location: "Canarywhere market stall 9".into(),
            shelter_address: "Canaryshelter Road 12, Nakuru".into(),
            coordinates: Some(pb::GeoPoint {
                latitude: -1.2921,
                longitude: 36.8219,
            }),
            date_of_birth: "1999-04-17".into(),
            sex: pb::Sex::Female as i32,
            nationality: "KE".into(),
            county_of_origin: "Kisumu".into(),
            sub_county_of_origin: "Nyando".into(),
            languages: vec!["sw".into(), "luo".into()],
            is_child: false,
        }),
        case_facts: Some(pb::CaseFacts {
            acts: vec![pb::Act::Recruitment as i32, pb::Act::Transportation as i32],
            means: vec![pb::Means::Deception as i32],
            purposes: vec![pb::Purpose::ForcedLabour as i32, pb::Purpose::Other as i32],
            other_purpose: "Canaryother purpose".into(),
            country_of_exploitation: "SA".into(),
            county_of_recruitment: "Kisumu".into(),
            recruitment_route: "Canaryroute via Busia".into(),
            recruitment_date: "2025-01-10".into(),
            identification_date: "2026-10-01".into(),
            narrative: "Canarynarrative: Canarygiven Zqx (also called Canaryalias Zqx, phone 0700 111 222) was \
                        recruited by Canarysuspect Zqx on 0722-666-777 and is now at Canarywhere market stall 9."
                .into(),
        }),
        special: Some(pb::SpecialCategory {
            health_notes: "Canaryhealth notes".into(),
            injuries: "Canaryinjury notes".into(),
            sexual_violence: true,
            psychosocial_notes: "Canarypsych notes".into(),
        }),
        suspects: vec![pb::Suspect {
            name: "Canarysuspect Zqx".into(),
            phone: "+254722666777".into(),
            vehicles: vec!["KZQ 123X".into()],
            employer: "Canaryemployer Ltd".into(),
            recruitment_agency: "Canaryagency Placements".into(),
        }],
        needs: vec![pb::Need::Shelter as i32, pb::Need::LegalAid as i32],
        consent: Some(pb::Consent {
            given: true,
            by: pb::ConsentBy::Subject as i32,
            agency_kinds: vec![pb::AgencyKind::Ngo as i32],
            ..Default::default()
        }),
        urgency: pb::Urgency::High as i32,
        classification: pb::Classification::SuspectedTip as i32,
        identified_by: pb::IdentifiedBy::Police as i32,
        county: "Kisumu".into(),
    }
}

/// Every identifying canary in [`canary_draft`], as it may be stored or printed.
pub const CANARIES: &[&str] = &[
    "Canarygiven",
    "Canaryfamily",
    "Canaryalias",
    "31415926",
    "ZQ7271828",
    "RAS-9988776",
    "700111222",
    "772987654",
    "canary.email.zqx",
    "Canaryhome",
    "Canarykin",
    "733444555",
    "Canaryrelation",
    "Canarywhere",
    "Canaryshelter",
    "Canaryother",
    "Canaryroute",
    "Canarynarrative",
    "Canaryhealth",
    "Canaryinjury",
    "Canarypsych",
    "Canarysuspect",
    "722666777",
    "KZQ 123X",
    "Canaryemployer",
    "Canaryagency",
    "36.8219",
];

/// The first item on `stream` about `referral` (items about others are
/// skipped); fails the test after 10 s without one.
pub async fn next_item_for(
    stream: &mut tonic::Streaming<pb::InboxEvent>,
    referral: &str,
) -> pb::InboxEvent {
    loop {
        let item = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
            .await
            .expect("an item in time")
            .expect("ok")
            .expect("item");
        if item.handoff.as_ref().map(|h| h.referral_id.as_str()) == Some(referral) {
            return item;
        }
    }
}

/// Every live row of every table as text (PostgreSQL), or the database file
/// and its log as bytes (SQLite): what a copy of the database holds.
pub async fn stored_bytes(app: &TestApp) -> Vec<u8> {
    let mut stored = Vec::new();
    match app.backend {
        Backend::Postgres => {
            let db = app.db().await;
            let tables = db
                .query_all_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    "SELECT table_name::text AS name FROM information_schema.tables \
                     WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
                        .to_owned(),
                ))
                .await
                .expect("tables");
            let tables: Vec<String> = tables
                .iter()
                .map(|r| r.try_get::<String>("", "name").expect("name"))
                .collect();
            for required in [
                "subjects",
                "messages",
                "protection_requests",
                "protection_measures",
            ] {
                assert!(tables.iter().any(|t| t == required), "{required} is dumped");
            }
            for table in tables {
                let rows = db
                    .query_all_raw(sea_orm::Statement::from_string(
                        db.get_database_backend(),
                        format!("SELECT CAST(t AS TEXT) AS row_text FROM {table} t"),
                    ))
                    .await
                    .expect("dump");
                for row in rows {
                    let text: String = row.try_get("", "row_text").expect("text");
                    stored.extend(text.into_bytes());
                    stored.push(b'\n');
                }
            }
        }
        Backend::Sqlite => {
            for file in ["refnet.db", "refnet.db-wal"] {
                if let Ok(bytes) = std::fs::read(app.data_dir.path().join(file)) {
                    stored.extend(bytes);
                }
            }
        }
    }
    stored
}
