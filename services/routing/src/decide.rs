//! Decisions on a handoff: the receiving agency acknowledges, accepts,
//! declines (the rule's second choice is tried at once) or completes it; the
//! sending agency withdraws it (after acceptance with a reason); either marks
//! its checklist. Each is one transaction: the transition, its side effects,
//! and what becomes of the referral (routed, waiting in triage, closed).

use chrono::Utc;
use refnet_api::v1 as pb;
use refnet_core::boundary::Call;
use refnet_core::{
    ServiceError, ServiceResult, access, boundary::Reply, domain::parse_text, error::Violations,
    events, subjects,
};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::entities::handoff;
use crate::{
    decisions,
    lifecycle::{Transition, check_row},
    service::{Routing, concurrent, expect_version, handoff_ref},
    transition::{Effects, apply_in},
};
use refnet_core::states::HandoffState;

/// Within `txn`, after `declined` was declined: hands the referral to the
/// second choice its rule names (another agency), if one is in reach.
async fn second_choice(
    txn: &sea_orm::DatabaseTransaction,
    rules: &crate::rules::RuleSet,
    agencies: &[refnet_core::agencies::Agency],
    declined: &handoff::Model,
    events: &mut refnet_core::events::Deferred,
) -> ServiceResult<bool> {
    let Some((kind, reach)) = rules.second_choice(&declined.rule_id) else {
        return Ok(false);
    };
    let Some(referral) = access::referral(txn, declined.referral_id).await? else {
        return Ok(false);
    };
    let Some(agency) = crate::worker::choose(
        agencies,
        kind,
        &referral.county,
        reach,
        Some(&declined.to_agency_id),
    ) else {
        return Ok(false);
    };
    let deadlines = rules.deadlines(&referral.urgency);
    let now = Utc::now();
    let inserted = crate::worker::insert_handoff_deferred(
        txn,
        events,
        crate::worker::NewHandoff {
            id: Uuid::now_v7(),
            referral_id: declined.referral_id,
            reference_code: declined.reference_code.clone(),
            from_agency_id: declined.from_agency_id.clone(),
            to: agency,
            purpose: declined.purpose.clone(),
            rule_id: declined.rule_id.clone(),
            rule_set_version: rules.version().to_owned(),
            // Once per declined handoff.
            route_key: format!("second-choice:{}", declined.id),
            checklist: Vec::new(),
            acknowledge_by: now + deadlines.acknowledge,
            decide_by: now + deadlines.decide,
        },
    )
    .await?;
    if inserted {
        tracing::info!(referral_id = %declined.referral_id, declined = %declined.id, to_agency = %agency.id, rule_id = %declined.rule_id, "second choice after a decline");
    }
    Ok(inserted)
}

