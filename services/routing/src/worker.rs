//! The routing worker: consumes `ReferralFiled` and `ReferralAmended` from the
//! event log, from a stored checkpoint, and hands each referral to the
//! agencies its rules name.
//!
//! Delivery is at least once; handling is idempotent. Each batch of up to 100
//! events is handled in one transaction that inserts the handoffs (a unique
//! index on referral, agency kind and rule-set version turns a repeat into a
//! no-op), makes the receiving agencies parties, appends `HandoffCreated` for
//! the handoffs it actually inserted, and moves the checkpoint forward (never
//! back). A worker that crashes mid-way rolls the batch back and handles it
//! again; two workers that race on one batch create its handoffs once.
//!
//! A referral nothing routed waits in triage ([`crate::triage`]); the worker
//! routes those again at start and every ten minutes with the rules and
//! agencies in force then ([`RoutingWorker::reevaluate_triage`]).
//!
//! Wake-ups come from the in-process event signal, which PostgreSQL
//! LISTEN/NOTIFY also raises for appends by other processes
//! ([`refnet_core::events::listen`]), with polling as the fallback.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use refnet_api::v1 as pb;
use refnet_core::{
    AppContext, ServiceError, ServiceResult,
    agencies::Agency,
    auth::agency_kind_name,
    domain::facts::RoutingFacts,
    entities::event,
    events::{Deferred, EventKind},
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use uuid::Uuid;

use crate::entities::{consumer_checkpoint, handoff};
use crate::{
    rules::{Reach, RuleSet},
    triage,
};
use refnet_core::states::HandoffState;

/// The checkpoint name of the routing worker.
pub const CONSUMER: &str = "routing";

/// Events handled per transaction batch.
const BATCH: u64 = 100;

/// How often the worker routes again what waits in triage.
const REEVALUATE: Duration = Duration::from_secs(600);

#[derive(Deserialize)]
struct RoutedPayload {
    reference_code: Option<String>,
    facts: Option<RoutingFacts>,
}

#[derive(Serialize)]
struct HandoffPayload<'a> {
    handoff_id: Uuid,
    to_agency_id: &'a str,
    to_agency_kind: &'a str,
    rule_id: &'a str,
    rule_set_version: &'a str,
}

#[derive(Serialize)]
struct GapPayload<'a> {
    agency_kind: &'a str,
    rule_id: &'a str,
}

/// Routes referrals from the event log.
#[derive(Clone)]
pub struct RoutingWorker {
    ctx: AppContext,
    /// A fixed rule set (tests, benchmarks); `None`: the process's, as in force at each batch.
    rules: Option<Arc<RuleSet>>,
    poll: Duration,
}

impl RoutingWorker {
    /// A worker over `ctx` applying `rules`, always these (tests, benchmarks).
    pub fn new(ctx: AppContext, rules: Arc<RuleSet>) -> Self {
        Self {
            poll: ctx.event_poll_interval(),
            ctx,
            rules: Some(rules),
        }
    }

    /// A worker over `ctx` applying the process's rule set as in force at
    /// each batch ([`crate::rules`]): the same version the handlers use,
    /// including after a reload.
    pub fn in_force(ctx: AppContext) -> Self {
        Self {
            poll: ctx.event_poll_interval(),
            ctx,
            rules: None,
        }
    }

    /// The rule set this batch applies.
    fn rules(&self) -> ServiceResult<Arc<RuleSet>> {
        match &self.rules {
            Some(fixed) => Ok(fixed.clone()),
            None => crate::rules(&self.ctx).map_err(|e| ServiceError::internal("routing rules", e)),
        }
    }

