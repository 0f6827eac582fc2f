//! A bounded cache of compiled [`RecordMatcher`]s, keyed by the record's
//! identifiers themselves.
//!
//! Every reply about a referral scans its free text with that referral's
//! matcher; compiling one takes 15–20 µs, several times the cost of the rest
//! of a reply's redaction. Readers of the same referral get the same record,
//! so the matcher is compiled once and shared.
//!
//! The key is the full content of the record, not a referral id or version:
//! a changed record (an amendment, an erased subject whose identity no longer
//! decrypts) is a different key, so a stale matcher can never be used. Entries
//! expire after a time to live, so identifiers are not kept in memory for
//! longer than that after the last reply that needed them.

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use lru::LruCache;

use super::{RecordIdentifiers, RecordMatcher};

/// Compiled record matchers, least recently used evicted first.
pub struct MatcherCache {
    entries: Mutex<LruCache<RecordIdentifiers, Entry>>,
    ttl: Duration,
}

struct Entry {
    built: Instant,
    matcher: Arc<RecordMatcher>,
}

impl std::fmt::Debug for MatcherCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.entries.lock().map(|e| e.len()).unwrap_or(0);
        f.debug_struct("MatcherCache")
            .field("entries", &len)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl MatcherCache {
    /// Holds at most `capacity` matchers (at least one), each for at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
            ttl,
        }
    }

    /// The matcher for `ids`: the cached one when it is younger than the time
    /// to live, else a newly compiled one (then cached). A record with no
    /// identifiers gets the empty matcher and takes no cache slot.
    pub fn get(&self, ids: &RecordIdentifiers) -> Arc<RecordMatcher> {
        if ids.is_empty() {
            return Arc::new(RecordMatcher::empty());
        }
        let now = Instant::now();
        // A poisoned lock only means another reply panicked mid-update of an
        // LRU list that is still consistent; the cache stays usable.
        {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = entries.get(ids) {
                if now.duration_since(entry.built) < self.ttl {
                    return Arc::clone(&entry.matcher);
                }
                entries.pop(ids);
            }
        }
        // Compiled outside the lock: other replies are not held up by it.
        let matcher = Arc::new(RecordMatcher::new(ids));
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.put(
            ids.clone(),
            Entry {
                built: now,
                matcher: Arc::clone(&matcher),
            },
        );
        matcher
    }

    /// How many matchers are held (metrics and tests).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no matcher is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every matcher (e.g. after an erasure, so no identifier of an
    /// erased subject stays in memory).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::HitKind;

    fn record(name: &str) -> RecordIdentifiers {
        RecordIdentifiers {
            subject_names: vec![name.to_owned()],
            subject_numbers: vec![(HitKind::Phone, "+254712000111".to_owned())],
            ..Default::default()
        }
    }

    #[test]
    fn same_record_shares_one_matcher_and_a_changed_record_does_not() {
        let cache = MatcherCache::new(8, Duration::from_secs(60));
        let a = cache.get(&record("Achieng Otieno"));
        let again = cache.get(&record("Achieng Otieno"));
        assert!(Arc::ptr_eq(&a, &again));
        let changed = cache.get(&record("Achieng Odhiambo"));
        assert!(!Arc::ptr_eq(&a, &changed));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn capacity_evicts_the_least_recently_used() {
        let cache = MatcherCache::new(2, Duration::from_secs(60));
        let first = cache.get(&record("One Person"));
        cache.get(&record("Two Person"));
        cache.get(&record("One Person"));
        cache.get(&record("Three Person"));
        assert_eq!(cache.len(), 2);
        assert!(Arc::ptr_eq(&first, &cache.get(&record("One Person"))));
    }

    #[test]
    fn expired_entries_are_rebuilt_and_empty_records_are_not_cached() {
        let cache = MatcherCache::new(8, Duration::ZERO);
        let a = cache.get(&record("Achieng Otieno"));
        let b = cache.get(&record("Achieng Otieno"));
        assert!(!Arc::ptr_eq(&a, &b));
        let cache = MatcherCache::new(8, Duration::from_secs(60));
        cache.get(&RecordIdentifiers::default());
        assert!(cache.is_empty());
        cache.get(&record("Achieng Otieno"));
        cache.clear();
        assert!(cache.is_empty());
    }
}
