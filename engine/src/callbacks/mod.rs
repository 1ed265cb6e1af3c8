//! Signed callbacks: a job (or a watch's job template) may name URLs that
//! are told of its final state, or of every state change. Each message is
//! JSON signed with the Standard Webhooks scheme (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`), the
//! key being the secret the callback names by reference.
//!
//! Messages go through an outbox in the store, written in the same
//! transaction as the state change they announce, so a crash loses none;
//! the [`sender`] posts them, retrying with exponential backoff for up to a
//! day, and records every attempt (`GET /api/v1/jobs/{id}/callbacks`).

pub mod sender;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::job::{FieldProblem, JobRecord, JobState};

/// Most callbacks one job may name.
pub const MAX_CALLBACKS: usize = 5;
/// How long a message is retried before the outbox gives up on it.
pub const RETRY_FOR_MS: u64 = 24 * 3_600_000;

/// Which state changes a callback is told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ToSchema, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackEvents {
    /// Only the final state (succeeded, failed, cancelled, timed out, dead).
    #[default]
    Final,
    /// Every state change, from `queued` on.
    All,
}

/// A URL told of a job's state, as a job spec names it.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackSpec {
    /// Where the JSON message is POSTed (`http://` or `https://`).
    pub url: String,
    /// The signing secret, by reference (`env:NAME`, `file:/path`); a
    /// `whsec_<base64>` value is used as Standard Webhooks defines.
    pub secret: String,
    #[serde(default)]
    pub events: CallbackEvents,
}

/// Problems of a job's callbacks, by field.
pub fn problems(callbacks: &[CallbackSpec]) -> Vec<FieldProblem> {
    let mut out = Vec::new();
    if callbacks.len() > MAX_CALLBACKS {
        out.push(FieldProblem {
            field: "callbacks".into(),
            message: format!("{} callbacks: at most {MAX_CALLBACKS}", callbacks.len()),
        });
    }
    for (i, c) in callbacks.iter().enumerate() {
        let url_ok = (c.url.starts_with("http://") || c.url.starts_with("https://"))
            && c.url.len() <= 2048
            && !c.url.chars().any(|ch| ch.is_control() || ch == ' ');
        if !url_ok {
            out.push(FieldProblem {
                field: format!("callbacks[{i}].url"),
                message: format!(
                    "`{}` is not an http:// or https:// URL",
                    c.url.escape_debug()
                ),
            });
        }
        if let Err(e) = crate::secrets::check_reference(&format!("callbacks[{i}]"), &c.secret) {
            out.push(FieldProblem {
                field: format!("callbacks[{i}].secret"),
                message: e.to_string(),
            });
        }
    }
    out
}

/// One message in the outbox, and every attempt to deliver it.
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// `<job, 20 digits>/<event index, 4>/<callback index, 2>`: also the
    /// message's `webhook-id`, the same on every retry.
    pub key: String,
    pub job: u64,
    pub url: String,
    /// The signing secret's reference (resolved at each attempt).
    pub secret: String,
    /// `job.queued`, `job.running`, ..., `job.succeeded`.
    pub event: String,
    /// The JSON body, as sent.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub created_ms: u64,
    /// When the next attempt is due; `None` once delivered or given up.
    pub next_attempt_ms: Option<u64>,
    pub attempts: Vec<Attempt>,
    /// When a receiver answered 2xx.
    pub delivered_ms: Option<u64>,
    /// Why the outbox stopped trying (a day of failures).
    pub gave_up: Option<String>,
}

/// One try to deliver a message.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub struct Attempt {
    pub at_ms: u64,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why it failed without an answer (refused, timed out, ...).
    pub error: Option<String>,
    pub took_ms: u64,
}

/// The outbox key of callback `cb` for event `event` of job `job`.
pub fn key(job: u64, event: usize, cb: usize) -> String {
    format!("{job:020}/{event:04}/{cb:02}")
}

fn state_name(state: JobState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{state:?}").to_lowercase())
}

/// The messages the change from `old` to `new` owes its callbacks: one per
/// callback for each event `new` has that `old` had not (a final state
/// only, for `events = final`).
pub fn owed(old: Option<&JobRecord>, new: &JobRecord) -> Vec<OutboxEntry> {
    if new.spec.callbacks.is_empty() {
        return Vec::new();
    }
    let seen = old.map(|o| o.events.len()).unwrap_or(0);
    let mut out = Vec::new();
    for (index, event) in new.events.iter().enumerate().skip(seen) {
        let state = state_name(event.to);
        let payload = serde_json::json!({
            "type": format!("job.{state}"),
            "timestamp_ms": event.at_ms,
            "data": {
                "id": new.id,
                "state": state,
                "from": event.from.map(state_name),
                "reason": event.reason,
                "attempt": event.attempt,
                "repository": new.spec.repository,
                "commit": new.spec.commit,
                "resolved_from": new.spec.resolved_from,
                "trigger": new.spec.trigger.clone().unwrap_or_default(),
            }
        });
        for (cb, c) in new.spec.callbacks.iter().enumerate() {
            if c.events == CallbackEvents::Final && !event.to.is_final() {
                continue;
            }
            out.push(OutboxEntry {
                key: key(new.id, index, cb),
                job: new.id,
                url: c.url.clone(),
                secret: c.secret.clone(),
                event: format!("job.{state}"),
                payload: payload.clone(),
                created_ms: event.at_ms,
                next_attempt_ms: Some(event.at_ms),
                attempts: Vec::new(),
                delivered_ms: None,
                gave_up: None,
            });
        }
    }
    out
}
