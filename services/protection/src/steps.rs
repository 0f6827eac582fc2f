//! The WPA's steps on a protection request, as a state machine (domain.md:
//! `SUBMITTED -> UNDER_ASSESSMENT -> INTERIM_MEASURES | ADMITTED | DECLINED`,
//! `ADMITTED -> ACTIVE -> CLOSED`, `WITHDRAWN` by the requester), and the
//! handlers that take them: every step but `RecordMeasure`, the pseudonym a
//! protected witness is known by, and the measures in force.

use chrono::{NaiveDate, Utc};
use refnet_api::v1::{self as pb, ProtectionMeasure};
use refnet_core::boundary::Call;
use refnet_core::states::ProtectionState as S;
pub use refnet_core::states::{Lifecycle, check};
use refnet_core::{
    ServiceError, ServiceResult,
    auth::Principal,
    boundary::Reply,
    domain::{new_pseudonym, parse_pseudonym, parse_text, pseudonym_key},
    error::Violations,
    events::EventKind,
    subjects,
    versioned::{self, Appended},
};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::{
    service::{
        MAX_SHORT, MAX_TEXT, Protection, StatePayload, concurrent, expect_version, measure_list,
        request_ref,
    },
    store::{self, Note, SealedRequest, measure, request},
};

/// A step on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The requester withdraws it.
    Withdraw,
    /// The WPA starts assessing it.
    BeginAssessment,
    /// The WPA protects the witness at once, before deciding.
    GrantInterimMeasures,
    /// The WPA admits the witness to the programme.
    Admit,
    /// The WPA declines it.
    Decline,
    /// The WPA ends protection.
    Close,
}

impl Lifecycle for Step {
    type State = S;
    const WHAT: &'static str = "protection request";

    fn name(self) -> &'static str {
        match self {
            Self::Withdraw => "WithdrawProtectionRequest",
            Self::BeginAssessment => "BeginAssessment",
            Self::GrantInterimMeasures => "GrantInterimMeasures",
            Self::Admit => "AdmitToProgramme",
            Self::Decline => "DeclineRequest",
            Self::Close => "CloseProtection",
        }
    }

    fn from(self) -> &'static [S] {
        match self {
            Self::Withdraw => &[S::Submitted, S::UnderAssessment],
            Self::BeginAssessment => &[S::Submitted],
            Self::GrantInterimMeasures => &[S::UnderAssessment],
            Self::Admit | Self::Decline => &[S::UnderAssessment, S::InterimMeasures],
            Self::Close => &[S::InterimMeasures, S::Admitted, S::Active],
        }
    }

    fn target(self) -> S {
        match self {
            Self::Withdraw => S::Withdrawn,
            Self::BeginAssessment => S::UnderAssessment,
            Self::GrantInterimMeasures => S::InterimMeasures,
            Self::Admit => S::Admitted,
            Self::Decline => S::Declined,
            Self::Close => S::Closed,
        }
    }
}

