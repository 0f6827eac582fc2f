//! What a handoff carries beyond its state: the decline reason (free text
//! that may name the subject, so sealed under the subject's data key and
//! redacted for each viewer when read), the supporting-documents checklist of
//! assistance applications, and the notifications that escalations,
//! declines, withdrawals and referrals needing routing send to the agencies
//! that must act on them, read or unread per officer.

use crate::entities::handoff;
use chrono::{DateTime, Utc};
use prost::Message;
use refnet_api::v1 as pb;
use refnet_core::boundary::Call;
use refnet_core::{
    AppContext, ServiceError, ServiceResult,
    auth::{Principal, Role},
    boundary::{Concerning, Reply, reply},
    domain::referral::timestamp,
    entities::notification,
    error::Violations,
    events::EventKind,
    paging, subjects,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::OnConflict,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest decline reason, in characters.
pub const MAX_REASON: usize = 2_000;

/// The sealing purpose of decline reasons (bound into the ciphertext).
const REASON: &str = "decline_reason";

pub use refnet_core::notify::{ALL, About, SUPERVISORS, notify_about};

/// One item of a handoff's checklist, as stored (JSON in `handoffs.checklist`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChecklistEntry {
    /// What is needed.
    pub item: String,
    /// Whether it has been provided.
    pub provided: bool,
    /// When it was last marked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// The agency that last marked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
}

/// The checklist of `row`.
pub fn checklist(row: &handoff::Model) -> ServiceResult<Vec<ChecklistEntry>> {
    subjects::from_json(&row.checklist, "handoff checklist")
}

/// Whether `entries` is a checklist with every item provided.
pub fn complete(entries: &[ChecklistEntry]) -> bool {
    !entries.is_empty() && entries.iter().all(|e| e.provided)
}

/// The wire form of a checklist.
pub fn checklist_proto(entries: &[ChecklistEntry]) -> Vec<pb::ChecklistItem> {
    entries
        .iter()
        .map(|e| pb::ChecklistItem {
            item: e.item.clone(),
            provided: e.provided,
            updated_at: e.updated_at.map(timestamp),
            updated_by_agency_id: e.updated_by.clone().unwrap_or_default(),
        })
        .collect()
}

/// Seals a decline reason for `handoff_id` under the subject's data key;
/// `None` once the subject was erased: the handoff can still be declined, but
/// nothing new is recorded about an erased person, so the reason is not kept.
pub async fn seal_reason<C: ConnectionTrait>(
    db: &C,
    ctx: &AppContext,
    referral_id: Uuid,
    handoff_id: Uuid,
    reason: &str,
) -> ServiceResult<Option<Vec<u8>>> {
    match subjects::read_key(db, ctx.keys(), referral_id).await? {
        Some(key) => Ok(Some(subjects::seal(&key, handoff_id, REASON, &reason)?)),
        None => Ok(None),
    }
}

/// The decline reason of `row`, opened; empty when it has none or its subject was erased.
pub async fn open_reason(ctx: &AppContext, row: &handoff::Model) -> ServiceResult<String> {
    match &row.decline_reason_ct {
        None => Ok(String::new()),
        Some(sealed) => {
            // Empty once the subject was erased: the key that sealed it is gone.
            let key = subjects::read_key(ctx.db(), ctx.keys(), row.referral_id).await?;
            subjects::open_or_erased(key.as_ref(), row.id, REASON, sealed)
        }
    }
}

/// Records a notification to `agency_id` (its `audience`) about `row`; a
/// repeat (same handoff, event, agency, audience and detail) is a no-op.
pub async fn notify<C: ConnectionTrait>(
    db: &C,
    agency_id: &str,
    audience: &str,
    event: EventKind,
    row: &handoff::Model,
    detail: &str,
) -> ServiceResult<()> {
    let about = About {
        referral_id: row.referral_id,
        reference_code: row.reference_code.clone(),
        handoff_id: row.id,
        due_by: None,
    };
    notify_about(db, agency_id, audience, event, &about, detail).await
}

/// Which officer has read which notification (routing's table).
pub mod read {
    use sea_orm::entity::prelude::*;

