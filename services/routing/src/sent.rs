//! The sender's list (`ListSentHandoffs`): what the caller's agency handed to
//! whom, open handoffs by their next deadline (so the overdue first), then the
//! decided and ended ones, newest first.

use chrono::Utc;
use prost::Message;
use refnet_api::v1 as pb;
use refnet_core::boundary::Call;
use refnet_core::{
    ServiceError, ServiceResult,
    boundary::{Concerning, Reply, reply},
    error::Violations,
    paging,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::entities::handoff;
use crate::{
    service::Routing,
    service::{DEFAULT_PAGE, MAX_PAGE},
    wire::to_proto,
};

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
    pub(crate) async fn sent(
        &self,
        request: Call<pb::ListSentHandoffsRequest>,
    ) -> ServiceResult<Reply<pb::ListSentHandoffsResponse>> {
        let (principal, call, req) = request.parts();
        let mut v = Violations::new();
        let page_size = v.page_size(req.page_size, DEFAULT_PAGE, MAX_PAGE);
        let states = v.enum_list(
            "states",
            &req.states,
            refnet_core::states::HandoffState::from_wire,
        );
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
        reply(&self.ctx, &principal, &call, Concerning::Nothing, response).await
    }
}
