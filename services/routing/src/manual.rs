//! Handoffs made by hand: a supervisor of a party agency hands the referral to
//! another agency (`CreateHandoff`, also how a referral leaves triage), and a
//! supervisor of the receiving agency sends its handoff elsewhere
//! (`ReassignHandoff`).

use chrono::Utc;
use refnet_api::v1 as pb;
use refnet_core::boundary::Call;
use refnet_core::{
    AppContext, ServiceError, ServiceResult, access,
    boundary::{Concerning, Reply, reply},
    domain::ReferralRef,
    error::Violations,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::entities::handoff;
use crate::{
    decisions,
    lifecycle::{Transition, check_row},
    service::{Routing, concurrent, expect_version, handoff_ref},
    transition::{Effects, apply_in},
    wire::to_proto,
};

/// The reference code and deadlines of a handoff of `referral_id` made now.
async fn code_and_deadlines(
    ctx: &AppContext,
    referral_id: Uuid,
) -> ServiceResult<(String, chrono::DateTime<Utc>, chrono::DateTime<Utc>, String)> {
    let referral = refnet_core::access::referral(ctx.db(), referral_id)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let rules = crate::rules(ctx).map_err(|e| ServiceError::internal("routing rules", e))?;
    let deadlines = rules.deadlines(&referral.urgency);
    let now = Utc::now();
    Ok((
        referral.reference_code,
        now + deadlines.acknowledge,
        now + deadlines.decide,
        rules.version().to_owned(),
    ))
}

impl Routing {
    pub(crate) async fn hand_off(
        &self,
        request: Call<pb::CreateHandoffRequest>,
    ) -> ServiceResult<Reply<pb::Handoff>> {
        let (principal, call, req) = request.parts();
        let rules =
            crate::rules(&self.ctx).map_err(|e| ServiceError::internal("routing rules", e))?;
        let mut v = Violations::new();
        let reference = v.check("referral", ReferralRef::parse(&req.referral));
        let key = v.check(
            "idempotency_key",
            refnet_core::domain::IdempotencyKey::parse(&req.idempotency_key),
        );
        let target = self
            .ctx
            .agencies()
            .get(&req.to_agency_id)
            .filter(|a| a.active);
        if target.is_none() {
            v.add("to_agency_id", "is not a registered, active agency");
        }
        if !rules.purposes().contains(&req.purpose) {
            v.add("purpose", "must be one of the routing rules' purposes");
        }
        let (reference, key, target) = v.finish(|| Some((reference?, key?, target?)))?;
        let referral_id =
            access::visible_referral(self.ctx.db(), &principal.agency_id, &reference).await?;
        let (code, acknowledge_by, decide_by, in_force) =
            code_and_deadlines(&self.ctx, referral_id).await?;
        let id = Uuid::now_v7();
        let route_key = format!("manual:{}:{}", principal.agency_id, key.as_str());
        let from = principal.agency_id.clone();
        let purpose = req.purpose.clone();
        let once = route_key.clone();
        self.ctx
            .write(move |txn| {
                Box::pin(async move {
                    // The referral's row before the event-log lock (the order every writer keeps).
                    access::mark_routed(txn, referral_id).await?;
                    // Routed by hand: off the triage list.
                    crate::triage::clear(txn, referral_id).await?;
                    crate::worker::insert_handoff(
                        txn,
                        crate::worker::NewHandoff {
                            id,
                            referral_id,
                            reference_code: code,
                            from_agency_id: from,
                            to: &target,
                            purpose,
                            rule_id: "manual".to_owned(),
                            rule_set_version: in_force,
                            route_key: once,
                            checklist: Vec::new(),
                            acknowledge_by,
                            decide_by,
                        },
                    )
                    .await
                    .map(|_| ())
                })
            })
            .await?;
        // A retry with the same key finds the handoff the first call created.
        let row = handoff::Entity::find()
            .filter(handoff::Column::ReferralId.eq(referral_id))
            .filter(handoff::Column::RouteKey.eq(route_key))
            .one(self.ctx.db())
            .await?
            .ok_or_else(|| ServiceError::Internal("manual handoff vanished".into()))?;
        reply(
            &self.ctx,
            &principal,
            &call,
            Concerning::Nothing,
            to_proto(&row)?,
        )
        .await
    }

    pub(crate) async fn reassign(
        &self,
        request: Call<pb::ReassignHandoffRequest>,
    ) -> ServiceResult<Reply<pb::Handoff>> {
        let (principal, call, req) = request.parts();
        let mut v = Violations::new();
        let id = handoff_ref(&mut v, &req.handoff_id, req.expected_version);
        let target = self
            .ctx
            .agencies()
            .get(&req.to_agency_id)
            .filter(|a| a.active && a.id != principal.agency_id);
        if target.is_none() {
            v.add("to_agency_id", "is not another registered, active agency");
        }
        let (id, target) = v.finish(|| Some((id?, target?)))?;
        let row = handoff::Entity::find_by_id(id)
            .filter(handoff::Column::ToAgencyId.eq(principal.agency_id.as_str()))
            .one(self.ctx.db())
            .await?
            .ok_or(ServiceError::NotFound)?;
        expect_version(&row, req.expected_version)?;
        let to = check_row(&row, Transition::Reassign)?;
        let (_, acknowledge_by, decide_by, in_force) =
            code_and_deadlines(&self.ctx, row.referral_id).await?;
        let checklist = decisions::checklist(&row)?;
        let actor = principal.clone();
        // The old handoff is REASSIGNED and the new one created in one transaction.
        let reassigned = self
            .ctx
            .write(move |txn| {
                Box::pin(async move {
                    let Some(reassigned) = apply_in(
                        txn,
                        &actor,
                        &row,
                        Transition::Reassign,
                        to,
                        Effects::default(),
                    )
                    .await?
                    else {
                        return Ok(None);
                    };
                    crate::worker::insert_handoff(
                        txn,
                        crate::worker::NewHandoff {
                            id: Uuid::now_v7(),
                            referral_id: row.referral_id,
                            reference_code: row.reference_code.clone(),
                            from_agency_id: row.from_agency_id.clone(),
                            to: &target,
                            purpose: row.purpose.clone(),
                            rule_id: row.rule_id.clone(),
                            rule_set_version: in_force,
                            route_key: format!("reassigned:{}", row.id),
                            checklist,
                            acknowledge_by,
                            decide_by,
                        },
                    )
                    .await?;
                    Ok(Some(reassigned))
                })
            })
            .await?
            .ok_or_else(concurrent)?;
        reply(
            &self.ctx,
            &principal,
            &call,
            Concerning::Nothing,
            to_proto(&reassigned)?,
        )
        .await
    }
}
