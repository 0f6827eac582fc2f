//! Per-officer and per-agency rate limits, checked right after a call is
//! authenticated: a stolen token or a runaway client cannot page through
//! every referral an agency can see, or starve the other agencies.
//!
//! Each limit is a token bucket (GCRA, from `governor`): a steady rate per
//! second and a burst. A call over either limit is answered
//! RESOURCE_EXHAUSTED with a `RetryInfo` detail saying when to retry; it does
//! nothing else. The officer's bucket is checked first, so an officer over
//! their own limit does not use up their agency's.

use std::{
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};
use serde::Deserialize;

use crate::principal::Principal;

/// Rate limits (`[limits]` in the configuration). A rate of 0 turns that
/// limit off.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Calls per second one officer may make, sustained.
    pub officer_per_second: u32,
    /// Calls one officer may make at once above the sustained rate.
    pub officer_burst: u32,
    /// Calls per second all of one agency's officers may make together.
    pub agency_per_second: u32,
    /// Calls one agency may make at once above the sustained rate.
    pub agency_burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        // A desk officer paging quickly makes a few calls a second; these
        // leave room for scripts and busy desks and stop bulk scraping.
        Self {
            officer_per_second: 20,
            officer_burst: 200,
            agency_per_second: 200,
            agency_burst: 2_000,
        }
    }
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// The limits in force, with one bucket per officer and per agency.
pub struct RateLimits {
    officer: Option<Keyed<(String, String)>>,
    agency: Option<Keyed<String>>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("officer", &self.officer.is_some())
            .field("agency", &self.agency.is_some())
            .finish()
    }
}

/// A call refused by a rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// "officer" or "agency".
    pub scope: &'static str,
    /// When a call would next be allowed.
    pub retry_after: Duration,
}

/// How many checks between two sweeps of buckets that are full again.
const SWEEP_EVERY: u64 = 4_096;

fn quota(per_second: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

impl RateLimits {
    /// Limits as configured.
    pub fn new(config: &LimitsConfig) -> Self {
        let clock = DefaultClock::default();
        Self {
            officer: quota(config.officer_per_second, config.officer_burst)
                .map(|q| RateLimiter::dashmap_with_clock(q, clock.clone())),
            agency: quota(config.agency_per_second, config.agency_burst)
                .map(|q| RateLimiter::dashmap_with_clock(q, clock.clone())),
            clock,
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one call from `who`'s buckets, or says which limit refused it.
    pub fn check(&self, who: &Principal) -> Result<(), Limited> {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // Buckets that are full again hold nothing worth keeping.
            if let Some(l) = &self.officer {
                l.retain_recent();
            }
            if let Some(l) = &self.agency {
                l.retain_recent();
            }
        }
        if let Some(limiter) = &self.officer {
            let key = (who.agency_id.clone(), who.officer_id.clone());
            limiter.check_key(&key).map_err(|not_until| Limited {
                scope: "officer",
                retry_after: not_until.wait_time_from(self.clock.now()),
            })?;
        }
        if let Some(limiter) = &self.agency {
            limiter
                .check_key(&who.agency_id)
                .map_err(|not_until| Limited {
                    scope: "agency",
                    retry_after: not_until.wait_time_from(self.clock.now()),
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use refnet_api::v1::AgencyKind;

    use super::*;
    use crate::principal::Role;

    fn officer(agency: &str, id: &str) -> Principal {
        Principal {
            officer_id: id.into(),
            agency_id: agency.into(),
            agency_kind: AgencyKind::Police,
            roles: BTreeSet::from([Role::Officer]),
        }
    }

    #[test]
    fn an_officer_over_the_burst_is_refused_with_a_retry_time_and_others_are_not() {
        let limits = RateLimits::new(&LimitsConfig {
            officer_per_second: 1,
            officer_burst: 3,
            agency_per_second: 0,
            agency_burst: 0,
        });
        let a = officer("police-nairobi", "a");
        for _ in 0..3 {
            limits.check(&a).expect("within the burst");
        }
        let refused = limits.check(&a).expect_err("over the burst");
        assert_eq!(refused.scope, "officer");
        assert!(refused.retry_after > Duration::ZERO);
        assert!(refused.retry_after <= Duration::from_secs(1));
        limits
            .check(&officer("police-nairobi", "b"))
            .expect("another officer has their own bucket");
        limits
            .check(&officer("police-mombasa", "a"))
            .expect("the same officer id in another agency is someone else");
    }

    #[test]
    fn an_agency_limit_covers_all_its_officers_and_zero_turns_limits_off() {
        let limits = RateLimits::new(&LimitsConfig {
            officer_per_second: 0,
            officer_burst: 0,
            agency_per_second: 1,
            agency_burst: 2,
        });
        limits.check(&officer("ngo-1", "a")).expect("first");
        limits.check(&officer("ngo-1", "b")).expect("second");
        let refused = limits.check(&officer("ngo-1", "c")).expect_err("third");
        assert_eq!(refused.scope, "agency");
        limits
            .check(&officer("ngo-2", "a"))
            .expect("another agency");

        let off = RateLimits::new(&LimitsConfig {
            officer_per_second: 0,
            officer_burst: 0,
            agency_per_second: 0,
            agency_burst: 0,
        });
        for _ in 0..10_000 {
            off.check(&officer("ngo-1", "a")).expect("no limit");
        }
    }
}
