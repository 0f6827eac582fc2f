//! What a handoff carries beyond its state: the decline reason (free text
//! that may name the subject, so sealed under the subject's data key and
//! redacted for each viewer when read), the supporting-documents checklist of
//! assistance applications, and the notifications that escalations and
//! declines send to the agencies that must act on them.

use chrono::{DateTime, Utc};
use prost::Message;
use refnet_api::v1 as pb;
use refnet_core::{
    AppContext, ServiceError, ServiceResult,
    auth::{Principal, Role},
    boundary::{CallInfo, Reply, reply},
    domain::referral::timestamp,
    entities::{handoff, notification},
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

/// Notifications for everyone in the agency.
pub const ALL: &str = "ALL";
/// Notifications for the agency's supervisors.
pub const SUPERVISORS: &str = "SUPERVISORS";

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
    if agency_id.is_empty() {
        return Ok(());
    }
    notification::Entity::insert(notification::ActiveModel {
        id: Set(Uuid::now_v7()),
        agency_id: Set(agency_id.to_owned()),
        audience: Set(audience.to_owned()),
        kind: Set(event.as_str().to_owned()),
        referral_id: Set(row.referral_id),
        reference_code: Set(row.reference_code.clone()),
        handoff_id: Set(row.id),
        detail: Set(detail.to_owned()),
        created_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::columns([
            notification::Column::HandoffId,
            notification::Column::Kind,
            notification::Column::AgencyId,
            notification::Column::Audience,
            notification::Column::Detail,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// ListNotifications: the caller agency's notifications its roles may see, newest first.
pub async fn list_notifications(
    ctx: &AppContext,
    request: tonic::Request<pb::ListNotificationsRequest>,
) -> ServiceResult<Reply<pb::ListNotificationsResponse>> {
    let principal = Principal::of(&request)?.clone();
    principal.require_any(&[Role::Officer, Role::Supervisor, Role::Auditor])?;
    let call = CallInfo::of(&request);
    let req = request.into_inner();
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
    let mut audiences = vec![ALL];
    if principal.roles.contains(&Role::Supervisor) {
        audiences.push(SUPERVISORS);
    }
    let mut q = notification::Entity::find().filter(
        Condition::all()
            .add(notification::Column::AgencyId.eq(principal.agency_id.as_str()))
            .add(notification::Column::Audience.is_in(audiences)),
    );
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
                handoff_id: n.handoff_id.to_string(),
                detail: n.detail.clone(),
                audience: n.audience.clone(),
                created_at: Some(timestamp(n.created_at)),
            })
            .collect(),
        next_page_token,
        redactions: Vec::new(),
    };
    reply(ctx, &principal, &call, None, response).await
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
