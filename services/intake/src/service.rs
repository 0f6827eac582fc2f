//! The IntakeService handlers: convert the request into domain types (every
//! bad field reported at once), check the caller's role, and call the store.

use prost::Message;
use refnet_api::v1::{self as pb, intake_service_server::IntakeService};
use refnet_core::boundary::{Call, respond};
use refnet_core::{
    AppContext, ServiceResult,
    boundary::{Concerning, Reply, reply},
    crypto::sha256,
    domain::{IdempotencyKey, ReferralRef, canonical_county, referral::ReferralContent},
    error::Violations,
    paging,
    states::ReferralStatus,
};
use tonic::{Request, Response, Status};

use crate::{
    changes::{self, ConsentChange},
    filing::{self, FileCommand},
    listing::{self, ListFilter},
    store,
};

/// Default and largest page sizes of `ListReferrals`.
const DEFAULT_PAGE: u64 = 50;
const MAX_PAGE: u64 = 200;

/// The IntakeService.
#[derive(Clone)]
pub struct Intake {
    ctx: AppContext,
}

impl Intake {
    /// The service over `ctx`.
    pub fn new(ctx: AppContext) -> Self {
        Self { ctx }
    }
}

fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

fn referral_ref(v: &mut Violations, field: &str, raw: &str) -> Option<ReferralRef> {
    v.check(field, ReferralRef::parse(raw))
}

fn expected_version(v: &mut Violations, raw: i64) -> Option<i64> {
    v.expected_version(raw)
}

fn filter_digest(req: &pb::ListReferralsRequest) -> String {
    let mut canonical = req.clone();
    canonical.page_token.clear();
    canonical.page_size = 0;
    paging::filter_digest(&canonical.encode_to_vec())
}

fn timestamp(
    v: &mut Violations,
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let t = t?;
    let parsed = u32::try_from(t.nanos)
        .ok()
        .and_then(|n| chrono::DateTime::from_timestamp(t.seconds, n));
    if parsed.is_none() {
        v.add(field, "is not a valid timestamp");
    }
    parsed
}

/// The proto name of a specified enum value, for a filter on a stored column.
fn proto_name<E: TryFrom<i32> + Copy>(
    raw: i32,
    name: impl Fn(E) -> &'static str,
) -> Option<String> {
    (raw != 0)
        .then(|| E::try_from(raw).ok())
        .flatten()
        .map(|e| name(e).to_owned())
}

impl Intake {
    async fn file(
        &self,
        request: Call<pb::FileReferralRequest>,
    ) -> ServiceResult<Reply<pb::FileReferralResponse>> {
        let (principal, call, req) = request.parts();
        let mut v = Violations::new();
        let key = v.check(
            "idempotency_key",
            IdempotencyKey::parse(&req.idempotency_key),
        );
        let content = ReferralContent::from_draft(&mut v, "draft", req.draft.as_ref(), today());
        let (key, content) = v.finish(|| Some((key?, content?)))?;
        let digest = sha256(&req.draft.unwrap_or_default().encode_to_vec());
        let filed = filing::file(
            &self.ctx,
            &principal,
            FileCommand {
                idempotency_key: key.as_str().to_owned(),
                request_digest: digest,
                content,
            },
        )
        .await?;
        let response = pb::FileReferralResponse {
            referral: Some(filed.referral),
            replayed: filed.replayed,
            possible_duplicates: filed.possible_duplicates,
            redactions: Vec::new(),
        };
        reply(
            &self.ctx,
            &principal,
            &call,
            Concerning::Subject(&filed.subject),
            response,
        )
        .await
    }

    async fn get(
        &self,
        request: Call<pb::GetReferralRequest>,
    ) -> ServiceResult<Reply<pb::GetReferralResponse>> {
        let (principal, call, req) = request.parts();
        let mut v = Violations::new();
        let reference = referral_ref(&mut v, "referral", &req.referral);
        let reference = v.finish(|| reference)?;
        let loaded = store::get(&self.ctx, &principal, &reference).await?;
        let response = pb::GetReferralResponse {
            referral: Some(loaded.referral),
            redactions: Vec::new(),
        };
        reply(
            &self.ctx,
            &principal,
            &call,
            Concerning::Subject(&loaded.subject),
            response,
        )
        .await
    }

