//! Changing a referral: `AmendReferral` (the filer only) and consent
//! recorded or withdrawn (a party), each with optimistic concurrency on the
//! referral's version and an event; an amendment keeps every identifier the
//! record held before (history-aware redaction).

use chrono::Utc;
use refnet_core::{
    AppContext, ServiceError, ServiceResult,
    auth::Principal,
    domain::{
        ReferralRef,
        facts::RoutingFacts,
        referral::{ConsentRecord, ReferralContent},
    },
    entities::referral_party,
    events::{self, EventKind},
    subjects::{from_json, json, load_content, seal},
};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter};
use serde::Serialize;

use crate::entities::{referral, subject, subject_identifier};

use crate::store::*;

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
    if refnet_core::versioned::bump::<referral::Entity, _>(txn, row.id, row.version, changes)
        .await?
    {
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
    let id = ctx
        .write(move |txn| {
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
    let id = ctx
        .write(move |txn| {
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
    get(ctx, principal, &ReferralRef::Id(id)).await
}