    /// Runs until `shutdown` resolves, handling events as they arrive; at
    /// start and every [`REEVALUATE`] it routes again what waits in triage.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut reevaluated: Option<std::time::Instant> = None;
        loop {
            if reevaluated.is_none_or(|at| at.elapsed() >= REEVALUATE) {
                match self.reevaluate_triage().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(routed = n, "referrals left triage on re-evaluation"),
                    Err(e) => {
                        tracing::warn!(error = %e, "triage re-evaluation failed; retrying later")
                    }
                }
                reevaluated = Some(std::time::Instant::now());
            }
            // Register interest before reading, so a commit in between is not missed.
            let signal = self.ctx.event_signal().notified();
            tokio::pin!(signal);
            signal.as_mut().enable();
            match self.step().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "routing step failed; retrying"),
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = signal => {}
                () = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    /// Handles the next batch of events in one transaction; returns how many it read.
    pub async fn step(&self) -> ServiceResult<usize> {
        let db = self.ctx.db();
        let checkpoint = consumer_checkpoint::Entity::find_by_id(CONSUMER.to_owned())
            .one(db)
            .await?
            .map_or(0, |c| c.seq);
        let batch = event::Entity::find()
            .filter(event::Column::Seq.gt(checkpoint))
            .order_by_asc(event::Column::Seq)
            .limit(BATCH)
            .all(db)
            .await?;
        let Some(last) = batch.last().map(|e| e.seq) else {
            return Ok(0);
        };
        let n = batch.len();
        // A span per step that has work (an idle poll makes none).
        let span = tracing::info_span!(
            "routing_step",
            events = n,
            first_seq = checkpoint + 1,
            last_seq = last
        );
        self.route_batch(&batch, last).instrument(span).await?;
        self.ctx
            .metrics()
            .record_routing_events(u64::try_from(n).unwrap_or(0));
        Ok(n)
    }

    /// Routes again, with the rules and agencies in force now, every referral
    /// waiting in triage because no rule routed it or no agency was in reach
    /// (a rule-set change, a newly registered agency); one whose every handoff
    /// ended is left to its supervisors. Returns how many left triage.
    pub async fn reevaluate_triage(&self) -> ServiceResult<usize> {
        let waiting = triage::entity::Entity::find()
            .filter(triage::entity::Column::Reason.ne(triage::ALL_ENDED))
            .order_by_asc(triage::entity::Column::Since)
            .limit(1000)
            .all(self.ctx.db())
            .await?;
        let mut left = 0;
        for entry in waiting {
            // The facts the referral was last routed on.
            let Some(latest) = event::Entity::find()
                .filter(event::Column::ReferralId.eq(entry.referral_id))
                .filter(event::Column::Kind.is_in(["ReferralFiled", "ReferralAmended"]))
                .order_by_desc(event::Column::Seq)
                .one(self.ctx.db())
                .await?
            else {
                continue;
            };
            let Some((referral_id, code, facts, _)) = plan(&latest)? else {
                continue;
            };
            let rules = self.rules()?;
            let agencies = self.ctx.agencies().all();
            let created = self
                .ctx
                .write(move |txn| {
                    Box::pin(async move {
                        refnet_core::access::lock_referrals(txn, std::iter::once(referral_id))
                            .await?;
                        let mut events = Deferred::default();
                        let created = route(
                            txn,
                            &rules,
                            &agencies,
                            referral_id,
                            code,
                            &facts,
                            &mut events,
                        )
                        .await?;
                        events.flush(txn).await?;
                        Ok(created)
                    })
                })
                .await?;
            if created > 0
                && triage::entity::Entity::find_by_id(entry.referral_id)
                    .one(self.ctx.db())
                    .await?
                    .is_none()
            {
                left += 1;
            }
        }
        Ok(left)
    }

    /// Routes `batch` and moves the checkpoint to `last`, in one transaction.
    async fn route_batch(&self, batch: &[event::Model], last: i64) -> ServiceResult<()> {
        let planned = batch.iter().map(plan).collect::<ServiceResult<Vec<_>>>()?;
        let planned: Vec<_> = planned.into_iter().flatten().collect();
        let rules = self.rules()?;
        let agencies = self.ctx.agencies().all();
        self.ctx
            .write(move |txn| {
                Box::pin(async move {
                    refnet_core::access::lock_referrals(txn, planned.iter().map(|p| p.0)).await?;
                    let mut created = 0;
                    // The batch's events are written last, so the event-log lock is
                    // held for one insert and the commit, not the whole batch.
                    let mut events = Deferred::default();
                    for (referral_id, code, facts, trace) in &planned {
                        // Routing continues the trace of the filing or amendment.
                        let span =
                            tracing::info_span!("route_referral", referral_id = %referral_id);
                        refnet_core::telemetry::continue_trace(&span, trace.as_deref());
                        let routed = route(
                            txn,
                            &rules,
                            &agencies,
                            *referral_id,
                            code.clone(),
                            facts,
                            &mut events,
                        );
                        created += routed.instrument(span).await?;
                    }
                    events.flush(txn).await?;
                    advance(txn, last).await?;
                    Ok(created)
                })
            })
            .await?;
        Ok(())
    }
}

