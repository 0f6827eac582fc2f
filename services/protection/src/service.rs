//! The WitnessProtectionService handlers.
//!
//! Who may do what: POLICE and PROSECUTION submit (for a referral they are
//! party to) and withdraw their own requests; the WPA takes every other step.
//! The WPA reads every request; a requester reads its own; anyone else gets
//! NOT_FOUND. What a reader sees is then the redaction policy's business: the
//! WPA's own records are class PROTECTION (shown to the WPA only), grounds and
//! assessments SPECIAL, threat sources SUSPECT; a requester also sees only the
//! measures in force it must act on (court measures).

use chrono::Utc;
use prost::Message;
use refnet_api::v1::{self as pb, AgencyKind, ProtectionMeasure};
use refnet_core::boundary::Call;
use refnet_core::states::ProtectionState as S;
use refnet_core::{
    AppContext, ServiceError, ServiceResult, access,
    auth::Principal,
    boundary::{CallInfo, Concerning, Reply, reply},
    domain::{IdempotencyKey, ReferralRef, parse_text, referral::timestamp},
    error::Violations,
    events::{self, EventKind},
    paging, subjects,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;
use uuid::Uuid;

use crate::store::{self, SealedRequest, measure, request};

/// Longest grounds, assessment, analysis, note or details, in characters.
pub(crate) const MAX_TEXT: usize = 5_000;
/// Longest reason or threat-sources text, in characters.
pub(crate) const MAX_SHORT: usize = 2_000;

/// The measures a requester (police, prosecution) must act on in court.
pub const COURT_MEASURES: [ProtectionMeasure; 5] = [
    ProtectionMeasure::InCameraHearing,
    ProtectionMeasure::PseudonymInCourt,
    ProtectionMeasure::VideoLinkTestimony,
    ProtectionMeasure::IdentityDistortion,
    ProtectionMeasure::ReducedRecords,
];

pub(crate) fn measure_list(v: &mut Violations, field: &str, values: &[i32]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, m) in values.iter().enumerate() {
        match ProtectionMeasure::try_from(*m) {
            Ok(measure) if measure != ProtectionMeasure::Unspecified => {
                let name = measure.as_str_name().to_owned();
                if !out.contains(&name) {
                    out.push(name);
                }
            }
            _ => v.add(
                format!("{field}[{i}]"),
                format!("unknown or unspecified measure {m}"),
            ),
        }
    }
    out
}

pub(crate) fn measure_values(json: &str) -> ServiceResult<Vec<i32>> {
    Ok(subjects::from_json::<Vec<String>>(json, "measures")?
        .iter()
        .filter_map(|m| ProtectionMeasure::from_str_name(m))
        .map(|m| m as i32)
        .collect())
}

/// Checks a request id and the version the caller read (both required).
pub(crate) fn request_ref(v: &mut Violations, id: &str, expected_version: i64) -> Option<Uuid> {
    let id = v.check(
        "id",
        Uuid::parse_str(id.trim()).map_err(|_| "must be a protection request id"),
    );
    v.expected_version(expected_version);
    id
}

/// ABORTED unless `row` is still at the version the caller read.
pub(crate) fn expect_version(row: &request::Model, expected: i64) -> ServiceResult<()> {
    refnet_core::error::expect_version("protection request", row.version, expected)
}

/// Another change to the request committed first.
pub(crate) fn concurrent() -> ServiceError {
    refnet_core::error::changed_concurrently("protection request")
}

#[derive(Serialize)]
pub(crate) struct StatePayload<'a> {
    pub(crate) request_id: Uuid,
    pub(crate) referral_id: Uuid,
    pub(crate) state: &'a str,
    pub(crate) version: i64,
}

/// The WitnessProtectionService.
#[derive(Clone)]
pub struct Protection {
    pub(crate) ctx: AppContext,
}

impl Protection {
    /// The service over `ctx`.
    pub fn new(ctx: AppContext) -> Self {
        Self { ctx }
    }

    pub(crate) fn is_wpa(principal: &Principal) -> bool {
        principal.agency_kind == AgencyKind::Wpa
    }

    /// The context the service runs in.
    pub(crate) fn ctx(&self) -> &AppContext {
        &self.ctx
    }

