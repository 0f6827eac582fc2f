//! The WPA's steps on a protection request, as a state machine (domain.md:
//! `SUBMITTED -> UNDER_ASSESSMENT -> INTERIM_MEASURES | ADMITTED | DECLINED`,
//! `ADMITTED -> ACTIVE -> CLOSED`, `WITHDRAWN` by the requester), and the
//! handlers that take them: every step but `RecordMeasure`, the pseudonym a
//! protected witness is known by, and the measures in force.

use chrono::{NaiveDate, Utc};
use refnet_api::v1::{self as pb, ProtectionMeasure, ProtectionState as S};
use refnet_core::{
    ServiceError, ServiceResult,
    auth::Principal,
    boundary::{CallInfo, Reply},
    domain::{new_pseudonym, parse_pseudonym, parse_text, pseudonym_key},
    error::Violations,
    events::{self, EventKind},
    subjects,
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

impl Step {
    /// The event and log name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Withdraw => "WithdrawProtectionRequest",
            Self::BeginAssessment => "BeginAssessment",
            Self::GrantInterimMeasures => "GrantInterimMeasures",
            Self::Admit => "AdmitToProgramme",
            Self::Decline => "DeclineRequest",
            Self::Close => "CloseProtection",
        }
    }

    /// The states it may start from.
    pub fn from(self) -> &'static [S] {
        match self {
            Self::Withdraw => &[S::Submitted, S::UnderAssessment],
            Self::BeginAssessment => &[S::Submitted],
            Self::GrantInterimMeasures => &[S::UnderAssessment],
            Self::Admit | Self::Decline => &[S::UnderAssessment, S::InterimMeasures],
            Self::Close => &[S::InterimMeasures, S::Admitted, S::Active],
        }
    }

    /// The state it leads to.
    pub fn target(self) -> S {
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

fn state_name(s: S) -> &'static str {
    s.as_str_name()
        .strip_prefix("PROTECTION_STATE_")
        .unwrap_or("UNSPECIFIED")
}

/// The state `step` leads to from `current`, or FAILED_PRECONDITION naming both.
pub fn check(current: &str, step: Step) -> ServiceResult<S> {
    let state = S::from_str_name(current).unwrap_or(S::Unspecified);
    if step.from().contains(&state) {
        Ok(step.target())
    } else {
        Err(ServiceError::FailedPrecondition(format!(
            "protection request is {}; {} cannot make it {}",
            state_name(state),
            step.name(),
            state_name(step.target())
        )))
    }
}

impl Protection {
    /// Every step but RecordMeasure.
    pub async fn step(
        &self,
        request: tonic::Request<pb::ProtectionStepRequest>,
        step: Step,
    ) -> ServiceResult<Reply<pb::ProtectionRequest>> {
        let principal = Principal::of(&request)?.clone();
        let call = CallInfo::of(&request);
        let req = request.into_inner();
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
        let to = check(&row.state, step)?;

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
            state: Set(to.as_str_name().to_owned()),
            version: Set(row.version + 1),
            sealed_ct: Set(sealed_ct),
            updated_at: Set(now),
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
        let updated = refnet_core::db::write_txn(self.ctx.db(), move |txn| {
            Box::pin(async move {
                let result = request::Entity::update_many()
                    .set(changes)
                    .filter(request::Column::Id.eq(request_id))
                    .filter(request::Column::Version.eq(version))
                    .exec(txn)
                    .await?;
                if result.rows_affected != 1 {
                    return Ok(None);
                }
                if let (true, Some(p)) = (protect, pseudonym.as_deref()) {
                    store::protect(txn, subject_id, p).await?;
                }
                if let (true, Some(p)) = (lift, pseudonym.as_deref()) {
                    store::lift(txn, p).await?;
                }
                events::append(
                    txn,
                    EventKind::ProtectionStateChanged,
                    None,
                    Some(&actor),
                    &StatePayload {
                        request_id,
                        referral_id,
                        state: to.as_str_name(),
                        version: version + 1,
                    },
                )
                .await?;
                Ok(request::Entity::find_by_id(request_id).one(txn).await?)
            })
        })
        .await?
        .ok_or_else(concurrent)?;
        self.ctx.event_signal().notify_waiters();
        tracing::info!(request_id = %updated.id, step = step.name(), state = state_name(to), "protection request step");
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
        request: tonic::Request<pb::RecordMeasureRequest>,
    ) -> ServiceResult<Reply<pb::ProtectionRequest>> {
        let principal = Principal::of(&request)?.clone();
        let call = CallInfo::of(&request);
        let req = request.into_inner();
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
        let current = S::from_str_name(&row.state).unwrap_or(S::Unspecified);
        let to = match current {
            S::Admitted | S::Active => S::Active,
            S::InterimMeasures => S::InterimMeasures,
            other => {
                return Err(ServiceError::FailedPrecondition(format!(
                    "protection request is {}; measures are recorded under interim measures or after admission",
                    state_name(other)
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
            starts_on: starts.format("%Y-%m-%d").to_string(),
            ends_on: ends
                .map(|e| e.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            details_ct,
            recorded_by: principal.officer_id.clone(),
            recorded_at: now,
        };
        let actor = principal.clone();
        let (request_id, referral_id, version) = (row.id, row.referral_id, row.version);
        let updated = refnet_core::db::write_txn(self.ctx.db(), move |txn| {
            Box::pin(async move {
                let result = request::Entity::update_many()
                    .set(request::ActiveModel {
                        state: Set(to.as_str_name().to_owned()),
                        version: Set(version + 1),
                        updated_at: Set(now),
                        ..Default::default()
                    })
                    .filter(request::Column::Id.eq(request_id))
                    .filter(request::Column::Version.eq(version))
                    .exec(txn)
                    .await?;
                if result.rows_affected != 1 {
                    return Ok(None);
                }
                measure::Entity::insert(measure::ActiveModel::from(new_measure))
                    .exec_without_returning(txn)
                    .await?;
                events::append(
                    txn,
                    EventKind::ProtectionStateChanged,
                    None,
                    Some(&actor),
                    &StatePayload {
                        request_id,
                        referral_id,
                        state: to.as_str_name(),
                        version: version + 1,
                    },
                )
                .await?;
                Ok(request::Entity::find_by_id(request_id).one(txn).await?)
            })
        })
        .await?
        .ok_or_else(concurrent)?;
        self.request_reply(&principal, &call, &updated).await
    }
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_the_wpa_states() {
        assert_eq!(
            check("PROTECTION_STATE_SUBMITTED", Step::BeginAssessment).unwrap(),
            S::UnderAssessment
        );
        assert_eq!(
            check("PROTECTION_STATE_UNDER_ASSESSMENT", Step::Admit).unwrap(),
            S::Admitted
        );
        assert_eq!(
            check("PROTECTION_STATE_INTERIM_MEASURES", Step::Admit).unwrap(),
            S::Admitted
        );
        let err = check("PROTECTION_STATE_SUBMITTED", Step::Admit)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SUBMITTED") && err.contains("ADMITTED"),
            "{err}"
        );
        assert!(check("PROTECTION_STATE_ADMITTED", Step::Withdraw).is_err());
        assert!(check("PROTECTION_STATE_CLOSED", Step::Close).is_err());
        assert!(check("PROTECTION_STATE_DECLINED", Step::Admit).is_err());
        assert_eq!(
            check("PROTECTION_STATE_ACTIVE", Step::Close).unwrap(),
            S::Closed
        );
    }
}
