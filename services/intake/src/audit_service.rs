//! AuditService: an auditor reads the audit trail of a referral their agency
//! is party to. The read is itself appended to the audit log.

use refnet_api::v1::{self as pb, audit_service_server::AuditService};
use refnet_core::boundary::{Call, respond};
use refnet_core::{
    AppContext, ServiceResult,
    audit::{self, AuditEntry},
    auth::parse_agency_kind,
    boundary::{Concerning, Reply, reply},
    domain::{ReferralRef, referral::timestamp},
    error::Violations,
};
use tonic::{Request, Response, Status};

use crate::store;

const DEFAULT_PAGE: u64 = 100;
const MAX_PAGE: u64 = 500;

/// The AuditService.
#[derive(Clone)]
pub struct Audit {
    ctx: AppContext,
}

impl Audit {
    /// The service over `ctx`.
    pub fn new(ctx: AppContext) -> Self {
        Self { ctx }
    }

    async fn entries(
        &self,
        request: Call<pb::ListAuditRecordsRequest>,
    ) -> ServiceResult<Reply<pb::ListAuditRecordsResponse>> {
        let (principal, call, req) = request.parts();
        let mut v = Violations::new();
        let reference = v.check("referral", ReferralRef::parse(&req.referral));
        let page_size = v.page_size(req.page_size, DEFAULT_PAGE, MAX_PAGE);
        let after = if req.page_token.is_empty() {
            Some(0)
        } else {
            let seq = self
                .ctx
                .keys()
                .tokens
                .open(&req.page_token)
                .and_then(|raw| String::from_utf8(raw).ok())
                .and_then(|s| {
                    let (agency, seq) = s.split_once('/')?;
                    (agency == principal.agency_id).then(|| seq.parse::<i64>().ok())?
                });
            if seq.is_none() {
                v.add("page_token", "is not a page token for this caller");
            }
            seq
        };
        let (reference, page_size, after) = v.finish(|| Some((reference?, page_size?, after?)))?;
        let referral_id = store::visible_id(&self.ctx, &principal, &reference).await?;
        let rows = audit::list(self.ctx.db(), referral_id, after, page_size + 1).await?;
        let more = rows.len() as u64 > page_size;
        let rows: Vec<_> = rows.into_iter().take(page_size as usize).collect();
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => self
                .ctx
                .keys()
                .tokens
                .seal(format!("{}/{}", principal.agency_id, last.seq).as_bytes()),
            _ => String::new(),
        };
        let records = rows
            .into_iter()
            .map(|r| pb::AuditRecord {
                seq: r.seq,
                officer_id: r.officer_id,
                agency_id: r.agency_id,
                agency_kind: parse_agency_kind(&r.agency_kind).map_or(0, |k| k as i32),
                roles: serde_json::from_str(&r.roles).unwrap_or_default(),
                rpc: r.rpc,
                referral_id: r.referral_id.map(|id| id.to_string()).unwrap_or_default(),
                field_paths: serde_json::from_str(&r.field_paths).unwrap_or_default(),
                occurred_at: Some(timestamp(r.occurred_at)),
                trace_id: r.trace_id.unwrap_or_default(),
            })
            .collect();
        // Reading the audit trail is itself audited.
        self.ctx
            .audit()
            .append(
                self.ctx.db(),
                &principal,
                AuditEntry {
                    rpc: call.rpc.clone(),
                    referral_id: Some(referral_id),
                    field_paths: vec!["audit_log".to_owned()],
                    trace_id: call.trace_id.clone(),
                },
            )
            .await?;
        let response = pb::ListAuditRecordsResponse {
            records,
            next_page_token,
            redactions: Vec::new(),
        };
        reply(&self.ctx, &principal, &call, Concerning::Nothing, response).await
    }
}

#[tonic::async_trait]
impl AuditService for Audit {
    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> Result<Response<pb::ListAuditRecordsResponse>, Status> {
        respond(self.entries(Call::open(request)?).await)
    }
}
