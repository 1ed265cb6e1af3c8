//! Long-running managed services (workers, small deployments): what a user
//! declares over `/api/v1/services`, stored durably; the runner's
//! supervisor keeps the containers in line with it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::job::{FieldProblem, Network, ReadinessSpec, Resources, now_ms};

/// What to do when the service's container exits or fails its liveness
/// check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ToSchema, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    /// Restart after any exit or failed liveness check.
    #[default]
    Always,
    /// Restart unless the process exited with 0 (then it is `stopped`).
    OnFailure,
    /// Never restart: the first failure is final.
    Never,
}

/// Restarts back off exponentially (`backoff_ms` doubling up to
/// `max_backoff_ms`); more than `max_restarts` within `window_s` marks the
/// service `failed` instead of restarting it again.
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartPolicy {
    /// When to restart at all; default `always`.
    pub mode: RestartMode,
    /// Restarts allowed within `window_s` before the service is `failed`; default 5.
    pub max_restarts: u32,
    /// Length of the sliding window restarts are counted in, in seconds (at least 1); default 300.
    #[schema(minimum = 1)]
    pub window_s: u64,
    /// Wait before the first restart in the window, in ms (at least 1, at most
    /// `max_backoff_ms`), doubling after each; default 500.
    #[schema(minimum = 1)]
    pub backoff_ms: u64,
    /// Cap on the wait between restarts, in ms (at least 1); default 30000.
    #[schema(minimum = 1)]
    pub max_backoff_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            mode: RestartMode::Always,
            max_restarts: 5,
            window_s: 300,
            backoff_ms: 500,
            max_backoff_ms: 30_000,
        }
    }
}

/// A named volume mounted into the service; it outlives the container.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// Volume name (lowercase letters, digits, `-`); the Docker volume is
    /// `slipway-<engine>-<service>-<name>`.
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = "^(?!health$)[a-z0-9][a-z0-9-]*$"
    )]
    pub name: String,
    /// Absolute path inside the container, without `..`.
    #[schema(pattern = r"^/(?!(?:[\s\S]*/)?\.\.(?:/|$))")]
    pub path: String,
}

/// A managed service as declared (wire and persisted type).
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedServiceSpec {
    /// The service's name, unique on this engine: 1 to 63 lowercase letters, digits and
    /// `-`, starting with a letter or digit (`health` is reserved).
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = "^(?!health$)[a-z0-9][a-z0-9-]*$"
    )]
    pub name: String,
    /// Image to run (e.g. `redis:7`), with its own entrypoint and user.
    #[schema(pattern = r"\S")]
    pub image: String,
    /// Empty: the image's own command.
    #[serde(default)]
    pub command: Vec<String>,
    /// Environment variables of its container, by name.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are secrets: name → reference
    /// (`env:VARIABLE` in the engine's environment, `file:/path`). Stored as
    /// references; the engine reads the value each time it starts the
    /// container, and the service's log has it redacted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// Ports it listens on inside its pod; with no `readiness`, a `tcp` check on them.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// CPU, memory (MiB) and process caps of its container; unset: no CPU or memory cap,
    /// 512 processes.
    #[serde(default)]
    pub resources: Resources,
    /// Decides when the service counts as ready (and gates `healthy`).
    pub readiness: Option<ReadinessSpec>,
    /// Checked while it runs; failures past the plugin's threshold restart it.
    pub liveness: Option<ReadinessSpec>,
    /// When and how often to restart it after it exits or fails its liveness check.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Named volumes to mount; their data survives restarts and replacement of the spec.
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    /// Network of its pod: `none` (default), `bridge` or `host`.
    #[serde(default)]
    pub network: Network,
    /// GPUs for its container (a count or `"all"`), as for a job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<crate::job::Gpus>,
    /// `required` (the default) or `preferred` (run on the CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<crate::job::GpuPolicy>,
    /// Set by the engine on the services a deployment runs; a client may
    /// not set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, read_only)]
    pub deployment: Option<DeploymentBinding>,
}

/// What a deployment adds to a service it runs: its place on the
/// deployment's network and what Compose says beyond a managed service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentBinding {
    /// The deployment's name.
    pub deployment: String,
    /// The commit this service was built and configured from.
    pub commit: String,
    /// The deployment's user-defined network.
    pub network: String,
    /// Its name there (the Compose service name) and its published ports.
    pub reach: crate::runtime::spec::Reach,
    /// `host-or-volume:container[:ro]`: named volumes and binds inside the checkout.
    #[serde(default)]
    pub binds: Vec<String>,
    /// Replaces the image's entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// The user the container runs as.
    #[serde(default)]
    pub user: Option<String>,
    /// The working directory.
    #[serde(default)]
    pub workdir: Option<String>,
    /// The Compose file's labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A declared service with its bookkeeping.
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
pub struct ManagedService {
    /// The service as declared.
    pub spec: ManagedServiceSpec,
    /// When the service was first declared (Unix ms); kept when it is replaced.
    pub created_ms: u64,
    /// When its declaration was last created or replaced (Unix ms).
    pub updated_ms: u64,
}