    async fn list(
        &self,
        request: Call<pb::ListReferralsRequest>,
    ) -> ServiceResult<Reply<pb::ListReferralsResponse>> {
        let (principal, call, req) = request.parts();
        let mut v = Violations::new();
        let page_size = v.page_size(req.page_size, DEFAULT_PAGE, MAX_PAGE);
        let statuses = v.enum_list("statuses", &req.statuses, ReferralStatus::from_wire);
        let urgencies = v.enum_list("urgencies", &req.urgencies, |r| {
            proto_name(r, |e: pb::Urgency| e.as_str_name())
        });
        let county = if req.county.trim().is_empty() {
            None
        } else {
            let c = canonical_county(&req.county).map(str::to_owned);
            if c.is_none() {
                v.add("county", "must be one of Kenya's 47 counties");
            }
            c
        };
        let filing_agency_id =
            (!req.filing_agency_id.is_empty()).then(|| req.filing_agency_id.clone());
        if req.filing_agency_id.len() > 64 {
            v.add("filing_agency_id", "is too long");
        }
        let filed_after = timestamp(&mut v, "filed_after", req.filed_after.as_ref());
        let filed_before = timestamp(&mut v, "filed_before", req.filed_before.as_ref());
        let digest = filter_digest(&req);
        let cursor = paging::resume(
            &mut v,
            self.ctx.keys(),
            &req.page_token,
            &principal.agency_id,
            &digest,
        );
        let page_size = v.finish(|| page_size)?;
        let filter = ListFilter {
            statuses,
            urgencies,
            county,
            filing_agency_id,
            filed_after,
            filed_before,
        };
        let (rows, more) = listing::list(&self.ctx, &principal, &filter, cursor, page_size).await?;
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => {
                paging::seal(self.ctx.keys(), &principal.agency_id, &digest, last.id)
            }
            _ => String::new(),
        };
        let response = pb::ListReferralsResponse {
            referrals: rows.iter().map(store::to_summary).collect(),
            next_page_token,
            redactions: Vec::new(),
        };
        // Summaries carry no subject detail; the policy still applies per class.
        reply(&self.ctx, &principal, &call, Concerning::Nothing, response).await
    }

    async fn amend(
        &self,
        request: Call<pb::AmendReferralRequest>,
    ) -> ServiceResult<Reply<pb::AmendReferralResponse>> {
        let (principal, call, req) = request.parts();
        let mut v = Violations::new();
        let reference = referral_ref(&mut v, "referral", &req.referral);
        let version = expected_version(&mut v, req.expected_version);
        let content = ReferralContent::from_draft(&mut v, "draft", req.draft.as_ref(), today());
        let (reference, version, content) = v.finish(|| Some((reference?, version?, content?)))?;
        let loaded = changes::amend(&self.ctx, &principal, reference, version, content).await?;
        let response = pb::AmendReferralResponse {
            referral: Some(loaded.referral),
            redactions: Vec::new(),
        };
        reply(
            &self.ctx,
            &principal,
            &call,
            Concerning::Subject(&loaded.subject),
            response,
        )
        .await
    }

    async fn give_consent(
        &self,
        request: Call<pb::RecordConsentRequest>,
    ) -> ServiceResult<Reply<pb::RecordConsentResponse>> {
        let (principal, call, req) = request.parts();
        let mut v = Violations::new();
        let reference = referral_ref(&mut v, "referral", &req.referral);
        let version = expected_version(&mut v, req.expected_version);
        if req.consent.is_none() {
            v.add("consent", "is required");
        }
        let (reference, version, consent) =
            v.finish(|| Some((reference?, version?, req.consent?)))?;
        let loaded = changes::change_consent(
            &self.ctx,
            &principal,
            reference,
            version,
            ConsentChange::Record(consent),
        )
        .await?;
        let response = pb::RecordConsentResponse {
            referral: Some(loaded.referral),
            redactions: Vec::new(),
        };
        reply(
            &self.ctx,
            &principal,
            &call,
            Concerning::Subject(&loaded.subject),
            response,
        )
        .await
    }

    async fn take_back_consent(
        &self,
        request: Call<pb::WithdrawConsentRequest>,
    ) -> ServiceResult<Reply<pb::WithdrawConsentResponse>> {
        let (principal, call, req) = request.parts();
        let mut v = Violations::new();
        let reference = referral_ref(&mut v, "referral", &req.referral);
        let version = expected_version(&mut v, req.expected_version);
        let kinds = v.enum_list("agency_kinds", &req.agency_kinds, |r| {
            proto_name(r, |e: pb::AgencyKind| e.as_str_name())
        });
        let (reference, version) = v.finish(|| Some((reference?, version?)))?;
        let loaded = changes::change_consent(
            &self.ctx,
            &principal,
            reference,
            version,
            ConsentChange::Withdraw(kinds),
        )
        .await?;
        let response = pb::WithdrawConsentResponse {
            referral: Some(loaded.referral),
            redactions: Vec::new(),
        };
        reply(
            &self.ctx,
            &principal,
            &call,
            Concerning::Subject(&loaded.subject),
            response,
        )
        .await
    }
}

