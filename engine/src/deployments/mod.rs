//! Deployments: a Compose stack kept at a branch's head.
//!
//! A deployment names a repository, a branch and the Compose file in it. The
//! controller looks at the branch every `poll_s`; a new head is rolled out
//! once: its gate job (a tier that must succeed on the commit), the file
//! parsed against the supported subset (`compose`), images built at the
//! exact commit through the runner's image cache, then every Compose service
//! run as a managed service on the deployment's own network (so the
//! supervisor gives it readiness, liveness, restarts and adoption after an
//! engine restart). The new release is healthy when every service is ready
//! within `health_timeout_s`; then the old one is retired. Otherwise the old
//! release is brought back and the commit is not tried again until the
//! branch moves or a user asks (`up`).
//!
//! - `spec`: what a client declares;
//! - `record`: sync and health, releases, history;
//! - `release`: a commit's stack as managed services;
//! - `rollout`: one rollout, and the way back.

pub mod announce;
mod record;
mod release;
mod rollout;
mod secrets;
mod spec;

pub use record::{
    Deployment, HISTORY_KEPT, HealthState, Release, ReleasedService, Rollout, RolloutResult,
    SyncState,
};
use release::network_name;
pub use spec::{DeploymentSpec, NAME_MAX, valid_name};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::job::now_ms;
use crate::queue::{JobStore, Scheduler, StoreError};
use crate::runner::prepare::Runner;
use crate::supervisor::{ServiceState, Supervisor};

/// Why a deployment call was refused or failed; the API maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// No deployment has this name (404).
    #[error("no deployment `{0}`")]
    NotFound(String),
    /// A rollout of it is under way; try again when it ends (409).
    #[error("deployment `{0}` is rolling out; try again when it ends")]
    Busy(String),
    /// `rollback` with no earlier release to go back to (409).
    #[error("deployment `{0}` has no earlier release to roll back to")]
    NothingToRollBack(String),
    /// The store failed (500).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How often the controller looks at its deployments' health and heads.
const TICK: Duration = Duration::from_secs(1);