impl Routing {
    pub(crate) async fn act(
        &self,
        request: Call<pb::HandoffTransitionRequest>,
        t: Transition,
    ) -> ServiceResult<Reply<pb::Handoff>> {
        let (principal, call, req) = request.parts();
        let mut v = Violations::new();
        let id = handoff_ref(&mut v, &req.handoff_id, req.expected_version);
        let reason = v.check(
            "reason",
            parse_text(&req.reason, decisions::MAX_REASON, true),
        );
        if t == Transition::Decline && reason.as_deref() == Some("") {
            v.add("reason", "is required to decline");
        }
        let (id, reason) = v.finish(|| Some((id?, reason?)))?;
        let side = if t.by_sender() {
            handoff::Column::FromAgencyId
        } else {
            handoff::Column::ToAgencyId
        };
        let row = handoff::Entity::find_by_id(id)
            .filter(side.eq(principal.agency_id.as_str()))
            .one(self.ctx.db())
            .await?
            .ok_or(ServiceError::NotFound)?;
        let was_pending = row.state == HandoffState::Pending;
        let was_accepted = row.state == HandoffState::Accepted;
        expect_version(&row, req.expected_version)?;
        let to = check_row(&row, t)?;
        if t == Transition::Withdraw && was_accepted && reason.is_empty() {
            return Err(ServiceError::invalid(
                "reason",
                "is required to withdraw an accepted handoff",
            ));
        }
        let mut effects = Effects::default();
        match t {
            Transition::Complete => {
                let list = decisions::checklist(&row)?;
                if !list.is_empty() && !decisions::complete(&list) {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "checklist incomplete: {} of {} documents provided",
                        list.iter().filter(|e| e.provided).count(),
                        list.len()
                    )));
                }
            }
            // Checked above before sealing, so a wrong state costs no key unwrap.
            Transition::Decline | Transition::Withdraw => {
                if !reason.is_empty() {
                    effects.reason_ct = decisions::seal_reason(
                        self.ctx.db(),
                        &self.ctx,
                        row.referral_id,
                        row.id,
                        &reason,
                    )
                    .await?;
                }
                let (verb, notify) = if t == Transition::Decline {
                    ("declined", row.from_agency_id.clone())
                } else if was_accepted {
                    ("withdrawn after acceptance", row.to_agency_id.clone())
                } else {
                    ("withdrawn", row.to_agency_id.clone())
                };
                // A recipient that never saw the handoff is not told of its withdrawal.
                if !(t == Transition::Withdraw && was_pending) {
                    effects.notify = vec![(notify, decisions::ALL)];
                }
                effects.detail = Some(if reason.is_empty() || effects.reason_ct.is_some() {
                    verb.to_owned()
                } else {
                    format!("{verb} (reason not kept: the subject was erased)")
                });
            }
            _ => {}
        }
        let rules =
            crate::rules(&self.ctx).map_err(|e| ServiceError::internal("routing rules", e))?;
        let agencies = self.ctx.agencies().all();
        let actor = principal.clone();
        let updated = self
            .ctx
            .write(move |txn| {
                Box::pin(async move {
                    // The referral's row before the event-log lock (the order every writer keeps).
                    access::lock_referral(txn, row.referral_id).await?;
                    let Some(updated) = apply_in(txn, &actor, &row, t, to, effects).await? else {
                        return Ok(None);
                    };
                    let mut events = refnet_core::events::Deferred::default();
                    match t {
                        // Withdrawn before delivery: the recipient was never really party.
                        Transition::Withdraw if was_pending => {
                            crate::standing::drop_recipient(
                                txn,
                                updated.referral_id,
                                &updated.to_agency_id,
                            )
                            .await?;
                        }
                        // After acceptance: it keeps what it saw, nothing newer.
                        Transition::Withdraw if was_accepted => {
                            crate::standing::retire_recipient(
                                txn,
                                updated.referral_id,
                                &updated.to_agency_id,
                            )
                            .await?;
                        }
                        Transition::Decline => {
                            second_choice(txn, &rules, &agencies, &updated, &mut events).await?;
                        }
                        _ => {}
                    }
                    if matches!(
                        t,
                        Transition::Decline | Transition::Withdraw | Transition::Complete
                    ) {
                        crate::triage::settle(txn, &rules, &mut events, updated.referral_id)
                            .await?;
                    }
                    events.flush(txn).await?;
                    Ok(Some(updated))
                })
            })
            .await?
            .ok_or_else(concurrent)?;
        self.handoff_reply(&principal, &call, &updated).await
    }

    pub(crate) async fn mark_checklist(
        &self,
        request: Call<pb::UpdateChecklistRequest>,
    ) -> ServiceResult<Reply<pb::Handoff>> {
        let (principal, call, req) = request.parts();
        let mut v = Violations::new();
        let id = handoff_ref(&mut v, &req.handoff_id, req.expected_version);
        let item = v.check("item", parse_text(&req.item, 500, false));
        if item.as_deref() == Some("") {
            v.add("item", "is required");
        }
        let (id, item) = v.finish(|| Some((id?, item?)))?;
        let agency = principal.agency_id.as_str();
        let row = crate::standing::visible_handoff(self.ctx.db(), id, agency).await?;
        expect_version(&row, req.expected_version)?;
        if row.state.ended() {
            return Err(ServiceError::FailedPrecondition(format!(
                "handoff is {}; its checklist is closed",
                row.state
            )));
        }
        let mut list = decisions::checklist(&row)?;
        let now = Utc::now();
        decisions::mark(&mut list, &item, req.provided, agency, now)?;
        let provided = list.iter().filter(|e| e.provided).count();
        let detail = format!("{provided}/{} provided", list.len());
        let stored = subjects::json(&list)?;
        let actor = principal.clone();
        let updated = self
            .ctx
            .write(move |txn| {
                Box::pin(async move {
                    crate::transition::versioned_update(
                        txn,
                        &actor,
                        &row,
                        handoff::ActiveModel {
                            checklist: Set(stored),
                            ..Default::default()
                        },
                        events::EventKind::HandoffChecklistUpdated,
                        Some(detail),
                    )
                    .await
                })
            })
            .await?
            .ok_or_else(concurrent)?;
        self.handoff_reply(&principal, &call, &updated).await
    }
}
