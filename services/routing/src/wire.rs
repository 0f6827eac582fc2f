//! The wire form of a stored handoff.

use refnet_api::v1 as pb;
use refnet_core::{ServiceResult, auth::parse_agency_kind, domain::referral::timestamp};

use crate::decisions;
use crate::entities::handoff;

/// The wire form of a handoff (without its decline reason, which
/// `Routing::handoff_reply` adds where the contract carries it).
pub fn to_proto(h: &handoff::Model) -> ServiceResult<pb::Handoff> {
    let checklist = decisions::checklist(h)?;
    Ok(pb::Handoff {
        id: h.id.to_string(),
        referral_id: h.referral_id.to_string(),
        reference_code: h.reference_code.clone(),
        to_agency_id: h.to_agency_id.clone(),
        to_agency_kind: parse_agency_kind(&h.to_agency_kind).map_or(0, |k| k as i32),
        purpose: h.purpose.clone(),
        state: h.state.into(),
        version: h.version,
        acknowledge_by: Some(timestamp(h.acknowledge_by)),
        rule_id: h.rule_id.clone(),
        rule_set_version: h.rule_set_version.clone(),
        decline_reason: String::new(),
        redactions: Vec::new(),
        decide_by: h.decide_by.map(timestamp),
        checklist_complete: decisions::complete(&checklist),
        checklist: decisions::checklist_proto(&checklist),
        from_agency_id: h.from_agency_id.clone(),
    })
}