/// The deployments of this engine and the rollouts under way.
pub struct Deployments {
    store: Arc<dyn JobStore>,
    runner: Arc<Runner>,
    supervisor: Arc<Supervisor>,
    scheduler: Arc<Scheduler>,
    /// Each deployment's rollout log is `<logs_dir>/<name>.log`.
    logs_dir: std::path::PathBuf,
    /// Deployments with a rollout (or a down) under way.
    busy: Mutex<HashSet<String>>,
    /// When each deployment's branch was last looked at.
    looked: Mutex<HashMap<String, Instant>>,
    /// Rollouts this engine ended, by result (for `/metrics`).
    rollouts: Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Deployments {
    /// The controller; nothing happens until [`Deployments::run`].
    pub fn new(
        store: Arc<dyn JobStore>,
        runner: Arc<Runner>,
        supervisor: Arc<Supervisor>,
        scheduler: Arc<Scheduler>,
        logs_dir: std::path::PathBuf,
    ) -> Arc<Deployments> {
        let _ = std::fs::create_dir_all(&logs_dir);
        Arc::new(Deployments {
            store,
            runner,
            supervisor,
            scheduler,
            logs_dir,
            busy: Mutex::new(HashSet::new()),
            looked: Mutex::new(HashMap::new()),
            rollouts: Mutex::new(std::collections::BTreeMap::new()),
        })
    }

    /// Finish what an earlier engine left half done, then look at every
    /// deployment each second until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        self.recover().await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.cancelled() => return,
            }
            let list = match self.store.list_deployments().await {
                Ok(list) => list,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list deployments");
                    continue;
                }
            };
            for deployment in list {
                self.clone().tick(deployment).await;
            }
        }
    }

    /// Health from the supervisor, and a rollout when the branch moved.
    async fn tick(self: Arc<Self>, mut d: Deployment) {
        let name = d.spec.name.clone();
        if self.is_busy(&name) {
            return;
        }
        let health = self.health_of(&d);
        if health != d.health {
            d.health = health;
            let _ = self.store.put_deployment(d.clone()).await;
        }
        if d.down {
            return;
        }
        let due = {
            let looked = self.looked.lock().unwrap_or_else(|p| p.into_inner());
            looked
                .get(&name)
                .is_none_or(|at| at.elapsed() >= Duration::from_secs(d.spec.poll_s))
        };
        if !due {
            return;
        }
        self.looked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), Instant::now());
        let head = match self.head_of(&d).await {
            Ok(head) => head,
            Err(reason) => {
                tracing::warn!(deployment = %name, "cannot read the branch's head: {reason}");
                if d.reason.as_deref() != Some(reason.as_str()) {
                    d.reason = Some(reason);
                    let _ = self.store.put_deployment(d).await;
                }
                return;
            }
        };
        if d.running_commit() == Some(head.as_str()) {
            if d.sync != SyncState::Synced && d.failed_commit.is_none() {
                d.sync = SyncState::Synced;
                d.wanted = Some(head);
                let _ = self.store.put_deployment(d).await;
            }
            return;
        }
        if d.failed_commit.as_deref() == Some(head.as_str()) {
            return; // one attempt per commit
        }
        if d.wanted.as_deref() != Some(head.as_str()) || d.sync == SyncState::Synced {
            d.wanted = Some(head.clone());
            d.sync = SyncState::OutOfSync;
            let _ = self.store.put_deployment(d).await;
        }
        self.start(&name, rollout::Target::Commit(head), "push");
    }

    /// The commit the branch names now.
    async fn head_of(&self, d: &Deployment) -> Result<String, String> {
        let (checkouts, repository, branch) = (
            self.runner.checkouts.clone(),
            d.spec.repository.clone(),
            d.spec.branch.clone(),
        );
        tokio::task::spawn_blocking(move || {
            checkouts.head_of(&repository, &format!("refs/heads/{branch}"))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }

    /// healthy when every service of the running release is ready.
    fn health_of(&self, d: &Deployment) -> HealthState {
        let Some(running) = d.running.as_ref().filter(|_| !d.down) else {
            return HealthState::Missing;
        };
        let mut health = HealthState::Healthy;
        for s in &running.services {
            match self.supervisor.status(&s.spec.name).map(|st| st.state) {
                Some(ServiceState::Ready) | Some(ServiceState::Stopped) => {}
                Some(ServiceState::Starting) | Some(ServiceState::Restarting) => {
                    health = HealthState::Progressing
                }
                Some(ServiceState::Failed) => return HealthState::Degraded,
                None => return HealthState::Missing,
            }
        }
        health
    }

    fn is_busy(&self, name: &str) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    /// Start a rollout of `name` in the background unless one is under way.
    fn start(self: &Arc<Self>, name: &str, target: rollout::Target, cause: &'static str) -> bool {
        if !self
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned())
        {
            return false;
        }
        let (this, name) = (self.clone(), name.to_owned());
        tokio::spawn(async move {
            if let Err(e) = this.roll_out(&name, target, cause).await {
                tracing::error!(deployment = %name, error = %e, "rollout failed");
            }
            this.busy
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
        });
        true
    }

    // --- what the API asks for ---

    /// Declare a deployment; `Ok(false)` when the name is taken.
    pub async fn create(
        &self,
        spec: DeploymentSpec,
    ) -> Result<Option<Deployment>, DeploymentError> {
        let deployment = Deployment::new(spec, now_ms());
        if self.store.put_deployment_new(deployment.clone()).await? {
            return Ok(None);
        }
        Ok(Some(deployment))
    }

    /// Replace a deployment's declaration; the next look at its branch
    /// rolls out with it (a changed file or env counts from the next commit,
    /// or at once with `up`).
    pub async fn replace(&self, spec: DeploymentSpec) -> Result<Deployment, DeploymentError> {
        let name = spec.name.clone();
        let mut d = self.get(&name).await?;
        d.spec = spec;
        self.store.put_deployment(d.clone()).await?;
        self.looked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name);
        Ok(d)
    }

    /// A deployment with its state.
    pub async fn get(&self, name: &str) -> Result<Deployment, DeploymentError> {
        self.store
            .get_deployment(name)
            .await?
            .ok_or_else(|| DeploymentError::NotFound(name.to_owned()))
    }

    /// Every deployment, by name.
    pub async fn list(&self) -> Result<Vec<Deployment>, DeploymentError> {
        Ok(self.store.list_deployments().await?)
    }

    /// Each deployment's states, its last rollout and this engine's rollout
    /// counts, in the Prometheus text format.
    pub async fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let Ok(all) = self.store.list_deployments().await else {
            return;
        };
        let _ = writeln!(
            out,
            "# HELP slipway_deployment_state A deployment's sync and health state (1 for the current ones)."
        );
        let _ = writeln!(out, "# TYPE slipway_deployment_state gauge");
        for d in &all {
            let _ = writeln!(
                out,
                "slipway_deployment_state{{name=\"{}\",sync=\"{}\",health=\"{}\"}} 1",
                d.spec.name,
                d.sync.name(),
                d.health.name()
            );
        }
        let _ = writeln!(
            out,
            "# HELP slipway_deployment_last_rollout_seconds How long a deployment's last rollout took, by its result."
        );
        let _ = writeln!(out, "# TYPE slipway_deployment_last_rollout_seconds gauge");
        for d in &all {
            if let Some(r) = d.history.first() {
                let _ = writeln!(
                    out,
                    "slipway_deployment_last_rollout_seconds{{name=\"{}\",result=\"{}\"}} {}",
                    d.spec.name,
                    r.result.name(),
                    r.duration_ms as f64 / 1000.0
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP slipway_deployment_rollouts_total Rollouts ended by this engine, by result."
        );
        let _ = writeln!(out, "# TYPE slipway_deployment_rollouts_total counter");
        let ended = self
            .rollouts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (result, n) in ended {
            let _ = writeln!(
                out,
                "slipway_deployment_rollouts_total{{result=\"{result}\"}} {n}"
            );
        }
    }

    /// `up`: deploy the branch's head now, also a commit that failed before,
    /// and start reconciling again after a `down`.
    pub async fn up(self: &Arc<Self>, name: &str) -> Result<Deployment, DeploymentError> {
        let mut d = self.get(name).await?;
        if self.is_busy(name) {
            return Err(DeploymentError::Busy(name.to_owned()));
        }
        d.down = false;
        d.failed_commit = None;
        d.sync = SyncState::OutOfSync;
        self.store.put_deployment(d.clone()).await?;
        if !self.start(name, rollout::Target::Head, "up") {
            return Err(DeploymentError::Busy(name.to_owned()));
        }
        Ok(d)
    }

    /// `down`: stop and remove every service; nothing is deployed again
    /// until `up`, whatever the branch does or the engine restarts.
    pub async fn down(&self, name: &str) -> Result<Deployment, DeploymentError> {
        let mut d = self.get(name).await?;
        if self.is_busy(name) {
            return Err(DeploymentError::Busy(name.to_owned()));
        }
        d.down = true;
        d.health = HealthState::Missing;
        d.reason = Some("stopped by `down`; `up` starts it again".into());
        self.store.put_deployment(d.clone()).await?;
        if let Some(running) = &d.running {
            for s in &running.services {
                self.store.delete_service(&s.spec.name).await?;
            }
            self.supervisor.sync().await;
        }
        Ok(d)
    }

    /// `rollback`: bring the release before the running one back (the
    /// branch's newer commits are then not deployed until it moves again or
    /// `up`).
    pub async fn rollback(self: &Arc<Self>, name: &str) -> Result<Deployment, DeploymentError> {
        let d = self.get(name).await?;
        let Some(previous) = d.previous.clone() else {
            return Err(DeploymentError::NothingToRollBack(name.to_owned()));
        };
        if !self.start(name, rollout::Target::Release(previous), "rollback") {
            return Err(DeploymentError::Busy(name.to_owned()));
        }
        Ok(d)
    }

    /// Remove a deployment and its services (volumes stay).
    pub async fn delete(&self, name: &str) -> Result<Deployment, DeploymentError> {
        let d = self.down(name).await?;
        self.store.delete_deployment(name).await?;
        self.prune_checkouts(name, &[]);
        let _ = self
            .runner
            .runtime
            .remove_network(&network_name(&self.runner.settings.engine_id, name))
            .await;
        Ok(d)
    }

    /// Remove the deployment's checkouts (`deploy-<name>-<sha, 12>`) but
    /// those of the commits in `keep`: the running and previous releases'
    /// services bind files from theirs.
    fn prune_checkouts(&self, name: &str, keep: &[&str]) {
        let prefix = format!("deploy-{name}-");
        for dir in self.runner.checkouts.names_with_prefix(&prefix) {
            let sha = &dir[prefix.len()..];
            // `deploy-shop-2-…` is deployment `shop-2`'s, not `shop`'s.
            let ours = sha.len() == 12 && sha.bytes().all(|b| b.is_ascii_hexdigit());
            if ours
                && !keep.iter().any(|k| k.starts_with(sha))
                && let Err(e) = self.runner.checkouts.remove(&dir)
            {
                tracing::warn!(checkout = %dir, error = %e, "deployments: an old checkout was not removed");
            }
        }
    }

    /// The last `tail` lines of each running service's log, by Compose service.
    pub async fn logs(
        &self,
        name: &str,
        tail: usize,
    ) -> Result<Vec<(String, String)>, DeploymentError> {
        let d = self.get(name).await?;
        Ok(d.running
            .iter()
            .flat_map(|r| r.services.iter())
            .map(|s| {
                let text = self.supervisor.logs(&s.spec.name, tail).unwrap_or_default();
                (s.name.clone(), text)
            })
            .collect())
    }
}
