//! Deadlines of protection requests: per urgency (`deadlines.toml`, compiled
//! in), the WPA must begin the assessment within `assess_hours` of submission
//! and decide (interim measures, admission or decline) within `decide_hours`.
//! The [`DeadlineWorker`] escalates a miss once per deadline: the WPA's
//! supervisors and the requesting agency are notified (`ListNotifications`)
//! and `ProtectionEscalated` goes on the event log (not on the referral's
//! timeline: other parties learn nothing of a request), which
//! `WatchProtectionRequests` carries.
//!
//! Time is a parameter of [`DeadlineWorker::step_at`], so tests run it at any
//! instant without sleeping.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use refnet_api::v1::AgencyKind;
use refnet_core::states::ProtectionState as S;
use refnet_core::{
    AppContext, ServiceResult,
    events::{self, EventKind},
    notify::{self, About},
};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use uuid::Uuid;

use crate::store::request;

/// The deadlines compiled into refnet.
pub const DEFAULT_DEADLINES: &str = include_str!("../deadlines.toml");

/// How often the worker looks for overdue requests.
const INTERVAL: Duration = Duration::from_secs(30);

/// The deadlines of one urgency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Begin the assessment within.
    pub assess: chrono::Duration,
    /// Decide within.
    pub decide: chrono::Duration,
}

/// The deadlines per urgency ("URGENCY_HIGH" or "HIGH").
#[derive(Debug, Clone)]
pub struct DeadlineTable(BTreeMap<String, Deadlines>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    assess_hours: i64,
    decide_hours: i64,
}

/// A deadline file that is wrong; names the entry.
#[derive(Debug, thiserror::Error)]
#[error("protection deadlines: {entry}: {problem}")]
pub struct DeadlinesError {
    entry: String,
    problem: String,
}

const URGENCIES: [&str; 4] = ["CRITICAL", "HIGH", "NORMAL", "LOW"];

impl DeadlineTable {
    /// Parses and validates deadline text: every urgency known, assessment
    /// within 1..=720 hours, decision no sooner than assessment and within a year.
    pub fn parse(text: &str) -> Result<Self, DeadlinesError> {
        let err = |entry: &str, problem: String| DeadlinesError {
            entry: entry.to_owned(),
            problem,
        };
        let raw: BTreeMap<String, Raw> =
            toml::from_str(text).map_err(|e| err("syntax", e.to_string().trim().to_owned()))?;
        let mut table = BTreeMap::new();
        for (urgency, d) in raw {
            if !URGENCIES.contains(&urgency.as_str()) {
                return Err(err(
                    &urgency,
                    format!("unknown urgency (one of {})", URGENCIES.join(", ")),
                ));
            }
            if !(1..=720).contains(&d.assess_hours)
                || !(d.assess_hours..=24 * 365).contains(&d.decide_hours)
            {
                return Err(err(
                    &urgency,
                    "assess_hours must be 1..=720 and decide_hours at least assess_hours (at most 8760)".into(),
                ));
            }
            table.insert(
                urgency,
                Deadlines {
                    assess: chrono::Duration::hours(d.assess_hours),
                    decide: chrono::Duration::hours(d.decide_hours),
                },
            );
        }
        for u in URGENCIES {
            if !table.contains_key(u) {
                return Err(err(u, "missing".into()));
            }
        }
        Ok(Self(table))
    }

    /// The compiled-in deadlines (validated by a unit test).
    pub fn compiled_in() -> Result<Self, DeadlinesError> {
        Self::parse(DEFAULT_DEADLINES)
    }

    /// The deadlines of `urgency` (proto name or short); NORMAL's when unknown.
    pub fn of(&self, urgency: &str) -> Deadlines {
        let short = urgency.strip_prefix("URGENCY_").unwrap_or(urgency);
        self.0
            .get(short)
            .or_else(|| self.0.get("NORMAL"))
            .copied()
            .unwrap_or(Deadlines {
                assess: chrono::Duration::hours(48),
                decide: chrono::Duration::hours(240),
            })
    }
}

/// Which deadline a request missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missed {
    Assess,
    Decide,
}

impl Missed {
    fn stored(self) -> &'static str {
        match self {
            Self::Assess => "ASSESS",
            Self::Decide => "DECIDE",
        }
    }

    fn detail(self) -> &'static str {
        match self {
            Self::Assess => "assessment deadline passed",
            Self::Decide => "decision deadline passed",
        }
    }
}

#[derive(Serialize)]
struct EscalatedPayload<'a> {
    request_id: Uuid,
    referral_id: Uuid,
    state: &'a str,
    version: i64,
    detail: &'a str,
}

/// Escalates overdue protection requests.
#[derive(Clone)]
pub struct DeadlineWorker {
    ctx: AppContext,
}

impl DeadlineWorker {
    /// A worker over `ctx`.
    pub fn new(ctx: AppContext) -> Self {
        Self { ctx }
    }

