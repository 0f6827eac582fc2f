//! Protection requests and measures as stored, and the subject's protected
//! state. Free text (the requester's grounds, threat assessment and threat
//! sources; the WPA's notes, threat analysis and reasons; measure details) is
//! sealed under the subject's data key, so a database reader learns nothing.

use chrono::{DateTime, Utc};
use refnet_core::{
    ServiceError, ServiceResult,
    entities::{referral, subject, subject_identifier},
    events::{self, EventKind},
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait, Query},
};
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
        /// State (proto name).
        pub state: String,
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
        /// In force from (YYYY-MM-DD).
        pub starts_on: String,
        /// In force until (YYYY-MM-DD), empty if open-ended.
        pub ends_on: String,
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

/// The subjects that are the same person as `subject_id` as far as refnet can
/// tell: itself and every subject sharing a blind-indexed identifier (ID,
/// passport, refugee ID or phone number) with it. Protection covers them all,
/// so another referral about the same witness does not reveal them.
async fn same_person<C: ConnectionTrait>(db: &C, subject_id: Uuid) -> ServiceResult<Vec<Uuid>> {
    let digests = Query::select()
        .column(subject_identifier::Column::Digest)
        .from(subject_identifier::Entity)
        .and_where(Expr::col(subject_identifier::Column::SubjectId).eq(subject_id))
        .to_owned();
    let mut ids: Vec<Uuid> = subject_identifier::Entity::find()
        .select_only()
        .column(subject_identifier::Column::SubjectId)
        .filter(subject_identifier::Column::Digest.in_subquery(digests))
        .into_tuple::<Uuid>()
        .all(db)
        .await?;
    ids.push(subject_id);
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Appends `kind` (with an empty payload: it reveals nothing) on every
/// referral about one of `subjects`.
async fn mark_referrals<C: ConnectionTrait>(
    db: &C,
    subjects: &[Uuid],
    kind: EventKind,
) -> ServiceResult<()> {
    let referrals: Vec<Uuid> = referral::Entity::find()
        .select_only()
        .column(referral::Column::Id)
        .filter(referral::Column::SubjectId.is_in(subjects.iter().copied()))
        .into_tuple::<Uuid>()
        .all(db)
        .await?;
    for id in referrals {
        events::append(db, kind, Some(id), None, &serde_json::json!({})).await?;
    }
    Ok(())
}

/// From now on every viewer but the WPA sees `subject_id` (and the subjects
/// that are the same person) as `pseudonym`: in every reply and stream, over
/// old and new free text. A `ProtectionApplied` event marks each referral's
/// timeline (open streams pick the change up with their next item).
pub async fn protect<C: ConnectionTrait>(
    db: &C,
    subject_id: Uuid,
    pseudonym: &str,
) -> ServiceResult<()> {
    let subjects = same_person(db, subject_id).await?;
    subject::Entity::update_many()
        .col_expr(subject::Column::ProtectedPseudonym, Expr::value(pseudonym))
        .filter(subject::Column::Id.is_in(subjects.iter().copied()))
        .exec(db)
        .await?;
    mark_referrals(db, &subjects, EventKind::ProtectionApplied).await
}

/// Restores the identity of the subjects protected as `pseudonym` to other
/// parties (only ever on the WPA's explicit word).
pub async fn lift<C: ConnectionTrait>(db: &C, pseudonym: &str) -> ServiceResult<()> {
    let subjects: Vec<Uuid> = subject::Entity::find()
        .select_only()
        .column(subject::Column::Id)
        .filter(subject::Column::ProtectedPseudonym.eq(pseudonym))
        .into_tuple::<Uuid>()
        .all(db)
        .await?;
    if subjects.is_empty() {
        return Ok(());
    }
    subject::Entity::update_many()
        .col_expr(
            subject::Column::ProtectedPseudonym,
            Expr::value(Option::<String>::None),
        )
        .filter(subject::Column::Id.is_in(subjects.iter().copied()))
        .exec(db)
        .await?;
    mark_referrals(db, &subjects, EventKind::ProtectionLifted).await
}

/// Whether `subject_id` is protected now.
pub async fn is_protected<C: ConnectionTrait>(db: &C, subject_id: Uuid) -> ServiceResult<bool> {
    Ok(subject::Entity::find_by_id(subject_id)
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::Internal("request without subject".into()))?
        .protected_pseudonym
        .is_some())
}

/// The open request (not declined, closed or withdrawn) for `subject_id`, if any.
pub async fn open_request_for<C: ConnectionTrait>(
    db: &C,
    subject_id: Uuid,
) -> ServiceResult<Option<Uuid>> {
    use refnet_api::v1::ProtectionState as S;
    Ok(request::Entity::find()
        .select_only()
        .column(request::Column::Id)
        .filter(request::Column::SubjectId.eq(subject_id))
        .filter(request::Column::State.is_not_in([
            S::Declined.as_str_name(),
            S::Closed.as_str_name(),
            S::Withdrawn.as_str_name(),
        ]))
        .into_tuple::<Uuid>()
        .one(db)
        .await?)
}
