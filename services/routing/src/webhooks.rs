//! Webhooks: notifications that reach people outside refnet.
//!
//! A supervisor sets the agency's webhook (`ConfigureWebhook`: URL, HMAC key,
//! on or off). Every notification recorded for an agency whose webhook is on
//! is written to the outbox in the same transaction ([`refnet_core::notify`]),
//! and the [`WebhookWorker`] here POSTs it:
//!
//! - body: [`refnet_core::notify::WebhookPayload`] as JSON (reference code,
//!   kind, detail, deadline; never an identifying value);
//! - headers: `Refnet-Delivery` (the delivery id: the receiver's idempotency
//!   key; a retry repeats it), `Refnet-Timestamp` (Unix seconds) and
//!   `Refnet-Signature: v1=HEX`, the HMAC-SHA256 of `TIMESTAMP.BODY` under the
//!   agency's key;
//! - at least once: a 2xx marks it delivered; anything else (or no answer in
//!   10 s) is retried with exponential back-off (2 s doubling, at most 1 h) up to
//!   [`MAX_ATTEMPTS`] attempts; the outbox is in the database, so deliveries
//!   survive a restart. A dispatcher leases each delivery before sending, so
//!   two replicas do not send it at once; one that crashes mid-send leaves
//!   the lease to expire and the delivery is sent again (same delivery id);
//! - a webhook switched off (or removed) stops deliveries: waiting ones are
//!   given up with the reason, and no new ones are queued.
//!
//! Redirects are not followed; `http://` URLs are refused unless the
//! configuration allows them (`webhook_allow_plain_http`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use refnet_api::v1 as pb;
use refnet_core::boundary::Call;
use refnet_core::{
    AppContext, ServiceError, ServiceResult,
    boundary::{Concerning, Reply, reply},
    domain::referral::timestamp,
    notify::{outbox, webhook},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::OnConflict,
};
use sha2::Sha256;
use tracing::Instrument;

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: i32 = 12;

/// Deliveries leased per step.
const BATCH: u64 = 20;

/// How long a dispatcher holds a delivery it is sending.
const LEASE: chrono::Duration = chrono::Duration::seconds(60);

/// How often the worker looks for due deliveries when nothing wakes it.
const INTERVAL: Duration = Duration::from_secs(2);

/// What the sealed secret is sealed as (so no other sealed value opens as one).
const SECRET_PURPOSE: &[u8] = b"webhook-secret\0";

/// Shortest and longest HMAC key, in characters.
const SECRET_LEN: std::ops::RangeInclusive<usize> = 32..=256;

/// The back-off before attempt `attempts + 1`: 2 s doubling, at most an hour.
pub fn backoff(attempts: i32) -> chrono::Duration {
    let exponent = u32::try_from(attempts.clamp(0, 20)).unwrap_or(0);
    chrono::Duration::seconds((2_i64 << exponent).min(3600))
}

/// `v1=HEX`: the HMAC-SHA256 of `TIMESTAMP.BODY` under `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(mac) => mac,
        // HMAC takes a key of any length.
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

fn seal_secret(ctx: &AppContext, secret: &str) -> String {
    let mut raw = SECRET_PURPOSE.to_vec();
    raw.extend_from_slice(secret.as_bytes());
    ctx.keys().tokens.seal(&raw)
}

fn open_secret(ctx: &AppContext, sealed: &str) -> Option<Vec<u8>> {
    ctx.keys()
        .tokens
        .open(sealed)
        .and_then(|raw| raw.strip_prefix(SECRET_PURPOSE).map(<[u8]>::to_vec))
}

/// Delivers the webhook outbox.
#[derive(Clone)]
pub struct WebhookWorker {
    ctx: AppContext,
    client: reqwest::Client,
}

/// What one step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Acknowledged by the receiver.
    pub delivered: usize,
    /// Failed this time, to be retried.
    pub retrying: usize,
    /// Given up.
    pub failed: usize,
}

impl WebhookWorker {
    /// A worker over `ctx`.
    pub fn new(ctx: AppContext) -> ServiceResult<Self> {
        let mut client = reqwest::Client::builder();
        for root in refnet_core::tls::outbound_roots(&ctx.config().tls)
            .map_err(|e| ServiceError::internal("webhook client", e))?
        {
            client = client.add_root_certificate(root);
        }
        let client = client
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("refnet-webhooks")
            .build()
            .map_err(|e| ServiceError::internal("webhook client", e))?;
        Ok(Self { ctx, client })
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let signal = self.ctx.event_signal().notified();
            tokio::pin!(signal);
            signal.as_mut().enable();
            let span = tracing::info_span!("webhook_step", delivered = tracing::field::Empty);
            let busy = match self.step_at(Utc::now()).instrument(span.clone()).await {
                Ok(step) => {
                    span.record("delivered", step.delivered);
                    step.delivered + step.retrying + step.failed > 0
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhook step failed; retrying");
                    false
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = signal => {}
                () = tokio::time::sleep(INTERVAL) => {}
            }
        }
    }

