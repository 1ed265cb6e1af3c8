//! Watches: the engine notices new commits by itself. A watch names a
//! repository, the branches (or tags) to follow by name or glob, and the
//! job to run for each new head; it polls with `git ls-remote` (no fetch)
//! and accepts signed webhooks that say "look now".
//!
//! Whatever triggers a look, the commit that runs is the one the
//! repository reports for the watched ref: a webhook's body never picks
//! the SHA. Each (watch, ref, commit) is submitted at most once, across
//! restarts (the job's idempotency key). While a job of a ref runs, newer
//! heads wait: the newest runs next, the ones in between are recorded as
//! skipped.
//!
//! - [`spec`]: what a user declares, and its validation by field;
//! - [`record`]: the stored watch, its per-ref state and its deliveries;
//! - [`signature`]: how each forge signs a webhook, checked in constant time;
//! - [`event`]: what a verified delivery says (push, ping);
//! - [`secret`]: webhook secrets, sealed at rest with the engine's key;
//! - [`watcher`]: the looks (polls and webhooks) and what they submit.

pub mod event;
pub mod record;
pub mod secret;
pub mod signature;
pub mod spec;
pub mod watcher;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use record::{Delivery, RefState, Watch, WatchState, WatchView};
pub use spec::WatchSpec;
pub use watcher::Watcher;

/// Who sends a webhook, by how it signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ToSchema, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forge {
    /// `X-Hub-Signature-256`, events in `X-GitHub-Event`.
    Github,
    /// `X-Gitlab-Token`, events in `X-Gitlab-Event`.
    Gitlab,
    /// `X-Gitea-Signature`, events in `X-Gitea-Event`.
    Gitea,
    /// `X-Forgejo-Signature`, events in `X-Forgejo-Event`.
    Forgejo,
    /// The Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`), for anything else.
    Standard,
}

impl Forge {
    /// Every forge, the default of a watch's `sources`.
    pub const ALL: [Forge; 5] = [
        Forge::Github,
        Forge::Gitlab,
        Forge::Gitea,
        Forge::Forgejo,
        Forge::Standard,
    ];
}

impl std::fmt::Display for Forge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Forge::Github => "github",
            Forge::Gitlab => "gitlab",
            Forge::Gitea => "gitea",
            Forge::Forgejo => "forgejo",
            Forge::Standard => "standard",
        })
    }
}

/// The label a watch's jobs carry (its id), so its jobs can be found.
pub const LABEL_WATCH: &str = "io.slipway.watch";
/// The label naming the ref a watch's job was submitted for.
pub const LABEL_REF: &str = "io.slipway.ref";
