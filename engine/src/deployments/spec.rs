//! What a client declares: a repository's branch and the Compose file in
//! it, kept running at the branch's head.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::job::{FieldProblem, SpecPolicy, Tier, repository_problem};

/// The longest deployment name: its services are managed services named
/// `<deployment>-<service>-<hash>` within 63 characters.
pub const NAME_MAX: usize = 24;

/// A deployment as declared (wire and persisted type).
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    /// 1 to 24 lowercase letters, digits and `-`, starting with a letter and
    /// not ending with `-`.
    #[schema(
        min_length = 1,
        max_length = 24,
        pattern = "^[a-z](?:[a-z0-9-]*[a-z0-9])?$"
    )]
    pub name: String,
    /// A git URL, or an absolute local path where the configuration allows them.
    #[schema(min_length = 1)]
    pub repository: String,
    /// The branch whose head is deployed: not blank, no space or `..`, not
    /// starting with `-`.
    #[schema(pattern = r"^\s*(?!-)(?![\s\S]*\.\.)\S(?:[^ ]*\S)?\s*$")]
    pub branch: String,
    /// The Compose file, relative to the repository; default `compose.yaml`,
    /// then `compose.yml`, `docker-compose.yaml`, `docker-compose.yml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, pattern = r"^(?!/)(?!(?:[\s\S]*/)?\.\.(?:/|$))")]
    pub file: Option<String>,
    /// A job tier that must succeed on a commit before it is deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<Tier>,
    /// The profile the gate job runs with (its steps and image), when the
    /// repository's own plan is not what should gate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_profile: Option<String>,
    /// Seconds a rollout's services have to become healthy before it is
    /// rolled back (1 to 3600).
    #[serde(default = "default_health_timeout")]
    #[schema(minimum = 1, maximum = 3600)]
    pub health_timeout_s: u64,
    /// Seconds between looks at the branch's head (1 to 86400).
    #[serde(default = "default_poll")]
    #[schema(minimum = 1, maximum = 86400)]
    pub poll_s: u64,
    /// Variables for `${VAR}` in the Compose file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Secrets by reference (`env:VARIABLE`, `file:/path`), by name. A
    /// service uses one as a whole `environment` value (`PASSWORD:
    /// ${NAME}`); the engine reads it when it starts the container, and
    /// neither the deployment, its services nor their logs show the value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// Remove services that left the Compose file; otherwise they keep running.
    #[serde(default)]
    pub prune: bool,
    /// URLs told of each rollout (`deployment.deploying`, then
    /// `deployment.deployed`, `.rolled_back`, `.gate_failed` or `.failed`),
    /// signed as job callbacks are (`events` is not used: every rollout
    /// event is sent). At most 5.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 5)]
    pub callbacks: Vec<crate::callbacks::CallbackSpec>,
    /// Where each rollout is posted as a commit status (context
    /// `slipway/deploy/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge: Option<crate::callbacks::ForgeSpec>,
}

fn default_health_timeout() -> u64 {
    120
}

fn default_poll() -> u64 {
    30
}

/// Whether `name` can name a deployment.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= NAME_MAX
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

impl DeploymentSpec {
    /// Every problem, by field.
    pub fn validate(&self, policy: &SpecPolicy) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| {
            problems.push(FieldProblem {
                field: field.to_owned(),
                message,
            })
        };
        if !valid_name(&self.name) {
            problem(
                "name",
                format!(
                    "`{}` must be 1 to {NAME_MAX} lowercase letters, digits and `-`, starting with a letter",
                    self.name
                ),
            );
        }
        if let Some(message) = repository_problem(&self.repository, policy) {
            problem("repository", message);
        }
        let branch = self.branch.trim();
        if branch.is_empty()
            || branch.starts_with('-')
            || branch.contains("..")
            || branch.contains(' ')
        {
            problem("branch", format!("`{}` is not a branch name", self.branch));
        }
        if let Some(file) = &self.file
            && (file.starts_with('/') || file.split('/').any(|c| c == "..") || file.is_empty())
        {
            problem(
                "file",
                format!("`{file}` must be a path inside the repository"),
            );
        }
        if !(1..=3600).contains(&self.health_timeout_s) {
            problem("health_timeout_s", "must be 1 to 3600".into());
        }
        if !(1..=86_400).contains(&self.poll_s) {
            problem("poll_s", "must be 1 to 86400".into());
        }
        for name in self.env.keys() {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                problem(
                    &format!("env.{name}"),
                    "names letters, digits and `_` only".into(),
                );
            }
        }
        let name_ok =
            |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        for (field, message) in crate::secrets::spec_problems(
            &self.secrets,
            &self.env,
            name_ok,
            "names letters, digits and `_` only",
        ) {
            problem(&field, message);
        }
        problems.extend(crate::callbacks::problems(&self.callbacks));
        if let Some(forge) = &self.forge {
            problems.extend(crate::callbacks::forge_problems(forge, &self.repository));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> DeploymentSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn defaults_and_problems() {
        let ok = spec(
            serde_json::json!({"name": "shop", "repository": "https://git.example/shop.git", "branch": "main"}),
        );
        assert_eq!((ok.health_timeout_s, ok.poll_s, ok.prune), (120, 30, false));
        assert!(ok.validate(&SpecPolicy::default()).is_empty());
        let bad = spec(serde_json::json!({
            "name": "Shop_1", "repository": "/srv/shop", "branch": "-x", "file": "../c.yaml",
            "health_timeout_s": 0, "env": {"A-B": "1", "P": "x"},
            "secrets": {"P": "env:P", "Q": "plain"}
        }));
        let fields: Vec<String> = bad
            .validate(&SpecPolicy::default())
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "name",
                "repository",
                "branch",
                "file",
                "health_timeout_s",
                "env.A-B",
                "secrets.P",
                "secrets.Q"
            ]
        );
        assert!(valid_name("a-b1") && !valid_name("a-") && !valid_name(&"a".repeat(25)));
    }
}
