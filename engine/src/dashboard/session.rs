//! Dashboard sessions: a login trades an API token for a random session id
//! in an `HttpOnly`, `SameSite=Strict` cookie, so the token itself never
//! sits in the browser. Sessions are kept in the store, by the SHA-256 of
//! their id (the store holds no usable cookie): every replica of a store
//! knows a login, and a restart keeps it. They end at logout, at their
//! expiry, and when their token is revoked or expires.

use sha2::{Digest, Sha256};

use crate::api::auth::Caller;
use crate::job::now_ms;
use crate::queue::{SessionStore, StoreError};
use crate::token::SessionRecord;

/// The session cookie's name.
pub const COOKIE: &str = "slipway_session";
/// How long a session lasts from its login.
pub const SESSION_TTL_MS: u64 = 12 * 3600 * 1000;
/// Sessions kept at once; the ones that end soonest go first beyond it.
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

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No random bytes for its id.
    #[error("cannot draw a random session id: {0}")]
    Random(#[from] std::io::Error),
    /// The store did not keep it.
    #[error("cannot keep the session in the store: {0}")]
    Store(#[from] StoreError),
}

/// Open a session for `caller`: the cookie value to hand the browser, and
/// the session.
pub async fn open(
    store: &dyn SessionStore,
    caller: Caller,
    token_hash: String,
) -> Result<(String, Session), SessionError> {
    let id = random_hex()?;
    let session = Session {
        caller,
        token_hash,
        csrf: random_hex()?,
        expires_ms: now_ms() + SESSION_TTL_MS,
    };
    store
        .open_session(hash(&id), record_of(&session), MAX_SESSIONS)
        .await?;
    Ok((id, session))
}

/// The live session of cookie value `id`.
pub async fn get(store: &dyn SessionStore, id: &str) -> Result<Option<Session>, StoreError> {
    Ok(store
        .get_session(&hash(id), now_ms())
        .await?
        .map(|r| Session {
            caller: Caller {
                token: r.token,
                scope: r.scope,
            },
            token_hash: r.token_hash,
            csrf: r.csrf,
            expires_ms: r.expires_ms,
        }))
}

/// End the session of cookie value `id`.
pub async fn close(store: &dyn SessionStore, id: &str) -> Result<bool, StoreError> {
    store.close_session(&hash(id)).await
}

fn record_of(s: &Session) -> SessionRecord {
    SessionRecord {
        token: s.caller.token.clone(),
        scope: s.caller.scope,
        token_hash: s.token_hash.clone(),
        csrf: s.csrf.clone(),
        expires_ms: s.expires_ms,
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

    #[tokio::test]
    async fn a_session_is_found_by_its_cookie_until_it_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::queue::RedbStore::open(&dir.path().join("s.redb"), Default::default()).unwrap();
        let (id, opened) = open(&store, caller(), "h".into()).await.unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(id, opened.csrf);
        let found = get(&store, &id).await.unwrap().unwrap();
        assert_eq!(found.caller.token, "tok-1");
        assert_eq!(found.csrf, opened.csrf);
        assert!(
            store.get_session(&id, 0).await.unwrap().is_none(),
            "kept under the hash of the id, not the id"
        );
        assert!(get(&store, "not-a-session").await.unwrap().is_none());
        assert!(close(&store, &id).await.unwrap());
        assert!(get(&store, &id).await.unwrap().is_none());
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
