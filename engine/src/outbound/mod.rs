//! Outbound requests go only where the configuration allows (an SSRF
//! guard).
//!
//! A token holder names the URLs the engine contacts: git repositories
//! (`git ls-remote` / `git fetch`), callback URLs and forge APIs. Without a
//! guard, `http://169.254.169.254/...` or `http://127.0.0.1:<port>/...`
//! would make the engine reach its cloud credentials or its own internal
//! services on the token holder's behalf. So every address a target
//! resolves to is checked against [`OutboundPolicy`] (config `[outbound]`):
//! by default loopback, private, link-local and other internal or special
//! ranges are refused ([`classify`] lists them).
//!
//! - [`OutboundPolicy::check_addr`]: the pure check of one host and address.
//! - [`OutboundPolicy::check_url`]: an `http(s)://` URL, resolved and checked.
//! - [`OutboundPolicy::check_git_url`]: a git source in any of git's forms;
//!   local paths are left to the caller's `allow_local_paths` rule.
//! - [`OutboundPolicy::agent`]: a ureq agent that checks at connect time,
//!   after DNS, on every hop (redirects included), closing DNS rebinding;
//!   [`policy_refusal`] recognises its refusals.
//!
//! Every refusal says what was refused, the address and range, and the
//! setting that would allow it ([`OutboundError`]).

mod address;
mod error;
mod parse;
mod policy;
mod resolver;

#[cfg(test)]
mod tests;

pub use address::{Range, RangeKind, Refusal, classify, embedded_ipv4};
pub use error::{OutboundError, PatternError, Purpose};
pub use policy::{Checked, OutboundPolicy};
pub use resolver::{GuardedResolver, policy_refusal};
