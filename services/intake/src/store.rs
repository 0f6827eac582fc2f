//! Intake's storage: reading a referral as its parties may see it, and what
//! filing, amending and consent share (identifier digests, duplicate and
//! protection matches). Filing is in [`crate::filing`], amendments and consent
//! in [`crate::changes`], lists in [`crate::listing`]; each write is one
//! transaction that also appends its event.
//!
//! Identity and location are sealed under the subject's data key before they
//! reach the database; the narrative, special category and suspects (free
//! text that may repeat identifiers) are sealed under the same key. Only
//! keyed hashes of ID, passport and phone numbers are stored, for the
//! possible-duplicate check.

use std::collections::BTreeMap;

use chrono::Utc;
use refnet_api::v1 as pb;
use refnet_core::{
    AppContext, ServiceError, ServiceResult,
    auth::Principal,
    boundary::SubjectContext,
    crypto::{DataKey, Keyring},
    domain::{
        ReferralRef,
        referral::{ReferralContent, timestamp},
    },
    entities::referral_party,
    subjects::{json, seal, subject_context},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::entities::{referral, subject, subject_identifier};

/// The relation of the filing agency to its referral.
pub const RELATION_FILER: &str = "FILER";

/// A referral read back, with what redaction needs to know of its subject.
pub struct Loaded {
    /// The referral, unredacted.
    pub referral: pb::Referral,
    /// Its subject, for the redactor.
    pub subject: SubjectContext,
}

/// A filed referral and what filing found.
pub struct Filed {
    /// The referral, unredacted.
    pub referral: pb::Referral,
    /// Its subject, for the redactor.
    pub subject: SubjectContext,
    /// True when this answered a retry.
    pub replayed: bool,
    /// Earlier referrals of possibly the same person.
    pub possible_duplicates: Vec<pb::PossibleDuplicate>,
}

/// The subject columns that follow from `content`: sealed identity and
/// location, and the quasi-identifiers in clear.
pub(crate) fn subject_columns(
    dek: &DataKey,
    subject_id: Uuid,
    content: &ReferralContent,
    now: chrono::DateTime<Utc>,
) -> ServiceResult<subject::ActiveModel> {
    let q = &content.quasi;
    Ok(subject::ActiveModel {
        id: Set(subject_id),
        identity_ct: Set(seal(dek, subject_id, "identity", &content.identity)?),
        location_ct: Set(seal(dek, subject_id, "location", &content.location)?),
        date_of_birth: Set(q.date_of_birth),
        sex: Set(q.sex.clone()),
        nationality: Set(q
            .nationality
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default()),
        county_of_origin: Set(q.county_of_origin.clone().unwrap_or_default()),
        sub_county_of_origin: Set(q.sub_county_of_origin.clone()),
        languages: Set(json(&q.languages)?),
        is_child: Set(content.is_child),
        updated_at: Set(now),
        ..Default::default()
    })
}

/// Referrals joined to their party rows: filtered on the party's agency, a
/// read walks the primary key (`referral_id`, `agency_id`) for one referral,
/// or `ix_referral_parties_agency` (`agency_id`, `referral_id`) in referral
/// order for a page; never every referral the agency is party to.
pub(crate) fn joined_to_parties() -> sea_orm::Select<referral::Entity> {
    let parties: sea_orm::RelationDef = referral_party::Entity::belongs_to(referral::Entity)
        .from(referral_party::Column::ReferralId)
        .to(referral::Column::Id)
        .into();
    referral::Entity::find().join_rev(sea_orm::JoinType::InnerJoin, parties)
}

pub(crate) fn by_ref(reference: &ReferralRef) -> Condition {
    match reference {
        ReferralRef::Id(id) => Condition::all().add(referral::Column::Id.eq(*id)),
        ReferralRef::Code(code) => {
            Condition::all().add(referral::Column::ReferenceCode.eq(code.as_str()))
        }
    }
}

/// The referral `reference` if `agency_id` is party to it; NOT_FOUND otherwise,
/// the same answer as for a referral that does not exist.
pub(crate) async fn find_visible<C: ConnectionTrait>(
    db: &C,
    agency_id: &str,
    reference: &ReferralRef,
) -> ServiceResult<referral::Model> {
    joined_to_parties()
        .filter(by_ref(reference))
        .filter(referral_party::Column::AgencyId.eq(agency_id))
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)
}

