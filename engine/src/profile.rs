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
    #[serde(default)]
    pub fast: Vec<String>,
    #[serde(default)]
    pub full: Vec<String>,
}

/// How package-manager caches are used.
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachePolicy {
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
    pub name: String,
    /// Jobs for this repository use the profile when they name none.
    pub repository: Option<String>,
    /// The repository's Dockerfile to build (relative path); none: the
    /// repository's root Dockerfile, else a generated one.
    pub dockerfile: Option<String>,
    /// Override the package manager an ecosystem plugin would pick.
    pub package_manager: Option<String>,
    /// Replaces the plan's setup commands when set.
    pub setup: Option<Vec<String>>,
    /// Replaces the plan's validation commands when set.
    pub validation: Option<TierCommands>,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    #[serde(default)]
    pub cache: CachePolicy,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub timeout_s: Option<u64>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub network: Network,
}

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
