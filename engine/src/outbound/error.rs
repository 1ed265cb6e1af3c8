//! Why an outbound request was refused, worded for the operator: what was
//! refused, where it resolved, which range, and the setting that allows it.

use std::fmt;
use std::io;
use std::net::IpAddr;

use super::address::Refusal;

/// What an outbound request is for; names the target in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// A git repository (`git ls-remote` / `git fetch`).
    Git,
    /// A callback URL a job's events are posted to.
    Callback,
    /// A forge API (commit statuses).
    Forge,
    /// Any other outbound request.
    Other,
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Purpose::Git => "git repository",
            Purpose::Callback => "callback URL",
            Purpose::Forge => "forge API URL",
            Purpose::Other => "target",
        })
    }
}

/// An invalid `outbound.allow_hosts` or `outbound.deny_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("outbound: invalid {setting} entry `{pattern}`: {reason}")]
pub struct PatternError {
    /// The setting, e.g. `outbound.allow_hosts`.
    pub setting: &'static str,
    /// The entry as written.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why an outbound request was refused or could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The target resolves to an address in a range refused by default.
    #[error(
        "outbound: {purpose} {target} {} {addr} ({refusal}); refused. {}",
        resolves(.host, .addr),
        allow_hint(.host, .refusal)
    )]
    Refused {
        /// What the request is for.
        purpose: Purpose,
        /// The URL (password and query elided) or the host.
        target: String,
        /// The host as named in the URL (brackets of IPv6 removed).
        host: String,
        /// The address it resolved to.
        addr: IpAddr,
        /// The range, and the setting that opens it.
        refusal: Refusal,
    },
    /// The target's name or address matches an `outbound.deny_hosts` entry.
    #[error(
        "outbound: {purpose} {target} {} {addr}, which matches outbound.deny_hosts entry `{pattern}`; refused. Remove the entry to allow it",
        resolves(.host, .addr)
    )]
    Denied {
        /// What the request is for.
        purpose: Purpose,
        /// The URL (password and query elided) or the host.
        target: String,
        /// The host as named in the URL.
        host: String,
        /// The address it resolved to (or the first one, when the name
        /// itself is denied).
        addr: IpAddr,
        /// The `deny_hosts` entry that matched.
        pattern: String,
    },
    /// The host name itself matches an `outbound.deny_hosts` entry.
    #[error(
        "outbound: {purpose} {target}: host {host} matches outbound.deny_hosts entry `{pattern}`; refused. Remove the entry to allow it"
    )]
    DeniedName {
        /// What the request is for.
        purpose: Purpose,
        /// The URL (password and query elided).
        target: String,
        /// The host as named in the URL.
        host: String,
        /// The `deny_hosts` entry that matched.
        pattern: String,
    },
    /// Not a URL this module can check.
    #[error("outbound: {purpose} `{url}` is not a valid URL: {reason}")]
    BadUrl {
        /// What the request is for.
        purpose: Purpose,
        /// The URL (password and query elided).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A scheme or git transport that is not allowed.
    #[error("outbound: {purpose} `{url}` uses the unsupported transport `{transport}`; {allowed}")]
    UnsupportedTransport {
        /// What the request is for.
        purpose: Purpose,
        /// The URL (password and query elided).
        url: String,
        /// The scheme or transport helper, e.g. `ext` or `ftp`.
        transport: String,
        /// What is supported instead.
        allowed: &'static str,
    },
    /// The host name could not be resolved, so it could not be checked.
    #[error("outbound: cannot resolve {host} for {purpose} {target}: {source}")]
    Resolve {
        /// What the request is for.
        purpose: Purpose,
        /// The URL (password and query elided).
        target: String,
        /// The host that did not resolve.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The policy itself is invalid; every request is refused until fixed.
    #[error(transparent)]
    Pattern(#[from] PatternError),
}

impl OutboundError {
    /// Whether this error means the policy refused the target (as opposed
    /// to a URL that does not parse or a name that does not resolve).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            OutboundError::Refused { .. }
                | OutboundError::Denied { .. }
                | OutboundError::DeniedName { .. }
                | OutboundError::UnsupportedTransport { .. }
                | OutboundError::Pattern(_)
        )
    }
}

/// "is" for an IP-literal host, "resolves to" for a name.
fn resolves(host: &str, addr: &IpAddr) -> &'static str {
    match host.parse::<IpAddr>() {
        Ok(literal) if literal == *addr => "is",
        _ => "resolves to",
    }
}

/// The setting(s) that would allow the refused address.
fn allow_hint(host: &str, refusal: &Refusal) -> String {
    if refusal.is_private() {
        format!(
            "Allow it with outbound.allow_hosts = [\"{host}\"] or outbound.allow_private = true"
        )
    } else {
        format!(
            "Allow it with outbound.allow_hosts = [\"{host}\"] (outbound.allow_private does not open the {} range)",
            refusal.range.name
        )
    }
}
