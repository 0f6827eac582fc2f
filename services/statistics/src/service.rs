//! The StatisticsService handlers.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use refnet_api::v1::{self as pb, statistics_service_server::StatisticsService};
use refnet_core::boundary::{Call, respond};
use refnet_core::{
    AppContext, ServiceError, ServiceResult,
    auth::{Principal, Role},
    boundary::{Concerning, Reply, reply},
    entities::{event, referral, referral_party},
    error::Violations,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    aggregate::aggregate,
    records::{self, Scope},
};

/// Most dimensions one query may group by.
const MAX_DIMENSIONS: usize = 4;

/// The StatisticsService.
#[derive(Clone)]
pub struct Statistics {
    ctx: AppContext,
}

impl Statistics {
    /// The service over `ctx`.
    pub fn new(ctx: AppContext) -> Self {
        Self { ctx }
    }

    fn k(&self) -> i64 {
        i64::from(self.ctx.config().statistics.k.max(2))
    }
}

/// What `principal` may count: the secretariat's officers and supervisors
/// every referral, any other agency's supervisors the referrals their agency
/// is party to; anyone else is refused.
pub fn scope_of(principal: &Principal) -> ServiceResult<Scope> {
    if principal.agency_kind == pb::AgencyKind::Secretariat
        && principal.has_any(&[Role::Officer, Role::Supervisor])
    {
        Ok(Scope::All)
    } else if principal.roles.contains(&Role::Supervisor) {
        Ok(Scope::PartyOf(principal.agency_id.clone()))
    } else {
        Err(ServiceError::PermissionDenied(
            "statistics are for the secretariat and agency supervisors".into(),
        ))
    }
}

fn timestamp(
    v: &mut Violations,
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Option<DateTime<Utc>> {
    let t = t?;
    let parsed = u32::try_from(t.nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(t.seconds, n));
    if parsed.is_none() {
        v.add(field, "is not a valid timestamp");
    }
    parsed
}

fn median_hours(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

impl Statistics {
    async fn aggregates(
        &self,
        request: Call<pb::GetAggregatesRequest>,
    ) -> ServiceResult<Reply<pb::GetAggregatesResponse>> {
        let (principal, call, req) = request.parts();
        let scope = scope_of(&principal)?;
        let mut v = Violations::new();
        let mut dims = Vec::new();
        for (i, raw) in req.group_by.iter().enumerate() {
            match pb::Dimension::try_from(*raw) {
                Ok(pb::Dimension::Unspecified) | Err(_) => {
                    v.add(
                        format!("group_by[{i}]"),
                        format!("unknown or unspecified dimension {raw}"),
                    );
                }
                Ok(d) if dims.contains(&d) => v.add(format!("group_by[{i}]"), "is repeated"),
                Ok(d) => dims.push(d),
            }
        }
        if req.group_by.len() > MAX_DIMENSIONS {
            v.add("group_by", format!("at most {MAX_DIMENSIONS} dimensions"));
        }
        let after = timestamp(&mut v, "filed_after", req.filed_after.as_ref());
        let before = timestamp(&mut v, "filed_before", req.filed_before.as_ref());
        v.finish(|| Some(()))?;
        let k = self.k();
        let records = records::load(self.ctx.db(), &scope, after, before).await?;
        let total = i64::try_from(records.len()).unwrap_or(i64::MAX);
        let cells = aggregate(&records, &dims, k);
        let mut cells: Vec<pb::AggregateCell> = cells
            .into_iter()
            .map(|(values, cell)| pb::AggregateCell {
                values,
                count: if cell.suppressed { 0 } else { cell.count },
                suppressed: cell.suppressed,
            })
            .collect();
        cells.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.values.cmp(&b.values)));
        let total_suppressed = total < k;
        let response = pb::GetAggregatesResponse {
            group_by: dims.iter().map(|d| *d as i32).collect(),
            cells: if dims.is_empty() { Vec::new() } else { cells },
            total: if total_suppressed { 0 } else { total },
            total_suppressed,
            k: i32::try_from(k).unwrap_or(i32::MAX),
            redactions: Vec::new(),
        };
        reply(&self.ctx, &principal, &call, Concerning::Nothing, response).await
    }

    async fn handoff_metrics(
        &self,
        request: Call<pb::GetHandoffMetricsRequest>,
    ) -> ServiceResult<Reply<pb::GetHandoffMetricsResponse>> {
        let (principal, call, req) = request.parts();
        let scope = scope_of(&principal)?;
        let mut v = Violations::new();
        let after = timestamp(&mut v, "created_after", req.created_after.as_ref());
        let before = timestamp(&mut v, "created_before", req.created_before.as_ref());
        v.finish(|| Some(()))?;
        let k = self.k();
        let db = self.ctx.db();

        use crate::records::handoff_times as handoff;
        let mut q = handoff::Entity::find();
        if let Scope::PartyOf(agency) = &scope {
            let visible = referral_party::Entity::find()
                .select_only()
                .column(referral_party::Column::ReferralId)
                .filter(referral_party::Column::AgencyId.eq(agency.as_str()))
                .into_tuple::<Uuid>()
                .all(db)
                .await?;
            q = q.filter(handoff::Column::ReferralId.is_in(visible));
        }
        if let Some(after) = after {
            q = q.filter(handoff::Column::CreatedAt.gte(after));
        }
        if let Some(before) = before {
            q = q.filter(handoff::Column::CreatedAt.lt(before));
        }
        let handoffs = q.all(db).await?;
        let referral_ids: Vec<Uuid> = handoffs.iter().map(|h| h.referral_id).collect();
        let urgencies: HashMap<Uuid, String> = referral::Entity::find()
            .select_only()
            .column(referral::Column::Id)
            .column(referral::Column::Urgency)
            .filter(referral::Column::Id.is_in(referral_ids))
            .into_tuple::<(Uuid, String)>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        // When each handoff was accepted, and which were escalated, from the event log.
        let mut accepted: HashMap<String, DateTime<Utc>> = HashMap::new();
        let mut escalated: std::collections::HashSet<String> = std::collections::HashSet::new();
        let events = event::Entity::find()
            .filter(event::Column::Kind.is_in(["HandoffAccepted", "HandoffEscalated"]))
            .all(db)
            .await?;
        for ev in events {
            let payload: serde_json::Value = serde_json::from_str(&ev.payload).unwrap_or_default();
            let Some(id) = payload.get("handoff_id").and_then(|v| v.as_str()) else {
                continue;
            };
            if ev.kind == "HandoffAccepted" {
                accepted.entry(id.to_owned()).or_insert(ev.occurred_at);
            } else {
                escalated.insert(id.to_owned());
            }
        }
        #[derive(Default)]
        struct Group {
            n: i64,
            to_ack: Vec<f64>,
            to_accept: Vec<f64>,
            overdue: i64,
        }
        let hours = |from: DateTime<Utc>, to: DateTime<Utc>| {
            (to - from).num_milliseconds() as f64 / 3_600_000.0
        };
        let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
        for h in &handoffs {
            let urgency = urgencies.get(&h.referral_id).cloned().unwrap_or_default();
            let g = groups
                .entry((h.to_agency_kind.clone(), urgency))
                .or_default();
            g.n += 1;
            if let Some(at) = h.acknowledged_at {
                g.to_ack.push(hours(h.created_at, at));
            }
            let id = h.id.to_string();
            if let Some(at) = accepted.get(&id) {
                g.to_accept.push(hours(h.created_at, *at));
            }
            if escalated.contains(&id) {
                g.overdue += 1;
            }
        }
        let metrics = groups
            .into_iter()
            .map(|((kind, urgency), g)| {
                let suppressed = g.n < k;
                let kind = refnet_core::auth::parse_agency_kind(&kind).map_or(0, |k| k as i32);
                let urgency = pb::Urgency::from_str_name(&urgency).map_or(0, |u| u as i32);
                if suppressed {
                    return pb::HandoffMetric {
                        to_agency_kind: kind,
                        urgency,
                        suppressed: true,
                        ..Default::default()
                    };
                }
                pb::HandoffMetric {
                    to_agency_kind: kind,
                    urgency,
                    handoffs: g.n,
                    suppressed: false,
                    median_hours_to_acknowledge: median_hours(g.to_ack),
                    median_hours_to_accept: median_hours(g.to_accept),
                    overdue_share: g.overdue as f64 / g.n as f64,
                }
            })
            .collect();
        let response = pb::GetHandoffMetricsResponse {
            metrics,
            k: i32::try_from(k).unwrap_or(i32::MAX),
            redactions: Vec::new(),
        };
        reply(&self.ctx, &principal, &call, Concerning::Nothing, response).await
    }
}

