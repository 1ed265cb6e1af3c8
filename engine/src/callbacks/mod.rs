//! Signed callbacks: a job (or a watch's job template) may name URLs that
//! are told of its final state, or of every state change. Each message is
//! JSON signed with the Standard Webhooks scheme (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`), the
//! key being the secret the callback names by reference.
//!
//! A job (or a watch) that names a `forge` gets its states posted as
//! commit statuses there too (GitHub, GitLab, Gitea/Forgejo): pending while
//! queued and running, then success, failure or error, linked to the job
//! when `advertise_url` is set.
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
    /// Where the JSON message is POSTed (`http://` or `https://`), at most
    /// 2048 characters, no spaces or control characters.
    #[schema(max_length = 2048, pattern = r"^https?://[^\x00-\x1f\x7f-\x9f ]*$")]
    pub url: String,
    /// The signing secret, by reference (`env:NAME`, `file:/path`); a
    /// `whsec_<base64>` value is used as Standard Webhooks defines.
    #[schema(pattern = r"^(?:env:[^=]+|file:/[\s\S]*)$")]
    pub secret: String,
    /// `final` (the default) or `all` state changes.
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

/// A forge commit statuses are posted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    /// `POST {api_url}/repos/{repo}/statuses/{sha}` (`https://api.github.com`).
    Github,
    /// `POST {api_url}/projects/{repo}/statuses/{sha}` (`https://gitlab.com/api/v4`).
    Gitlab,
    /// Gitea and Forgejo: `POST {api_url}/repos/{repo}/statuses/{sha}` (`…/api/v1`).
    Gitea,
}

/// Where a job's states are posted as commit statuses.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgeSpec {
    /// Which API the statuses are posted to.
    pub kind: ForgeKind,
    /// The forge's API root, e.g. `https://api.github.com`.
    #[schema(pattern = "^https?://")]
    pub api_url: String,
    /// An API token allowed to set commit statuses, by reference (`env:NAME`,
    /// `file:/path`).
    #[schema(pattern = r"^(?:env:[^=]+|file:/[\s\S]*)$")]
    pub token: String,
    /// `owner/name` (GitLab: the project path); default: from the
    /// repository URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
}

/// Problems of a job's forge, by field.
pub fn forge_problems(forge: &ForgeSpec, repository: &str) -> Vec<FieldProblem> {
    let mut out = Vec::new();
    if !(forge.api_url.starts_with("http://") || forge.api_url.starts_with("https://")) {
        out.push(FieldProblem {
            field: "forge.api_url".into(),
            message: format!("`{}` is not an http:// or https:// URL", forge.api_url),
        });
    }
    if let Err(e) = crate::secrets::check_reference("forge.token", &forge.token) {
        out.push(FieldProblem {
            field: "forge.token".into(),
            message: e.to_string(),
        });
    }
    if forge.repo.is_none() && repo_path(repository).is_none() {
        out.push(FieldProblem {
            field: "forge.repo".into(),
            message: format!(
                "cannot tell the forge's `owner/name` from `{repository}`: set `forge.repo`"
            ),
        });
    }
    out
}

/// `owner/name` from a repository URL (`https://host/owner/name.git`,
/// `git@host:owner/name.git`, `ssh://git@host/owner/name`).
pub fn repo_path(repository: &str) -> Option<String> {
    let rest = if let Some((_, after)) = repository.split_once("://") {
        after.split_once('/')?.1
    } else if let Some((host, path)) = repository.split_once(':') {
        if host.contains('/') {
            return None;
        }
        path
    } else {
        return None;
    };
    let path = rest.trim_matches('/').trim_end_matches(".git");
    (path.contains('/') && !path.contains("..")).then(|| path.to_owned())
}

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ToSchema, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// A signed callback to a URL the job named.
    #[default]
    Callback,
    /// A commit status on the job's forge.
    Status(ForgeKind),
}

/// One message in the outbox, and every attempt to deliver it.
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// `<job, 20 digits>/<event index, 4>/<callback index, 2>`: also the
    /// message's `webhook-id`, the same on every retry.
    pub key: String,
    /// The job whose state it announces (0 for a deployment's message).
    pub job: u64,
    /// The deployment whose rollout it announces, for a deployment's
    /// message (its key is then `d/<name>/<rollout start>/<event>/<slot>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// A signed callback, or a commit status.
    #[serde(default)]
    pub kind: MessageKind,
    /// Where it is POSTed.
    pub url: String,
    /// The signing secret's reference (a callback), or the forge token's
    /// (a status): resolved at each attempt.
    pub secret: String,
    /// `job.queued`, `job.running`, ..., `job.succeeded`.
    pub event: String,
    /// The JSON body, as sent.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// When the state change it announces happened (ms since the epoch).
    pub created_ms: u64,
    /// When the next attempt is due; `None` once delivered or given up.
    pub next_attempt_ms: Option<u64>,
    /// Every try so far, oldest first.
    pub attempts: Vec<Attempt>,
    /// When a receiver answered 2xx.
    pub delivered_ms: Option<u64>,
    /// Why the outbox stopped trying (a day of failures).
    pub gave_up: Option<String>,
}

