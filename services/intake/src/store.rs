//! Intake's storage: filing, reading, amending and consent, each one
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
    auth::{Principal, agency_kind_name},
    boundary::SubjectContext,
    crypto::{DataKey, Keyring},
    domain::{
        ReferralRef,
        facts::RoutingFacts,
        new_reference_code,
        referral::{ConsentRecord, ReferralContent, timestamp},
    },
    entities::referral_party,
    events::{self, EventKind},
    policy::Relation,
    subjects::{from_json, json, load_content, seal, subject_context},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;
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
fn subject_columns(
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
        date_of_birth: Set(q.date_of_birth.map(|d| d.format("%Y-%m-%d").to_string())),
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
fn joined_to_parties() -> sea_orm::Select<referral::Entity> {
    let parties: sea_orm::RelationDef = referral_party::Entity::belongs_to(referral::Entity)
        .from(referral_party::Column::ReferralId)
        .to(referral::Column::Id)
        .into();
    referral::Entity::find().join_rev(sea_orm::JoinType::InnerJoin, parties)
}

fn by_ref(reference: &ReferralRef) -> Condition {
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
fn to_proto(row: &referral::Model, content: &ReferralContent) -> pb::Referral {
    pb::Referral {
        id: row.id.to_string(),
        reference_code: row.reference_code.clone(),
        version: row.version,
        status: pb::ReferralStatus::from_str_name(&row.status).map_or(0, |s| s as i32),
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
        status: pb::ReferralStatus::from_str_name(&row.status).map_or(0, |s| s as i32),
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
async fn identifier_hits<C: ConnectionTrait>(
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
async fn protected_match<C: ConnectionTrait>(
    db: &C,
    digests: &[(&'static str, Vec<u8>)],
) -> ServiceResult<Option<String>> {
    let hits = identifier_hits(db, digests).await?;
    protected_among(db, &hits).await
}

/// The pseudonym of a protected subject among `hits`' subjects, if any: a
/// primary-key lookup of those subjects (an IN-subquery over the blind index
/// was planned by PostgreSQL as a walk of every subject, 4.6 ms at 6k).
async fn protected_among<C: ConnectionTrait>(
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
async fn possible_duplicates<C: ConnectionTrait>(
    db: &C,
    digests: &[(&'static str, Vec<u8>)],
    exclude: Option<Uuid>,
) -> ServiceResult<Vec<pb::PossibleDuplicate>> {
    let hits = identifier_hits(db, digests).await?;
    duplicates_among(db, hits, exclude).await
}

/// The referrals of `hits` but `exclude`, the first 200 by id.
async fn duplicates_among<C: ConnectionTrait>(
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

fn digests(keys: &Keyring, content: &ReferralContent) -> Vec<(&'static str, Vec<u8>)> {
    content
        .blind_identifiers()
        .into_iter()
        .map(|(kind, value)| (kind, keys.blind_index.digest(kind, &value)))
        .collect()
}

async fn insert_identifiers(
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

#[derive(Serialize)]
struct FiledPayload<'a> {
    reference_code: &'a str,
    version: i64,
    filing_agency_kind: &'a str,
    urgency: &'a str,
    county: &'a str,
    /// What routing decides on (no identifiers).
    facts: RoutingFacts,
}

#[derive(Serialize)]
struct AmendedPayload {
    version: i64,
    /// What routing decides on (no identifiers).
    facts: RoutingFacts,
}

#[derive(Serialize)]
struct ConsentPayload<'a> {
    version: i64,
    given: bool,
    agency_kinds: &'a [String],
}

/// What a filing call asked for.
pub struct FileCommand {
    /// The idempotency key.
    pub idempotency_key: String,
    /// SHA-256 of the request's draft, to tell a retry from a reuse of the key.
    pub request_digest: Vec<u8>,
    /// The validated content.
    pub content: ReferralContent,
}

/// The rows of one new referral, built before its transaction: filing writes
/// them one referral per transaction, seeding many per transaction.
#[derive(Clone)]
pub(crate) struct NewReferral {
    pub(crate) subject_id: Uuid,
    pub(crate) referral_id: Uuid,
    /// Filing time, to the microsecond the databases keep.
    pub(crate) now: chrono::DateTime<Utc>,
    /// The content as stored (consent recorded, pseudonym if protected).
    pub(crate) content: ReferralContent,
    pub(crate) subject: subject::ActiveModel,
    /// Every column but `reference_code`, which the writer sets.
    pub(crate) referral: referral::ActiveModel,
    /// Blind-index digests of the subject's identifiers.
    pub(crate) digests: Vec<(&'static str, Vec<u8>)>,
}

impl NewReferral {
    /// Seals the content under a new data key and builds the rows.
    pub(crate) fn build(
        keys: &Keyring,
        principal: &Principal,
        content: ReferralContent,
        protected_pseudonym: Option<String>,
        now: chrono::DateTime<Utc>,
        idempotency_key: String,
        request_digest: Vec<u8>,
    ) -> ServiceResult<Self> {
        use chrono::SubsecRound;
        let now = now.trunc_subsecs(6);
        let subject_id = Uuid::now_v7();
        let referral_id = Uuid::now_v7();
        let digests = digests(keys, &content);
        let (dek, wrapped) = keys
            .master
            .new_data_key(subject_id)
            .map_err(|e| ServiceError::internal("data key", e))?;
        let mut consent = content.consent.clone();
        if consent.given || !consent.by.is_empty() {
            consent.recorded_at = Some(now);
            consent
                .recorded_by_officer
                .clone_from(&principal.officer_id);
        }
        let content = ReferralContent {
            consent,
            protected_pseudonym: protected_pseudonym.clone(),
            ..content
        };
        let subject = subject::ActiveModel {
            key_id: Set(keys.master.id().to_owned()),
            wrapped_key: Set(wrapped),
            created_at: Set(now),
            protected_pseudonym: Set(protected_pseudonym),
            ..subject_columns(&dek, subject_id, &content, now)?
        };
        let missing: Vec<&str> = content
            .missing_elements()
            .iter()
            .map(|e| e.as_str_name())
            .collect();
        let referral = referral::ActiveModel {
            id: Set(referral_id),
            reference_code: sea_orm::ActiveValue::NotSet,
            version: Set(1),
            status: Set(pb::ReferralStatus::Filed.as_str_name().to_owned()),
            subject_id: Set(subject_id),
            filing_agency_id: Set(principal.agency_id.clone()),
            filing_agency_kind: Set(agency_kind_name(principal.agency_kind).to_owned()),
            filed_by_officer: Set(principal.officer_id.clone()),
            urgency: Set(content.urgency.as_str_name().to_owned()),
            classification: Set(content.classification.as_str_name().to_owned()),
            identified_by: Set(content.identified_by.as_str_name().to_owned()),
            county: Set(content.county.clone()),
            is_child: Set(content.is_child),
            case_facts: Set(json(&content.case_facts)?),
            needs: Set(json(&content.needs)?),
            missing_elements: Set(json(&missing)?),
            consent: Set(json(&content.consent)?),
            sealed: Set(seal(&dek, referral_id, "sealed", &content.sealed)?),
            idempotency_key: Set(idempotency_key),
            request_digest: Set(request_digest),
            filed_at: Set(now),
            updated_at: Set(now),
            closed_at: Set(None),
        };
        Ok(Self {
            subject_id,
            referral_id,
            now,
            content,
            subject,
            referral,
            digests,
        })
    }

    /// The referral's filer party row.
    pub(crate) fn filer_party(&self, agency_id: &str) -> referral_party::ActiveModel {
        referral_party::ActiveModel {
            referral_id: Set(self.referral_id),
            agency_id: Set(agency_id.to_owned()),
            relation: Set(RELATION_FILER.to_owned()),
            since: Set(self.now),
        }
    }

    /// The blind-index rows (each digest once).
    pub(crate) fn identifier_rows(&self) -> Vec<subject_identifier::ActiveModel> {
        let mut seen = std::collections::HashSet::new();
        self.digests
            .iter()
            .filter(|(_, d)| seen.insert(d.clone()))
            .map(|(kind, digest)| subject_identifier::ActiveModel {
                digest: Set(digest.clone()),
                referral_id: Set(self.referral_id),
                kind: Set((*kind).to_owned()),
                subject_id: Set(self.subject_id),
            })
            .collect()
    }

    /// The `ReferralFiled` event's payload.
    fn filed_payload<'a>(&'a self, code: &'a str, kind: &'a str) -> FiledPayload<'a> {
        FiledPayload {
            reference_code: code,
            version: 1,
            filing_agency_kind: kind,
            urgency: self.content.urgency.as_str_name(),
            county: &self.content.county,
            facts: RoutingFacts::of(&self.content, kind),
        }
    }
}

/// Files a referral, or answers a retry with the referral first filed.
pub async fn file(
    ctx: &AppContext,
    principal: &Principal,
    cmd: FileCommand,
) -> ServiceResult<Filed> {
    // No look-up of the idempotency key first: a retry fails the insert on
    // the key's unique index and is answered from the first filing below
    // (one round trip less for every filing that is not a retry).
    let keys = ctx.keys();
    let hits = identifier_hits(ctx.db(), &digests(keys, &cmd.content)).await?;
    // A protected witness filed again (an identifier matches) is protected
    // from the first reply on, under the WPA's pseudonym.
    let protected_pseudonym = protected_among(ctx.db(), &hits).await?;
    let duplicates = duplicates_among(ctx.db(), hits, None).await?;
    let rows = NewReferral::build(
        keys,
        principal,
        cmd.content,
        protected_pseudonym,
        Utc::now(),
        cmd.idempotency_key.clone(),
        cmd.request_digest.clone(),
    )?;
    let kind = agency_kind_name(principal.agency_kind);
    let rows = std::sync::Arc::new(rows);

    for attempt in 0..3 {
        let reference_code = new_reference_code(chrono::Datelike::year(&rows.now));
        let mut referral_row = rows.referral.clone();
        referral_row.reference_code = Set(reference_code.clone());
        let actor = principal.clone();
        let written = rows.clone();
        let code = reference_code.clone();
        let row_to_write = referral_row.clone();
        let result = refnet_core::db::write_txn(ctx.db(), move |txn| {
            Box::pin(async move {
                let rows = &*written;
                subject::Entity::insert(rows.subject.clone())
                    .exec_without_returning(txn)
                    .await?;
                referral::Entity::insert(row_to_write)
                    .exec_without_returning(txn)
                    .await?;
                let identifiers = rows.identifier_rows();
                if !identifiers.is_empty() {
                    subject_identifier::Entity::insert_many(identifiers)
                        .exec_without_returning(txn)
                        .await?;
                }
                referral_party::Entity::insert(rows.filer_party(&actor.agency_id))
                    .exec_without_returning(txn)
                    .await?;
                events::append(
                    txn,
                    EventKind::ReferralFiled,
                    Some(rows.referral_id),
                    Some(&actor),
                    &rows.filed_payload(&code, kind),
                )
                .await?;
                Ok(())
            })
        })
        .await;
        match result {
            Ok(()) => {
                ctx.event_signal().notify_waiters();
                tracing::info!(reference_code = %reference_code, referral_id = %rows.referral_id, "referral filed");
                // The row as written (no read back: every column was set here).
                let row: referral::Model = sea_orm::TryIntoModel::try_into_model(referral_row)
                    .map_err(|e| ServiceError::internal("filed row", e))?;
                return Ok(Filed {
                    referral: to_proto(&row, &rows.content),
                    subject: subject_context(ctx.keys(), &row, &rows.content, Relation::default()),
                    replayed: false,
                    possible_duplicates: duplicates,
                });
            }
            Err(err) => {
                // A concurrent retry with the same key won the race: answer as a replay.
                if let Some(filed) =
                    replay(ctx, principal, &cmd.idempotency_key, &cmd.request_digest).await?
                {
                    return Ok(filed);
                }
                if is_unique_violation(&err) && attempt < 2 {
                    tracing::warn!("reference code collision, retrying");
                    continue;
                }
                return Err(err);
            }
        }
    }
    Err(ServiceError::Internal(
        "could not allocate a reference code".into(),
    ))
}

fn is_unique_violation(err: &ServiceError) -> bool {
    match err {
        ServiceError::Internal(msg) => {
            let m = msg.to_ascii_lowercase();
            m.contains("unique") || m.contains("duplicate key")
        }
        _ => false,
    }
}

/// The earlier answer to a call with the same idempotency key, if any.
async fn replay(
    ctx: &AppContext,
    principal: &Principal,
    idempotency_key: &str,
    request_digest: &[u8],
) -> ServiceResult<Option<Filed>> {
    let Some(row) = referral::Entity::find()
        .filter(referral::Column::FilingAgencyId.eq(principal.agency_id.as_str()))
        .filter(referral::Column::IdempotencyKey.eq(idempotency_key))
        .one(ctx.db())
        .await?
    else {
        return Ok(None);
    };
    if row.request_digest != request_digest {
        return Err(ServiceError::invalid(
            "idempotency_key",
            "was already used for a different referral; use a new key",
        ));
    }
    let content = load_content(ctx.db(), ctx.keys(), &row).await?;
    let duplicates = possible_duplicates(ctx.db(), &digests(ctx.keys(), &content), Some(row.id))
        .await?
        .into_iter()
        .filter(|d| d.reference_code != row.reference_code)
        .collect::<Vec<_>>();
    // Only referrals filed before this one were "earlier" at filing time.
    let earlier = referral::Entity::find()
        .filter(
            referral::Column::ReferenceCode
                .is_in(duplicates.iter().map(|d| d.reference_code.clone())),
        )
        .filter(referral::Column::Id.lt(row.id))
        .all(ctx.db())
        .await?;
    let earlier: std::collections::HashSet<_> =
        earlier.into_iter().map(|r| r.reference_code).collect();
    Ok(Some(Filed {
        referral: to_proto(&row, &content),
        subject: subject_context(ctx.keys(), &row, &content, Relation::default()),
        replayed: true,
        possible_duplicates: duplicates
            .into_iter()
            .filter(|d| earlier.contains(&d.reference_code))
            .collect(),
    }))
}

/// Loads `reference` for a change by `principal`, inside `txn`: NOT_FOUND for
/// non-parties, PERMISSION_DENIED for parties that may not change it, ABORTED
/// when `expected_version` is stale.
async fn for_change(
    txn: &DatabaseTransaction,
    principal: &Principal,
    reference: &ReferralRef,
    expected_version: i64,
    filer_only: bool,
) -> ServiceResult<referral::Model> {
    let row = find_visible(txn, &principal.agency_id, reference).await?;
    if filer_only {
        let party = referral_party::Entity::find_by_id((row.id, principal.agency_id.clone()))
            .one(txn)
            .await?;
        if party.map(|p| p.relation) != Some(RELATION_FILER.to_owned()) {
            return Err(ServiceError::PermissionDenied(
                "only the filing agency may amend a referral".into(),
            ));
        }
    }
    refnet_core::error::expect_version("referral", row.version, expected_version)?;
    Ok(row)
}

/// Bumps the version of `row` if it is still `row.version`; ABORTED otherwise.
pub(crate) async fn bump_version(
    txn: &DatabaseTransaction,
    row: &referral::Model,
    changes: referral::ActiveModel,
) -> ServiceResult<()> {
    let mut changes = changes;
    changes.version = Set(row.version + 1);
    changes.updated_at = Set(Utc::now());
    let result = referral::Entity::update_many()
        .set(changes)
        .filter(referral::Column::Id.eq(row.id))
        .filter(referral::Column::Version.eq(row.version))
        .exec(txn)
        .await?;
    if result.rows_affected == 1 {
        Ok(())
    } else {
        Err(refnet_core::error::changed_concurrently("referral"))
    }
}

/// Replaces a referral's content (consent is kept).
pub async fn amend(
    ctx: &AppContext,
    principal: &Principal,
    reference: ReferralRef,
    expected_version: i64,
    content: ReferralContent,
) -> ServiceResult<Loaded> {
    let keys = ctx.keys().clone();
    let actor = principal.clone();
    let id = refnet_core::db::write_txn(ctx.db(), move |txn| {
        Box::pin(async move {
            let row = for_change(txn, &actor, &reference, expected_version, true).await?;
            let old = load_content(txn, &keys, &row).await?;
            // Text written before this amendment may repeat what it corrects:
            // every identifier the record ever held stays known to redaction.
            let former = old.record_identifiers();
            // Protection never lapses by amendment; an identifier that now
            // matches a protected witness protects this subject too.
            let protected_pseudonym = match old.protected_pseudonym {
                Some(p) => Some(p),
                None => protected_match(txn, &digests(&keys, &content)).await?,
            };
            let mut sealed = content.sealed;
            sealed.former = former;
            let content = ReferralContent {
                consent: old.consent,
                protected_pseudonym,
                sealed,
                ..content
            };
            let subj = subject::Entity::find_by_id(row.subject_id)
                .one(txn)
                .await?
                .ok_or_else(|| ServiceError::Internal("referral without subject".into()))?;
            if subj.erased_at.is_some() {
                return Err(refnet_core::subjects::erased_error());
            }
            let dek = keys
                .unwrap_data_key(subj.id, &subj.key_id, &subj.wrapped_key)
                .map_err(|e| ServiceError::internal("unwrap data key", e))?;
            subject::Entity::update(subject::ActiveModel {
                protected_pseudonym: Set(content.protected_pseudonym.clone()),
                ..subject_columns(&dek, subj.id, &content, Utc::now())?
            })
            .exec(txn)
            .await?;
            let missing: Vec<&str> = content
                .missing_elements()
                .iter()
                .map(|e| e.as_str_name())
                .collect();
            bump_version(
                txn,
                &row,
                referral::ActiveModel {
                    urgency: Set(content.urgency.as_str_name().to_owned()),
                    classification: Set(content.classification.as_str_name().to_owned()),
                    identified_by: Set(content.identified_by.as_str_name().to_owned()),
                    county: Set(content.county.clone()),
                    is_child: Set(content.is_child),
                    case_facts: Set(json(&content.case_facts)?),
                    needs: Set(json(&content.needs)?),
                    missing_elements: Set(json(&missing)?),
                    sealed: Set(seal(&dek, row.id, "sealed", &content.sealed)?),
                    ..Default::default()
                },
            )
            .await?;
            subject_identifier::Entity::delete_many()
                .filter(subject_identifier::Column::ReferralId.eq(row.id))
                .exec(txn)
                .await?;
            insert_identifiers(txn, &digests(&keys, &content), row.id, subj.id).await?;
            events::append(
                txn,
                EventKind::ReferralAmended,
                Some(row.id),
                Some(&actor),
                &AmendedPayload {
                    version: row.version + 1,
                    facts: RoutingFacts::of(&content, &row.filing_agency_kind),
                },
            )
            .await?;
            Ok(row.id)
        })
    })
    .await?;
    ctx.event_signal().notify_waiters();
    get(ctx, principal, &ReferralRef::Id(id)).await
}

/// How consent changes.
pub enum ConsentChange {
    /// Record (replace) consent.
    Record(refnet_api::v1::Consent),
    /// Withdraw for these kinds (all when empty).
    Withdraw(Vec<String>),
}

/// Records or withdraws consent.
pub async fn change_consent(
    ctx: &AppContext,
    principal: &Principal,
    reference: ReferralRef,
    expected_version: i64,
    change: ConsentChange,
) -> ServiceResult<Loaded> {
    let actor = principal.clone();
    let id = refnet_core::db::write_txn(ctx.db(), move |txn| {
        Box::pin(async move {
            let row = for_change(txn, &actor, &reference, expected_version, false).await?;
            let erased = subject::Entity::find_by_id(row.subject_id)
                .one(txn)
                .await?
                .is_some_and(|s| s.erased_at.is_some());
            if erased {
                return Err(refnet_core::subjects::erased_error());
            }
            let mut consent: ConsentRecord = from_json(&row.consent, "consent")?;
            let kind = match change {
                ConsentChange::Record(wire) => {
                    let mut v = refnet_core::error::Violations::new();
                    let parsed =
                        ConsentRecord::from_proto(&mut v, "consent", Some(&wire), row.is_child);
                    if !v.is_empty() {
                        return Err(ServiceError::InvalidArgument(v.into_vec()));
                    }
                    consent = parsed;
                    EventKind::ConsentRecorded
                }
                ConsentChange::Withdraw(kinds) => {
                    if kinds.is_empty() {
                        consent.given = false;
                        consent.agency_kinds.clear();
                    } else {
                        consent.agency_kinds.retain(|k| !kinds.contains(k));
                        if consent.agency_kinds.is_empty() {
                            consent.given = false;
                        }
                    }
                    EventKind::ConsentWithdrawn
                }
            };
            consent.recorded_at = Some(Utc::now());
            consent.recorded_by_officer.clone_from(&actor.officer_id);
            bump_version(
                txn,
                &row,
                referral::ActiveModel {
                    consent: Set(json(&consent)?),
                    ..Default::default()
                },
            )
            .await?;
            events::append(
                txn,
                kind,
                Some(row.id),
                Some(&actor),
                &ConsentPayload {
                    version: row.version + 1,
                    given: consent.given,
                    agency_kinds: &consent.agency_kinds,
                },
            )
            .await?;
            Ok(row.id)
        })
    })
    .await?;
    ctx.event_signal().notify_waiters();
    get(ctx, principal, &ReferralRef::Id(id)).await
}

/// Filters of a list call, validated.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    /// Statuses (proto names).
    pub statuses: Vec<String>,
    /// Urgencies (proto names).
    pub urgencies: Vec<String>,
    /// County.
    pub county: Option<String>,
    /// Filing agency.
    pub filing_agency_id: Option<String>,
    /// Filed at or after.
    pub filed_after: Option<chrono::DateTime<Utc>>,
    /// Filed before.
    pub filed_before: Option<chrono::DateTime<Utc>>,
}

impl ListFilter {
    /// True when no filter is set (every referral the agency is party to).
    fn is_empty(&self) -> bool {
        self.statuses.is_empty()
            && self.urgencies.is_empty()
            && self.county.is_none()
            && self.filing_agency_id.is_none()
            && self.filed_after.is_none()
            && self.filed_before.is_none()
    }
}

/// One page of referrals visible to `principal`, newest first, after `cursor`.
/// Keyset pagination on the UUIDv7 id: cost does not grow with the page number.
pub async fn list(
    ctx: &AppContext,
    principal: &Principal,
    filter: &ListFilter,
    cursor: Option<Uuid>,
    page_size: u64,
) -> ServiceResult<(Vec<referral::Model>, bool)> {
    if filter.is_empty() {
        return list_unfiltered(ctx, principal, cursor, page_size).await;
    }
    let mut q =
        joined_to_parties().filter(referral_party::Column::AgencyId.eq(&principal.agency_id));
    if !filter.statuses.is_empty() {
        q = q.filter(referral::Column::Status.is_in(filter.statuses.clone()));
    }
    if !filter.urgencies.is_empty() {
        q = q.filter(referral::Column::Urgency.is_in(filter.urgencies.clone()));
    }
    if let Some(county) = &filter.county {
        q = q.filter(referral::Column::County.eq(county.as_str()));
    }
    if let Some(agency) = &filter.filing_agency_id {
        q = q.filter(referral::Column::FilingAgencyId.eq(agency.as_str()));
    }
    if let Some(after) = filter.filed_after {
        q = q.filter(referral::Column::FiledAt.gte(after));
    }
    if let Some(before) = filter.filed_before {
        q = q.filter(referral::Column::FiledAt.lt(before));
    }
    if let Some(cursor) = cursor {
        // On both sides of the join: PostgreSQL merge-joins the two indexes
        // backwards, and without the bound on `referrals` it walked every
        // referral newer than the cursor (deeper pages cost more).
        q = q
            .filter(referral_party::Column::ReferralId.lt(cursor))
            .filter(referral::Column::Id.lt(cursor));
    }
    let mut rows = q
        .order_by_desc(referral_party::Column::ReferralId)
        .limit(page_size + 1)
        .all(ctx.db())
        .await?;
    let more = rows.len() as u64 > page_size;
    rows.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
    Ok((rows, more))
}

/// [`list`] with no filter: the page's ids from the party index alone, then
/// their rows. Joined in one statement, PostgreSQL without table statistics
/// (autovacuum off; BENCHMARKS.md, the soak's drift) planned the page as a
/// scan of every party row of the agency below the cursor, a look-up of each
/// referral and a sort; on one table it walks the index backwards and stops
/// at the page, whatever the statistics.
async fn list_unfiltered(
    ctx: &AppContext,
    principal: &Principal,
    cursor: Option<Uuid>,
    page_size: u64,
) -> ServiceResult<(Vec<referral::Model>, bool)> {
    let mut q = referral_party::Entity::find()
        .select_only()
        .column(referral_party::Column::ReferralId)
        .filter(referral_party::Column::AgencyId.eq(&principal.agency_id));
    if let Some(cursor) = cursor {
        q = q.filter(referral_party::Column::ReferralId.lt(cursor));
    }
    let mut ids: Vec<Uuid> = q
        .order_by_desc(referral_party::Column::ReferralId)
        .limit(page_size + 1)
        .into_tuple()
        .all(ctx.db())
        .await?;
    let more = ids.len() as u64 > page_size;
    ids.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
    if ids.is_empty() {
        return Ok((Vec::new(), more));
    }
    let rows = referral::Entity::find()
        .filter(referral::Column::Id.is_in(ids))
        .order_by_desc(referral::Column::Id)
        .all(ctx.db())
        .await?;
    Ok((rows, more))
}
