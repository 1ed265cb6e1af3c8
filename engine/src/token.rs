//! API tokens beyond the configured one: created over the API, stored only
//! as their SHA-256, shown once, revocable. The configured token
//! (`SLIPWAY_TOKEN` / the token file) bootstraps: it creates the others.

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
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> TokenView {
        TokenView {
            id: t.id,
            name: t.name,
            created_ms: t.created_ms,
            revoked_ms: t.revoked_ms,
        }
    }
}

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
