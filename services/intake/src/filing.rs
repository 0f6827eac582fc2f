//! Filing a referral: one transaction that seals the subject, stores the
//! referral, its identifier digests and its filer party, and appends
//! `ReferralFiled`; a retry with the same idempotency key returns the first
//! filing (a different request under that key is refused).

use chrono::Utc;
use refnet_core::{
    AppContext, ServiceError, ServiceResult,
    auth::{Principal, agency_kind_name},
    crypto::Keyring,
    domain::{facts::RoutingFacts, new_reference_code, referral::ReferralContent},
    entities::referral_party,
    events::{self, EventKind},
    policy::Relation,
    subjects::{json, load_content, seal, subject_context},
};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde::Serialize;
use uuid::Uuid;

use crate::entities::{referral, subject, subject_identifier};

use crate::store::*;

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
            status: Set(refnet_core::states::ReferralStatus::Filed),
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
        let result = ctx
            .write(move |txn| {
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