/// The wire form of a stored referral.
pub(crate) fn to_proto(row: &referral::Model, content: &ReferralContent) -> pb::Referral {
    pb::Referral {
        id: row.id.to_string(),
        reference_code: row.reference_code.clone(),
        version: row.version,
        status: row.status.into(),
        draft: Some(content.to_proto()),
        missing_elements: content
            .missing_elements()
            .into_iter()
            .map(|e| e as i32)
            .collect(),
        subject_is_child: row.is_child,
        filing_agency_id: row.filing_agency_id.clone(),
        filing_agency_kind: refnet_core::auth::parse_agency_kind(&row.filing_agency_kind)
            .map_or(0, |k| k as i32),
        filed_by_officer: row.filed_by_officer.clone(),
        filed_at: Some(timestamp(row.filed_at)),
        updated_at: Some(timestamp(row.updated_at)),
        protection_applies: content.protected_pseudonym.is_some(),
        subject_erased_at: content.erased_at.map(timestamp),
    }
}

/// A list row; reads no sealed column.
pub fn to_summary(row: &referral::Model) -> pb::ReferralSummary {
    pb::ReferralSummary {
        id: row.id.to_string(),
        reference_code: row.reference_code.clone(),
        version: row.version,
        status: row.status.into(),
        urgency: pb::Urgency::from_str_name(&row.urgency).map_or(0, |s| s as i32),
        classification: pb::Classification::from_str_name(&row.classification)
            .map_or(0, |s| s as i32),
        county: row.county.clone(),
        subject_is_child: row.is_child,
        filing_agency_id: row.filing_agency_id.clone(),
        filing_agency_kind: refnet_core::auth::parse_agency_kind(&row.filing_agency_kind)
            .map_or(0, |k| k as i32),
        filed_at: Some(timestamp(row.filed_at)),
    }
}

/// The id of the referral `reference` if `principal`'s agency is party to it.
pub async fn visible_id(
    ctx: &AppContext,
    principal: &Principal,
    reference: &ReferralRef,
) -> ServiceResult<Uuid> {
    Ok(find_visible(ctx.db(), &principal.agency_id, reference)
        .await?
        .id)
}

/// Reads one referral visible to `principal`.
pub async fn get(
    ctx: &AppContext,
    principal: &Principal,
    reference: &ReferralRef,
) -> ServiceResult<Loaded> {
    let agency = principal.agency_id.as_str();
    // The referral and its subject in one query, joined to the viewer's party
    // row; by id, the viewer's relation is read at the same time (it is
    // discarded with the rest when the referral is not visible).
    let subject_of: sea_orm::RelationDef = referral::Entity::belongs_to(subject::Entity)
        .from(referral::Column::SubjectId)
        .to(subject::Column::Id)
        .into();
    let visible = async {
        joined_to_parties()
            .join(sea_orm::JoinType::InnerJoin, subject_of)
            .filter(by_ref(reference))
            .filter(referral_party::Column::AgencyId.eq(agency))
            .select_also(subject::Entity)
            .one(ctx.db())
            .await?
            .and_then(|(row, subj)| Some((row, subj?)))
            .ok_or(ServiceError::NotFound)
    };
    let ((row, subj), relation) = match reference {
        ReferralRef::Id(id) => tokio::try_join!(
            visible,
            refnet_core::access::relation(ctx.db(), *id, agency)
        )?,
        ReferralRef::Code(_) => {
            let (row, subj) = visible.await?;
            let relation = refnet_core::access::relation(ctx.db(), row.id, agency).await?;
            ((row, subj), relation)
        }
    };
    let content = refnet_core::subjects::content_of(ctx.keys(), &row, &subj)?;
    Ok(Loaded {
        referral: to_proto(&row, &content),
        subject: subject_context(ctx.keys(), &row, &content, relation),
    })
}

/// A blind-index row sharing a digest: (referral, identifier kind, subject).
type Hit = (Uuid, String, Uuid);