    /// Sends every delivery due at `now` (leasing each first).
    pub async fn step_at(&self, now: DateTime<Utc>) -> ServiceResult<Step> {
        let due = outbox::Entity::find()
            .filter(outbox::Column::DeliveredAt.is_null())
            .filter(outbox::Column::FailedAt.is_null())
            .filter(outbox::Column::NextAttemptAt.lte(now))
            .order_by_asc(outbox::Column::NextAttemptAt)
            .order_by_asc(outbox::Column::Id)
            .limit(BATCH)
            .all(self.ctx.db())
            .await?;
        let mut step = Step::default();
        for row in due {
            // The lease: only the dispatcher whose update matched sends it.
            let leased = outbox::Entity::update_many()
                .col_expr(
                    outbox::Column::NextAttemptAt,
                    sea_orm::sea_query::Expr::value(now + LEASE),
                )
                .filter(outbox::Column::Id.eq(row.id))
                .filter(outbox::Column::NextAttemptAt.eq(row.next_attempt_at))
                .filter(outbox::Column::DeliveredAt.is_null())
                .exec(self.ctx.db())
                .await?;
            if leased.rows_affected != 1 {
                continue;
            }
            let hook = webhook::Entity::find_by_id(row.agency_id.clone())
                .one(self.ctx.db())
                .await?;
            let target = hook
                .filter(|h| h.enabled)
                .and_then(|h| open_secret(&self.ctx, &h.secret_ct).map(|s| (h.url, s)));
            let Some((url, secret)) = target else {
                self.give_up(&row, now, "webhook switched off").await?;
                step.failed += 1;
                continue;
            };
            let attempt = row.attempts + 1;
            match self.send(&url, &secret, &row, now).await {
                Ok(()) => {
                    self.record(
                        &row,
                        outbox::ActiveModel {
                            delivered_at: Set(Some(now)),
                            attempts: Set(attempt),
                            ..Default::default()
                        },
                    )
                    .await?;
                    step.delivered += 1;
                    tracing::info!(delivery_id = %row.id, agency = %row.agency_id, attempt, "webhook delivered");
                }
                Err(why) if attempt >= MAX_ATTEMPTS => {
                    self.give_up(&row, now, &why).await?;
                    step.failed += 1;
                }
                Err(why) => {
                    self.record(
                        &row,
                        outbox::ActiveModel {
                            attempts: Set(attempt),
                            next_attempt_at: Set(now + backoff(row.attempts)),
                            last_error: Set(Some(why.clone())),
                            ..Default::default()
                        },
                    )
                    .await?;
                    step.retrying += 1;
                    tracing::warn!(delivery_id = %row.id, agency = %row.agency_id, attempt, error = %why, "webhook delivery failed; will retry");
                }
            }
        }
        Ok(step)
    }

    /// Writes `changes` to the delivery `row`.
    async fn record(&self, row: &outbox::Model, changes: outbox::ActiveModel) -> ServiceResult<()> {
        outbox::Entity::update_many()
            .set(changes)
            .filter(outbox::Column::Id.eq(row.id))
            .exec(self.ctx.db())
            .await?;
        Ok(())
    }

    async fn give_up(
        &self,
        row: &outbox::Model,
        now: DateTime<Utc>,
        why: &str,
    ) -> ServiceResult<()> {
        self.record(
            row,
            outbox::ActiveModel {
                failed_at: Set(Some(now)),
                last_error: Set(Some(why.to_owned())),
                ..Default::default()
            },
        )
        .await?;
        tracing::warn!(delivery_id = %row.id, agency = %row.agency_id, reason = why, "webhook delivery given up");
        Ok(())
    }

    /// One POST; `Err` names the failure (a status or a transport error, never the body).
    async fn send(
        &self,
        url: &str,
        secret: &[u8],
        row: &outbox::Model,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let ts = now.timestamp();
        let body = row.payload.as_bytes().to_vec();
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("refnet-delivery", row.id.to_string())
            .header("refnet-timestamp", ts.to_string())
            .header("refnet-signature", signature(secret, ts, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| {
                // reqwest's message may carry the URL; the kind is enough.
                if e.is_timeout() {
                    "timed out".to_owned()
                } else if e.is_connect() {
                    "could not connect".to_owned()
                } else {
                    "transport error".to_owned()
                }
            })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", response.status().as_u16()))
        }
    }
}

/// Checks a webhook URL: absolute, https (or http where allowed), no credentials.
fn check_url(ctx: &AppContext, url: &str) -> Result<String, &'static str> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|_| "must be an absolute URL")?;
    match parsed.scheme() {
        "https" => {}
        "http" if ctx.config().webhook_allow_plain_http => {}
        "http" => return Err("must be https:// (plain http is not allowed by this server)"),
        _ => return Err("must be an https:// URL"),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("must name a host");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials (the HMAC key authenticates deliveries)");
    }
    if url.len() > 2048 {
        return Err("must be at most 2048 characters");
    }
    Ok(parsed.to_string())
}

