//! The RoutingService: the gRPC adapters of every RPC, the receiving agency's
//! inbox and one handoff as a reply. The handlers live by concept: decisions on
//! a handoff in [`crate::decide`], handoffs made by hand in [`crate::manual`],
//! the sender's list in [`crate::sent`], the timeline in [`crate::timeline`].

use std::sync::Arc;

use prost::Message;
use refnet_api::v1::{self as pb, routing_service_server::RoutingService};
use refnet_core::boundary::{Call, respond};
use refnet_core::{
    AppContext, ServiceError, ServiceResult, access,
    auth::Principal,
    boundary::{CallInfo, Concerning, Reply, reply},
    domain::ReferralRef,
    error::Violations,
    paging,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::entities::handoff;
use crate::{decisions, lifecycle::Transition, transition::Effects, wire::to_proto};
use refnet_core::states::HandoffState;

pub(crate) const DEFAULT_PAGE: u64 = 50;
pub(crate) const MAX_PAGE: u64 = 200;

/// The RoutingService.
#[derive(Clone)]
pub struct Routing {
    pub(crate) ctx: AppContext,
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
pub(crate) fn handoff_ref(v: &mut Violations, id: &str, expected_version: i64) -> Option<Uuid> {
    let id = v.check(
        "handoff_id",
        Uuid::parse_str(id.trim()).map_err(|_| "must be a handoff id"),
    );
    v.expected_version(expected_version);
    id
}

/// ABORTED unless `row` is still at the version the caller read.
pub(crate) fn expect_version(row: &handoff::Model, expected: i64) -> ServiceResult<()> {
    refnet_core::error::expect_version("handoff", row.version, expected)
}

/// Another change to the handoff committed first.
pub(crate) fn concurrent() -> ServiceError {
    refnet_core::error::changed_concurrently("handoff")
}

impl Routing {
    async fn inbox(
        &self,
        request: Call<pb::ListInboxRequest>,
    ) -> ServiceResult<Reply<pb::ListInboxResponse>> {
        let (principal, call, req) = request.parts();
        let mut v = Violations::new();
        let page_size = v.page_size(req.page_size, DEFAULT_PAGE, MAX_PAGE);
        let states = v.enum_list("states", &req.states, HandoffState::from_wire);
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
        for row in rows.iter_mut().filter(|r| r.state == HandoffState::Pending) {
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
            }
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
        reply(&self.ctx, &principal, &call, Concerning::Nothing, response).await
    }

    /// One handoff for `principal`, its decline reason (if any) opened and
    /// redacted with the subject's identifiers.
    pub(crate) async fn handoff_reply(
        &self,
        principal: &Principal,
        call: &CallInfo,
        row: &handoff::Model,
    ) -> ServiceResult<Reply<pb::Handoff>> {
        let mut message = to_proto(row)?;
        let about = if row.decline_reason_ct.is_some() {
            message.decline_reason = decisions::open_reason(&self.ctx, row).await?;
            Concerning::Referral(row.referral_id)
        } else {
            Concerning::Nothing
        };
        reply(&self.ctx, principal, call, about, message).await
    }
}

#[tonic::async_trait]
impl RoutingService for Routing {
    async fn get_timeline(
        &self,
        request: Request<pb::GetTimelineRequest>,
    ) -> Result<Response<pb::GetTimelineResponse>, Status> {
        respond(crate::timeline::get(&self.ctx, Call::open(request)?).await)
    }

    async fn watch_referral(
        &self,
        request: Request<pb::WatchReferralRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<pb::TimelineEvent>>, Status> {
        let (principal, call, req) = Call::open(request)?.parts();
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
        Ok(Response::new(refnet_core::boundary::stream(rx)))
    }

    async fn watch_inbox(
        &self,
        request: Request<pb::WatchInboxRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<pb::InboxEvent>>, Status> {
        let (principal, call, req) = Call::open(request)?.parts();
        let after = crate::watch::start(&self.ctx, &principal, &req).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let open = self.ctx.metrics().stream_opened("WatchInbox");
        let (ctx, hub) = (self.ctx.clone(), self.hub.clone());
        tokio::spawn(async move {
            crate::watch::run(ctx, principal, call, after, hub, tx).await;
            drop(open);
        });
        Ok(Response::new(refnet_core::boundary::stream(rx)))
    }

    async fn list_inbox(
        &self,
        request: Request<pb::ListInboxRequest>,
    ) -> Result<Response<pb::ListInboxResponse>, Status> {
        respond(self.inbox(Call::open(request)?).await)
    }

    async fn acknowledge_handoff(
        &self,
        request: Request<pb::HandoffTransitionRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        respond(
            self.act(Call::open(request)?, Transition::Acknowledge)
                .await,
        )
    }

    async fn accept_handoff(
        &self,
        request: Request<pb::HandoffTransitionRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        respond(self.act(Call::open(request)?, Transition::Accept).await)
    }

    async fn complete_handoff(
        &self,
        request: Request<pb::HandoffTransitionRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        respond(self.act(Call::open(request)?, Transition::Complete).await)
    }

    async fn decline_handoff(
        &self,
        request: Request<pb::HandoffTransitionRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        respond(self.act(Call::open(request)?, Transition::Decline).await)
    }

    async fn update_checklist(
        &self,
        request: Request<pb::UpdateChecklistRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        respond(self.mark_checklist(Call::open(request)?).await)
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        respond(decisions::list_notifications(&self.ctx, Call::open(request)?).await)
    }

    async fn configure_webhook(
        &self,
        request: Request<pb::ConfigureWebhookRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        respond(crate::webhooks::configure(&self.ctx, Call::open(request)?).await)
    }

    async fn get_webhook(
        &self,
        request: Request<pb::GetWebhookRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        respond(crate::webhooks::get(&self.ctx, Call::open(request)?).await)
    }

    async fn set_notification_mutes(
        &self,
        request: Request<pb::SetNotificationMutesRequest>,
    ) -> Result<Response<pb::NotificationMutes>, Status> {
        respond(decisions::set_mutes(&self.ctx, Call::open(request)?).await)
    }

    async fn mark_notifications_read(
        &self,
        request: Request<pb::MarkNotificationsReadRequest>,
    ) -> Result<Response<pb::MarkNotificationsReadResponse>, Status> {
        respond(decisions::mark_read(&self.ctx, Call::open(request)?).await)
    }

    async fn list_triage(
        &self,
        request: Request<pb::ListTriageRequest>,
    ) -> Result<Response<pb::ListTriageResponse>, Status> {
        respond(crate::triage::list(&self.ctx, Call::open(request)?).await)
    }

    async fn close_referral(
        &self,
        request: Request<pb::CloseReferralRequest>,
    ) -> Result<Response<pb::CloseReferralResponse>, Status> {
        respond(crate::triage::close(&self.ctx, Call::open(request)?).await)
    }

    async fn list_sent_handoffs(
        &self,
        request: Request<pb::ListSentHandoffsRequest>,
    ) -> Result<Response<pb::ListSentHandoffsResponse>, Status> {
        respond(self.sent(Call::open(request)?).await)
    }

    async fn withdraw_handoff(
        &self,
        request: Request<pb::HandoffTransitionRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        respond(self.act(Call::open(request)?, Transition::Withdraw).await)
    }

    async fn get_handoff(
        &self,
        request: Request<pb::GetHandoffRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        respond(self.handoff(Call::open(request)?).await)
    }

    async fn post_message(
        &self,
        request: Request<pb::PostMessageRequest>,
    ) -> Result<Response<pb::ThreadMessage>, Status> {
        respond(crate::messages::post(&self.ctx, Call::open(request)?).await)
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        respond(crate::messages::list(&self.ctx, Call::open(request)?).await)
    }

    async fn create_handoff(
        &self,
        request: Request<pb::CreateHandoffRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        respond(self.hand_off(Call::open(request)?).await)
    }

    async fn reassign_handoff(
        &self,
        request: Request<pb::ReassignHandoffRequest>,
    ) -> Result<Response<pb::Handoff>, Status> {
        respond(self.reassign(Call::open(request)?).await)
    }
}

impl Routing {
    async fn handoff(
        &self,
        request: Call<pb::GetHandoffRequest>,
    ) -> ServiceResult<Reply<pb::Handoff>> {
        let (principal, call, req) = request.parts();
        let id = Uuid::parse_str(req.handoff_id.trim())
            .map_err(|_| ServiceError::invalid("handoff_id", "must be a handoff id"))?;
        let agency = principal.agency_id.as_str();
        let row = crate::standing::visible_handoff(self.ctx.db(), id, agency).await?;
        self.handoff_reply(&principal, &call, &row).await
    }
}
