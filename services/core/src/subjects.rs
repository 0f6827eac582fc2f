//! A referral's sealed content read back, and what redaction needs to know of
//! its subject. Intake writes these tables; routing reads them to redact the
//! free text it stores (messages) with the subject's own identifiers.

use refnet_api::v1 as pb;
use sea_orm::{ConnectionTrait, EntityTrait};
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::{
    AppContext, ServiceError, ServiceResult,
    crypto::{DataKey, Keyring},
    domain::{
        CountryCode, LanguageCode,
        referral::{
            CaseRecord, ConsentRecord, IdentityRecord, LocationRecord, QuasiRecord,
            ReferralContent, SealedRecord,
        },
    },
    entities::{referral, subject},
    policy::{Relation, SubjectState},
};

/// The subject a reply concerns, as redaction needs it.
#[derive(Debug, Clone, Default)]
pub struct SubjectContext {
    /// The referral.
    pub referral_id: Option<Uuid>,
    /// Consent and protection.
    pub state: SubjectState,
    /// The viewer's relation to the referral.
    pub relation: Relation,
    /// The identifiers free text is scanned for.
    pub record: crate::detect::RecordIdentifiers,
}

/// JSON text of `value`.
pub fn json<T: Serialize>(value: &T) -> ServiceResult<String> {
    serde_json::to_string(value).map_err(|e| ServiceError::internal("encode", e))
}

/// `T` from JSON text; `what` names it in errors.
pub fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> ServiceResult<T> {
    serde_json::from_str(text).map_err(|e| ServiceError::internal(what, e))
}

/// Seals `value` as JSON under `key` for `row` and `purpose`.
pub fn seal<T: Serialize>(
    key: &DataKey,
    row: Uuid,
    purpose: &str,
    value: &T,
) -> ServiceResult<Vec<u8>> {
    let plain = serde_json::to_vec(value).map_err(|e| ServiceError::internal("encode", e))?;
    key.seal(row, purpose, &plain)
        .map_err(|e| ServiceError::internal("seal", e))
}

/// Opens what [`seal`] sealed.
pub fn open<T: DeserializeOwned>(
    key: &DataKey,
    row: Uuid,
    purpose: &str,
    sealed: &[u8],
) -> ServiceResult<T> {
    let plain = key
        .open(row, purpose, sealed)
        .map_err(|e| ServiceError::internal("open", e))?;
    serde_json::from_slice(&plain).map_err(|e| ServiceError::internal("decode", e))
}

/// `key_id` of an erased subject: its data key was destroyed.
pub const ERASED_KEY_ID: &str = "erased";

/// The answer to a write that would seal new text about an erased subject.
pub fn erased_error() -> ServiceError {
    ServiceError::FailedPrecondition(
        "the subject of this referral was erased; nothing more can be recorded about them".into(),
    )
}

/// The subject row of `referral_id`.
async fn subject_of<C: ConnectionTrait>(
    db: &C,
    referral_id: Uuid,
) -> ServiceResult<subject::Model> {
    let row = referral::Entity::find_by_id(referral_id)
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)?;
    subject::Entity::find_by_id(row.subject_id)
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::Internal("referral without subject".into()))
}

/// The data key of `subj`; `None` once the subject was erased.
fn key_of(keys: &Keyring, subj: &subject::Model) -> ServiceResult<Option<DataKey>> {
    if subj.erased_at.is_some() {
        return Ok(None);
    }
    keys.unwrap_data_key(subj.id, &subj.key_id, &subj.wrapped_key)
        .map(Some)
        .map_err(|e| ServiceError::internal("unwrap data key", e))
}

/// The data key of the subject of `referral_id`, to seal something new;
/// FAILED_PRECONDITION once the subject was erased.
pub async fn data_key<C: ConnectionTrait>(
    db: &C,
    keys: &Keyring,
    referral_id: Uuid,
) -> ServiceResult<DataKey> {
    read_key(db, keys, referral_id)
        .await?
        .ok_or_else(erased_error)
}

/// The data key of the subject of `referral_id`, to open what was sealed;
/// `None` once the subject was erased (what it sealed is unrecoverable).
pub async fn read_key<C: ConnectionTrait>(
    db: &C,
    keys: &Keyring,
    referral_id: Uuid,
) -> ServiceResult<Option<DataKey>> {
    key_of(keys, &subject_of(db, referral_id).await?)
}

