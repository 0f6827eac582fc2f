//! The RoutingService handlers: the receiving agency's inbox and the handoff
//! lifecycle, each transition checked against the state machine and made with
//! optimistic concurrency.

use std::sync::Arc;

use chrono::Utc;
use prost::Message;
use refnet_api::v1::{self as pb, routing_service_server::RoutingService};
use refnet_core::{
    AppContext, ServiceError, ServiceResult, access,
    auth::Principal,
    boundary::{CallInfo, Reply, reply},
    domain::{ReferralRef, parse_text},
    entities::handoff,
    error::Violations,
    events, paging, subjects,
};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    decisions,
    lifecycle::{Transition, check_row},
    transition::{Effects, apply_in},
    wire::to_proto,
};

const DEFAULT_PAGE: u64 = 50;
const MAX_PAGE: u64 = 200;

/// The RoutingService.
#[derive(Clone)]
pub struct Routing {
    ctx: AppContext,
    /// The one log reader behind every WatchInbox stream of this service.
    hub: Arc<crate::hub::InboxHub>,
}

impl Routing {
    /// The service over `ctx`.
    pub fn new(ctx: AppContext) -> Self {
        Self {
            ctx,
            hub: Arc::new(crate::hub::InboxHub::new()),
        }
    }
}

/// Checks a handoff id and the version the caller read (both required).
fn handoff_ref(v: &mut Violations, id: &str, expected_version: i64) -> Option<Uuid> {
    let id = v.check(
        "handoff_id",
        Uuid::parse_str(id.trim()).map_err(|_| "must be a handoff id"),
    );
    v.expected_version(expected_version);
    id
}

/// ABORTED unless `row` is still at the version the caller read.
fn expect_version(row: &handoff::Model, expected: i64) -> ServiceResult<()> {
    refnet_core::error::expect_version("handoff", row.version, expected)
}

/// Another change to the handoff committed first.
fn concurrent() -> ServiceError {
    refnet_core::error::changed_concurrently("handoff")
}