/// One try to deliver a message.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub struct Attempt {
    /// When it started (ms since the epoch).
    pub at_ms: u64,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why it failed without an answer (refused, timed out, ...).
    pub error: Option<String>,
    /// How long it took, connection included.
    pub took_ms: u64,
}

/// The slot of a job's forge among its messages (callbacks are 0..5).
pub const FORGE_SLOT: usize = 99;

/// The outbox key of callback `cb` for event `event` of job `job`.
pub fn key(job: u64, event: usize, cb: usize) -> String {
    format!("{job:020}/{event:04}/{cb:02}")
}

/// The messages the change from `old` to `new` owes its callbacks: one per
/// callback for each event `new` has that `old` had not (a final state
/// only, for `events = final`).
pub fn owed(old: Option<&JobRecord>, new: &JobRecord) -> Vec<OutboxEntry> {
    if new.spec.callbacks.is_empty() && new.spec.forge.is_none() {
        return Vec::new();
    }
    let seen = old.map(|o| o.events.len()).unwrap_or(0);
    let mut out = Vec::new();
    for (index, event) in new.events.iter().enumerate().skip(seen) {
        let state = event.to.name();
        let payload = serde_json::json!({
            "type": format!("job.{state}"),
            "timestamp_ms": event.at_ms,
            "data": {
                "id": new.id,
                "state": state,
                "from": event.from.map(JobState::name),
                "reason": event.reason,
                "attempt": event.attempt,
                "repository": new.spec.repository,
                "commit": new.spec.commit,
                "resolved_from": new.spec.resolved_from,
                "trigger": new.spec.trigger.clone().unwrap_or_default(),
            }
        });
        if let Some(forge) = &new.spec.forge
            && let Some(status) = status_of(forge, new, index, event)
        {
            out.push(status);
        }
        for (cb, c) in new.spec.callbacks.iter().enumerate() {
            if c.events == CallbackEvents::Final && !event.to.is_final() {
                continue;
            }
            out.push(OutboxEntry {
                key: key(new.id, index, cb),
                job: new.id,
                deployment: None,
                kind: MessageKind::Callback,
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

/// Where a commit status goes on `forge` and its body: `word` is the
/// forge's own state (`success`, `failure`, `pending`, ...).
pub fn status_request(
    forge: &ForgeSpec,
    repo: &str,
    sha: &str,
    word: &str,
    description: &str,
    context: &str,
) -> (String, serde_json::Value) {
    let api = forge.api_url.trim_end_matches('/');
    match forge.kind {
        ForgeKind::Github | ForgeKind::Gitea => (
            format!("{api}/repos/{repo}/statuses/{sha}"),
            serde_json::json!({"state": word, "description": description, "context": context}),
        ),
        ForgeKind::Gitlab => (
            format!(
                "{api}/projects/{}/statuses/{sha}",
                percent_encoding::utf8_percent_encode(repo, percent_encoding::NON_ALPHANUMERIC)
            ),
            serde_json::json!({"state": word, "description": description, "name": context}),
        ),
    }
}

/// The commit status `event` of `job` means on `forge`, if any (a job of
/// a plain directory has no commit to mark).
fn status_of(
    forge: &ForgeSpec,
    job: &JobRecord,
    index: usize,
    event: &crate::job::Event,
) -> Option<OutboxEntry> {
    let sha = &job.spec.commit;
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let repo = forge
        .repo
        .clone()
        .or_else(|| repo_path(&job.spec.repository))?;
    let (gitlab, state) = (forge.kind == ForgeKind::Gitlab, event.to);
    let word = match (state, gitlab) {
        (JobState::Succeeded, _) => "success",
        (JobState::Failed | JobState::TimedOut, false) => "failure",
        (JobState::Failed | JobState::TimedOut | JobState::Dead, true) => "failed",
        (JobState::Cancelled, true) => "canceled",
        (JobState::Cancelled | JobState::Dead, false) => "error",
        (JobState::Running, true) => "running",
        _ => "pending",
    };
    let description = match state {
        JobState::Running => format!("running (attempt {})", event.attempt),
        _ if event.reason.is_empty() => format!("job {}: {}", job.id, state.name()),
        _ => {
            let mut d = format!("{}: {}", state.name(), event.reason);
            d.truncate(d.floor_char_boundary(140));
            d
        }
    };
    let context = format!("slipway/{}", job.spec.tier.name());
    let (url, payload) = status_request(forge, &repo, sha, word, &description, &context);
    Some(OutboxEntry {
        key: key(job.id, index, FORGE_SLOT),
        job: job.id,
        deployment: None,
        kind: MessageKind::Status(forge.kind),
        url,
        secret: forge.token.clone(),
        event: format!("job.{}", state.name()),
        payload,
        created_ms: event.at_ms,
        next_attempt_ms: Some(event.at_ms),
        attempts: Vec::new(),
        delivered_ms: None,
        gave_up: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_name_come_from_the_repository_url() {
        for (url, path) in [
            ("https://github.com/acme/app.git", Some("acme/app")),
            ("git@gitlab.com:group/sub/app.git", Some("group/sub/app")),
            ("ssh://git@host:2222/acme/app", Some("acme/app")),
            ("/srv/git/app", None),
            ("https://host/app", None),
        ] {
            assert_eq!(repo_path(url).as_deref(), path, "{url}");
        }
    }
}