/// The wire form of `agency_id`'s webhook with its delivery counts.
async fn webhook_reply(ctx: &AppContext, agency_id: &str) -> ServiceResult<pb::Webhook> {
    let hook = webhook::Entity::find_by_id(agency_id.to_owned())
        .one(ctx.db())
        .await?;
    let count = |q: sea_orm::Select<outbox::Entity>| async move {
        q.filter(outbox::Column::AgencyId.eq(agency_id))
            .count(ctx.db())
            .await
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
    };
    Ok(pb::Webhook {
        agency_id: agency_id.to_owned(),
        url: hook.as_ref().map(|h| h.url.clone()).unwrap_or_default(),
        enabled: hook.as_ref().is_some_and(|h| h.enabled),
        updated_at: hook.as_ref().map(|h| timestamp(h.updated_at)),
        pending: count(
            outbox::Entity::find()
                .filter(outbox::Column::DeliveredAt.is_null())
                .filter(outbox::Column::FailedAt.is_null()),
        )
        .await?,
        delivered: count(outbox::Entity::find().filter(outbox::Column::DeliveredAt.is_not_null()))
            .await?,
        failed: count(outbox::Entity::find().filter(outbox::Column::FailedAt.is_not_null()))
            .await?,
        redactions: Vec::new(),
    })
}

/// ConfigureWebhook: a supervisor sets or switches off the agency's webhook.
pub async fn configure(
    ctx: &AppContext,
    request: Call<pb::ConfigureWebhookRequest>,
) -> ServiceResult<Reply<pb::Webhook>> {
    let (principal, call, req) = request.parts();
    let existing = webhook::Entity::find_by_id(principal.agency_id.clone())
        .one(ctx.db())
        .await?;
    let mut v = refnet_core::error::Violations::new();
    let url = v.check("url", check_url(ctx, &req.url));
    let secret = if req.secret.is_empty() {
        match &existing {
            Some(h) => Some(h.secret_ct.clone()),
            None => {
                v.add("secret", "is required for a new webhook");
                None
            }
        }
    } else if !SECRET_LEN.contains(&req.secret.chars().count())
        || req.secret.chars().any(char::is_control)
    {
        v.add(
            "secret",
            "must be 32-256 characters, none of them control characters",
        );
        None
    } else {
        Some(seal_secret(ctx, &req.secret))
    };
    let (url, secret_ct) = v.finish(|| Some((url?, secret?)))?;
    let now = Utc::now();
    let agency = principal.agency_id.clone();
    let officer = principal.officer_id.clone();
    let enabled = req.enabled;
    refnet_core::db::write_txn(ctx.db(), move |txn| {
        Box::pin(async move {
            webhook::Entity::insert(webhook::ActiveModel {
                agency_id: Set(agency.clone()),
                url: Set(url),
                secret_ct: Set(secret_ct),
                enabled: Set(enabled),
                updated_by: Set(officer),
                updated_at: Set(now),
            })
            .on_conflict(
                OnConflict::column(webhook::Column::AgencyId)
                    .update_columns([
                        webhook::Column::Url,
                        webhook::Column::SecretCt,
                        webhook::Column::Enabled,
                        webhook::Column::UpdatedBy,
                        webhook::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
            if !enabled {
                // Switched off: nothing more leaves for this agency.
                outbox::Entity::update_many()
                    .col_expr(
                        outbox::Column::FailedAt,
                        sea_orm::sea_query::Expr::value(now),
                    )
                    .col_expr(
                        outbox::Column::LastError,
                        sea_orm::sea_query::Expr::value("webhook switched off"),
                    )
                    .filter(outbox::Column::AgencyId.eq(agency.as_str()))
                    .filter(outbox::Column::DeliveredAt.is_null())
                    .filter(outbox::Column::FailedAt.is_null())
                    .exec(txn)
                    .await?;
            }
            Ok(())
        })
    })
    .await?;
    tracing::info!(agency = %principal.agency_id, enabled, "webhook configured");
    let response = webhook_reply(ctx, &principal.agency_id).await?;
    reply(ctx, &principal, &call, Concerning::Nothing, response).await
}

/// GetWebhook: the agency's webhook and its delivery counts.
pub async fn get(
    ctx: &AppContext,
    request: Call<pb::GetWebhookRequest>,
) -> ServiceResult<Reply<pb::Webhook>> {
    let (principal, call, _) = request.parts();
    let response = webhook_reply(ctx, &principal.agency_id).await?;
    reply(ctx, &principal, &call, Concerning::Nothing, response).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_an_hour_and_signatures_are_hmac_sha256() {
        assert_eq!(backoff(0).num_seconds(), 2);
        assert_eq!(backoff(1).num_seconds(), 4);
        assert_eq!(backoff(5).num_seconds(), 64);
        assert_eq!(backoff(11).num_seconds(), 3600);
        assert_eq!(backoff(-3).num_seconds(), 2);
        // HMAC-SHA256("Jefe", "0.what do ya want for nothing?"), computed
        // independently (Python's hmac module).
        let sig = signature(b"Jefe", 0, b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "v1=37f471929915ccd2cbbe79feb84ffcff4f2bb25e15fc41c2506687331ae179cc"
        );
        assert_ne!(sig, signature(b"Jefe", 1, b"what do ya want for nothing?"));
    }
}