    /// Runs until `shutdown` resolves, checking every 30 seconds.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let span = tracing::info_span!(
                "protection_deadline_step",
                escalated = tracing::field::Empty
            );
            match self.step_at(Utc::now()).instrument(span.clone()).await {
                Ok(n) => {
                    span.record("escalated", n);
                }
                Err(e) => tracing::warn!(error = %e, "protection deadline step failed; retrying"),
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(INTERVAL) => {}
            }
        }
    }

    /// Escalates every request overdue at `now`, once per missed deadline; returns how many.
    pub async fn step_at(&self, now: DateTime<Utc>) -> ServiceResult<usize> {
        let submitted = S::Submitted;
        let undecided = [submitted, S::UnderAssessment];
        let overdue = request::Entity::find()
            .filter(
                Condition::any()
                    .add(
                        Condition::all()
                            .add(request::Column::State.eq(submitted))
                            .add(request::Column::AssessBy.lt(now))
                            .add(request::Column::Escalated.is_null()),
                    )
                    .add(
                        Condition::all()
                            .add(request::Column::State.is_in(undecided))
                            .add(request::Column::DecideBy.lt(now))
                            .add(
                                Condition::any()
                                    .add(request::Column::Escalated.is_null())
                                    .add(request::Column::Escalated.eq(Missed::Assess.stored())),
                            ),
                    ),
            )
            .order_by_asc(request::Column::Id)
            .limit(500)
            .all(self.ctx.db())
            .await?;
        let wpa = self.ctx.agencies().active_of_kind(AgencyKind::Wpa);
        let mut escalated = 0;
        for row in overdue {
            let missed = if row.decide_by.is_some_and(|d| d < now) {
                Missed::Decide
            } else {
                Missed::Assess
            };
            let wpa = wpa.clone();
            let done = self
                .ctx
                .write(move |txn| {
                    Box::pin(async move {
                        // Only the first of two workers escalates, and only if no step came first.
                        let marked = request::Entity::update_many()
                            .col_expr(request::Column::Escalated, Expr::value(missed.stored()))
                            .filter(request::Column::Id.eq(row.id))
                            .filter(request::Column::Version.eq(row.version))
                            .filter(match missed {
                                Missed::Assess => {
                                    Condition::all().add(request::Column::Escalated.is_null())
                                }
                                Missed::Decide => Condition::any()
                                    .add(request::Column::Escalated.is_null())
                                    .add(request::Column::Escalated.eq(Missed::Assess.stored())),
                            })
                            .exec(txn)
                            .await?;
                        if marked.rows_affected != 1 {
                            return Ok(false);
                        }
                        let detail = format!("{} (request {})", missed.detail(), row.id);
                        let about = About {
                            referral_id: row.referral_id,
                            reference_code: row.reference_code.clone(),
                            handoff_id: Uuid::nil(),
                            due_by: match missed {
                                Missed::Assess => row.assess_by,
                                Missed::Decide => row.decide_by,
                            },
                        };
                        for agency in &wpa {
                            notify::notify_about(
                                txn,
                                agency,
                                notify::SUPERVISORS,
                                EventKind::ProtectionEscalated,
                                &about,
                                &detail,
                            )
                            .await?;
                        }
                        notify::notify_about(
                            txn,
                            &row.requester_agency_id,
                            notify::ALL,
                            EventKind::ProtectionEscalated,
                            &about,
                            &detail,
                        )
                        .await?;
                        // Not on the referral's timeline: other parties learn nothing of a request.
                        events::append(
                            txn,
                            EventKind::ProtectionEscalated,
                            None,
                            None,
                            &EscalatedPayload {
                                request_id: row.id,
                                referral_id: row.referral_id,
                                state: row.state.stored(),
                                version: row.version,
                                detail: missed.detail(),
                            },
                        )
                        .await?;
                        Ok(true)
                    })
                })
                .await?;
            if done {
                escalated += 1;
                tracing::info!(request_id = %row.id, missed = missed.detail(), "protection request escalated");
            }
        }
        Ok(escalated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_in_deadlines_are_valid_and_bad_ones_are_named() {
        let table = DeadlineTable::compiled_in().unwrap();
        assert_eq!(table.of("URGENCY_CRITICAL").assess.num_hours(), 2);
        assert_eq!(table.of("LOW").decide.num_hours(), 720);
        for (bad, needle) in [
            ("URGENT = { assess_hours = 1, decide_hours = 2 }", "URGENT"),
            (
                &DEFAULT_DEADLINES.replace("assess_hours = 2,", "assess_hours = 0,"),
                "CRITICAL",
            ),
            (
                &DEFAULT_DEADLINES.replace("decide_hours = 24 }", "decide_hours = 1 }"),
                "CRITICAL",
            ),
            (
                "CRITICAL = { assess_hours = 1, decide_hours = 2 }",
                "missing",
            ),
        ] {
            let e = DeadlineTable::parse(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle} in {e}");
        }
    }
}