impl Protection {
    /// Every step but RecordMeasure.
    pub async fn step(
        &self,
        request: Call<pb::ProtectionStepRequest>,
        step: Step,
    ) -> ServiceResult<Reply<pb::ProtectionRequest>> {
        let (principal, call, req) = request.parts();
        let mut v = Violations::new();
        let id = request_ref(&mut v, &req.id, req.expected_version);
        let only = |v: &mut Violations, field: &str, set: bool, allowed: &[Step]| {
            if set && !allowed.contains(&step) {
                v.add(field, format!("does not apply to {}", step.name()));
            }
        };
        let wpa_steps = [
            Step::BeginAssessment,
            Step::GrantInterimMeasures,
            Step::Admit,
            Step::Decline,
            Step::Close,
        ];
        only(&mut v, "notes", !req.notes.trim().is_empty(), &wpa_steps);
        only(
            &mut v,
            "threat_analysis",
            !req.threat_analysis.trim().is_empty(),
            &[
                Step::BeginAssessment,
                Step::GrantInterimMeasures,
                Step::Admit,
            ],
        );
        only(
            &mut v,
            "measures",
            !req.measures.is_empty(),
            &[Step::GrantInterimMeasures],
        );
        only(
            &mut v,
            "pseudonym",
            !req.pseudonym.trim().is_empty(),
            &[Step::Admit],
        );
        only(
            &mut v,
            "restore_identity",
            req.restore_identity,
            &[Step::Decline, Step::Close],
        );
        let notes = v.check("notes", parse_text(&req.notes, MAX_TEXT, true));
        let analysis = v.check(
            "threat_analysis",
            parse_text(&req.threat_analysis, MAX_TEXT, true),
        );
        let reason = v.check("reason", parse_text(&req.reason, MAX_SHORT, true));
        if step == Step::Decline && reason.as_deref() == Some("") {
            v.add("reason", "is required to decline");
        }
        let measures = measure_list(&mut v, "measures", &req.measures);
        if step == Step::GrantInterimMeasures && req.measures.is_empty() {
            v.add("measures", "at least one interim measure is required");
        }
        let chosen = if req.pseudonym.trim().is_empty() {
            Some(None)
        } else {
            v.check("pseudonym", parse_pseudonym(&req.pseudonym))
                .map(Some)
        };
        let (id, notes, analysis, reason, chosen) =
            v.finish(|| Some((id?, notes?, analysis?, reason?, chosen?)))?;

        let row = request::Entity::find_by_id(id)
            .one(self.ctx.db())
            .await?
            .ok_or(ServiceError::NotFound)?;
        if step == Step::Withdraw && row.requester_agency_id != principal.agency_id {
            return Err(ServiceError::NotFound);
        }
        expect_version(&row, req.expected_version)?;
        let to = check(row.state, step)?;

        // The pseudonym: kept from interim measures, chosen by the WPA, or generated.
        let pseudonym = match step {
            Step::GrantInterimMeasures | Step::Admit => {
                let wanted = match (&chosen, &row.pseudonym) {
                    (Some(p), _) => p.clone(),
                    (None, Some(existing)) => existing.clone(),
                    (None, None) => self.unused_pseudonym().await?,
                };
                let taken = request::Entity::find()
                    .filter(request::Column::PseudonymKey.eq(pseudonym_key(&wanted)))
                    .filter(request::Column::Id.ne(row.id))
                    .one(self.ctx.db())
                    .await?;
                if taken.is_some() {
                    return Err(ServiceError::invalid(
                        "pseudonym",
                        "is already in use; choose another",
                    ));
                }
                Some(wanted)
            }
            _ => row.pseudonym.clone(),
        };

        let key = subjects::data_key(self.ctx.db(), self.ctx.keys(), row.referral_id).await?;
        let mut sealed: SealedRequest =
            subjects::open(&key, row.id, store::SEALED, &row.sealed_ct)?;
        let now = Utc::now();
        if !notes.is_empty() {
            sealed.wpa_notes.push(Note {
                at: now,
                step: step.name().to_owned(),
                text: notes,
            });
        }
        if !analysis.is_empty() {
            sealed.wpa_threat_analysis = analysis;
        }
        if !reason.is_empty() {
            sealed.reason = reason;
        }
        let sealed_ct = subjects::seal(&key, row.id, store::SEALED, &sealed)?;
        let protect = matches!(step, Step::GrantInterimMeasures | Step::Admit);
        let lift = matches!(step, Step::Decline | Step::Close) && req.restore_identity;
        let mut changes = request::ActiveModel {
            state: Set(to),
            sealed_ct: Set(sealed_ct),
            ..Default::default()
        };
        match step {
            Step::GrantInterimMeasures => {
                changes.interim_measures = Set(subjects::json(&measures)?);
                changes.decided_at = Set(Some(now));
            }
            Step::Admit | Step::Decline => changes.decided_at = Set(Some(now)),
            Step::Withdraw | Step::Close => changes.closed_at = Set(Some(now)),
            Step::BeginAssessment => {}
        }
        if step == Step::Decline {
            changes.closed_at = Set(Some(now));
        }
        if protect {
            changes.pseudonym = Set(pseudonym.clone());
            changes.pseudonym_key = Set(pseudonym.as_deref().map(pseudonym_key));
        }
        let actor = principal.clone();
        let (request_id, referral_id, subject_id, version) =
            (row.id, row.referral_id, row.subject_id, row.version);
        let updated = self
            .ctx
            .write(move |txn| {
                Box::pin(async move {
                    let Some(updated) =
                        state_change(txn, &actor, request_id, referral_id, version, changes, to)
                            .await?
                    else {
                        return Ok(None);
                    };
                    if let (true, Some(p)) = (protect, pseudonym.as_deref()) {
                        refnet_core::protected::protect(txn, subject_id, p).await?;
                    }
                    if let (true, Some(p)) = (lift, pseudonym.as_deref()) {
                        refnet_core::protected::lift(txn, p).await?;
                    }
                    Ok(Some(updated))
                })
            })
            .await?
            .ok_or_else(concurrent)?;
        tracing::info!(request_id = %updated.id, step = step.name(), state = %to, "protection request step");
        self.request_reply(&principal, &call, &updated).await
    }

    /// A generated pseudonym no request uses yet.
    async fn unused_pseudonym(&self) -> ServiceResult<String> {
        for _ in 0..8 {
            let candidate = new_pseudonym();
            let taken = request::Entity::find()
                .filter(request::Column::PseudonymKey.eq(pseudonym_key(&candidate)))
                .one(self.ctx.db())
                .await?;
            if taken.is_none() {
                return Ok(candidate);
            }
        }
        Err(ServiceError::Internal(
            "could not generate an unused pseudonym".into(),
        ))
    }

