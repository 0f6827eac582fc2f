//! Keyset-pagination cursors shared by the list calls: opaque, MAC-sealed
//! tokens bound to the caller's agency and to the filters they were issued
//! for, so a caller can neither forge one nor reuse it to walk other data.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::crypto::{Keyring, sha256};

#[derive(Serialize, Deserialize)]
struct ListCursor {
    last: Uuid,
    agency: String,
    filter: String,
}

/// A short digest of a list request's filters (the request encoded without
/// its page token and page size).
pub fn filter_digest(canonical_request: &[u8]) -> String {
    sha256(canonical_request)
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The page token resuming after `last` for `agency` with `filter`.
pub fn seal(keys: &Keyring, agency: &str, filter: &str, last: Uuid) -> String {
    let cursor = ListCursor {
        last,
        agency: agency.to_owned(),
        filter: filter.to_owned(),
    };
    // Serialising a struct of a UUID and two strings cannot fail.
    let raw = serde_json::to_vec(&cursor).unwrap_or_default();
    keys.tokens.seal(&raw)
}

/// The id a page token resumes after, if it is authentic and was issued to
/// `agency` for `filter`.
pub fn open(keys: &Keyring, token: &str, agency: &str, filter: &str) -> Option<Uuid> {
    keys.tokens
        .open(token)
        .and_then(|raw| serde_json::from_slice::<ListCursor>(&raw).ok())
        .filter(|c| c.agency == agency && c.filter == filter)
        .map(|c| c.last)
}

/// The position `token` resumes from for `agency` and `filter`: `None` for the
/// first page, or when the token is not one of theirs, which `v` records as a
/// `page_token` violation.
pub fn resume(
    v: &mut crate::error::Violations,
    keys: &Keyring,
    token: &str,
    agency: &str,
    filter: &str,
) -> Option<Uuid> {
    if token.is_empty() {
        return None;
    }
    let parsed = open(keys, token, agency, filter);
    if parsed.is_none() {
        v.add(
            "page_token",
            "is not a page token for this caller and these filters",
        );
    }
    parsed
}
