//! Triage: nothing ends silently. A referral no rule routed, one a rule could
//! not route for want of an active agency in reach, and one whose every
//! handoff was declined or withdrawn (with no second choice to try) becomes
//! `REFERRAL_STATUS_NEEDS_ROUTING` and waits in the filing agency's triage
//! list. Its supervisors are notified at once (everyone in the agency when
//! its handoffs all ended) and must route it (`CreateHandoff`, which takes it
//! off the list) or close it (`CloseReferral`) by its routing deadline, set
//! per urgency by the rule set's `[fallback]`; the deadline worker escalates a
//! miss to the supervisors of the fallback's agency kind (the secretariat),
//! who then see it in their own triage list.
//!
//! Everything here holds reference codes, ids and operational reasons, never
//! an identifying value.

use chrono::{DateTime, Utc};
use refnet_api::v1 as pb;
use refnet_core::boundary::Call;
use refnet_core::{
    AppContext, ServiceError, ServiceResult, access,
    boundary::{Concerning, Reply, reply},
    domain::{ReferralRef, referral::timestamp},
    entities::referral_party,
    error::Violations,
    events::{Deferred, EventKind},
    subjects,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::entities::handoff;
use crate::standing::Handoffs;
use crate::{
    decisions::{self, About},
    rules::RuleSet,
};
use refnet_core::states::ReferralStatus;

/// Routing's triage table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// A referral waiting for a supervisor to route it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "triage")]
    pub struct Model {
        /// The referral.
        #[sea_orm(primary_key, auto_increment = false)]
        pub referral_id: Uuid,
        /// Its reference code.
        pub reference_code: String,
        /// The filing agency, whose supervisors must route it.
        pub filing_agency_id: String,
        /// Its urgency (proto name, "URGENCY_HIGH").
        pub urgency: String,
        /// Why it waits (operational, no identifying value).
        pub reason: String,
        /// Handoffs that ended on it (declined, withdrawn), JSON list of ids.
        pub ended_handoffs: String,
        /// Since when.
        pub since: DateTimeUtc,
        /// Route it by then.
        pub route_by: DateTimeUtc,
        /// When the routing deadline passed and was escalated.
        pub escalated_at: Option<DateTimeUtc>,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Why a referral waits when no rule routed it.
pub const NO_RULE: &str = "no rule routed this referral";
/// Why a referral waits when its every handoff ended.
pub const ALL_ENDED: &str = "every handoff was declined or withdrawn";

/// A referral entering triage.
pub(crate) struct Entry {
    /// The referral.
    pub(crate) referral_id: Uuid,
    /// Why.
    pub(crate) reason: String,
    /// The handoffs whose end sent it here (declined, withdrawn).
    pub(crate) ended_handoffs: Vec<Uuid>,
    /// Who is notified in the filing agency: supervisors, or everyone.
    pub(crate) audience: &'static str,
}

#[derive(Serialize)]
struct TriagePayload<'a> {
    detail: &'a str,
}

/// The filing agency of `referral_id` (empty if none is recorded).
pub(crate) async fn filer<C: ConnectionTrait>(db: &C, referral_id: Uuid) -> ServiceResult<String> {
    Ok(referral_party::Entity::find()
        .filter(referral_party::Column::ReferralId.eq(referral_id))
        .filter(referral_party::Column::Relation.eq("FILER"))
        .one(db)
        .await?
        .map(|p| p.agency_id)
        .unwrap_or_default())
}

/// Within `txn`: puts the referral in triage (NEEDS_ROUTING), notifies the
/// filing agency and appends `ReferralNeedsRouting` to `events`. A referral
/// already waiting keeps its first reason and deadline (the ended handoff is
/// added to its list); a closed one is left closed. `true` when it entered now.
pub(crate) async fn enter(
    txn: &DatabaseTransaction,
    rules: &RuleSet,
    events: &mut Deferred,
    entry: Entry,
) -> ServiceResult<bool> {
    let Some(row) = access::referral(txn, entry.referral_id).await? else {
        return Ok(false);
    };
    if let Some(existing) = entity::Entity::find_by_id(entry.referral_id)
        .one(txn)
        .await?
    {
        let mut ended: Vec<Uuid> = subjects::from_json(&existing.ended_handoffs, "triage")?;
        let before = ended.len();
        for h in entry.ended_handoffs {
            if !ended.contains(&h) {
                ended.push(h);
            }
        }
        if ended.len() != before {
            entity::Entity::update_many()
                .col_expr(
                    entity::Column::EndedHandoffs,
                    sea_orm::sea_query::Expr::value(subjects::json(&ended)?),
                )
                .filter(entity::Column::ReferralId.eq(entry.referral_id))
                .exec(txn)
                .await?;
        }
        return Ok(false);
    }
    if !access::mark_needs_routing(txn, entry.referral_id).await? {
        return Ok(false); // closed (or not filed): nothing waits
    }
    let filer = row.filing_agency_id.clone();
    let now = Utc::now();
    let route_by = now + rules.fallback().route_within(&row.urgency);
    entity::Entity::insert(entity::ActiveModel {
        referral_id: Set(entry.referral_id),
        reference_code: Set(row.reference_code.clone()),
        filing_agency_id: Set(filer.clone()),
        urgency: Set(row.urgency.clone()),
        reason: Set(entry.reason.clone()),
        ended_handoffs: Set(subjects::json(&entry.ended_handoffs)?),
        since: Set(now),
        route_by: Set(route_by),
        escalated_at: Set(None),
    })
    .exec_without_returning(txn)
    .await?;
    let about = About {
        referral_id: entry.referral_id,
        reference_code: row.reference_code.clone(),
        handoff_id: Uuid::nil(),
        due_by: Some(route_by),
    };
    decisions::notify_about(
        txn,
        &filer,
        entry.audience,
        EventKind::ReferralNeedsRouting,
        &about,
        &entry.reason,
    )
    .await?;
    events.push(
        EventKind::ReferralNeedsRouting,
        Some(entry.referral_id),
        None,
        &TriagePayload {
            detail: &entry.reason,
        },
    )?;
    tracing::info!(referral_id = %entry.referral_id, reason = %entry.reason, %route_by, "referral needs routing");
    Ok(true)
}

/// Within `txn`: takes the referral off the triage list (it was routed or closed).
pub(crate) async fn clear(txn: &DatabaseTransaction, referral_id: Uuid) -> ServiceResult<()> {
    entity::Entity::delete_by_id(referral_id).exec(txn).await?;
    Ok(())
}

/// Within `txn`, after a handoff of `referral_id` ended (declined, withdrawn,
/// completed): CLOSED when none is open and one was completed (unless it
/// waits in triage for an agency no rule could reach); triage when none is
/// open and none was completed; nothing while one is open.
pub(crate) async fn settle(
    txn: &DatabaseTransaction,
    rules: &RuleSet,
    events: &mut Deferred,
    referral_id: Uuid,
) -> ServiceResult<()> {
    match crate::standing::handoffs(txn, referral_id).await? {
        Handoffs::Open => Ok(()),
        Handoffs::Completed => {
            // A referral waiting for an agency no rule could reach still waits.
            if entity::Entity::find_by_id(referral_id)
                .one(txn)
                .await?
                .is_some()
            {
                return Ok(());
            }
            access::mark_closed(txn, referral_id).await
        }
        Handoffs::NoneCompleted => {
            let ended_handoffs: Vec<Uuid> = handoff::Entity::find()
                .select_only()
                .column(handoff::Column::Id)
                .filter(handoff::Column::ReferralId.eq(referral_id))
                .filter(
                    handoff::Column::State
                        .is_in(["HANDOFF_STATE_DECLINED", "HANDOFF_STATE_WITHDRAWN"]),
                )
                .order_by_asc(handoff::Column::Id)
                .into_tuple()
                .all(txn)
                .await?;
            enter(
                txn,
                rules,
                events,
                Entry {
                    referral_id,
                    reason: ALL_ENDED.to_owned(),
                    ended_handoffs,
                    audience: decisions::ALL,
                },
            )
            .await
            .map(|_| ())
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Cursor {
    agency: String,
    route_by: DateTime<Utc>,
    referral: Uuid,
}

/// ListTriage.
pub async fn list(
    ctx: &AppContext,
    request: Call<pb::ListTriageRequest>,
) -> ServiceResult<Reply<pb::ListTriageResponse>> {
    let (principal, call, req) = request.parts();
    let mut v = Violations::new();
    let page_size = v.page_size(req.page_size, 50, 200);
    let after = if req.page_token.is_empty() {
        None
    } else {
        let cursor = ctx
            .keys()
            .tokens
            .open(&req.page_token)
            .and_then(|raw| serde_json::from_slice::<Cursor>(&raw).ok())
            .filter(|c| c.agency == principal.agency_id);
        if cursor.is_none() {
            v.add("page_token", "is not a page token of this caller");
        }
        cursor
    };
    let page_size = v.finish(|| page_size)?;
    let rules = crate::rules(ctx).map_err(|e| ServiceError::internal("routing rules", e))?;
    // The filing agency's own; the escalation agency's, once escalated.
    let mut mine =
        Condition::any().add(entity::Column::FilingAgencyId.eq(principal.agency_id.as_str()));
    if principal.agency_kind == rules.fallback().escalate_to {
        mine = mine.add(entity::Column::EscalatedAt.is_not_null());
    }
    let mut q = entity::Entity::find().filter(mine);
    if let Some(c) = &after {
        q = q.filter(
            Condition::any()
                .add(entity::Column::RouteBy.gt(c.route_by))
                .add(
                    Condition::all()
                        .add(entity::Column::RouteBy.eq(c.route_by))
                        .add(entity::Column::ReferralId.gt(c.referral)),
                ),
        );
    }
    let mut rows = q
        .order_by_asc(entity::Column::RouteBy)
        .order_by_asc(entity::Column::ReferralId)
        .limit(page_size + 1)
        .all(ctx.db())
        .await?;
    let more = rows.len() as u64 > page_size;
    rows.truncate(page_size as usize);
    let next_page_token = match (more, rows.last()) {
        (true, Some(last)) => {
            let raw = serde_json::to_vec(&Cursor {
                agency: principal.agency_id.clone(),
                route_by: last.route_by,
                referral: last.referral_id,
            })
            .map_err(|e| ServiceError::internal("cursor", e))?;
            ctx.keys().tokens.seal(&raw)
        }
        _ => String::new(),
    };
    let items = rows
        .iter()
        .map(|r| {
            let ended: Vec<Uuid> = subjects::from_json(&r.ended_handoffs, "triage")?;
            Ok(pb::TriageItem {
                referral_id: r.referral_id.to_string(),
                reference_code: r.reference_code.clone(),
                filing_agency_id: r.filing_agency_id.clone(),
                urgency: pb::Urgency::from_str_name(&r.urgency).map_or(0, |u| u as i32),
                reason: r.reason.clone(),
                since: Some(timestamp(r.since)),
                route_by: Some(timestamp(r.route_by)),
                escalated: r.escalated_at.is_some(),
                ended_handoff_ids: ended.iter().map(Uuid::to_string).collect(),
            })
        })
        .collect::<ServiceResult<Vec<_>>>()?;
    let response = pb::ListTriageResponse {
        items,
        next_page_token,
        redactions: Vec::new(),
    };
    reply(ctx, &principal, &call, Concerning::Nothing, response).await
}

#[derive(Serialize)]
struct ClosedPayload<'a> {
    detail: &'a str,
}

/// CloseReferral: a supervisor of the filing agency closes a referral on
/// which no handoff is open, with a reason from a fixed list.
pub async fn close(
    ctx: &AppContext,
    request: Call<pb::CloseReferralRequest>,
) -> ServiceResult<Reply<pb::CloseReferralResponse>> {
    let (principal, call, req) = request.parts();
    let mut v = Violations::new();
    let reference = v.check("referral", ReferralRef::parse(&req.referral));
    let reason = match pb::CloseReason::try_from(req.reason) {
        Ok(r) if r != pb::CloseReason::Unspecified => Some(r),
        _ => {
            v.add("reason", "must be one of the close reasons");
            None
        }
    };
    let (reference, reason) = v.finish(|| Some((reference?, reason?)))?;
    let referral_id = access::visible_referral(ctx.db(), &principal.agency_id, &reference).await?;
    if filer(ctx.db(), referral_id).await? != principal.agency_id {
        return Err(ServiceError::PermissionDenied(
            "only the filing agency's supervisors close a referral".into(),
        ));
    }
    let detail = reason
        .as_str_name()
        .strip_prefix("CLOSE_REASON_")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .replace('_', " ");
    let actor = principal.clone();
    ctx.write(move |txn| {
        Box::pin(async move {
            // The referral's row before the event-log lock (the order every writer keeps).
            access::lock_referral(txn, referral_id).await?;
            let row = access::referral(txn, referral_id)
                .await?
                .ok_or(ServiceError::NotFound)?;
            if row.status == ReferralStatus::Closed {
                return Ok(());
            }
            if crate::standing::handoffs(txn, referral_id).await? == Handoffs::Open {
                return Err(ServiceError::FailedPrecondition(
                    "a handoff is still open on this referral; withdraw it first".into(),
                ));
            }
            clear(txn, referral_id).await?;
            access::mark_closed(txn, referral_id).await?;
            refnet_core::events::append(
                txn,
                EventKind::ReferralClosed,
                Some(referral_id),
                Some(&actor),
                &ClosedPayload { detail: &detail },
            )
            .await
        })
    })
    .await?;
    let response = pb::CloseReferralResponse {
        referral_id: referral_id.to_string(),
        status: pb::ReferralStatus::Closed as i32,
        redactions: Vec::new(),
    };
    reply(ctx, &principal, &call, Concerning::Nothing, response).await
}

/// Within the deadline worker: escalates every triage entry whose routing
/// deadline passed by `now`; returns how many.
pub(crate) async fn escalate_overdue(
    ctx: &AppContext,
    rules: &RuleSet,
    now: DateTime<Utc>,
) -> ServiceResult<usize> {
    let overdue = entity::Entity::find()
        .filter(entity::Column::EscalatedAt.is_null())
        .filter(entity::Column::RouteBy.lt(now))
        .order_by_asc(entity::Column::RouteBy)
        .limit(500)
        .all(ctx.db())
        .await?;
    let escalate_to = ctx.agencies().active_of_kind(rules.fallback().escalate_to);
    let mut escalated = 0;
    for row in overdue {
        let targets = escalate_to.clone();
        let done = ctx
            .write(move |txn| {
                Box::pin(async move {
                    // Only the first of two workers escalates.
                    let marked = entity::Entity::update_many()
                        .col_expr(
                            entity::Column::EscalatedAt,
                            sea_orm::sea_query::Expr::value(now),
                        )
                        .filter(entity::Column::ReferralId.eq(row.referral_id))
                        .filter(entity::Column::EscalatedAt.is_null())
                        .exec(txn)
                        .await?;
                    if marked.rows_affected != 1 {
                        return Ok(false);
                    }
                    let about = About {
                        referral_id: row.referral_id,
                        reference_code: row.reference_code.clone(),
                        handoff_id: Uuid::nil(),
                        due_by: Some(row.route_by),
                    };
                    let detail = "routing deadline passed";
                    decisions::notify_about(
                        txn,
                        &row.filing_agency_id,
                        decisions::SUPERVISORS,
                        EventKind::TriageEscalated,
                        &about,
                        detail,
                    )
                    .await?;
                    for agency in &targets {
                        decisions::notify_about(
                            txn,
                            agency,
                            decisions::SUPERVISORS,
                            EventKind::TriageEscalated,
                            &about,
                            detail,
                        )
                        .await?;
                    }
                    refnet_core::events::append(
                        txn,
                        EventKind::TriageEscalated,
                        Some(row.referral_id),
                        None,
                        &TriagePayload { detail },
                    )
                    .await?;
                    Ok(true)
                })
            })
            .await?;
        if done {
            escalated += 1;
        }
    }
    Ok(escalated)
}
