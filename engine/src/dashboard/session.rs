//! Dashboard sessions: a login trades an API token for a random session id
//! in an `HttpOnly`, `SameSite=Strict` cookie, so the token itself never
//! sits in the browser. Sessions live in the engine's memory: they end at
//! logout, at their expiry, when their token is revoked or expires, and
//! when the engine restarts.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::api::auth::Caller;
use crate::job::now_ms;

/// The session cookie's name.
pub const COOKIE: &str = "slipway_session";
/// How long a session lasts from its login.
pub const SESSION_TTL_MS: u64 = 12 * 3600 * 1000;
/// Sessions kept at once; the oldest go first beyond it.
const MAX_SESSIONS: usize = 10_000;

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who it acts as.
    pub caller: Caller,
    /// The hash of the token it was opened with (checked again on each
    /// request, so a revoked token ends its sessions).
    pub token_hash: String,
    /// The form token of this session: every state-changing form carries it.
    pub csrf: String,
    /// When it ends (Unix ms).
    pub expires_ms: u64,
}

/// Every open session, by the SHA-256 of its id (a memory dump shows no
/// usable cookie).
#[derive(Debug, Default)]
pub struct Sessions {
    by_id_hash: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Open a session for `caller`; the cookie value to hand the browser.
    pub fn open(&self, caller: Caller, token_hash: String) -> std::io::Result<(String, Session)> {
        let id = random_hex()?;
        let session = Session {
            caller,
            token_hash,
            csrf: random_hex()?,
            expires_ms: now_ms() + SESSION_TTL_MS,
        };
        let mut map = self.by_id_hash.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        map.retain(|_, s| s.expires_ms > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires_ms)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(hash(&id), session.clone());
        Ok((id, session))
    }

    /// The live session of cookie value `id`.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.by_id_hash.lock().unwrap_or_else(|p| p.into_inner());
        let key = hash(id);
        match map.get(&key) {
            Some(s) if s.expires_ms > now_ms() => Some(s.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// End the session of cookie value `id`.
    pub fn close(&self, id: &str) {
        self.by_id_hash
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&hash(id));
    }
}

fn hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// 256 random bits, hex.
fn random_hex() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// The session cookie's value in a `Cookie` header, if any.
pub fn cookie_value(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// `Set-Cookie` for a new session (`None`: one that ends it now);
/// `secure` (the engine terminates TLS) adds `Secure`, so the browser
/// never sends the cookie over plain HTTP.
pub fn set_cookie(id: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match id {
        Some(id) => format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}; Max-Age={}",
            SESSION_TTL_MS / 1000
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict{secure}; Max-Age=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Scope;

    fn caller() -> Caller {
        Caller {
            token: "tok-1".into(),
            scope: Scope::Read,
        }
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_is_closed() {
        let sessions = Sessions::default();
        let (id, opened) = sessions.open(caller(), "h".into()).unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(id, opened.csrf);
        let found = sessions.get(&id).unwrap();
        assert_eq!(found.caller.token, "tok-1");
        assert!(sessions.get("not-a-session").is_none());
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn cookies_are_read_among_others_and_set_strictly() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "a=1; slipway_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_value(&headers).as_deref(), Some("abc"));
        let set = set_cookie(Some("abc"), false);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && !set.contains("Secure"),
            "{set}"
        );
        assert!(set_cookie(None, false).contains("Max-Age=0"));
        let secure = set_cookie(Some("abc"), true);
        assert!(secure.contains("; Secure"), "{secure}");
        assert!(set_cookie(None, true).contains("; Secure"));
    }
}