/// Opens what [`seal`] sealed under `key`, or gives `T::default()` when the
/// key was destroyed (`None`: the subject was erased).
pub fn open_or_erased<T: DeserializeOwned + Default>(
    key: Option<&DataKey>,
    row: Uuid,
    purpose: &str,
    sealed: &[u8],
) -> ServiceResult<T> {
    match key {
        Some(key) => open(key, row, purpose, sealed),
        None => Ok(T::default()),
    }
}

/// Reads the content of a referral, opening its sealed parts.
pub async fn load_content<C: ConnectionTrait>(
    db: &C,
    keys: &Keyring,
    row: &referral::Model,
) -> ServiceResult<ReferralContent> {
    let subj = subject::Entity::find_by_id(row.subject_id)
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::Internal("referral without subject".into()))?;
    content_of(keys, row, &subj)
}

/// The content of `row` with its subject `subj` already read, sealed parts opened.
pub fn content_of(
    keys: &Keyring,
    row: &referral::Model,
    subj: &subject::Model,
) -> ServiceResult<ReferralContent> {
    // An erased subject's key is gone: identity, location and the sealed
    // text read as empty.
    let key = key_of(keys, subj)?;
    let identity: IdentityRecord =
        open_or_erased(key.as_ref(), subj.id, "identity", &subj.identity_ct)?;
    let location: LocationRecord =
        open_or_erased(key.as_ref(), subj.id, "location", &subj.location_ct)?;
    let sealed: SealedRecord = open_or_erased(key.as_ref(), row.id, "sealed", &row.sealed)?;
    let quasi = QuasiRecord {
        date_of_birth: subj.date_of_birth,
        sex: subj.sex.clone(),
        nationality: CountryCode::parse(&subj.nationality).ok(),
        county_of_origin: (!subj.county_of_origin.is_empty())
            .then(|| subj.county_of_origin.clone()),
        sub_county_of_origin: subj.sub_county_of_origin.clone(),
        languages: from_json::<Vec<String>>(&subj.languages, "languages")?
            .iter()
            .filter_map(|l| LanguageCode::parse(l).ok())
            .collect(),
    };
    Ok(ReferralContent {
        identity,
        location,
        quasi,
        is_child: row.is_child,
        case_facts: from_json::<CaseRecord>(&row.case_facts, "case facts")?,
        sealed,
        needs: from_json(&row.needs, "needs")?,
        consent: from_json::<ConsentRecord>(&row.consent, "consent")?,
        urgency: pb::Urgency::from_str_name(&row.urgency).unwrap_or_default(),
        classification: pb::Classification::from_str_name(&row.classification).unwrap_or_default(),
        identified_by: pb::IdentifiedBy::from_str_name(&row.identified_by).unwrap_or_default(),
        county: row.county.clone(),
        protected_pseudonym: subj.protected_pseudonym.clone(),
        erased_at: subj.erased_at,
    })
}

/// What the redactor needs to know of a referral's subject, for a viewer in `relation`.
pub fn subject_context(
    keys: &Keyring,
    row: &referral::Model,
    content: &ReferralContent,
    relation: Relation,
) -> SubjectContext {
    SubjectContext {
        referral_id: Some(row.id),
        state: SubjectState {
            consented_kinds: content.consented_kinds(),
            protected_pseudonym: content.protected_pseudonym.clone(),
            pseudonym: keys.subject_token(row.subject_id),
        },
        relation,
        record: content.record_identifiers(),
    }
}

/// The subject context of `referral_id` for a viewer from `agency_id`.
pub async fn context_for(
    ctx: &AppContext,
    referral_id: Uuid,
    agency_id: &str,
) -> ServiceResult<SubjectContext> {
    let row = referral::Entity::find_by_id(referral_id)
        .one(ctx.db())
        .await?
        .ok_or(ServiceError::NotFound)?;
    let content = load_content(ctx.db(), ctx.keys(), &row).await?;
    let relation = crate::access::relation(ctx.db(), referral_id, agency_id).await?;
    Ok(subject_context(ctx.keys(), &row, &content, relation))
}
