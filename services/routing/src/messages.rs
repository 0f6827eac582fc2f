//! A referral's message thread among its parties. Bodies are sealed at rest
//! under the subject's data key, and redacted for each viewer when read (not
//! when written), so a later consent or protection change applies to old
//! messages too.

use chrono::Utc;
use refnet_api::v1 as pb;
use refnet_core::boundary::Call;
use refnet_core::{
    AppContext, ServiceError, ServiceResult, access,
    boundary::{Concerning, Reply, reply},
    domain::{IdempotencyKey, ReferralRef, parse_text, referral::timestamp},
    error::Violations,
    events::{self, EventKind},
    subjects,
};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest message body, in characters.
pub const MAX_BODY: usize = 5_000;

/// The messages table.
pub mod message {
    use sea_orm::entity::prelude::*;

    /// One message.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "messages")]
    pub struct Model {
        /// Id (UUIDv7).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The referral.
        pub referral_id: Uuid,
        /// Author's agency.
        pub author_agency_id: String,
        /// Author officer.
        pub author_officer: String,
        /// Sealed body.
        pub body_ct: Vec<u8>,
        /// The author agency's idempotency key.
        pub idempotency_key: String,
        /// When posted.
        pub posted_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[derive(Serialize)]
struct PostedPayload {
    message_id: Uuid,
}

#[derive(Serialize, Deserialize)]
struct Cursor {
    referral: Uuid,
    agency: String,
    last: Uuid,
}

async fn to_proto(ctx: &AppContext, row: &message::Model) -> ServiceResult<pb::ThreadMessage> {
    // Sealed under the subject's key: gone once the subject was erased.
    let key = subjects::read_key(ctx.db(), ctx.keys(), row.referral_id).await?;
    let body: String = subjects::open_or_erased(key.as_ref(), row.id, "message", &row.body_ct)?;
    Ok(pb::ThreadMessage {
        id: row.id.to_string(),
        referral_id: row.referral_id.to_string(),
        author_agency_id: row.author_agency_id.clone(),
        author_officer: row.author_officer.clone(),
        body,
        posted_at: Some(timestamp(row.posted_at)),
        body_erased: key.is_none(),
        redactions: Vec::new(),
    })
}

/// PostMessage.
pub async fn post(
    ctx: &AppContext,
    request: Call<pb::PostMessageRequest>,
) -> ServiceResult<Reply<pb::ThreadMessage>> {
    let (principal, call, req) = request.parts();
    let mut v = Violations::new();
    let reference = v.check("referral_id", ReferralRef::parse(&req.referral_id));
    let key = v.check(
        "idempotency_key",
        IdempotencyKey::parse(&req.idempotency_key),
    );
    let body = v.check("body", parse_text(&req.body, MAX_BODY, true));
    if body.as_deref() == Some("") {
        v.add("body", "is required");
    }
    let (reference, key, body) = v.finish(|| Some((reference?, key?, body?)))?;
    let (referral_id, former) =
        access::visible_party(ctx.db(), &principal.agency_id, &reference).await?;
    if former.is_some() {
        return Err(ServiceError::FailedPrecondition(
            "your agency's handoff of this referral was withdrawn; it can no longer post".into(),
        ));
    }
    let existing = message::Entity::find()
        .filter(message::Column::ReferralId.eq(referral_id))
        .filter(message::Column::AuthorAgencyId.eq(principal.agency_id.as_str()))
        .filter(message::Column::IdempotencyKey.eq(key.as_str()))
        .one(ctx.db())
        .await?;
    let row = match existing {
        Some(row) => row,
        None => {
            let id = Uuid::now_v7();
            let dek = subjects::data_key(ctx.db(), ctx.keys(), referral_id).await?;
            let row = message::Model {
                id,
                referral_id,
                author_agency_id: principal.agency_id.clone(),
                author_officer: principal.officer_id.clone(),
                body_ct: subjects::seal(&dek, id, "message", &body)?,
                idempotency_key: key.as_str().to_owned(),
                posted_at: Utc::now(),
            };
            let actor = principal.clone();
            let insert = row.clone();
            ctx.write(move |txn| {
                Box::pin(async move {
                    message::Entity::insert(message::ActiveModel {
                        id: Set(insert.id),
                        referral_id: Set(insert.referral_id),
                        author_agency_id: Set(insert.author_agency_id),
                        author_officer: Set(insert.author_officer),
                        body_ct: Set(insert.body_ct),
                        idempotency_key: Set(insert.idempotency_key),
                        posted_at: Set(insert.posted_at),
                    })
                    .exec_without_returning(txn)
                    .await?;
                    events::append(
                        txn,
                        EventKind::MessagePosted,
                        Some(referral_id),
                        Some(&actor),
                        &PostedPayload {
                            message_id: insert.id,
                        },
                    )
                    .await
                })
            })
            .await?;
            row
        }
    };
    let subject = subjects::context_for(ctx, referral_id, &principal.agency_id).await?;
    reply(
        ctx,
        &principal,
        &call,
        Concerning::Subject(&subject),
        to_proto(ctx, &row).await?,
    )
    .await
}

/// ListMessages.
pub async fn list(
    ctx: &AppContext,
    request: Call<pb::ListMessagesRequest>,
) -> ServiceResult<Reply<pb::ListMessagesResponse>> {
    let (principal, call, req) = request.parts();
    let mut v = Violations::new();
    let reference = v.check("referral", ReferralRef::parse(&req.referral));
    let page_size = v.page_size(req.page_size, 50, 200);
    let (reference, page_size) = v.finish(|| Some((reference?, page_size?)))?;
    let (referral_id, former) =
        access::visible_party(ctx.db(), &principal.agency_id, &reference).await?;
    let after = if req.page_token.is_empty() {
        None
    } else {
        Some(
            ctx.keys()
                .tokens
                .open(&req.page_token)
                .and_then(|raw| serde_json::from_slice::<Cursor>(&raw).ok())
                .filter(|c| c.referral == referral_id && c.agency == principal.agency_id)
                .map(|c| c.last)
                .ok_or_else(|| {
                    ServiceError::invalid(
                        "page_token",
                        "is not a page token for this caller and referral",
                    )
                })?,
        )
    };
    let mut q = message::Entity::find().filter(message::Column::ReferralId.eq(referral_id));
    // A former recipient keeps what was posted up to its withdrawal, and its own.
    if let Some(until) = former {
        q = q.filter(
            sea_orm::Condition::any()
                .add(message::Column::PostedAt.lte(until))
                .add(message::Column::AuthorAgencyId.eq(principal.agency_id.as_str())),
        );
    }
    if let Some(last) = after {
        q = q.filter(message::Column::Id.gt(last));
    }
    let mut rows = q
        .order_by_asc(message::Column::Id)
        .limit(page_size + 1)
        .all(ctx.db())
        .await?;
    let more = rows.len() as u64 > page_size;
    rows.truncate(page_size as usize);
    let mut messages = Vec::with_capacity(rows.len());
    for row in &rows {
        messages.push(to_proto(ctx, row).await?);
    }
    let next_page_token = match (more, rows.last()) {
        (true, Some(last)) => {
            let raw = serde_json::to_vec(&Cursor {
                referral: referral_id,
                agency: principal.agency_id.clone(),
                last: last.id,
            })
            .map_err(|e| ServiceError::internal("cursor", e))?;
            ctx.keys().tokens.seal(&raw)
        }
        _ => String::new(),
    };
    let subject = subjects::context_for(ctx, referral_id, &principal.agency_id).await?;
    let response = pb::ListMessagesResponse {
        messages,
        next_page_token,
        redactions: Vec::new(),
    };
    reply(
        ctx,
        &principal,
        &call,
        Concerning::Subject(&subject),
        response,
    )
    .await
}