/// A referral to route: its id, reference code, facts and the trace it continues.
type Planned = (Uuid, Option<String>, RoutingFacts, Option<String>);

/// What routing must do for `ev`: the referral and its facts, or nothing.
fn plan(ev: &event::Model) -> ServiceResult<Option<Planned>> {
    let routed = matches!(ev.kind.as_str(), "ReferralFiled" | "ReferralAmended");
    match (routed, ev.referral_id) {
        (true, Some(referral_id)) => {
            let payload: RoutedPayload = serde_json::from_str(&ev.payload)
                .map_err(|e| ServiceError::internal("event payload", e))?;
            Ok(payload.facts.map(|facts| {
                (
                    referral_id,
                    payload.reference_code,
                    facts,
                    ev.trace_context.clone(),
                )
            }))
        }
        _ => Ok(None),
    }
}

/// Moves the checkpoint to `seq` unless another worker already moved it further.
async fn advance(txn: &DatabaseTransaction, seq: i64) -> ServiceResult<()> {
    consumer_checkpoint::Entity::insert(consumer_checkpoint::ActiveModel {
        consumer: Set(CONSUMER.to_owned()),
        seq: Set(seq),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::column(consumer_checkpoint::Column::Consumer)
            .update_columns([
                consumer_checkpoint::Column::Seq,
                consumer_checkpoint::Column::UpdatedAt,
            ])
            .action_and_where(
                Expr::col((
                    consumer_checkpoint::Entity,
                    consumer_checkpoint::Column::Seq,
                ))
                .lt(seq),
            )
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// The agency of `kind` for a referral in `county`, as far as `reach` looks:
/// the county's own, else (national, anywhere) the national one, else
/// (anywhere) the first in another county, by id. Never `exclude`.
pub(crate) fn choose<'a>(
    agencies: &'a [Agency],
    kind: pb::AgencyKind,
    county: &str,
    reach: Reach,
    exclude: Option<&str>,
) -> Option<&'a Agency> {
    let of_kind = || {
        agencies
            .iter()
            .filter(move |a| a.active && a.kind == kind && Some(a.id.as_str()) != exclude)
    };
    let local = of_kind().find(|a| a.county.as_deref() == Some(county));
    let national = || of_kind().find(|a| a.county.is_none());
    let elsewhere = || of_kind().min_by(|a, b| a.id.cmp(&b.id));
    match reach {
        Reach::County => local,
        Reach::National => local.or_else(national),
        Reach::Anywhere => local.or_else(national).or_else(elsewhere),
    }
}

async fn route(
    txn: &DatabaseTransaction,
    rules: &RuleSet,
    agencies: &[Agency],
    referral_id: Uuid,
    code: Option<String>,
    facts: &RoutingFacts,
    events: &mut Deferred,
) -> ServiceResult<usize> {
    let now = Utc::now();
    let filer = triage::filer(txn, referral_id).await?;
    let code = code.unwrap_or_default();
    let deadlines = rules.deadlines(&facts.urgency);
    let planned = rules.route(facts);
    let mut created = 0;
    let mut gaps = Vec::new();
    for planned in &planned {
        let kind = agency_kind_name(planned.to);
        let Some(agency) = choose(agencies, planned.to, &facts.county, planned.reach, None) else {
            // Not a gap when a supervisor already routed this kind by hand.
            if open_handoff_of_kind(txn, referral_id, kind).await? {
                continue;
            }
            tracing::warn!(referral_id = %referral_id, agency_kind = kind, rule_id = %planned.rule_id, "no agency of this kind in reach");
            events.push(
                EventKind::RoutingGap,
                Some(referral_id),
                None,
                &GapPayload {
                    agency_kind: kind,
                    rule_id: &planned.rule_id,
                },
            )?;
            gaps.push(format!(
                "no active {kind} agency in reach (rule {})",
                planned.rule_id
            ));
            continue;
        };
        let id = Uuid::now_v7();
        let inserted = insert_handoff_deferred(
            txn,
            events,
            NewHandoff {
                id,
                referral_id,
                reference_code: code.clone(),
                from_agency_id: filer.clone(),
                to: agency,
                purpose: planned.purpose.clone(),
                rule_id: planned.rule_id.clone(),
                rule_set_version: rules.version().to_owned(),
                route_key: rules.version().to_owned(),
                checklist: planned
                    .checklist
                    .iter()
                    .map(|item| crate::decisions::ChecklistEntry {
                        item: item.clone(),
                        provided: false,
                        updated_at: None,
                        updated_by: None,
                    })
                    .collect(),
                acknowledge_by: now + deadlines.acknowledge,
                decide_by: now + deadlines.decide,
            },
        )
        .await?;
        if !inserted {
            continue; // routed before under this rule-set version
        }
        created += 1;
        tracing::info!(referral_id = %referral_id, handoff_id = %id, to_agency = %agency.id, rule_id = %planned.rule_id, "handoff created");
    }
    if created > 0 {
        // The referral is routed once it has an open handoff.
        refnet_core::access::mark_routed(txn, referral_id).await?;
        if gaps.is_empty() {
            triage::clear(txn, referral_id).await?;
        }
    }
    // Nothing ends silently: a kind no agency serves, or no rule at all and
    // no open handoff, sends the referral to its filing agency's supervisors.
    let reason = if !gaps.is_empty() {
        Some(gaps.join("; "))
    } else if planned.is_empty()
        && crate::standing::handoffs(txn, referral_id).await? != crate::standing::Handoffs::Open
    {
        Some(triage::NO_RULE.to_owned())
    } else {
        None
    };
    if let Some(reason) = reason {
        triage::enter(
            txn,
            rules,
            events,
            triage::Entry {
                referral_id,
                reason,
                ended_handoffs: Vec::new(),
                audience: crate::decisions::SUPERVISORS,
            },
        )
        .await?;
    }
    Ok(created)
}

/// Whether `referral_id` has an open handoff to an agency of `kind`.
async fn open_handoff_of_kind(
    txn: &DatabaseTransaction,
    referral_id: Uuid,
    kind: &str,
) -> ServiceResult<bool> {
    Ok(handoff::Entity::find()
        .filter(handoff::Column::ReferralId.eq(referral_id))
        .filter(handoff::Column::ToAgencyKind.eq(kind))
        .filter(handoff::Column::State.is_not_in(HandoffState::ENDED))
        .one(txn)
        .await?
        .is_some())
}

/// A handoff to insert.
pub(crate) struct NewHandoff<'a> {
    pub(crate) id: Uuid,
    pub(crate) referral_id: Uuid,
    pub(crate) reference_code: String,
    pub(crate) from_agency_id: String,
    pub(crate) to: &'a Agency,
    pub(crate) purpose: String,
    pub(crate) rule_id: String,
    pub(crate) rule_set_version: String,
    /// What makes it once (see [`handoff::Model::route_key`]).
    pub(crate) route_key: String,
    pub(crate) checklist: Vec<crate::decisions::ChecklistEntry>,
    pub(crate) acknowledge_by: DateTime<Utc>,
    pub(crate) decide_by: DateTime<Utc>,
}