impl Intake {
    async fn erase(
        &self,
        request: Call<pb::EraseSubjectRequest>,
    ) -> ServiceResult<Reply<pb::EraseSubjectResponse>> {
        let (principal, call, req) = request.parts();
        // The role first: a caller who may never erase learns nothing of the referral.
        let mut v = Violations::new();
        let reference = referral_ref(&mut v, "referral", &req.referral);
        let ground = match pb::ErasureGround::try_from(req.ground) {
            Ok(pb::ErasureGround::Unspecified) => {
                v.add("ground", "is required");
                None
            }
            Ok(pb::ErasureGround::Retention) => {
                v.add(
                    "ground",
                    "RETENTION is the retention worker's; give the caller's ground",
                );
                None
            }
            Ok(g) => Some(g),
            Err(_) => {
                v.add("ground", format!("unknown value {}", req.ground));
                None
            }
        };
        let (reference, ground) = v.finish(|| Some((reference?, ground?)))?;
        let (id, already_erased) = crate::erase::erase_for(
            &self.ctx,
            &principal,
            &call.rpc,
            call.trace_id.clone(),
            &reference,
            ground,
        )
        .await?;
        let loaded = store::get(&self.ctx, &principal, &ReferralRef::Id(id)).await?;
        let response = pb::EraseSubjectResponse {
            referral: Some(loaded.referral),
            already_erased,
            redactions: Vec::new(),
        };
        reply(
            &self.ctx,
            &principal,
            &call,
            Concerning::Subject(&loaded.subject),
            response,
        )
        .await
    }
}

#[tonic::async_trait]
impl IntakeService for Intake {
    async fn erase_subject(
        &self,
        request: Request<pb::EraseSubjectRequest>,
    ) -> Result<Response<pb::EraseSubjectResponse>, Status> {
        respond(self.erase(Call::open(request)?).await)
    }

    async fn file_referral(
        &self,
        request: Request<pb::FileReferralRequest>,
    ) -> Result<Response<pb::FileReferralResponse>, Status> {
        respond(self.file(Call::open(request)?).await)
    }

    async fn get_referral(
        &self,
        request: Request<pb::GetReferralRequest>,
    ) -> Result<Response<pb::GetReferralResponse>, Status> {
        respond(self.get(Call::open(request)?).await)
    }

    async fn list_referrals(
        &self,
        request: Request<pb::ListReferralsRequest>,
    ) -> Result<Response<pb::ListReferralsResponse>, Status> {
        respond(self.list(Call::open(request)?).await)
    }

    async fn amend_referral(
        &self,
        request: Request<pb::AmendReferralRequest>,
    ) -> Result<Response<pb::AmendReferralResponse>, Status> {
        respond(self.amend(Call::open(request)?).await)
    }

    async fn record_consent(
        &self,
        request: Request<pb::RecordConsentRequest>,
    ) -> Result<Response<pb::RecordConsentResponse>, Status> {
        respond(self.give_consent(Call::open(request)?).await)
    }

    async fn withdraw_consent(
        &self,
        request: Request<pb::WithdrawConsentRequest>,
    ) -> Result<Response<pb::WithdrawConsentResponse>, Status> {
        respond(self.take_back_consent(Call::open(request)?).await)
    }
}