impl ManagedService {
    /// A service declared now: `created_ms` and `updated_ms` both set to the current time.
    pub fn new(spec: ManagedServiceSpec) -> ManagedService {
        let now = now_ms();
        ManagedService {
            spec,
            created_ms: now,
            updated_ms: now,
        }
    }
}

/// Names under `/api/v1/services/` that are routes, not services.
const RESERVED: &[&str] = &["health"];

/// Is `name` usable as a service (or volume) name: 1 to 63 lowercase letters, digits and
/// `-`, starting with a letter or digit, and not a reserved route?
pub fn valid_service_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '0'..='9'))
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !RESERVED.contains(&name)
}

impl ManagedServiceSpec {
    /// Every problem, by field.
    pub fn validate(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| {
            problems.push(FieldProblem {
                field: field.to_owned(),
                message,
            })
        };
        if !valid_service_name(&self.name) {
            problem(
                "name",
                if RESERVED.contains(&self.name.as_str()) {
                    format!(
                        "`{}` is reserved (it is a route under /api/v1/services)",
                        self.name
                    )
                } else {
                    format!(
                        "`{}` must be 1 to 63 lowercase letters, digits and `-`, starting with a letter or digit",
                        self.name
                    )
                },
            );
        }
        if self.image.trim().is_empty() {
            problem("image", "is empty".into());
        }
        if self.ports.contains(&0) {
            problem("ports", "0 is not a port".into());
        }
        for p in crate::job::gpu_problems(self.gpus, self.gpu) {
            problem(&p.field, p.message);
        }
        for (field, check) in [("readiness", &self.readiness), ("liveness", &self.liveness)] {
            if let Some(c) = check
                && c.plugin.trim().is_empty()
            {
                problem(
                    &format!("{field}.plugin"),
                    "is empty (hint: e.g. `tcp`, `http`, `exec`, `postgres`)".into(),
                );
            }
        }
        for p in crate::job::resource_problems("resources", &self.resources) {
            problem(&p.field, p.message);
        }
        let r = &self.restart;
        if r.window_s == 0 {
            problem("restart.window_s", "must be at least 1".into());
        }
        if r.backoff_ms == 0 || r.max_backoff_ms < r.backoff_ms {
            problem(
                "restart.backoff_ms",
                "must be at least 1 and at most restart.max_backoff_ms".into(),
            );
        }
        for (i, v) in self.volumes.iter().enumerate() {
            if !valid_service_name(&v.name) {
                problem(
                    &format!("volumes[{i}].name"),
                    format!("`{}` must be lowercase letters, digits and `-`", v.name),
                );
            }
            if !v.path.starts_with('/') || v.path.split('/').any(|c| c == "..") {
                problem(
                    &format!("volumes[{i}].path"),
                    format!("`{}` must be an absolute path without `..`", v.path),
                );
            }
        }
        for name in self.env.keys() {
            if name.is_empty() || name.contains('=') {
                problem(
                    &format!("env.{name}"),
                    "a variable name must be non-empty and have no `=`".into(),
                );
            }
        }
        for (field, message) in crate::secrets::spec_problems(
            &self.secrets,
            &self.env,
            |n| !n.is_empty() && !n.contains('='),
            "a variable name must be non-empty and have no `=`",
        ) {
            problem(&field, message);
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_checked_field_by_field() {
        let spec: ManagedServiceSpec = serde_json::from_value(serde_json::json!({
            "name": "health", "image": "", "ports": [0],
            "liveness": {"plugin": " "},
            "restart": {"backoff_ms": 10, "max_backoff_ms": 5, "window_s": 0},
            "volumes": [{"name": "Data", "path": "data/../x"}],
            "env": {"A": "1"},
            "secrets": {"A": "env:A", "B": "B_VALUE", "C": "file:/run/secrets/c"},
        }))
        .unwrap();
        let fields: Vec<String> = spec.validate().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "name",
                "image",
                "ports",
                "liveness.plugin",
                "restart.window_s",
                "restart.backoff_ms",
                "volumes[0].name",
                "volumes[0].path",
                "secrets.A",
                "secrets.B"
            ]
        );
        let ok: ManagedServiceSpec = serde_json::from_value(serde_json::json!({
            "name": "worker-1", "image": "redis:7",
        }))
        .unwrap();
        assert!(ok.validate().is_empty());
        assert_eq!(ok.restart, RestartPolicy::default());
        let unknown = serde_json::from_value::<ManagedServiceSpec>(serde_json::json!({
            "name": "w", "image": "x", "restart": {"tries": 3},
        }));
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("unknown field `tries`")
        );
    }
}
