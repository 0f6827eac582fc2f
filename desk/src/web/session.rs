//! Sessions of the web desk: the officer's token stays on the server, sealed
//! under a key derived from the session's random id, which only the
//! officer's cookie carries (`HttpOnly; Secure; SameSite=Strict`). The store
//! is keyed by a hash of that id: the store alone (a memory dump, a log) opens
//! no session and reveals no token. A session ends with its token.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit,
    aead::{Aead, AeadCore, OsRng},
};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub(crate) const COOKIE: &str = "refnet_session";

/// Who is signed in, as the desk shows it (from the token's claims; the
/// server decides what the token may do).
#[derive(Debug, Clone)]
pub(crate) struct Officer {
    /// The agency id.
    pub(crate) agency: String,
    /// The officer id.
    pub(crate) officer: String,
    /// The roles.
    pub(crate) roles: Vec<String>,
}

/// One open session: what the pages need, and the token sealed.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// Who.
    pub(crate) officer: Officer,
    /// The CSRF token every form of this session carries.
    pub(crate) csrf: String,
    /// When the token (and so the session) expires, seconds since the epoch.
    expires: u64,
    sealed: Vec<u8>,
    nonce: [u8; 12],
}

/// The open sessions.
#[derive(Default)]
pub(crate) struct Sessions {
    open: Mutex<HashMap<[u8; 32], Session>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

fn hash(label: &[u8], id: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label);
    h.update(id.as_bytes());
    h.finalize().into()
}

/// A random value for a cookie or a form: 32 bytes, URL-safe base64.
pub(crate) fn random() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Compares two secrets in time independent of where they differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The claims the desk shows, read from the token without verifying it (the
/// server verifies every call); `None` when it is not a JWT.
fn claims(token: &str) -> Option<(Officer, u64)> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let roles = v["roles"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Some((
        Officer {
            agency: v["agency_id"].as_str().unwrap_or_default().to_owned(),
            officer: v["sub"].as_str().unwrap_or_default().to_owned(),
            roles,
        },
        v["exp"].as_u64()?,
    ))
}

impl Sessions {
    /// Opens a session for `token`; returns the cookie value (the session id).
    pub(crate) fn open(&self, token: &str) -> anyhow::Result<String> {
        let (officer, expires) = claims(token)
            .ok_or_else(|| anyhow::anyhow!("the identity provider's token is not a JWT"))?;
        anyhow::ensure!(expires > now(), "the token has expired");
        let id = random();
        let cipher = ChaCha20Poly1305::new(&hash(b"refnet web seal", &id).into());
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(&nonce, token.as_bytes())
            .map_err(|_| anyhow::anyhow!("sealing the session failed"))?;
        let session = Session {
            officer,
            csrf: random(),
            expires,
            sealed,
            nonce: nonce.into(),
        };
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.retain(|_, s| s.expires > now());
        open.insert(hash(b"refnet web id", &id), session);
        Ok(id)
    }

    /// The session of cookie value `id`, and its token; `None` when there is
    /// none or it has expired (then it is removed).
    pub(crate) fn get(&self, id: &str) -> Option<(Session, String)> {
        let key = hash(b"refnet web id", id);
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let session = open.get(&key)?.clone();
        if session.expires <= now() {
            open.remove(&key);
            return None;
        }
        let cipher = ChaCha20Poly1305::new(&hash(b"refnet web seal", id).into());
        let token = cipher
            .decrypt(&session.nonce.into(), session.sealed.as_slice())
            .ok()?;
        Some((session, String::from_utf8(token).ok()?))
    }

    /// Ends the session of cookie value `id`.
    pub(crate) fn close(&self, id: &str) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.remove(&hash(b"refnet web id", id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(exp: u64) -> String {
        let claims = serde_json::json!({"sub": "o-1", "agency_id": "police-nairobi", "roles": ["officer"], "exp": exp});
        format!(
            "e30.{}.sig",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"))
        )
    }

    #[test]
    fn a_session_holds_its_token_sealed_and_ends_with_it() {
        let sessions = Sessions::default();
        let t = token(now() + 600);
        let id = sessions.open(&t).expect("open");
        let (session, back) = sessions.get(&id).expect("session");
        assert_eq!(back, t);
        assert_eq!(session.officer.agency, "police-nairobi");
        // The store holds neither the id nor the token in clear.
        let open = sessions.open.lock().expect("lock");
        let stored = format!("{:?}", open);
        assert!(!stored.contains(&id) && !stored.contains(&t[5..20]));
        drop(open);
        assert!(
            sessions.get(&random()).is_none(),
            "another id opens nothing"
        );
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
        assert!(
            sessions.open(&token(now() - 1)).is_err(),
            "an expired token opens no session"
        );
    }
}
