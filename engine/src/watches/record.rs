//! A stored watch: its declaration, its sealed webhook secret, what it has
//! seen of each ref, and the deliveries it was sent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Forge, WatchSpec};
use crate::job::JobId;

/// How many skipped commits a ref remembers.
pub const SKIPPED_KEPT: usize = 100;
/// How many deliveries a watch keeps (the oldest go first).
pub const DELIVERIES_KEPT: usize = 200;

/// A watch as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watch {
    /// `w` and 12 hex digits; the webhook URL is `/hooks/<id>`.
    pub id: String,
    /// What the user declared.
    pub spec: WatchSpec,
    /// When it was created (ms since the epoch).
    pub created_ms: u64,
    /// When its declaration, pause or secret last changed (ms since the epoch).
    pub updated_ms: u64,
    /// Paused: no polls, and deliveries are recorded but start nothing.
    pub paused: bool,
    /// The webhook secret, sealed with the engine's key (see `secret`).
    pub secret_sealed: Vec<u8>,
    /// What it has seen and done.
    pub state: WatchState,
}

/// What a watch has seen and done.
#[derive(Debug, Clone, Default, PartialEq, ToSchema, Serialize, Deserialize)]
pub struct WatchState {
    /// Each followed ref (full name) that exists or existed.
    pub refs: BTreeMap<String, RefState>,
    /// When the repository was last asked (ms since the epoch).
    pub last_look_ms: Option<u64>,
    /// When the next poll is due (ms since the epoch); 0: at once.
    pub next_poll_ms: u64,
    /// Looks that failed in a row; polls back off with them.
    pub failures: u32,
    /// Why the last look failed, until one succeeds.
    pub error: Option<String>,
    /// A look has succeeded: the heads it found were the baseline, and
    /// every ref or commit seen since is new.
    pub looked: bool,
}

/// One followed ref.
#[derive(Debug, Clone, Default, PartialEq, ToSchema, Serialize, Deserialize)]
pub struct RefState {
    /// The newest commit seen at this ref; `None` once it was deleted.
    pub head: Option<String>,
    /// The commit of the last job submitted for this ref, and that job.
    pub submitted: Option<(String, JobId)>,
    /// A newer commit waiting for that job to end (the newest wins).
    pub pending: Option<String>,
    /// Commits superseded while a job ran, newest last (at most 100).
    pub skipped: Vec<String>,
}

/// A watch as the API shows it: everything but its secret.
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize)]
pub struct WatchView {
    /// `w` and 12 hex digits.
    pub id: String,
    /// What the user declared.
    pub spec: WatchSpec,
    /// When it was created (ms since the epoch).
    pub created_ms: u64,
    /// When its declaration, pause or secret last changed (ms since the epoch).
    pub updated_ms: u64,
    /// No polls; deliveries are recorded but start nothing.
    pub paused: bool,
    /// The path forges post to (`/hooks/<id>`).
    pub hook_path: String,
    /// Per ref: the head seen, the job run, what waits or was skipped.
    pub state: WatchState,
}

impl From<&Watch> for WatchView {
    fn from(w: &Watch) -> WatchView {
        WatchView {
            id: w.id.clone(),
            spec: w.spec.clone(),
            created_ms: w.created_ms,
            updated_ms: w.updated_ms,
            paused: w.paused,
            hook_path: format!("/hooks/{}", w.id),
            state: w.state.clone(),
        }
    }
}

/// One webhook delivery and what became of it.
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
pub struct Delivery {
    /// Numbered per watch, from 1.
    pub seq: u64,
    /// When it arrived (ms since the epoch).
    pub at_ms: u64,
    /// Who signed it; `None` when no known signature was present.
    pub forge: Option<Forge>,
    /// The forge's event name (`push`, `ping`, `Push Hook`).
    pub event: String,
    /// The ref it named, if any.
    pub reference: Option<String>,
    /// The forge's delivery id, used to drop repeats.
    pub delivery_id: Option<String>,
    /// The HTTP status it was answered with.
    pub status: u16,
    /// What happened, in words: `submitted job 12 for abc123…`,
    /// `ignored: branch feature/x does not match main`, `rejected: bad
    /// signature …`.
    pub verdict: String,
}