/// Every blind-index row sharing a digest with `digests`, in one query.
///
/// No LIMIT in the statement: PostgreSQL plans a prepared statement's bound
/// LIMIT generically, as a small fraction of the table, and chose a scan of
/// every identifier row over the digest index (3 ms at 7k rows, growing with
/// the table). Matches are exact identifiers, so few.
pub(crate) async fn identifier_hits<C: ConnectionTrait>(
    db: &C,
    digests: &[(&'static str, Vec<u8>)],
) -> ServiceResult<Vec<Hit>> {
    if digests.is_empty() {
        return Ok(Vec::new());
    }
    Ok(subject_identifier::Entity::find()
        .select_only()
        .column(subject_identifier::Column::ReferralId)
        .column(subject_identifier::Column::Kind)
        .column(subject_identifier::Column::SubjectId)
        .filter(subject_identifier::Column::Digest.is_in(digests.iter().map(|(_, d)| d.clone())))
        .into_tuple()
        .all(db)
        .await?)
}

/// The pseudonym of a protected subject sharing an identifier with `digests`, if any.
pub(crate) async fn protected_match<C: ConnectionTrait>(
    db: &C,
    digests: &[(&'static str, Vec<u8>)],
) -> ServiceResult<Option<String>> {
    let hits = identifier_hits(db, digests).await?;
    protected_among(db, &hits).await
}

/// The pseudonym of a protected subject among `hits`' subjects, if any: a
/// primary-key lookup of those subjects (an IN-subquery over the blind index
/// was planned by PostgreSQL as a walk of every subject, 4.6 ms at 6k).
pub(crate) async fn protected_among<C: ConnectionTrait>(
    db: &C,
    hits: &[Hit],
) -> ServiceResult<Option<String>> {
    let mut sharing: Vec<Uuid> = hits.iter().map(|(_, _, subject)| *subject).collect();
    sharing.sort_unstable();
    sharing.dedup();
    if sharing.is_empty() {
        return Ok(None);
    }
    Ok(subject::Entity::find()
        .filter(subject::Column::Id.is_in(sharing))
        .filter(subject::Column::ProtectedPseudonym.is_not_null())
        .order_by_asc(subject::Column::Id)
        .one(db)
        .await?
        .and_then(|s| s.protected_pseudonym))
}

/// Earlier referrals whose subject shares an identifier with `digests`.
pub(crate) async fn possible_duplicates<C: ConnectionTrait>(
    db: &C,
    digests: &[(&'static str, Vec<u8>)],
    exclude: Option<Uuid>,
) -> ServiceResult<Vec<pb::PossibleDuplicate>> {
    let hits = identifier_hits(db, digests).await?;
    duplicates_among(db, hits, exclude).await
}

/// The referrals of `hits` but `exclude`, the first 200 by id.
pub(crate) async fn duplicates_among<C: ConnectionTrait>(
    db: &C,
    hits: Vec<Hit>,
    exclude: Option<Uuid>,
) -> ServiceResult<Vec<pb::PossibleDuplicate>> {
    let mut matched: BTreeMap<Uuid, String> = BTreeMap::new();
    for (referral_id, kind, _) in hits {
        if Some(referral_id) == exclude {
            continue;
        }
        matched.entry(referral_id).or_insert(kind);
    }
    while matched.len() > 200 {
        matched.pop_last();
    }
    if matched.is_empty() {
        return Ok(Vec::new());
    }
    let rows = referral::Entity::find()
        .filter(referral::Column::Id.is_in(matched.keys().copied()))
        .order_by_asc(referral::Column::Id)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| pb::PossibleDuplicate {
            matched_on: matched.get(&r.id).cloned().unwrap_or_default(),
            reference_code: r.reference_code,
        })
        .collect())
}

pub(crate) fn digests(keys: &Keyring, content: &ReferralContent) -> Vec<(&'static str, Vec<u8>)> {
    content
        .blind_identifiers()
        .into_iter()
        .map(|(kind, value)| (kind, keys.blind_index.digest(kind, &value)))
        .collect()
}

pub(crate) async fn insert_identifiers(
    txn: &DatabaseTransaction,
    digests: &[(&'static str, Vec<u8>)],
    referral_id: Uuid,
    subject_id: Uuid,
) -> ServiceResult<()> {
    let mut seen = std::collections::HashSet::new();
    let rows: Vec<_> = digests
        .iter()
        .filter(|(_, d)| seen.insert(d.clone()))
        .map(|(kind, digest)| subject_identifier::ActiveModel {
            digest: Set(digest.clone()),
            referral_id: Set(referral_id),
            kind: Set((*kind).to_owned()),
            subject_id: Set(subject_id),
        })
        .collect();
    if !rows.is_empty() {
        subject_identifier::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}
