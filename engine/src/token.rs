//! API tokens beyond the configured one: created over the API, stored only
//! as their SHA-256, shown once, revocable, with a scope and an optional
//! expiry. The configured token (`SLIPWAY_TOKEN` / the token file)
//! bootstraps: it is `admin`, and creates the others.
//!
//! Scopes nest: `read` sees everything and changes nothing; `run` also
//! submits and cancels jobs and drives workspaces; `admin` also manages
//! tokens, profiles, services, watches, deployments and the engine itself,
//! and reads the audit log and the token list. [`required_scope`] is the
//! one table of what each request needs.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A stored token (its hash, never the token).
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub struct ApiToken {
    /// `tok-` and the first 12 hex digits of the hash; names the token in the
    /// API and the store.
    pub id: String,
    /// What it is for, e.g. `ci-runner`.
    pub name: String,
    /// Hex SHA-256 of the token (never sent over the API).
    pub hash: String,
    /// When it was created, ms since the Unix epoch.
    pub created_ms: u64,
    /// When it was revoked, ms since the Unix epoch; `None`: it still works.
    pub revoked_ms: Option<u64>,
    /// What it may do. Tokens stored before scopes existed could do
    /// everything, and keep that.
    #[serde(default = "Scope::before_scopes")]
    pub scope: Scope,
    /// When it stops working, ms since the Unix epoch; `None`: never.
    #[serde(default)]
    pub expires_ms: Option<u64>,
}

impl ApiToken {
    /// Whether it works at `now_ms`: not revoked, not expired.
    pub fn usable(&self, now_ms: u64) -> bool {
        self.revoked_ms.is_none() && self.expires_ms.is_none_or(|at| now_ms < at)
    }
}

/// A dashboard session as the store keeps it, under the SHA-256 of the id
/// its cookie carries: every replica of a store finds it, and a restarted
/// engine still knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The id of the token it was opened with (`tok-…`), or `configured`.
    pub token: String,
    /// What that token could do at the login.
    pub scope: Scope,
    /// The hex SHA-256 of that token: each request checks the token again,
    /// so a revoked token ends its sessions.
    pub token_hash: String,
    /// The session's form token: every state-changing form carries it.
    pub csrf: String,
    /// When it ends, ms since the Unix epoch.
    pub expires_ms: u64,
}

/// What a token may do; each scope includes the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ToSchema, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// See everything (but tokens and the audit log); change nothing.
    Read,
    /// `read`, and jobs and workspaces: submit, cancel, edit, validate.
    Run,
    /// Everything: tokens, profiles, services, watches, deployments,
    /// self-update, the audit log.
    Admin,
}

impl Scope {
    fn before_scopes() -> Scope {
        Scope::Admin
    }

    /// Its name, as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Run => "run",
            Scope::Admin => "admin",
        }
    }
}

/// The scope a request needs: reads need `read` (the token list and the
/// audit log `admin`), changes to jobs and workspaces `run`, every other
/// change `admin`. `path` is the request's path, `/api/v1/...`.
pub fn required_scope(method: &str, path: &str) -> Scope {
    let p = path.strip_prefix("/api/v1").unwrap_or(path);
    let under = |root: &str| p == root || p.starts_with(&format!("{root}/"));
    let reading = matches!(method, "GET" | "HEAD" | "OPTIONS");
    if under("/tokens") || under("/audit") {
        Scope::Admin
    } else if reading {
        Scope::Read
    } else if under("/jobs") || under("/workspaces") {
        Scope::Run
    } else {
        Scope::Admin
    }
}

/// A token as the API shows it: no hash.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize)]
pub struct TokenView {
    /// The token's id (`tok-…`), what `DELETE /api/v1/tokens/{id}` takes.
    pub id: String,
    /// What it is for, as given at creation, e.g. `ci-runner`.
    pub name: String,
    /// When it was created, ms since the Unix epoch.
    pub created_ms: u64,
    /// When it was revoked, ms since the Unix epoch; `null`: it still works.
    pub revoked_ms: Option<u64>,
    /// What it may do.
    pub scope: Scope,
    /// When it stops working, ms since the Unix epoch; `null`: never.
    pub expires_ms: Option<u64>,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> TokenView {
        TokenView {
            id: t.id,
            name: t.name,
            created_ms: t.created_ms,
            revoked_ms: t.revoked_ms,
            scope: t.scope,
            expires_ms: t.expires_ms,
        }
    }
}