    /// Whether `principal` may read `row`: the WPA, or the requesting agency.
    pub(crate) fn may_read(principal: &Principal, row: &request::Model) -> bool {
        Self::is_wpa(principal) || row.requester_agency_id == principal.agency_id
    }

    /// The list form of `row` for `principal` (no free text, no WPA records).
    pub(crate) async fn list_form(
        &self,
        principal: &Principal,
        row: &request::Model,
    ) -> ServiceResult<pb::ProtectionRequest> {
        self.to_proto(principal, row, false).await
    }

    /// The request `id` if `principal` may read it (the WPA, or the requester); NOT_FOUND otherwise.
    pub(crate) async fn visible(
        &self,
        principal: &Principal,
        id: &str,
    ) -> ServiceResult<request::Model> {
        let id = Uuid::parse_str(id.trim())
            .map_err(|_| ServiceError::invalid("id", "must be a protection request id"))?;
        let row = request::Entity::find_by_id(id)
            .one(self.ctx.db())
            .await?
            .ok_or(ServiceError::NotFound)?;
        if Self::may_read(principal, &row) {
            Ok(row)
        } else {
            Err(ServiceError::NotFound)
        }
    }

    /// The wire form of `row` for `principal`: the WPA's records are filled in
    /// for the WPA only (and the policy drops them for anyone else as well).
    async fn to_proto(
        &self,
        principal: &Principal,
        row: &request::Model,
        full: bool,
    ) -> ServiceResult<pb::ProtectionRequest> {
        let wpa = Self::is_wpa(principal);
        let mut out = pb::ProtectionRequest {
            id: row.id.to_string(),
            referral_id: row.referral_id.to_string(),
            state: row.state.into(),
            version: row.version,
            measures_requested: measure_values(&row.measures_requested)?,
            submitted_at: Some(timestamp(row.submitted_at)),
            reference_code: row.reference_code.clone(),
            requester_agency_id: row.requester_agency_id.clone(),
            urgency: pb::Urgency::from_str_name(&row.urgency).map_or(0, |u| u as i32),
            pseudonym: row.pseudonym.clone().unwrap_or_default(),
            interim_measures: measure_values(&row.interim_measures)?,
            decided_at: row.decided_at.map(timestamp),
            closed_at: row.closed_at.map(timestamp),
            identity_suppressed: refnet_core::protected::is_protected(
                self.ctx.db(),
                row.subject_id,
            )
            .await?,
            assess_by: row.assess_by.map(timestamp),
            decide_by: row.decide_by.map(timestamp),
            escalated: row.escalated.is_some(),
            ..Default::default()
        };
        if !full {
            return Ok(out);
        }
        // Grounds, notes and measure details were sealed under the subject's
        // key: empty once the subject was erased.
        let key = subjects::read_key(self.ctx.db(), self.ctx.keys(), row.referral_id).await?;
        let sealed: SealedRequest =
            subjects::open_or_erased(key.as_ref(), row.id, store::SEALED, &row.sealed_ct)?;
        out.grounds = sealed.grounds;
        out.threat_assessment = sealed.threat_assessment;
        out.threat_sources = sealed.threat_sources;
        out.reason = sealed.reason;
        if wpa {
            out.wpa_notes = sealed
                .wpa_notes
                .iter()
                .map(|n| format!("{} {}: {}", n.at.format("%Y-%m-%d %H:%M"), n.step, n.text))
                .collect::<Vec<_>>()
                .join("\n");
            out.wpa_threat_analysis = sealed.wpa_threat_analysis;
        }
        let measures = measure::Entity::find()
            .filter(measure::Column::RequestId.eq(row.id))
            .order_by_asc(measure::Column::Id)
            .all(self.ctx.db())
            .await?;
        for m in measures {
            let kind = ProtectionMeasure::from_str_name(&m.measure).unwrap_or_default();
            let court_measure = COURT_MEASURES.contains(&kind);
            if !wpa && !court_measure {
                continue;
            }
            let details = if wpa {
                subjects::open_or_erased(key.as_ref(), m.id, store::DETAILS, &m.details_ct)?
            } else {
                String::new()
            };
            out.measures_in_force.push(pb::MeasureInForce {
                measure: kind as i32,
                starts_on: m.starts_on.format("%Y-%m-%d").to_string(),
                ends_on: m
                    .ends_on
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_default(),
                details,
                court_measure,
            });
        }
        Ok(out)
    }