/// The reference code and deadlines of a handoff of `referral_id` made now.
async fn code_and_deadlines(
    ctx: &AppContext,
    referral_id: Uuid,
) -> ServiceResult<(String, chrono::DateTime<Utc>, chrono::DateTime<Utc>)> {
    let referral = refnet_core::entities::referral::Entity::find_by_id(referral_id)
        .one(ctx.db())
        .await?
        .ok_or(ServiceError::NotFound)?;
    let rules = crate::rules(ctx).map_err(|e| ServiceError::internal("routing rules", e))?;
    let deadlines = rules.deadlines(&referral.urgency);
    let now = Utc::now();
    Ok((
        referral.reference_code,
        now + deadlines.acknowledge,
        now + deadlines.decide,
    ))
}

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
    let Some(referral) = refnet_core::entities::referral::Entity::find_by_id(declined.referral_id)
        .one(txn)
        .await?
    else {
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
            // Once per declined handoff.
            rule_set_version: format!("second-choice:{}", declined.id),
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
    async fn list_inbox_inner(
        &self,
        request: Request<pb::ListInboxRequest>,
    ) -> ServiceResult<Reply<pb::ListInboxResponse>> {
        let principal = Principal::of(&request)?.clone();
        let call = CallInfo::of(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let page_size = v.page_size(req.page_size, DEFAULT_PAGE, MAX_PAGE);
        let states = parse_states(&mut v, &req.states);
        let mut canonical = req.clone();
        canonical.page_token.clear();
        canonical.page_size = 0;
        let digest = paging::filter_digest(&canonical.encode_to_vec());
        let cursor = paging::resume(
            &mut v,
            self.ctx.keys(),
            &req.page_token,
            &principal.agency_id,
            &digest,
        );
        let page_size = v.finish(|| page_size)?;

        let mut q = handoff::Entity::find()
            .filter(handoff::Column::ToAgencyId.eq(principal.agency_id.as_str()));
        if !states.is_empty() {
            q = q.filter(handoff::Column::State.is_in(states));
        }
        if let Some(last) = cursor {
            q = q.filter(handoff::Column::Id.lt(last));
        }
        let mut rows = q
            .order_by_desc(handoff::Column::Id)
            .limit(page_size + 1)
            .all(self.ctx.db())
            .await?;
        let more = rows.len() as u64 > page_size;
        rows.truncate(page_size as usize);
        // Delivery is recorded when the receiving agency first sees a handoff.
        let mut delivered_any = false;
        for row in rows
            .iter_mut()
            .filter(|r| r.state == pb::HandoffState::Pending.as_str_name())
        {
            if let Some(updated) = crate::transition::apply(
                &self.ctx,
                &principal,
                row.clone(),
                Transition::Deliver,
                Effects::default(),
            )
            .await?
            {
                *row = updated;
                delivered_any = true;
            }
        }
        if delivered_any {
            self.ctx.event_signal().notify_waiters();
        }
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => {
                paging::seal(self.ctx.keys(), &principal.agency_id, &digest, last.id)
            }
            _ => String::new(),
        };
        let response = pb::ListInboxResponse {
            handoffs: rows.iter().map(to_proto).collect::<ServiceResult<_>>()?,
            next_page_token,
            redactions: Vec::new(),
        };
        reply(&self.ctx, &principal, &call, None, response).await
    }

    async fn act(
        &self,
        request: Request<pb::HandoffTransitionRequest>,
        t: Transition,
    ) -> ServiceResult<Reply<pb::Handoff>> {
        let principal = Principal::of(&request)?.clone();
        let call = CallInfo::of(&request);
        let req = request.into_inner();
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
        let was_pending = row.state == pb::HandoffState::Pending.as_str_name();
        let was_accepted = row.state == pb::HandoffState::Accepted.as_str_name();
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
        let updated = refnet_core::db::write_txn(self.ctx.db(), move |txn| {
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
                        access::drop_recipient(txn, updated.referral_id, &updated.to_agency_id)
                            .await?;
                    }
                    // After acceptance: it keeps what it saw, nothing newer.
                    Transition::Withdraw if was_accepted => {
                        access::retire_recipient(txn, updated.referral_id, &updated.to_agency_id)
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
                    crate::triage::settle(txn, &rules, &mut events, updated.referral_id).await?;
                }
                events.flush(txn).await?;
                Ok(Some(updated))
            })
        })
        .await?
        .ok_or_else(concurrent)?;
        self.ctx.event_signal().notify_waiters();
        self.handoff_reply(&principal, &call, &updated).await
    }

    /// One handoff for `principal`, its decline reason (if any) opened and
    /// redacted with the subject's identifiers.
    async fn handoff_reply(
        &self,
        principal: &Principal,
        call: &CallInfo,
        row: &handoff::Model,
    ) -> ServiceResult<Reply<pb::Handoff>> {
        let mut message = to_proto(row)?;
        if row.decline_reason_ct.is_none() {
            return reply(&self.ctx, principal, call, None, message).await;
        }
        message.decline_reason = decisions::open_reason(&self.ctx, row).await?;
        let subject =
            subjects::context_for(&self.ctx, row.referral_id, &principal.agency_id).await?;
        reply(&self.ctx, principal, call, Some(&subject), message).await
    }

    async fn update_checklist_inner(
        &self,
        request: Request<pb::UpdateChecklistRequest>,
    ) -> ServiceResult<Reply<pb::Handoff>> {
        let principal = Principal::of(&request)?.clone();
        let call = CallInfo::of(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = handoff_ref(&mut v, &req.handoff_id, req.expected_version);
        let item = v.check("item", parse_text(&req.item, 500, false));
        if item.as_deref() == Some("") {
            v.add("item", "is required");
        }
        let (id, item) = v.finish(|| Some((id?, item?)))?;
        let agency = principal.agency_id.as_str();
        let row = handoff::Entity::find_by_id(id)
            .filter(
                sea_orm::Condition::any()
                    .add(handoff::Column::ToAgencyId.eq(agency))
                    .add(handoff::Column::FromAgencyId.eq(agency)),
            )
            .one(self.ctx.db())
            .await?
            .ok_or(ServiceError::NotFound)?;
        expect_version(&row, req.expected_version)?;
        let open = [
            pb::HandoffState::Pending,
            pb::HandoffState::Delivered,
            pb::HandoffState::Acknowledged,
            pb::HandoffState::Accepted,
            pb::HandoffState::Escalated,
        ];
        if !open.iter().any(|s| s.as_str_name() == row.state) {
            return Err(ServiceError::FailedPrecondition(format!(
                "handoff is {}; its checklist is closed",
                row.state.trim_start_matches("HANDOFF_STATE_")
            )));
        }
        let mut list = decisions::checklist(&row)?;
        let now = Utc::now();
        decisions::mark(&mut list, &item, req.provided, agency, now)?;
        let provided = list.iter().filter(|e| e.provided).count();
        let detail = format!("{provided}/{} provided", list.len());
        let stored = subjects::json(&list)?;
        let actor = principal.clone();
        let updated = refnet_core::db::write_txn(self.ctx.db(), move |txn| {
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
        self.ctx.event_signal().notify_waiters();
        self.handoff_reply(&principal, &call, &updated).await
    }
}

impl Routing {
    async fn get_timeline_inner(
        &self,
        request: Request<pb::GetTimelineRequest>,
    ) -> ServiceResult<Reply<pb::GetTimelineResponse>> {
        let principal = Principal::of(&request)?.clone();
        let call = CallInfo::of(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let reference = v.check("referral", ReferralRef::parse(&req.referral));
        let page_size = v.page_size(req.page_size, 100, 500);
        let (reference, page_size) = v.finish(|| Some((reference?, page_size?)))?;
        let referral =
            access::visible_referral(self.ctx.db(), &principal.agency_id, &reference).await?;
        let after = if req.page_token.is_empty() {
            0
        } else {
            crate::timeline::open(&self.ctx, &req.page_token, referral, &principal.agency_id)
                .ok_or_else(|| {
                    ServiceError::invalid(
                        "page_token",
                        "is not a page token for this caller and referral",
                    )
                })?
        };
        let mut events = crate::timeline::events_after(
            &self.ctx,
            referral,
            &principal.agency_id,
            after,
            page_size + 1,
        )
        .await?;
        let more = events.len() as u64 > page_size;
        events.truncate(page_size as usize);
        let items = crate::timeline::items(&self.ctx, &principal, &call, referral, &events).await?;
        let next_page_token = if more {
            items.last().map(|i| i.cursor.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        let response = pb::GetTimelineResponse {
            events: items,
            next_page_token,
            redactions: Vec::new(),
        };
        reply(&self.ctx, &principal, &call, None, response).await
    }
}

#[tonic::async_trait]
impl RoutingService for Routing {
    async fn get_timeline(
        &self,
        request: Request<pb::GetTimelineRequest>,
    ) -> Result<Response<pb::GetTimelineResponse>, Status> {
        Ok(self.get_timeline_inner(request).await?.into_response())
    }

    async fn watch_referral(
        &self,
        request: Request<pb::WatchReferralRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<pb::TimelineEvent>>, Status> {
        let principal = Principal::of(&request)?.clone();
        let call = CallInfo::of(&request);
        let req = request.into_inner();
        let reference =
            ReferralRef::parse(&req.referral).map_err(|e| ServiceError::invalid("referral", e))?;
        let referral =
            access::visible_referral(self.ctx.db(), &principal.agency_id, &reference).await?;
        let after = if !req.cursor.is_empty() {
            crate::timeline::open(&self.ctx, &req.cursor, referral, &principal.agency_id)
                .ok_or_else(|| {
                    ServiceError::invalid("cursor", "is not a cursor of this caller and referral")
                })?
        } else if req.from_beginning {
            0
        } else {
            crate::timeline::latest_seq(&self.ctx, referral).await?
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let open = self.ctx.metrics().stream_opened("WatchReferral");
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            crate::timeline::run(ctx, principal, call, referral, after, tx).await;
            drop(open);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn watch_inbox(
        &self,
        request: Request<pb::WatchInboxRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<pb::InboxEvent>>, Status> {
        let principal = Principal::of(&request)?.clone();
        let call = CallInfo::of(&request);
        let after = crate::watch::start(&self.ctx, &principal, request.get_ref()).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let open = self.ctx.metrics().stream_opened("WatchInbox");
        let (ctx, hub) = (self.ctx.clone(), self.hub.clone());
        tokio::spawn(async move {
            crate::watch::run(ctx, principal, call, after, hub, tx).await;
            drop(open);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn list_inbox(
        &self,
        request: Request<pb::ListInboxRequest>,
    ) -> Result<Response<pb::ListInboxResponse>, Status> {
        Ok(self.list_inbox_inner(request).await?.into_response())
    }

    async fn acknowledge_handoff(
        &self,
        request: Request<pb::HandoffTransitionRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        Ok(self
            .act(request, Transition::Acknowledge)
            .await?
            .into_response())
    }

    async fn accept_handoff(
        &self,
        request: Request<pb::HandoffTransitionRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        Ok(self.act(request, Transition::Accept).await?.into_response())
    }

    async fn complete_handoff(
        &self,
        request: Request<pb::HandoffTransitionRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        Ok(self
            .act(request, Transition::Complete)
            .await?
            .into_response())
    }

    async fn decline_handoff(
        &self,
        request: Request<pb::HandoffTransitionRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        Ok(self
            .act(request, Transition::Decline)
            .await?
            .into_response())
    }

    async fn update_checklist(
        &self,
        request: Request<pb::UpdateChecklistRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        Ok(self.update_checklist_inner(request).await?.into_response())
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        Ok(decisions::list_notifications(&self.ctx, request)
            .await?
            .into_response())
    }

    async fn configure_webhook(
        &self,
        request: Request<pb::ConfigureWebhookRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        Ok(crate::webhooks::configure(&self.ctx, request)
            .await?
            .into_response())
    }

    async fn get_webhook(
        &self,
        request: Request<pb::GetWebhookRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        Ok(crate::webhooks::get(&self.ctx, request)
            .await?
            .into_response())
    }

    async fn set_notification_mutes(
        &self,
        request: Request<pb::SetNotificationMutesRequest>,
    ) -> Result<Response<pb::NotificationMutes>, Status> {
        Ok(decisions::set_mutes(&self.ctx, request)
            .await?
            .into_response())
    }

    async fn mark_notifications_read(
        &self,
        request: Request<pb::MarkNotificationsReadRequest>,
    ) -> Result<Response<pb::MarkNotificationsReadResponse>, Status> {
        Ok(decisions::mark_read(&self.ctx, request)
            .await?
            .into_response())
    }

    async fn list_triage(
        &self,
        request: Request<pb::ListTriageRequest>,
    ) -> Result<Response<pb::ListTriageResponse>, Status> {
        Ok(crate::triage::list(&self.ctx, request)
            .await?
            .into_response())
    }

    async fn close_referral(
        &self,
        request: Request<pb::CloseReferralRequest>,
    ) -> Result<Response<pb::CloseReferralResponse>, Status> {
        Ok(crate::triage::close(&self.ctx, request)
            .await?
            .into_response())
    }

    async fn list_sent_handoffs(
        &self,
        request: Request<pb::ListSentHandoffsRequest>,
    ) -> Result<Response<pb::ListSentHandoffsResponse>, Status> {
        Ok(self.list_sent_inner(request).await?.into_response())
    }

    async fn withdraw_handoff(
        &self,
        request: Request<pb::HandoffTransitionRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        Ok(self
            .act(request, Transition::Withdraw)
            .await?
            .into_response())
    }

    async fn get_handoff(
        &self,
        request: Request<pb::GetHandoffRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        Ok(self.get_handoff_inner(request).await?.into_response())
    }

    async fn post_message(
        &self,
        request: Request<pb::PostMessageRequest>,
    ) -> Result<Response<pb::ThreadMessage>, Status> {
        Ok(crate::messages::post(&self.ctx, request)
            .await?
            .into_response())
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        Ok(crate::messages::list(&self.ctx, request)
            .await?
            .into_response())
    }

    async fn create_handoff(
        &self,
        request: Request<pb::CreateHandoffRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        Ok(self.create_handoff_inner(request).await?.into_response())
    }

    async fn reassign_handoff(
        &self,
        request: Request<pb::ReassignHandoffRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        Ok(self.reassign_handoff_inner(request).await?.into_response())
    }
}

impl Routing {
    async fn create_handoff_inner(
        &self,
        request: Request<pb::CreateHandoffRequest>,
    ) -> ServiceResult<Reply<pb::Handoff>> {
        let principal = Principal::of(&request)?.clone();
        let call = CallInfo::of(&request);
        let req = request.into_inner();
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
        let (code, acknowledge_by, decide_by) = code_and_deadlines(&self.ctx, referral_id).await?;
        let id = Uuid::now_v7();
        let version = format!("manual:{}:{}", principal.agency_id, key.as_str());
        let from = principal.agency_id.clone();
        let purpose = req.purpose.clone();
        let rule_set_version = version.clone();
        refnet_core::db::write_txn(self.ctx.db(), move |txn| {
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
                        rule_set_version,
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
        self.ctx.event_signal().notify_waiters();
        // A retry with the same key finds the handoff the first call created.
        let row = handoff::Entity::find()
            .filter(handoff::Column::ReferralId.eq(referral_id))
            .filter(handoff::Column::RuleSetVersion.eq(version))
            .one(self.ctx.db())
            .await?
            .ok_or_else(|| ServiceError::Internal("manual handoff vanished".into()))?;
        reply(&self.ctx, &principal, &call, None, to_proto(&row)?).await
    }

    async fn reassign_handoff_inner(
        &self,
        request: Request<pb::ReassignHandoffRequest>,
    ) -> ServiceResult<Reply<pb::Handoff>> {
        let principal = Principal::of(&request)?.clone();
        let call = CallInfo::of(&request);
        let req = request.into_inner();
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
        let (_, acknowledge_by, decide_by) = code_and_deadlines(&self.ctx, row.referral_id).await?;
        let checklist = decisions::checklist(&row)?;
        let actor = principal.clone();
        // The old handoff is REASSIGNED and the new one created in one transaction.
        let reassigned = refnet_core::db::write_txn(self.ctx.db(), move |txn| {
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
                        rule_set_version: format!("reassigned:{}", row.id),
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
        self.ctx.event_signal().notify_waiters();
        reply(&self.ctx, &principal, &call, None, to_proto(&reassigned)?).await
    }

    async fn get_handoff_inner(
        &self,
        request: Request<pb::GetHandoffRequest>,
    ) -> ServiceResult<Reply<pb::Handoff>> {
        let principal = Principal::of(&request)?.clone();
        let call = CallInfo::of(&request);
        let id = Uuid::parse_str(request.get_ref().handoff_id.trim())
            .map_err(|_| ServiceError::invalid("handoff_id", "must be a handoff id"))?;
        let agency = principal.agency_id.as_str();
        let row = handoff::Entity::find_by_id(id)
            .filter(
                sea_orm::Condition::any()
                    .add(handoff::Column::ToAgencyId.eq(agency))
                    .add(handoff::Column::FromAgencyId.eq(agency)),
            )
            .one(self.ctx.db())
            .await?
            .ok_or(ServiceError::NotFound)?;
        self.handoff_reply(&principal, &call, &row).await
    }
}

/// Where a page of sent handoffs resumes: among those with a deadline due
/// (earliest first), or among the rest (newest first).
#[derive(serde::Serialize, serde::Deserialize)]
struct SentCursor {
    agency: String,
    filter: String,
    due_at: Option<chrono::DateTime<Utc>>,
    id: Uuid,
}

impl Routing {
    async fn list_sent_inner(
        &self,
        request: Request<pb::ListSentHandoffsRequest>,
    ) -> ServiceResult<Reply<pb::ListSentHandoffsResponse>> {
        let principal = Principal::of(&request)?.clone();
        let call = CallInfo::of(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let page_size = v.page_size(req.page_size, DEFAULT_PAGE, MAX_PAGE);
        let states = parse_states(&mut v, &req.states);
        let mut canonical = req.clone();
        canonical.page_token.clear();
        canonical.page_size = 0;
        let digest = paging::filter_digest(&canonical.encode_to_vec());
        let cursor = if req.page_token.is_empty() {
            None
        } else {
            let c = self
                .ctx
                .keys()
                .tokens
                .open(&req.page_token)
                .and_then(|raw| serde_json::from_slice::<SentCursor>(&raw).ok())
                .filter(|c| c.agency == principal.agency_id && c.filter == digest);
            if c.is_none() {
                v.add(
                    "page_token",
                    "is not a page token for this caller and filter",
                );
            }
            c
        };
        let page_size = v.finish(|| page_size)?;
        let base = || {
            let mut q = handoff::Entity::find()
                .filter(handoff::Column::FromAgencyId.eq(principal.agency_id.as_str()));
            if !states.is_empty() {
                q = q.filter(handoff::Column::State.is_in(states.clone()));
            }
            q
        };
        let mut rows = Vec::new();
        // First those with a deadline due, earliest (most overdue) first.
        if cursor.as_ref().is_none_or(|c| c.due_at.is_some()) {
            let mut q = base().filter(handoff::Column::DueAt.is_not_null());
            if let Some(SentCursor {
                due_at: Some(due),
                id,
                ..
            }) = &cursor
            {
                q = q.filter(
                    sea_orm::Condition::any()
                        .add(handoff::Column::DueAt.gt(*due))
                        .add(
                            sea_orm::Condition::all()
                                .add(handoff::Column::DueAt.eq(*due))
                                .add(handoff::Column::Id.gt(*id)),
                        ),
                );
            }
            rows = q
                .order_by_asc(handoff::Column::DueAt)
                .order_by_asc(handoff::Column::Id)
                .limit(page_size + 1)
                .all(self.ctx.db())
                .await?;
        }
        // Then the decided and ended ones, newest first.
        if (rows.len() as u64) <= page_size {
            let mut q = base().filter(handoff::Column::DueAt.is_null());
            if let Some(SentCursor {
                due_at: None, id, ..
            }) = &cursor
            {
                q = q.filter(handoff::Column::Id.lt(*id));
            }
            let room = page_size + 1 - rows.len() as u64;
            rows.extend(
                q.order_by_desc(handoff::Column::Id)
                    .limit(room)
                    .all(self.ctx.db())
                    .await?,
            );
        }
        let more = rows.len() as u64 > page_size;
        rows.truncate(page_size as usize);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => {
                let raw = serde_json::to_vec(&SentCursor {
                    agency: principal.agency_id.clone(),
                    filter: digest.clone(),
                    due_at: last.due_at,
                    id: last.id,
                })
                .map_err(|e| ServiceError::internal("cursor", e))?;
                self.ctx.keys().tokens.seal(&raw)
            }
            _ => String::new(),
        };
        let response = pb::ListSentHandoffsResponse {
            handoffs: rows.iter().map(to_proto).collect::<ServiceResult<_>>()?,
            next_page_token,
            redactions: Vec::new(),
        };
        reply(&self.ctx, &principal, &call, None, response).await
    }
}

/// Checks a list of handoff states (each known and specified); their stored names.
fn parse_states(v: &mut Violations, states: &[i32]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, s) in states.iter().enumerate() {
        match pb::HandoffState::try_from(*s) {
            Ok(state) if *s != 0 => out.push(state.as_str_name().to_owned()),
            _ => v.add(
                format!("states[{i}]"),
                format!("unknown or unspecified value {s}"),
            ),
        }
    }
    out
}