/// One state-changing request, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its place in the log (increasing).
    pub seq: u64,
    /// When it was answered, ms since the Unix epoch.
    pub at_ms: u64,
    /// The token's id (`tok-…`), or `configured` for the configured token.
    pub token: String,
    /// `POST`, `PUT`, `DELETE`, ...
    pub method: String,
    /// The route, as the API declares it (`/api/v1/jobs/{id}/cancel`).
    pub route: String,
    /// The path asked for (`/api/v1/jobs/42/cancel`): the target.
    pub target: String,
    /// The HTTP status it was answered with.
    pub status: u16,
}

/// The audit log keeps this many entries, the newest.
pub const AUDIT_KEPT: u64 = 10_000;

/// Tokens start with this, so they are recognisable in leaks and scanners.
pub const PREFIX: &str = "slw_";

/// Hex SHA-256 of a presented token.
pub fn hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A new random token (32 bytes from the kernel).
pub fn generate() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(format!("{PREFIX}{}", hex::encode(bytes)))
}

/// Whether `name` is a valid token name: 1 to 64 ASCII letters, digits, `-`, `_` or `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::{Scope, required_scope};

    #[test]
    fn each_request_needs_the_scope_the_table_says() {
        for (method, path, scope) in [
            ("GET", "/api/v1/jobs", Scope::Read),
            ("GET", "/api/v1/jobs/7/logs", Scope::Read),
            ("GET", "/api/v1/deployments", Scope::Read),
            ("POST", "/api/v1/jobs", Scope::Run),
            ("POST", "/api/v1/jobs/7/cancel", Scope::Run),
            ("POST", "/api/v1/workspaces/ws-1/validate", Scope::Run),
            ("DELETE", "/api/v1/workspaces/ws-1", Scope::Run),
            ("POST", "/api/v1/profiles", Scope::Admin),
            ("PUT", "/api/v1/services/db", Scope::Admin),
            ("POST", "/api/v1/watches/w/pause", Scope::Admin),
            ("POST", "/api/v1/deployments/shop/up", Scope::Admin),
            ("POST", "/api/v1/system/update", Scope::Admin),
            ("GET", "/api/v1/tokens", Scope::Admin),
            ("POST", "/api/v1/tokens", Scope::Admin),
            ("GET", "/api/v1/audit", Scope::Admin),
            // A path that only looks like a run route is not one.
            ("POST", "/api/v1/jobsx", Scope::Admin),
        ] {
            assert_eq!(required_scope(method, path), scope, "{method} {path}");
        }
        assert!(Scope::Read < Scope::Run && Scope::Run < Scope::Admin);
    }

    #[test]
    fn expired_and_revoked_tokens_are_not_usable() {
        let mut t = super::ApiToken {
            id: "tok-1".into(),
            name: "ci".into(),
            hash: "h".into(),
            created_ms: 0,
            revoked_ms: None,
            scope: Scope::Run,
            expires_ms: Some(1_000),
        };
        assert!(t.usable(999));
        assert!(!t.usable(1_000));
        t.expires_ms = None;
        assert!(t.usable(u64::MAX));
        t.revoked_ms = Some(5);
        assert!(!t.usable(6));
    }

    #[test]
    fn tokens_stored_before_scopes_keep_doing_everything() {
        #[derive(serde::Serialize)]
        struct Old<'a> {
            id: &'a str,
            name: &'a str,
            hash: &'a str,
            created_ms: u64,
            revoked_ms: Option<u64>,
        }
        let bytes = rmp_serde::to_vec_named(&Old {
            id: "tok-1",
            name: "old",
            hash: "h",
            created_ms: 1,
            revoked_ms: None,
        })
        .unwrap();
        let t: super::ApiToken = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!((t.scope, t.expires_ms), (Scope::Admin, None));
    }

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let (a, b) = (super::generate().unwrap(), super::generate().unwrap());
        assert!(a.starts_with("slw_") && a.len() == 68 && a != b);
        assert_eq!(super::hash(&a), super::hash(&a));
        assert_ne!(super::hash(&a), super::hash(&b));
        assert!(
            super::valid_name("ci-runner.1") && !super::valid_name("a b") && !super::valid_name("")
        );
    }
}
