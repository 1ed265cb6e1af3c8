//! Workspaces: a job's prepared environment kept open for an edit-validate
//! loop (docs/design.md, "Workspaces"). These are the wire and persisted types;
//! `workspaces` keeps the live ones.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::job::FindingView;
use crate::job::{FieldProblem, JobSpec, SpecPolicy, Tier};
use crate::plan::Step;
use crate::runner::services::ServiceView;

/// Default idle timeout and maximum lifetime of a workspace.
pub const DEFAULT_IDLE_TIMEOUT_S: u64 = 30 * 60;
/// Default maximum lifetime of a workspace, in seconds (8 h).
pub const DEFAULT_MAX_LIFETIME_S: u64 = 8 * 3600;

/// Where a workspace is in its life; `closed` and `failed` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkspaceState {
    /// Its environment is being set up (checkout, image, services, setup steps).
    Preparing,
    /// Set up: calls (files, patch, diff, validate, reset) may use it.
    Ready,
    /// Closed normally: deleted, idle or past its lifetime, or the engine stopped.
    Closed,
    /// Preparing failed, its container stopped, or a restarted engine could not take it over.
    Failed,
}

impl WorkspaceState {
    /// Preparing or ready: it holds a pod and counts against the open-workspace limit.
    pub fn is_open(self) -> bool {
        matches!(self, WorkspaceState::Preparing | WorkspaceState::Ready)
    }
}

/// `POST /api/v1/workspaces`: the job spec's fields plus the two timeouts.
#[derive(Debug, Clone, ToSchema)]
pub struct WorkspaceRequest {
    /// The job spec it is prepared from (repository, commit, profile, services, ...).
    pub spec: JobSpec,
    /// Seconds without a call before it is closed; default 30 min.
    pub idle_timeout_s: u64,
    /// Seconds after creation before it is closed, used or not; default 8 h.
    pub max_lifetime_s: u64,
}

impl WorkspaceRequest {
    /// Split the body into the job spec and the workspace's own fields
    /// (the job spec refuses unknown fields, so they are taken out first).
    pub fn from_json(mut body: serde_json::Value) -> Result<WorkspaceRequest, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let mut take = |name: &str, default: u64| -> u64 {
            let Some(map) = body.as_object_mut() else {
                return default;
            };
            match map.remove(name) {
                None | Some(serde_json::Value::Null) => default,
                Some(v) => match v.as_u64() {
                    Some(n) if n > 0 => n,
                    _ => {
                        problems.push(FieldProblem {
                            field: name.to_owned(),
                            message: format!("must be a whole number of seconds above 0, not {v}"),
                        });
                        default
                    }
                },
            }
        };
        let idle_timeout_s = take("idle_timeout_s", DEFAULT_IDLE_TIMEOUT_S);
        let max_lifetime_s = take("max_lifetime_s", DEFAULT_MAX_LIFETIME_S);
        let spec: JobSpec = match serde_json::from_value(body) {
            Ok(spec) => spec,
            Err(e) => {
                problems.push(FieldProblem {
                    field: String::new(),
                    message: e.to_string(),
                });
                return Err(problems);
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(WorkspaceRequest {
            spec,
            idle_timeout_s,
            max_lifetime_s,
        })
    }

    /// The spec's problems under `policy`, plus an idle timeout longer than the lifetime;
    /// empty when the request is valid.
    pub fn validate(&self, policy: &SpecPolicy) -> Vec<FieldProblem> {
        let mut problems = self.spec.validate(policy);
        if self.idle_timeout_s > self.max_lifetime_s {
            problems.push(FieldProblem {
                field: "idle_timeout_s".into(),
                message: "must not be longer than max_lifetime_s".into(),
            });
        }
        problems
    }
}

/// One step of a validate call.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub struct StepResult {
    /// The step's name (`lint`, `test`, ...).
    pub name: String,
    /// The shell command it ran.
    pub command: String,
    /// `None` when it was stopped (its timeout).
    pub exit_code: Option<i64>,
    /// How long it ran, in ms; 0 when it never started.
    pub duration_ms: u64,
    /// stdout and stderr as they came, capped (the end is kept).
    pub output: String,
    /// Findings parsed from the step's report by the validator plugin of its format; empty
    /// when it writes no report (or see `findings_error`).
    pub findings: Vec<FindingView>,
    /// Why `findings` is empty although the step has a report (the report
    /// is missing, no validator reads its format, the validator failed).
    pub findings_error: Option<String>,
    /// The step ran past its timeout and was stopped.
    pub timed_out: bool,
    /// Files the step changed in the checkout (it fails then: its changes
    /// are undone, and each file is a finding `slipway/changed-files`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_files: Vec<String>,
}