    /// Redacts `row` for `principal` with the subject's identifiers and state.
    pub(crate) async fn request_reply(
        &self,
        principal: &Principal,
        call: &CallInfo,
        row: &request::Model,
    ) -> ServiceResult<Reply<pb::ProtectionRequest>> {
        let message = self.to_proto(principal, row, true).await?;
        reply(
            &self.ctx,
            principal,
            call,
            Concerning::Referral(row.referral_id),
            message,
        )
        .await
    }

    /// SubmitProtectionRequest.
    pub async fn submit(
        &self,
        request: Call<pb::SubmitProtectionRequestRequest>,
    ) -> ServiceResult<Reply<pb::ProtectionRequest>> {
        let (principal, call, req) = request.parts();
        let mut v = Violations::new();
        let reference = v.check("referral_id", ReferralRef::parse(&req.referral_id));
        let key = v.check(
            "idempotency_key",
            IdempotencyKey::parse(&req.idempotency_key),
        );
        let mut required = |field: &str, value: &str, max: usize| {
            let parsed = v.check(field, parse_text(value, max, true));
            if parsed.as_deref() == Some("") {
                v.add(field, "is required");
            }
            parsed
        };
        let grounds = required("grounds", &req.grounds, MAX_TEXT);
        let assessment = required("threat_assessment", &req.threat_assessment, MAX_TEXT);
        let sources = v.check(
            "threat_sources",
            parse_text(&req.threat_sources, MAX_SHORT, true),
        );
        let measures = measure_list(&mut v, "measures", &req.measures);
        if req.measures.is_empty() {
            v.add("measures", "at least one measure is required");
        }
        let urgency = match pb::Urgency::try_from(req.urgency) {
            Ok(u) if u != pb::Urgency::Unspecified => Some(u.as_str_name().to_owned()),
            _ => {
                v.add("urgency", "is required");
                None
            }
        };
        let (reference, key, grounds, assessment, sources, urgency) =
            v.finish(|| Some((reference?, key?, grounds?, assessment?, sources?, urgency?)))?;
        let referral_id =
            access::visible_referral(self.ctx.db(), &principal.agency_id, &reference).await?;
        let mut canonical = req.clone();
        canonical.idempotency_key.clear();
        canonical.referral_id = referral_id.to_string();
        let digest = paging::filter_digest(&canonical.encode_to_vec());
        if let Some(existing) = request::Entity::find()
            .filter(request::Column::RequesterAgencyId.eq(principal.agency_id.as_str()))
            .filter(request::Column::IdempotencyKey.eq(key.as_str()))
            .one(self.ctx.db())
            .await?
        {
            if existing.request_digest != digest {
                return Err(ServiceError::invalid(
                    "idempotency_key",
                    "was already used for a different request; use a new key",
                ));
            }
            return self.request_reply(&principal, &call, &existing).await;
        }
        let wpa = self.ctx.agencies().active_of_kind(AgencyKind::Wpa);
        if wpa.is_empty() {
            return Err(ServiceError::FailedPrecondition(
                "no Witness Protection Agency is registered".into(),
            ));
        }
        let referral = refnet_core::access::referral(self.ctx.db(), referral_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let deadlines = crate::deadlines::DeadlineTable::compiled_in()
            .map_err(|e| ServiceError::internal("protection deadlines", e))?
            .of(&urgency);
        let id = Uuid::now_v7();
        let now = Utc::now();
        let dek = subjects::data_key(self.ctx.db(), self.ctx.keys(), referral_id).await?;
        let sealed = subjects::seal(
            &dek,
            id,
            store::SEALED,
            &SealedRequest {
                grounds,
                threat_assessment: assessment,
                threat_sources: sources,
                ..Default::default()
            },
        )?;
        let row = request::Model {
            id,
            referral_id,
            subject_id: referral.subject_id,
            reference_code: referral.reference_code.clone(),
            requester_agency_id: principal.agency_id.clone(),
            requester_officer: principal.officer_id.clone(),
            idempotency_key: key.as_str().to_owned(),
            request_digest: digest,
            state: S::Submitted,
            version: 1,
            urgency,
            measures_requested: subjects::json(&measures)?,
            interim_measures: "[]".to_owned(),
            sealed_ct: sealed,
            pseudonym: None,
            pseudonym_key: None,
            submitted_at: now,
            decided_at: None,
            closed_at: None,
            updated_at: now,
            assess_by: Some(now + deadlines.assess),
            decide_by: Some(now + deadlines.decide),
            escalated: None,
        };
        let insert = row.clone();
        let actor = principal.clone();
        self.ctx
            .write(move |txn| {
                Box::pin(async move {
                    // One open request per subject: the referral's row is locked
                    // first, so two submissions at once see each other.
                    access::lock_referral(txn, insert.referral_id).await?;
                    if let Some(open) = store::open_request_for(txn, insert.subject_id).await? {
                        return Err(ServiceError::AlreadyExists(format!(
                            "protection request {open} for this subject is still open; \
                         follow it (GetProtectionRequest) or withdraw it first"
                        )));
                    }
                    request::Entity::insert(request::ActiveModel::from(insert.clone()))
                        .exec_without_returning(txn)
                        .await?;
                    // The WPA becomes a party to the referral.
                    for agency in &wpa {
                        access::add_party(txn, insert.referral_id, agency, "PROTECTION").await?;
                    }
                    // Not on the referral's timeline: other parties learn of
                    // protection only when it applies, and then without detail.
                    events::append(
                        txn,
                        EventKind::ProtectionRequested,
                        None,
                        Some(&actor),
                        &StatePayload {
                            request_id: insert.id,
                            referral_id: insert.referral_id,
                            state: S::Submitted.stored(),
                            version: 1,
                        },
                    )
                    .await
                })
            })
            .await?;
        tracing::info!(request_id = %id, reference_code = %row.reference_code, "protection requested");
        self.request_reply(&principal, &call, &row).await
    }

    /// GetProtectionRequest.
    pub async fn get(
        &self,
        request: Call<pb::GetProtectionRequestRequest>,
    ) -> ServiceResult<Reply<pb::ProtectionRequest>> {
        let (principal, call, req) = request.parts();
        let row = self.visible(&principal, &req.id).await?;
        self.request_reply(&principal, &call, &row).await
    }

    /// ListProtectionRequests.
    pub async fn list(
        &self,
        request: Call<pb::ListProtectionRequestsRequest>,
    ) -> ServiceResult<Reply<pb::ListProtectionRequestsResponse>> {
        let (principal, call, req) = request.parts();
        let mut v = Violations::new();
        let page_size = v.page_size(req.page_size, 50, 200);
        let states = v.enum_list("states", &req.states, S::from_wire);
        let reference = if req.referral.trim().is_empty() {
            None
        } else {
            v.check("referral", ReferralRef::parse(&req.referral))
        };
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
        let mut q = request::Entity::find();
        if !Self::is_wpa(&principal) {
            q = q.filter(request::Column::RequesterAgencyId.eq(principal.agency_id.as_str()));
        }
        if !states.is_empty() {
            q = q.filter(request::Column::State.is_in(states));
        }
        match &reference {
            Some(ReferralRef::Id(id)) => q = q.filter(request::Column::ReferralId.eq(*id)),
            Some(ReferralRef::Code(code)) => {
                q = q.filter(request::Column::ReferenceCode.eq(code.as_str()));
            }
            None => {}
        }
        if let Some(last) = cursor {
            q = q.filter(request::Column::Id.lt(last));
        }
        let mut rows = q
            .order_by_desc(request::Column::Id)
            .limit(page_size + 1)
            .all(self.ctx.db())
            .await?;
        let more = rows.len() as u64 > page_size;
        rows.truncate(page_size as usize);
        let mut requests = Vec::with_capacity(rows.len());
        for row in &rows {
            requests.push(self.to_proto(&principal, row, false).await?);
        }
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => {
                paging::seal(self.ctx.keys(), &principal.agency_id, &digest, last.id)
            }
            _ => String::new(),
        };
        let response = pb::ListProtectionRequestsResponse {
            requests,
            next_page_token,
            redactions: Vec::new(),
        };
        reply(&self.ctx, &principal, &call, Concerning::Nothing, response).await
    }
}
