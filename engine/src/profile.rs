//! Repo profiles: what a repository's jobs share (how its image is made,
//! setup and validation commands per tier, services, cache policy), so a job
//! spec can stay small. A job names a profile, or gets the one whose
//! `repository` matches its own.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::job::{FieldProblem, Network, Resources, ServiceSpec, service_problems};

/// Commands per validation tier.
#[derive(Debug, Clone, Default, PartialEq, ToSchema, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierCommands {
    /// Run by both tiers, each with `sh -c` as step `fast-<n>`; empty: none.
    #[serde(default)]
    pub fast: Vec<String>,
    /// Run by the `full` tier only, after the fast steps, as `full-<n>`.
    #[serde(default)]
    pub full: Vec<String>,
}

/// How package-manager caches are used.
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachePolicy {
    /// Mount the plan's package-manager cache volumes (default `true`);
    /// `false`: jobs start with empty caches every time.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Budget of each cache volume; pruned past it.
    pub size_mb: Option<u64>,
}

fn yes() -> bool {
    true
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            enabled: true,
            size_mb: None,
        }
    }
}

/// A repo profile (wire and persisted type; unknown fields are an error).
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Unique in the store, what a job spec's `profile` names: 1 to 64 lowercase
    /// letters, digits, `-`, `_` or `.`, starting with a letter or digit.
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z0-9][a-z0-9._-]*$")]
    pub name: String,
    /// Jobs for this repository use the profile when they name none.
    pub repository: Option<String>,
    /// The repository's Dockerfile to build (relative path); none: the
    /// repository's root Dockerfile, else a generated one. Not empty, not
    /// absolute, no `..` component.
    #[schema(min_length = 1, pattern = r"^(?!/)(?!(?:[\s\S]*/)?\.\.(?:/|$))")]
    pub dockerfile: Option<String>,
    /// Override the package manager an ecosystem plugin would pick.
    pub package_manager: Option<String>,
    /// Replaces the plan's setup commands when set.
    pub setup: Option<Vec<String>>,
    /// Replaces the plan's validation commands when set.
    pub validation: Option<TierCommands>,
    /// Services for jobs whose spec lists none (a spec's own list replaces
    /// these, it is not merged).
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    /// Whether package-manager caches are mounted, and their size budget.
    #[serde(default)]
    pub cache: CachePolicy,
    /// Variables for the job's container: set over the plan's, under the job
    /// spec's `env` and secrets.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Job timeout in seconds (at least 1), as in the job spec. Validated and
    /// stored, but the runner does not apply it: the spec's own value counts.
    #[schema(minimum = 1)]
    pub timeout_s: Option<u64>,
    /// Container limits, as in the job spec. Stored, but the runner does not
    /// apply them: the spec's own `resources` count.
    #[serde(default)]
    pub resources: Resources,
    /// Network mode, as in the job spec. Stored, but the runner does not apply
    /// it: the spec's own `network` counts.
    #[serde(default)]
    pub network: Network,
}

/// Whether `name` can name a profile: 1 to 64 lowercase ASCII letters, digits,
/// `-`, `_` or `.`, starting with a letter or digit.
pub fn valid_profile_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '0'..='9'))
        && name.len() <= 64
        && chars.all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.'
        })
}

impl Profile {
    /// Every problem, by field.
    pub fn validate(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| {
            problems.push(FieldProblem {
                field: field.to_owned(),
                message,
            })
        };
        if !valid_profile_name(&self.name) {
            problem(
                "name",
                format!(
                    "`{}` is not a profile name: lowercase letters, digits, `-`, `_`, `.`; at most 64",
                    self.name
                ),
            );
        }
        if let Some(path) = &self.dockerfile
            && (path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c == ".."))
        {
            problem(
                "dockerfile",
                format!("`{path}` must be a path inside the repository, relative to its root"),
            );
        }
        for (tier, commands) in self
            .validation
            .iter()
            .flat_map(|v| [("fast", &v.fast), ("full", &v.full)])
        {
            for (i, c) in commands.iter().enumerate() {
                if c.trim().is_empty() {
                    problem(
                        &format!("validation.{tier}[{i}]"),
                        "is an empty command".into(),
                    );
                }
            }
        }
        for (i, c) in self.setup.iter().flatten().enumerate() {
            if c.trim().is_empty() {
                problem(&format!("setup[{i}]"), "is an empty command".into());
            }
        }
        for p in service_problems(&self.services) {
            problem(&p.field, p.message);
        }
        if self.timeout_s == Some(0) {
            problem("timeout_s", "must be at least 1".into());
        }
        for p in crate::job::resource_problems("resources", &self.resources) {
            problem(&p.field, p.message);
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_fields() {
        let p: Profile = serde_json::from_str(
            r#"{"name": "Web App", "dockerfile": "../Dockerfile", "validation": {"fast": [" "]}, "timeout_s": 0}"#,
        )
        .unwrap();
        let fields: Vec<String> = p.validate().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            vec!["name", "dockerfile", "validation.fast[0]", "timeout_s"]
        );
        let ok: Profile =
            serde_json::from_str(r#"{"name": "web", "repository": "https://x/y.git"}"#).unwrap();
        assert!(ok.validate().is_empty());
        assert!(ok.cache.enabled);
        assert!(serde_json::from_str::<Profile>(r#"{"name": "x", "dockerfle": "D"}"#).is_err());
    }
}