    /// One officer has read one notification.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notification_reads")]
    pub struct Model {
        /// The notification.
        #[sea_orm(primary_key, auto_increment = false)]
        pub notification_id: Uuid,
        /// The officer (the token's subject).
        #[sea_orm(primary_key, auto_increment = false)]
        pub officer_id: String,
        /// When they marked it read.
        pub read_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The notification kinds each officer has switched off (routing's table).
pub mod mute {
    use sea_orm::entity::prelude::*;

    /// One officer has switched one kind off.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notification_mutes")]
    pub struct Model {
        /// The officer's agency.
        #[sea_orm(primary_key, auto_increment = false)]
        pub agency_id: String,
        /// The officer (the token's subject).
        #[sea_orm(primary_key, auto_increment = false)]
        pub officer_id: String,
        /// The kind ("HandoffDeclined").
        #[sea_orm(primary_key, auto_increment = false)]
        pub kind: String,
        /// When.
        pub muted_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The notification kinds there are (what an officer may switch off).
pub const KINDS: [EventKind; 6] = [
    EventKind::HandoffEscalated,
    EventKind::HandoffDeclined,
    EventKind::HandoffWithdrawn,
    EventKind::ReferralNeedsRouting,
    EventKind::TriageEscalated,
    EventKind::ProtectionEscalated,
];

/// The kinds `principal`'s officer has switched off.
async fn muted(ctx: &AppContext, principal: &Principal) -> ServiceResult<Vec<String>> {
    Ok(mute::Entity::find()
        .filter(mute::Column::AgencyId.eq(principal.agency_id.as_str()))
        .filter(mute::Column::OfficerId.eq(principal.officer_id.as_str()))
        .order_by_asc(mute::Column::Kind)
        .all(ctx.db())
        .await?
        .into_iter()
        .map(|m| m.kind)
        .collect())
}

/// SetNotificationMutes: replaces the kinds the calling officer switched off.
pub async fn set_mutes(
    ctx: &AppContext,
    request: Call<pb::SetNotificationMutesRequest>,
) -> ServiceResult<Reply<pb::NotificationMutes>> {
    let (principal, call, req) = request.parts();
    let mut v = Violations::new();
    let mut kinds: Vec<String> = Vec::new();
    for (i, kind) in req.kinds.iter().enumerate() {
        if KINDS.iter().any(|k| k.as_str() == kind) {
            if !kinds.contains(kind) {
                kinds.push(kind.clone());
            }
        } else {
            v.add(
                format!("kinds[{i}]"),
                format!(
                    "is not a notification kind (one of {})",
                    KINDS.map(EventKind::as_str).join(", ")
                ),
            );
        }
    }
    v.finish(|| Some(()))?;
    let officer = principal.officer_id.clone();
    let agency = principal.agency_id.clone();
    let now = Utc::now();
    refnet_core::db::write_txn(ctx.db(), move |txn| {
        Box::pin(async move {
            mute::Entity::delete_many()
                .filter(mute::Column::AgencyId.eq(agency.as_str()))
                .filter(mute::Column::OfficerId.eq(officer.as_str()))
                .exec(txn)
                .await?;
            if !kinds.is_empty() {
                mute::Entity::insert_many(kinds.into_iter().map(|kind| mute::ActiveModel {
                    agency_id: Set(agency.clone()),
                    officer_id: Set(officer.clone()),
                    kind: Set(kind),
                    muted_at: Set(now),
                }))
                .exec_without_returning(txn)
                .await?;
            }
            Ok(())
        })
    })
    .await?;
    let response = pb::NotificationMutes {
        kinds: muted(ctx, &principal).await?,
        redactions: Vec::new(),
    };
    reply(ctx, &principal, &call, Concerning::Nothing, response).await
}

/// The audiences `principal` belongs to in its agency.
fn audiences(principal: &Principal) -> Vec<&'static str> {
    let mut audiences = vec![ALL];
    if principal.roles.contains(&Role::Supervisor) {
        audiences.push(SUPERVISORS);
    }
    audiences
}

/// The notifications `principal` may see.
fn visible(principal: &Principal) -> Condition {
    Condition::all()
        .add(notification::Column::AgencyId.eq(principal.agency_id.as_str()))
        .add(notification::Column::Audience.is_in(audiences(principal)))
}

/// Notifications the officer has not marked read.
fn unread_by(officer: &str) -> sea_orm::sea_query::SimpleExpr {
    use sea_orm::sea_query::{Expr, ExprTrait, Query};
    Expr::col((notification::Entity, notification::Column::Id)).not_in_subquery(
        Query::select()
            .column(read::Column::NotificationId)
            .from(read::Entity)
            .and_where(Expr::col(read::Column::OfficerId).eq(officer))
            .to_owned(),
    )
}

/// ListNotifications: the caller agency's notifications its roles may see,
/// newest first, each with the calling officer's read state.
pub async fn list_notifications(
    ctx: &AppContext,
    request: Call<pb::ListNotificationsRequest>,
) -> ServiceResult<Reply<pb::ListNotificationsResponse>> {
    let (principal, call, req) = request.parts();
    let mut v = Violations::new();
    let page_size = v.page_size(req.page_size, 50, 200);
    let mut canonical = req.clone();
    canonical.page_token.clear();
    canonical.page_size = 0;
    let digest = paging::filter_digest(&canonical.encode_to_vec());
    let cursor = paging::resume(
        &mut v,
        ctx.keys(),
        &req.page_token,
        &principal.agency_id,
        &digest,
    );
    let page_size = v.finish(|| page_size)?;
    let mut q = notification::Entity::find().filter(visible(&principal));
    if !req.include_muted {
        let off = muted(ctx, &principal).await?;
        if !off.is_empty() {
            q = q.filter(notification::Column::Kind.is_not_in(off));
        }
    }
    if req.unread_only {
        q = q.filter(unread_by(&principal.officer_id));
    }
    if let Some(last) = cursor {
        q = q.filter(notification::Column::Id.lt(last));
    }
    let mut rows = q
        .order_by_desc(notification::Column::Id)
        .limit(page_size + 1)
        .all(ctx.db())
        .await?;
    let more = rows.len() as u64 > page_size;
    rows.truncate(page_size as usize);
    let read: std::collections::HashSet<Uuid> = if rows.is_empty() {
        Default::default()
    } else {
        read::Entity::find()
            .filter(read::Column::OfficerId.eq(principal.officer_id.as_str()))
            .filter(read::Column::NotificationId.is_in(rows.iter().map(|n| n.id)))
            .all(ctx.db())
            .await?
            .into_iter()
            .map(|r| r.notification_id)
            .collect()
    };
    let next_page_token = match (more, rows.last()) {
        (true, Some(last)) => paging::seal(ctx.keys(), &principal.agency_id, &digest, last.id),
        _ => String::new(),
    };
    let response = pb::ListNotificationsResponse {
        notifications: rows
            .iter()
            .map(|n| pb::Notification {
                id: n.id.to_string(),
                event: n.kind.clone(),
                referral_id: n.referral_id.to_string(),
                reference_code: n.reference_code.clone(),
                handoff_id: if n.handoff_id.is_nil() {
                    String::new()
                } else {
                    n.handoff_id.to_string()
                },
                detail: n.detail.clone(),
                audience: n.audience.clone(),
                created_at: Some(timestamp(n.created_at)),
                read: read.contains(&n.id),
                due_by: n.due_by.map(timestamp),
            })
            .collect(),
        next_page_token,
        redactions: Vec::new(),
    };
    reply(ctx, &principal, &call, Concerning::Nothing, response).await
}

/// Most notifications one MarkNotificationsRead names by id.
const MAX_MARK: usize = 200;

/// MarkNotificationsRead: marks the named notifications (and with `up_to`,
/// every one up to it) read for the calling officer. Only notifications the
/// caller may see are marked; an id it may not see is an invalid argument,
/// the same whether it exists or not.
pub async fn mark_read(
    ctx: &AppContext,
    request: Call<pb::MarkNotificationsReadRequest>,
) -> ServiceResult<Reply<pb::MarkNotificationsReadResponse>> {
    let (principal, call, req) = request.parts();
    let mut v = Violations::new();
    if req.notification_ids.is_empty() && req.up_to.trim().is_empty() {
        v.add(
            "notification_ids",
            "name at least one notification, or set up_to",
        );
    }
    if req.notification_ids.len() > MAX_MARK {
        v.add(
            "notification_ids",
            format!("at most {MAX_MARK} per call (use up_to for more)"),
        );
    }
    let mut ids = Vec::new();
    for (i, id) in req.notification_ids.iter().enumerate() {
        match Uuid::parse_str(id.trim()) {
            Ok(id) => ids.push(id),
            Err(_) => v.add(
                format!("notification_ids[{i}]"),
                "must be a notification id",
            ),
        }
    }
    let up_to = if req.up_to.trim().is_empty() {
        None
    } else {
        v.check(
            "up_to",
            Uuid::parse_str(req.up_to.trim())
                .map(Some)
                .map_err(|_| "must be a notification id"),
        )
        .flatten()
    };
    v.finish(|| Some(()))?;
    let mut targets: Vec<Uuid> = Vec::new();
    if !ids.is_empty() {
        let found: Vec<Uuid> = notification::Entity::find()
            .select_only()
            .column(notification::Column::Id)
            .filter(visible(&principal))
            .filter(notification::Column::Id.is_in(ids.clone()))
            .into_tuple()
            .all(ctx.db())
            .await?;
        let missing: Vec<usize> = ids
            .iter()
            .enumerate()
            .filter(|(_, id)| !found.contains(id))
            .map(|(i, _)| i)
            .collect();
        if !missing.is_empty() {
            let mut v = Violations::new();
            for i in missing {
                v.add(
                    format!("notification_ids[{i}]"),
                    "is not a notification of yours",
                );
            }
            v.finish(|| Some(()))?;
        }
        targets.extend(found);
    }
    if let Some(up_to) = up_to {
        let upto: Vec<Uuid> = notification::Entity::find()
            .select_only()
            .column(notification::Column::Id)
            .filter(visible(&principal))
            .filter(notification::Column::Id.lte(up_to))
            .filter(unread_by(&principal.officer_id))
            .into_tuple()
            .all(ctx.db())
            .await?;
        targets.extend(upto);
    }
    targets.sort();
    targets.dedup();
    let mut marked = 0u64;
    let now = Utc::now();
    for chunk in targets.chunks(500) {
        let rows = chunk.iter().map(|id| read::ActiveModel {
            notification_id: Set(*id),
            officer_id: Set(principal.officer_id.clone()),
            read_at: Set(now),
        });
        marked += read::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([read::Column::NotificationId, read::Column::OfficerId])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(ctx.db())
            .await?;
    }
    let response = pb::MarkNotificationsReadResponse {
        marked: i32::try_from(marked).unwrap_or(i32::MAX),
        redactions: Vec::new(),
    };
    reply(ctx, &principal, &call, Concerning::Nothing, response).await
}

/// Marks `item` of `entries` provided (or not) by `agency`; the item must be listed.
pub fn mark(
    entries: &mut [ChecklistEntry],
    item: &str,
    provided: bool,
    agency: &str,
    now: DateTime<Utc>,
) -> ServiceResult<()> {
    let entry = entries.iter_mut().find(|e| e.item == item).ok_or_else(|| {
        ServiceError::invalid("item", "is not an item of this handoff's checklist")
    })?;
    entry.provided = provided;
    entry.updated_at = Some(now);
    entry.updated_by = Some(agency.to_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checklist_completeness_and_marking() {
        let mut entries = vec![
            ChecklistEntry {
                item: "a".into(),
                provided: false,
                updated_at: None,
                updated_by: None,
            },
            ChecklistEntry {
                item: "b".into(),
                provided: true,
                updated_at: None,
                updated_by: None,
            },
        ];
        assert!(!complete(&entries));
        assert!(!complete(&[]));
        mark(&mut entries, "a", true, "ngo-1", Utc::now()).unwrap();
        assert!(complete(&entries));
        assert_eq!(entries[0].updated_by.as_deref(), Some("ngo-1"));
        assert!(mark(&mut entries, "c", true, "ngo-1", Utc::now()).is_err());
        // The stored form written by routing (item, provided) still reads.
        let stored: Vec<ChecklistEntry> =
            serde_json::from_str(r#"[{"item":"x","provided":false}]"#).unwrap();
        assert_eq!(stored[0].item, "x");
    }
}