/// Inserts a handoff, makes its recipient a party and appends `HandoffCreated`;
/// `false` (and nothing written) when one for the same referral, agency kind
/// and route key exists.
pub(crate) async fn insert_handoff(
    txn: &DatabaseTransaction,
    h: NewHandoff<'_>,
) -> ServiceResult<bool> {
    let mut events = Deferred::default();
    let inserted = insert_handoff_deferred(txn, &mut events, h).await?;
    events.flush(txn).await?;
    Ok(inserted)
}

/// [`insert_handoff`] with its `HandoffCreated` added to `events`, for the
/// caller to flush last.
pub(crate) async fn insert_handoff_deferred(
    txn: &DatabaseTransaction,
    events: &mut Deferred,
    h: NewHandoff<'_>,
) -> ServiceResult<bool> {
    let now = Utc::now();
    let kind = agency_kind_name(h.to.kind);
    let checklist = refnet_core::subjects::json(&h.checklist)?;
    let inserted = handoff::Entity::insert(handoff::ActiveModel {
        id: Set(h.id),
        referral_id: Set(h.referral_id),
        reference_code: Set(h.reference_code),
        from_agency_id: Set(h.from_agency_id),
        to_agency_id: Set(h.to.id.clone()),
        to_agency_kind: Set(kind.to_owned()),
        purpose: Set(h.purpose),
        state: Set(HandoffState::Pending),
        version: Set(1),
        rule_id: Set(h.rule_id.clone()),
        rule_set_version: Set(h.rule_set_version.clone()),
        route_key: Set(h.route_key),
        checklist: Set(checklist),
        acknowledge_by: Set(h.acknowledge_by),
        delivered_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        decide_by: Set(Some(h.decide_by)),
        acknowledged_at: Set(None),
        decline_reason_ct: Set(None),
        due_at: Set(Some(h.acknowledge_by)),
    })
    .on_conflict(
        OnConflict::columns([
            handoff::Column::ReferralId,
            handoff::Column::ToAgencyKind,
            handoff::Column::RouteKey,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    if inserted == 0 {
        return Ok(false);
    }
    refnet_core::access::add_party(txn, h.referral_id, &h.to.id, "RECIPIENT").await?;
    events.push(
        EventKind::HandoffCreated,
        Some(h.referral_id),
        None,
        &HandoffPayload {
            handoff_id: h.id,
            to_agency_id: &h.to.id,
            to_agency_kind: kind,
            rule_id: &h.rule_id,
            rule_set_version: &h.rule_set_version,
        },
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agency(id: &str, kind: pb::AgencyKind, county: Option<&str>) -> Agency {
        Agency {
            id: id.into(),
            kind,
            name: id.into(),
            county: county.map(str::to_owned),
            active: true,
        }
    }

    #[test]
    fn reach_widens_from_the_county_to_the_nation_to_anywhere() {
        use pb::AgencyKind::{Labour, Ngo};
        let agencies = vec![
            agency("ngo-mombasa", Ngo, Some("Mombasa")),
            agency("ngo-busia", Ngo, Some("Busia")),
            agency("labour-national", Labour, None),
        ];
        let id = |a: Option<&Agency>| a.map(|a| a.id.clone());
        // In its own county, every reach finds the county's agency.
        for reach in [Reach::County, Reach::National, Reach::Anywhere] {
            assert_eq!(
                id(choose(&agencies, Ngo, "Mombasa", reach, None)),
                Some("ngo-mombasa".into())
            );
        }
        // Nairobi has no NGO and there is no national one: only `anywhere`
        // finds one (the first by id).
        assert_eq!(
            id(choose(&agencies, Ngo, "Nairobi", Reach::County, None)),
            None
        );
        assert_eq!(
            id(choose(&agencies, Ngo, "Nairobi", Reach::National, None)),
            None
        );
        assert_eq!(
            id(choose(&agencies, Ngo, "Nairobi", Reach::Anywhere, None)),
            Some("ngo-busia".into())
        );
        // The national agency for `national`, not for `county`.
        assert_eq!(
            id(choose(&agencies, Labour, "Nairobi", Reach::National, None)),
            Some("labour-national".into())
        );
        assert_eq!(
            id(choose(&agencies, Labour, "Nairobi", Reach::County, None)),
            None
        );
        // An agency that declined is never chosen again.
        assert_eq!(
            id(choose(
                &agencies,
                Ngo,
                "Mombasa",
                Reach::Anywhere,
                Some("ngo-mombasa")
            )),
            Some("ngo-busia".into())
        );
        // An inactive agency is never chosen.
        let mut inactive = agencies.clone();
        inactive[0].active = false;
        assert_eq!(
            id(choose(&inactive, Ngo, "Mombasa", Reach::County, None)),
            None
        );
    }
}
