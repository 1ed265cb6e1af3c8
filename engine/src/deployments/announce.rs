//! What a rollout owes the deployment's callbacks and forge: one message
//! per receiver when it starts (`deployment.deploying`, a `pending`
//! status) and when it ends (`deployment.deployed`, `.rolled_back`,
//! `.gate_failed` or `.failed`). They go through the same outbox as job
//! callbacks, written in the same store transaction as the deployment's
//! state, so a crash loses none; the same sender signs and retries them.

use crate::callbacks::{MessageKind, OutboxEntry, repo_path, status_request};

use super::{Deployment, RolloutResult};

/// The slot of the forge among a rollout event's messages.
const FORGE_SLOT: usize = 99;

/// A rollout event: its start, or its end with the result.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// The rollout began (gate, build, start).
    Deploying,
    /// It ended so.
    Ended(RolloutResult),
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Event::Deploying => "deploying",
            Event::Ended(result) => result.name(),
        }
    }

    fn index(self) -> usize {
        match self {
            Event::Deploying => 0,
            Event::Ended(_) => 1,
        }
    }

    /// The forge's word for it (GitLab's differ).
    fn status_word(self, gitlab: bool) -> &'static str {
        match (self, gitlab) {
            (Event::Deploying, true) => "running",
            (Event::Deploying, false) => "pending",
            (Event::Ended(RolloutResult::Deployed), _) => "success",
            (Event::Ended(_), true) => "failed",
            (Event::Ended(RolloutResult::Failed), false) => "error",
            (Event::Ended(_), false) => "failure",
        }
    }
}

/// The outbox key of a deployment's message.
pub fn key(name: &str, started_ms: u64, event: usize, slot: usize) -> String {
    format!("d/{name}/{started_ms:020}/{event:04}/{slot:02}")
}

/// The key prefix of every message of deployment `name`.
pub fn prefix(name: &str) -> String {
    format!("d/{name}/")
}

/// The messages `event` of the rollout of `commit` (begun at `started_ms`)
/// owes `d`'s receivers; `reason` says why it ended as it did.
pub fn messages(
    d: &Deployment,
    event: Event,
    commit: &str,
    started_ms: u64,
    reason: Option<&str>,
    at_ms: u64,
) -> Vec<OutboxEntry> {
    let name = &d.spec.name;
    let kind = event.name();
    let entry =
        |slot: usize, kind_of: MessageKind, url: String, secret: String, payload| OutboxEntry {
            key: key(name, started_ms, event.index(), slot),
            job: 0,
            deployment: Some(name.clone()),
            kind: kind_of,
            url,
            secret,
            event: format!("deployment.{kind}"),
            payload,
            created_ms: at_ms,
            next_attempt_ms: Some(at_ms),
            attempts: Vec::new(),
            delivered_ms: None,
            gave_up: None,
        };
    let mut out = Vec::new();
    let body = serde_json::json!({
        "type": format!("deployment.{kind}"),
        "timestamp_ms": at_ms,
        "data": {
            "name": name,
            "repository": d.spec.repository,
            "branch": d.spec.branch,
            "commit": commit,
            "running": d.running_commit(),
            "reason": reason,
            "rollout_started_ms": started_ms,
        }
    });
    for (slot, c) in d.spec.callbacks.iter().enumerate() {
        out.push(entry(
            slot,
            MessageKind::Callback,
            c.url.clone(),
            c.secret.clone(),
            body.clone(),
        ));
    }
    let full_sha = commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(forge) = &d.spec.forge
        && full_sha
        && let Some(repo) = forge.repo.clone().or_else(|| repo_path(&d.spec.repository))
    {
        let gitlab = forge.kind == crate::callbacks::ForgeKind::Gitlab;
        let mut description = match reason {
            Some(r) => format!("{kind}: {r}"),
            None => format!("deployment {name}: {kind}"),
        };
        description.truncate(description.floor_char_boundary(140));
        let (url, payload) = status_request(
            forge,
            &repo,
            commit,
            event.status_word(gitlab),
            &description,
            &format!("slipway/deploy/{name}"),
        );
        out.push(entry(
            FORGE_SLOT,
            MessageKind::Status(forge.kind),
            url,
            forge.token.clone(),
            payload,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployments::DeploymentSpec;

    fn deployment(json: serde_json::Value) -> Deployment {
        let spec: DeploymentSpec = serde_json::from_value(json).unwrap();
        Deployment::new(spec, 1)
    }

    #[test]
    fn each_receiver_gets_one_message_per_event_and_the_forge_a_status() {
        let d = deployment(serde_json::json!({
            "name": "shop", "repository": "https://git.example.com/acme/shop.git", "branch": "main",
            "callbacks": [{"url": "https://hooks.example.com/a", "secret": "env:S"}],
            "forge": {"kind": "github", "api_url": "https://api.github.com", "token": "env:T"},
        }));
        let sha = "a".repeat(40);
        let start = messages(&d, Event::Deploying, &sha, 7, None, 8);
        assert_eq!(start.len(), 2);
        assert_eq!(start[0].event, "deployment.deploying");
        assert_eq!(start[0].key, "d/shop/00000000000000000007/0000/00");
        assert_eq!(start[0].payload["data"]["commit"], sha.as_str());
        assert_eq!(
            start[1].url,
            format!("https://api.github.com/repos/acme/shop/statuses/{sha}")
        );
        assert_eq!(start[1].payload["state"], "pending");
        assert_eq!(start[1].payload["context"], "slipway/deploy/shop");
        let end = messages(
            &d,
            Event::Ended(RolloutResult::RolledBack),
            &sha,
            7,
            Some("web not healthy within 20 s"),
            9,
        );
        assert_eq!(end[0].event, "deployment.rolled_back");
        assert_eq!(
            end[0].payload["data"]["reason"],
            "web not healthy within 20 s"
        );
        assert_eq!(end[1].payload["state"], "failure");
        assert!(end.iter().all(|m| m.key.starts_with(&prefix("shop"))));
        assert!(end[0].key > start[0].key, "in order within the rollout");
    }

    #[test]
    fn without_receivers_nothing_is_owed() {
        let d = deployment(serde_json::json!({
            "name": "shop", "repository": "/srv/git/shop", "branch": "main",
        }));
        assert!(messages(&d, Event::Deploying, &"a".repeat(40), 1, None, 1).is_empty());
    }
}