impl Statistics {
    async fn export(
        &self,
        request: Call<pb::ExportHtcdsRequest>,
    ) -> ServiceResult<Reply<pb::ExportHtcdsResponse>> {
        let (principal, call, req) = request.parts();
        if !matches!(scope_of(&principal)?, Scope::All) {
            return Err(ServiceError::PermissionDenied(
                "the case-level export is for the secretariat".into(),
            ));
        }
        let mut v = Violations::new();
        let after = timestamp(&mut v, "filed_after", req.filed_after.as_ref());
        v.finish(|| Some(()))?;
        let k = self.k();
        let export =
            crate::export_htcds(self.ctx.db(), after, u32::try_from(k).unwrap_or(u32::MAX)).await?;
        let response = pb::ExportHtcdsResponse {
            columns: crate::export::COLUMNS
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
            records: export
                .rows
                .into_iter()
                .map(|values| pb::HtcdsRecord { values })
                .collect(),
            level: i32::from(export.level),
            dropped: i64::try_from(export.dropped).unwrap_or(i64::MAX),
            k: i32::try_from(k).unwrap_or(i32::MAX),
            redactions: Vec::new(),
        };
        reply(&self.ctx, &principal, &call, Concerning::Nothing, response).await
    }
}

#[tonic::async_trait]
impl StatisticsService for Statistics {
    async fn export_htcds(
        &self,
        request: Request<pb::ExportHtcdsRequest>,
    ) -> Result<Response<pb::ExportHtcdsResponse>, Status> {
        respond(self.export(Call::open(request)?).await)
    }

    async fn get_aggregates(
        &self,
        request: Request<pb::GetAggregatesRequest>,
    ) -> Result<Response<pb::GetAggregatesResponse>, Status> {
        respond(self.aggregates(Call::open(request)?).await)
    }

    async fn get_handoff_metrics(
        &self,
        request: Request<pb::GetHandoffMetricsRequest>,
    ) -> Result<Response<pb::GetHandoffMetricsResponse>, Status> {
        respond(self.handoff_metrics(Call::open(request)?).await)
    }
}