/// The result of `POST /api/v1/workspaces/{id}/validate`, also kept in the
/// workspace's history.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub struct ValidateResult {
    /// The tier run: `fast`, or `full` (the `fast` steps, then the `full` ones).
    pub tier: Tier,
    /// Every step exited 0; also true when there were no steps (see `note`).
    pub ok: bool,
    /// Wall time of the whole call, in ms.
    pub duration_ms: u64,
    /// When the call finished (Unix ms).
    pub at_ms: u64,
    /// sha256 of the diff against the base commit the steps ran on.
    pub diff_sha256: String,
    /// The steps that ran, in order; the run stops at the first that fails.
    pub steps: Vec<StepResult>,
    /// Set when the tier had no steps: `ok` then means nothing was checked.
    #[serde(default)]
    pub note: Option<String>,
}

/// A workspace as stored and reported.
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
pub struct WorkspaceRecord {
    /// The workspace's id (`ws-` and 12 hex digits), chosen by the server.
    pub id: String,
    /// `preparing`, `ready`, or final: `closed` or `failed` (see `reason`).
    pub state: WorkspaceState,
    /// Why it failed or was closed.
    pub reason: Option<String>,
    /// What it is doing while preparing.
    pub progress: Option<String>,
    /// The repository it was created from, as given in the spec.
    pub repository: String,
    /// The `tier` of the spec it was created from; each validate call names its own.
    pub tier: Tier,
    /// The exact commit its files are compared with and reset to.
    pub base_sha: Option<String>,
    /// The image its workload runs (tag); `null` until it is ready.
    pub image: Option<String>,
    /// `name@version@sha256` of the plugin that planned it.
    pub planned_by: Option<String>,
    /// Every plugin used to prepare it (plan, steps, readiness).
    #[serde(default)]
    pub plugins: Vec<String>,
    /// When it was created (Unix ms); `max_lifetime_s` counts from here.
    pub created_ms: u64,
    /// When a call last used it (Unix ms); `idle_timeout_s` counts from here.
    pub last_used_ms: u64,
    /// A ready workspace idle longer than this many seconds is closed.
    pub idle_timeout_s: u64,
    /// A ready workspace is closed this many seconds after creation, used or not.
    pub max_lifetime_s: u64,
    /// `full` validate calls so far (capped per workspace).
    pub full_runs: u32,
    /// Validate calls, oldest first (the last 100).
    #[serde(default)]
    pub history: Vec<ValidateResult>,
}

/// What an engine needs to take a `ready` workspace over after a restart
/// (docs/design.md, "Containers": on start the engine adopts an open workspace). Kept in the
/// store beside the record while the workspace is ready; never served.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkspaceRuntime {
    /// The workload container, where steps run as execs.
    pub container: String,
    /// Where steps run in the container (the checkout, `/workspace`).
    pub workdir: String,
    /// `uid:gid` the steps run as.
    pub user: String,
    /// Time limit of each step, in ms (the spec's `timeout_s`, else the engine's default).
    pub step_timeout_ms: u64,
    /// Steps of a `fast` validate call.
    pub fast: Vec<Step>,
    /// Steps a `full` call runs after the `fast` ones.
    pub full: Vec<Step>,
    /// Its services, to follow, probe and reset them after a takeover.
    pub services: Vec<RuntimeService>,
}

/// A workspace's service as its runtime keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeService {
    /// The service's name, as in the spec.
    pub name: String,
    /// Its container's id.
    pub container: String,
    /// The service as plugins see it.
    pub service: ServiceView,
    /// The command that brings it back to its state right after setup.
    pub reset: Option<Vec<String>>,
}

/// How many validate results a workspace keeps.
pub const HISTORY_KEPT: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_a_job_spec_plus_two_timeouts() {
        let r = WorkspaceRequest::from_json(serde_json::json!({
            "repository": "/srv/app", "commit": "HEAD", "idle_timeout_s": 60,
        }))
        .unwrap();
        assert_eq!(
            (r.idle_timeout_s, r.max_lifetime_s),
            (60, DEFAULT_MAX_LIFETIME_S)
        );
        let problems = WorkspaceRequest::from_json(serde_json::json!({
            "repository": "/srv/app", "commit": "HEAD", "idle_timeout_s": -1, "surprise": 1,
        }))
        .unwrap_err();
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect();
        assert!(
            text[0].starts_with("idle_timeout_s: must be a whole number"),
            "{text:?}"
        );
        assert!(text[1].contains("unknown field `surprise`"), "{text:?}");
    }
}
