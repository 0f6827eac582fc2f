//! Notifications: something an agency (its supervisors, or everyone in it)
//! must act on, about a handoff or a referral as a whole. They hold ids,
//! reference codes and operational detail, never an identifying value.
//! Routing and protection write them; `ListNotifications` reads them.
//!
//! A notification to an agency with a webhook switched on also goes into the
//! webhook outbox, in the same transaction, for the routing process's
//! dispatcher to POST (signed, retried) outside refnet. The payload carries
//! the reference code, the kind and the deadline, never an identifying value.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, sea_query::OnConflict};
use uuid::Uuid;

use crate::{ServiceResult, entities::notification, events::EventKind};

/// Notifications for everyone in the agency.
pub const ALL: &str = "ALL";
/// Notifications for the agency's supervisors.
pub const SUPERVISORS: &str = "SUPERVISORS";

/// What a notification is about: a handoff, or a referral as a whole (the
/// nil handoff id), with the deadline to act by, if any.
pub struct About {
    /// The referral.
    pub referral_id: Uuid,
    /// Its reference code.
    pub reference_code: String,
    /// The handoff; `Uuid::nil()` for the referral itself.
    pub handoff_id: Uuid,
    /// Act by.
    pub due_by: Option<DateTime<Utc>>,
}

/// Records a notification to `agency_id` (its `audience`) about `about`; a
/// repeat (same referral, handoff, event, agency, audience and detail) is a no-op.
pub async fn notify_about<C: ConnectionTrait>(
    db: &C,
    agency_id: &str,
    audience: &str,
    event: EventKind,
    about: &About,
    detail: &str,
) -> ServiceResult<()> {
    if agency_id.is_empty() {
        return Ok(());
    }
    let notification_id = Uuid::now_v7();
    let inserted = notification::Entity::insert(notification::ActiveModel {
        id: Set(notification_id),
        agency_id: Set(agency_id.to_owned()),
        audience: Set(audience.to_owned()),
        kind: Set(event.as_str().to_owned()),
        referral_id: Set(about.referral_id),
        reference_code: Set(about.reference_code.clone()),
        handoff_id: Set(about.handoff_id),
        detail: Set(detail.to_owned()),
        created_at: Set(Utc::now()),
        due_by: Set(about.due_by),
    })
    .on_conflict(
        OnConflict::columns([
            notification::Column::ReferralId,
            notification::Column::HandoffId,
            notification::Column::Kind,
            notification::Column::AgencyId,
            notification::Column::Audience,
            notification::Column::Detail,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    // Only a notification recorded now is delivered (a repeat is not).
    if inserted == 1 {
        enqueue(db, agency_id, notification_id, event, about, detail).await?;
    }
    Ok(())
}

/// The JSON body POSTed to an agency's webhook. Nothing in it identifies a person.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct WebhookPayload {
    /// The delivery id; also the `Refnet-Delivery` header: the receiver's idempotency key.
    pub delivery_id: Uuid,
    /// The agency notified.
    pub agency_id: String,
    /// What happened ("ReferralNeedsRouting", "HandoffEscalated", ...).
    pub kind: String,
    /// The referral's reference code.
    pub reference_code: String,
    /// Operational detail ("acknowledge deadline passed").
    pub detail: String,
    /// Act by, if the notification has a deadline.
    pub due_by: Option<DateTime<Utc>>,
    /// When the notification was recorded.
    pub created_at: DateTime<Utc>,
}

/// Puts a notification into the webhook outbox if `agency_id` has a webhook switched on.
async fn enqueue<C: ConnectionTrait>(
    db: &C,
    agency_id: &str,
    notification_id: Uuid,
    event: EventKind,
    about: &About,
    detail: &str,
) -> ServiceResult<()> {
    let on = webhook::Entity::find_by_id(agency_id.to_owned())
        .one(db)
        .await?
        .is_some_and(|w| w.enabled);
    if !on {
        return Ok(());
    }
    let now = Utc::now();
    let id = Uuid::now_v7();
    let payload = WebhookPayload {
        delivery_id: id,
        agency_id: agency_id.to_owned(),
        kind: event.as_str().to_owned(),
        reference_code: about.reference_code.clone(),
        detail: detail.to_owned(),
        due_by: about.due_by,
        created_at: now,
    };
    let payload = serde_json::to_string(&payload)
        .map_err(|e| crate::ServiceError::internal("webhook payload", e))?;
    outbox::Entity::insert(outbox::ActiveModel {
        id: Set(id),
        agency_id: Set(agency_id.to_owned()),
        notification_id: Set(notification_id),
        payload: Set(payload),
        attempts: Set(0),
        next_attempt_at: Set(now),
        delivered_at: Set(None),
        failed_at: Set(None),
        last_error: Set(None),
        created_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Each agency's webhook (the `webhooks` table).
pub mod webhook {
    use sea_orm::entity::prelude::*;

    /// One agency's webhook.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhooks")]
    pub struct Model {
        /// The agency.
        #[sea_orm(primary_key, auto_increment = false)]
        pub agency_id: String,
        /// Where to POST.
        pub url: String,
        /// The HMAC key, sealed with the keyring's token sealer.
        pub secret_ct: String,
        /// Deliveries are made.
        pub enabled: bool,
        /// The officer who last changed it.
        pub updated_by: String,
        /// When.
        pub updated_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Deliveries waiting for, or done by, the webhook dispatcher (the `webhook_outbox` table).
pub mod outbox {
    use sea_orm::entity::prelude::*;

    /// One delivery.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_outbox")]
    pub struct Model {
        /// Delivery id (UUIDv7): the receiver's idempotency key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The agency whose webhook receives it.
        pub agency_id: String,
        /// The notification it delivers (one delivery per notification).
        pub notification_id: Uuid,
        /// The JSON body ([`super::WebhookPayload`]).
        pub payload: String,
        /// Attempts made so far.
        pub attempts: i32,
        /// Not before (a retry's back-off, or a dispatcher's lease).
        pub next_attempt_at: DateTimeUtc,
        /// When the receiver acknowledged it (2xx).
        pub delivered_at: Option<DateTimeUtc>,
        /// When it was given up.
        pub failed_at: Option<DateTimeUtc>,
        /// The last failure (status or transport error), for operators.
        pub last_error: Option<String>,
        /// Enqueued.
        pub created_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
