//! Protection requests and measures as stored (the subject's protected state
//! is core's: `refnet_core::protected`). Free text (the requester's grounds, threat assessment and threat
//! sources; the WPA's notes, threat analysis and reasons; measure details) is
//! sealed under the subject's data key, so a database reader learns nothing.

use chrono::{DateTime, Utc};
use refnet_core::ServiceResult;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The protection_requests table.
pub mod request {
    use sea_orm::entity::prelude::*;

    /// One protection request.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "protection_requests")]
    pub struct Model {
        /// Id (UUIDv7).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The referral.
        pub referral_id: Uuid,
        /// Its subject (the witness).
        pub subject_id: Uuid,
        /// The referral's reference code.
        pub reference_code: String,
        /// The requesting agency (POLICE or PROSECUTION).
        pub requester_agency_id: String,
        /// The requesting officer.
        pub requester_officer: String,
        /// The requester's idempotency key.
        pub idempotency_key: String,
        /// Digest of the request the key was first used with.
        pub request_digest: String,
        /// State.
        pub state: refnet_core::states::ProtectionState,
        /// Version for optimistic concurrency.
        pub version: i64,
        /// Urgency (proto name).
        pub urgency: String,
        /// Measures requested (JSON list of proto names).
        pub measures_requested: String,
        /// Measures granted on an interim basis (JSON list of proto names).
        pub interim_measures: String,
        /// The sealed [`super::SealedRequest`].
        pub sealed_ct: Vec<u8>,
        /// The pseudonym, from interim measures or admission on.
        pub pseudonym: Option<String>,
        /// The pseudonym as compared (unique).
        pub pseudonym_key: Option<String>,
        /// Submitted.
        pub submitted_at: DateTimeUtc,
        /// Decided (interim measures, admission or decline).
        pub decided_at: Option<DateTimeUtc>,
        /// Closed, declined or withdrawn.
        pub closed_at: Option<DateTimeUtc>,
        /// Last changed.
        pub updated_at: DateTimeUtc,
        /// Begin the assessment by (none on requests from before deadlines).
        pub assess_by: Option<DateTimeUtc>,
        /// Decide (interim measures, admission or decline) by.
        pub decide_by: Option<DateTimeUtc>,
        /// The deadline last escalated: "ASSESS" or "DECIDE".
        pub escalated: Option<String>,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    refnet_core::versioned_entity!();
}

/// The protection_measures table.
pub mod measure {
    use sea_orm::entity::prelude::*;

    /// One measure in force.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "protection_measures")]
    pub struct Model {
        /// Id (UUIDv7).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The request.
        pub request_id: Uuid,
        /// The measure (proto name).
        pub measure: String,
        /// In force from.
        pub starts_on: Date,
        /// In force until; none if open-ended.
        pub ends_on: Option<Date>,
        /// The WPA's details, sealed.
        pub details_ct: Vec<u8>,
        /// The WPA officer who recorded it.
        pub recorded_by: String,
        /// When.
        pub recorded_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One of the WPA's notes on a request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Note {
    /// When.
    pub at: DateTime<Utc>,
    /// The step it was written at ("BeginAssessment").
    pub step: String,
    /// The note.
    pub text: String,
}

/// The free text of a request, sealed as one record.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SealedRequest {
    /// The requester's grounds.
    pub grounds: String,
    /// The requester's threat assessment.
    pub threat_assessment: String,
    /// Who threatens the witness.
    pub threat_sources: String,
    /// The WPA's notes, oldest first.
    #[serde(default)]
    pub wpa_notes: Vec<Note>,
    /// The WPA's threat analysis (the latest).
    #[serde(default)]
    pub wpa_threat_analysis: String,
    /// Why it was declined, withdrawn or closed.
    #[serde(default)]
    pub reason: String,
}

/// The sealing purpose of requests and measures (bound into the ciphertext).
pub const SEALED: &str = "protection_request";
/// The sealing purpose of measure details.
pub const DETAILS: &str = "protection_measure";

/// The open request (not declined, closed or withdrawn) for `subject_id`, if any.
pub async fn open_request_for<C: ConnectionTrait>(
    db: &C,
    subject_id: Uuid,
) -> ServiceResult<Option<Uuid>> {
    Ok(request::Entity::find()
        .select_only()
        .column(request::Column::Id)
        .filter(request::Column::SubjectId.eq(subject_id))
        .filter(request::Column::State.is_not_in(refnet_core::states::ProtectionState::ENDED))
        .into_tuple::<Uuid>()
        .one(db)
        .await?)
}