    /// RecordMeasure.
    pub async fn record_measure(
        &self,
        request: Call<pb::RecordMeasureRequest>,
    ) -> ServiceResult<Reply<pb::ProtectionRequest>> {
        let (principal, call, req) = request.parts();
        let mut v = Violations::new();
        let id = request_ref(&mut v, &req.id, req.expected_version);
        let kind = match ProtectionMeasure::try_from(req.measure) {
            Ok(m) if m != ProtectionMeasure::Unspecified => Some(m),
            _ => {
                v.add("measure", "is required");
                None
            }
        };
        let date = |s: &str| {
            NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .ok()
                .filter(|d| (2000..=2100).contains(&chrono::Datelike::year(d)))
        };
        let starts = date(&req.starts_on);
        if starts.is_none() {
            v.add("starts_on", "must be a date as YYYY-MM-DD");
        }
        let ends = if req.ends_on.trim().is_empty() {
            Some(None)
        } else {
            match (date(&req.ends_on), starts) {
                (Some(e), Some(s)) if e < s => {
                    v.add("ends_on", "must not be before starts_on");
                    None
                }
                (Some(e), _) => Some(Some(e)),
                (None, _) => {
                    v.add("ends_on", "must be a date as YYYY-MM-DD");
                    None
                }
            }
        };
        let details = v.check("details", parse_text(&req.details, MAX_TEXT, true));
        let (id, kind, starts, ends, details) =
            v.finish(|| Some((id?, kind?, starts?, ends?, details?)))?;
        let row = request::Entity::find_by_id(id)
            .one(self.ctx.db())
            .await?
            .ok_or(ServiceError::NotFound)?;
        expect_version(&row, req.expected_version)?;
        let to = match row.state {
            S::Admitted | S::Active => S::Active,
            S::InterimMeasures => S::InterimMeasures,
            other => {
                return Err(ServiceError::FailedPrecondition(format!(
                    "protection request is {other}; measures are recorded under interim measures or after admission"
                )));
            }
        };
        let key = subjects::data_key(self.ctx.db(), self.ctx.keys(), row.referral_id).await?;
        let measure_id = Uuid::now_v7();
        let details_ct = subjects::seal(&key, measure_id, store::DETAILS, &details)?;
        let now = Utc::now();
        let new_measure = measure::Model {
            id: measure_id,
            request_id: row.id,
            measure: kind.as_str_name().to_owned(),
            starts_on: starts,
            ends_on: ends,
            details_ct,
            recorded_by: principal.officer_id.clone(),
            recorded_at: now,
        };
        let actor = principal.clone();
        let (request_id, referral_id, version) = (row.id, row.referral_id, row.version);
        let updated = refnet_core::db::write_txn(self.ctx.db(), move |txn| {
            Box::pin(async move {
                let changes = request::ActiveModel {
                    state: Set(to),
                    ..Default::default()
                };
                let Some(updated) =
                    state_change(txn, &actor, request_id, referral_id, version, changes, to)
                        .await?
                else {
                    return Ok(None);
                };
                measure::Entity::insert(measure::ActiveModel::from(new_measure))
                    .exec_without_returning(txn)
                    .await?;
                Ok(Some(updated))
            })
        })
        .await?
        .ok_or_else(concurrent)?;
        self.request_reply(&principal, &call, &updated).await
    }
}

/// Within `txn`: the one versioned change of a request to state `to`
/// (update where version, the `ProtectionStateChanged` event, reread);
/// `None` when another change won.
async fn state_change(
    txn: &sea_orm::DatabaseTransaction,
    actor: &Principal,
    request_id: Uuid,
    referral_id: Uuid,
    version: i64,
    changes: request::ActiveModel,
    to: S,
) -> ServiceResult<Option<request::Model>> {
    versioned::change::<request::Entity, _, _>(
        txn,
        request_id,
        version,
        changes,
        Appended {
            kind: EventKind::ProtectionStateChanged,
            referral: None,
            actor: Some(actor),
            payload: &StatePayload {
                request_id,
                referral_id,
                state: to.stored(),
                version: version + 1,
            },
        },
    )
    .await
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_the_wpa_states() {
        assert_eq!(
            check(S::Submitted, Step::BeginAssessment).unwrap(),
            S::UnderAssessment
        );
        assert_eq!(check(S::UnderAssessment, Step::Admit).unwrap(), S::Admitted);
        assert_eq!(check(S::InterimMeasures, Step::Admit).unwrap(), S::Admitted);
        let err = check(S::Submitted, Step::Admit).unwrap_err().to_string();
        assert!(
            err.contains("SUBMITTED") && err.contains("ADMITTED"),
            "{err}"
        );
        assert!(check(S::Admitted, Step::Withdraw).is_err());
        assert!(check(S::Closed, Step::Close).is_err());
        assert!(check(S::Declined, Step::Admit).is_err());
        assert_eq!(check(S::Active, Step::Close).unwrap(), S::Closed);
    }
}
