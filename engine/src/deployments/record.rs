//! What the engine keeps about a deployment: its two states (as Argo CD has
//! them: sync and health), the release running and the one before it, and
//! a history of rollouts.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::spec::DeploymentSpec;
use crate::job::JobId;
use crate::service::ManagedServiceSpec;

/// Rollouts kept in a deployment's history (newest first).
pub const HISTORY_KEPT: usize = 50;

/// Whether what runs is what the branch says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    /// The branch's head runs (or the user chose what runs: `rollback`).
    Synced,
    /// The branch moved and its head is not deployed yet.
    #[default]
    OutOfSync,
    /// A rollout is under way.
    Deploying,
    /// The last rollout failed (its commit is not tried again until a new
    /// commit or `up`); what ran before still runs.
    Failed,
}

/// How the running release is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Every service is ready.
    Healthy,
    /// A service is starting or restarting.
    Progressing,
    /// A service failed past its restart budget.
    Degraded,
    /// Nothing runs (never deployed, or `down`).
    #[default]
    Missing,
}

/// One Compose service of a release, as the managed service that runs it.
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
pub struct ReleasedService {
    /// The Compose service's name.
    pub name: String,
    /// The managed service's declaration (name `<deployment>-<service>-<hash>`).
    pub spec: ManagedServiceSpec,
    /// Compose services that must be ready before this one starts
    /// (`depends_on` with `service_healthy`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub healthy_deps: Vec<String>,
}

/// A commit's services, as deployed.
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
pub struct Release {
    /// The commit.
    pub commit: String,
    /// Its services, in start order.
    pub services: Vec<ReleasedService>,
    /// When it became the running release (Unix ms).
    pub at_ms: u64,
}

/// How a rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutResult {
    /// The commit runs, healthy.
    Deployed,
    /// Its gate job did not succeed: nothing was touched.
    GateFailed,
    /// It could not be prepared (Compose file, build): nothing was touched.
    Failed,
    /// Its services did not become healthy in time: the release before it
    /// was brought back.
    RolledBack,
}

impl RolloutResult {
    /// Its name, as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            RolloutResult::Deployed => "deployed",
            RolloutResult::GateFailed => "gate_failed",
            RolloutResult::Failed => "failed",
            RolloutResult::RolledBack => "rolled_back",
        }
    }
}

/// One rollout, as the history shows it.
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
pub struct Rollout {
    /// The commit rolled out.
    pub commit: String,
    /// What asked for it: `push` (the branch moved), `up`, `rollback`.
    pub cause: String,
    /// The gate job, when the deployment has a gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>)]
    pub gate_job: Option<JobId>,
    /// How it ended.
    pub result: RolloutResult,
    /// Why, when it did not deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it started (Unix ms).
    pub started_ms: u64,
    /// How long it took, in ms.
    pub duration_ms: u64,
}

/// A deployment with its state.
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
pub struct Deployment {
    /// As declared.
    pub spec: DeploymentSpec,
    /// When it was declared (Unix ms).
    pub created_ms: u64,
    /// Whether what runs is the branch's head.
    pub sync: SyncState,
    /// How what runs is doing.
    pub health: HealthState,
    /// Why it is not synced and healthy, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The branch's head as last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wanted: Option<String>,
    /// What runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<Release>,
    /// What ran before (`rollback` brings it back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Release>,
    /// The last commit whose rollout failed: not tried again until the
    /// branch moves or `up` is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_commit: Option<String>,
    /// Stopped by `down`: nothing runs, and nothing is deployed until `up`.
    #[serde(default)]
    pub down: bool,
    /// Rollouts, newest first.
    #[serde(default)]
    pub history: Vec<Rollout>,
}

impl Deployment {
    /// A new deployment: nothing runs yet.
    pub fn new(spec: DeploymentSpec, now_ms: u64) -> Deployment {
        Deployment {
            spec,
            created_ms: now_ms,
            sync: SyncState::OutOfSync,
            health: HealthState::Missing,
            reason: None,
            wanted: None,
            running: None,
            previous: None,
            failed_commit: None,
            down: false,
            history: Vec::new(),
        }
    }

    /// Record a rollout, keeping the newest [`HISTORY_KEPT`].
    pub fn remember(&mut self, rollout: Rollout) {
        self.history.insert(0, rollout);
        self.history.truncate(HISTORY_KEPT);
    }

    /// The commit running, if any.
    pub fn running_commit(&self) -> Option<&str> {
        self.running.as_ref().map(|r| r.commit.as_str())
    }
}

impl SyncState {
    /// The name the API and CLI use.
    pub fn name(self) -> &'static str {
        match self {
            SyncState::Synced => "synced",
            SyncState::OutOfSync => "out_of_sync",
            SyncState::Deploying => "deploying",
            SyncState::Failed => "failed",
        }
    }
}

impl HealthState {
    /// The name the API and CLI use.
    pub fn name(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Progressing => "progressing",
            HealthState::Degraded => "degraded",
            HealthState::Missing => "missing",
        }
    }
}
