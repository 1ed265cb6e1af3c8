//! The supervisor of long-running managed services: keeps what runs in line
//! with what is declared in the store, and keeps it healthy.
//!
//! One task (an "actor") per declared service owns its pod (a holder and
//! the service container) for the service's whole life:
//! start (or adopt what an earlier engine left running), wait for readiness
//! (the startup check), then watch: the container's exit (reported by
//! Docker at once), Docker's own `unhealthy` health status, and the
//! liveness plugin's probe. A failure restarts the container after an
//! exponential backoff, within a restart budget per window; past the budget
//! the service is `failed` and stays stopped until someone restarts it.
//!
//! The supervisor reconciles declared against actual state at start, when
//! a declaration changes, on Docker events, and on a timer.
//!
//! - this file: the declared services and their actors, events, status;
//! - `life`: one service's life (adopt or create, readiness, watch,
//!   restart or fail);
//! - `budget`: restarts within a window, and the backoff between them.

mod budget;
mod life;
#[cfg(test)]
mod tests;

pub use budget::RestartBudget;
use life::Life;
pub use life::spec_hash;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::job::{FieldProblem, now_ms};
use crate::logs::JobLog;
use crate::plugins::Registry;
use crate::queue::JobStore;
use crate::runner::services::{self};
use crate::runner::{LABEL_ENGINE, LABEL_ROLE, LABEL_SERVICE, Role};
use crate::runtime::{EventFilter, EventKind, Runtime};
use crate::service::ManagedServiceSpec;

/// Hash of the declaration a container was made from, to spot drift.
pub const LABEL_SPEC: &str = "io.slipway.spec";
/// The role of a managed service's container.
const ROLE: Role = Role::ManagedService;

/// What a managed service is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Its container is being created or adopted, and waits for readiness.
    Starting,
    /// Running and ready (its readiness check passed, or it has none); watched.
    Ready,
    /// It failed and waits out the backoff before its container is restarted.
    Restarting,
    /// Past its restart budget (or `never` restarts): stopped until restarted.
    Failed,
    /// Exited with 0 under `on-failure`.
    Stopped,
}

impl ServiceState {
    /// As the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            ServiceState::Starting => "starting",
            ServiceState::Ready => "ready",
            ServiceState::Restarting => "restarting",
            ServiceState::Failed => "failed",
            ServiceState::Stopped => "stopped",
        }
    }
}

/// A managed service's status, as the API reports it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceStatus {
    /// The service's declared name.
    pub name: String,
    /// What the service is doing.
    pub state: ServiceState,
    /// Id of its current (or last) container; `null` until one is created.
    pub container: Option<String>,
    /// Restarts after failures since the engine started.
    pub restarts: u64,
    /// Why it is in this state (the last failure).
    pub reason: Option<String>,
    /// When it entered `state`, in ms since the Unix epoch.
    pub since_ms: u64,
}

/// How the supervisor runs managed services.
#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    /// This engine's id: in container and volume names and on every container's
    /// labels, so engines sharing a daemon leave each other's services alone.
    pub engine_id: String,
    /// Image of each service pod's holder (a busybox with `sh` and `nc`).
    pub holder_image: String,
    /// Each service's event and output log is `<logs_dir>/<name>.log`.
    pub logs_dir: PathBuf,
    /// How often declared and actual state are compared anyway.
    pub reconcile_every: Duration,
    /// Time a container gets to stop after SIGTERM before it is killed.
    pub stop_grace: Duration,
}

/// Why a supervisor request failed.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// No managed service of this name is supervised.
    #[error("no managed service `{0}`")]
    Unknown(String),
    /// The supervisor's storage failed (today: reading a service's log
    /// file); the error's message.
    #[error("the service store failed: {0}")]
    Store(String),
}

enum Command {
    /// Restart now (a user asked); not counted against the budget.
    Restart,
    /// Remove the pod and end.
    Stop,
    /// Docker reports the container unhealthy (its own HEALTHCHECK).
    Unhealthy(String),
    /// Look at the container (a Docker event, or the timer).
    Check,
}

struct Actor {
    spec: ManagedServiceSpec,
    tx: mpsc::UnboundedSender<Command>,
    status: Arc<Mutex<ServiceStatus>>,
    task: tokio::task::JoinHandle<()>,
}

/// Runs the declared managed services, one actor each, and reports their
/// status.
pub struct Supervisor {
    runtime: Runtime,
    store: Arc<dyn JobStore>,
    registry: Arc<Registry>,
    settings: SupervisorSettings,
    actors: Mutex<HashMap<String, Actor>>,
    /// Serialises reconcile passes.
    sync_lock: tokio::sync::Mutex<()>,
    /// Restarts after failures, for `/metrics`.
    pub restarts_total: Arc<AtomicU64>,
}

impl Supervisor {
    /// A supervisor of the services declared in `store`; nothing starts until
    /// [`Supervisor::run`].
    pub fn new(
        runtime: Runtime,
        store: Arc<dyn JobStore>,
        registry: Arc<Registry>,
        settings: SupervisorSettings,
    ) -> Arc<Supervisor> {
        Arc::new(Supervisor {
            runtime,
            store,
            registry,
            settings,
            actors: Mutex::new(HashMap::new()),
            sync_lock: tokio::sync::Mutex::new(()),
            restarts_total: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Reconcile now, then on Docker events and on the timer until
    /// `shutdown`. On shutdown the services keep running: the next engine
    /// adopts them.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        if let Err(e) = std::fs::create_dir_all(&self.settings.logs_dir) {
            tracing::error!(dir = %self.settings.logs_dir.display(), error = %e, "cannot create the service log directory");
        }
        self.sync().await;
        let events = tokio::spawn(self.clone().listen(shutdown.clone()));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.settings.reconcile_every) => self.sync().await,
                _ = shutdown.cancelled() => break,
            }
        }
        events.abort();
        for (_, actor) in self
            .actors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
        {
            actor.task.abort();
        }
    }

    /// Compare the declared services with the running actors: start what is
    /// missing, replace what changed, stop what is no longer declared.
    pub async fn sync(&self) {
        let _one_at_a_time = self.sync_lock.lock().await;
        let declared = match self.store.list_services().await {
            Ok(list) => list,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the declared services");
                return;
            }
        };
        let mut stale = Vec::new();
        {
            let mut actors = self.actors.lock().unwrap_or_else(|p| p.into_inner());
            actors.retain(|name, actor| {
                let keep = declared
                    .iter()
                    .any(|d| &d.spec.name == name && d.spec == actor.spec)
                    && !actor.task.is_finished();
                if !keep {
                    let _ = actor.tx.send(Command::Stop);
                    stale.push(std::mem::replace(&mut actor.task, tokio::spawn(async {})));
                }
                keep
            });
        }
        // A replaced service's old pod is gone before the new one starts.
        for task in stale {
            let _ = task.await;
        }
        let mut actors = self.actors.lock().unwrap_or_else(|p| p.into_inner());
        for d in declared {
            if let Some(actor) = actors.get(&d.spec.name) {
                let _ = actor.tx.send(Command::Check);
                continue;
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let status = Arc::new(Mutex::new(ServiceStatus {
                name: d.spec.name.clone(),
                state: ServiceState::Starting,
                container: None,
                restarts: 0,
                reason: None,
                since_ms: now_ms(),
            }));
            let life = Life {
                runtime: self.runtime.clone(),
                registry: self.registry.clone(),
                settings: self.settings.clone(),
                spec: d.spec.clone(),
                status: status.clone(),
                log: JobLog::at(self.settings.logs_dir.join(format!("{}.log", d.spec.name))),
                restarts_total: self.restarts_total.clone(),
            };
            let task = tokio::spawn(life.run(rx));
            actors.insert(
                d.spec.name.clone(),
                Actor {
                    spec: d.spec,
                    tx,
                    status,
                    task,
                },
            );
        }
    }

    /// Docker's event stream for this engine's managed containers.
    async fn listen(self: Arc<Self>, shutdown: CancellationToken) {
        let filter = EventFilter {
            // Both roles a supervised container has: filters are ANDed,
            // so the role is checked below.
            labels: vec![format!("{LABEL_ENGINE}={}", self.settings.engine_id)],
            kinds: vec![EventKind::Died, EventKind::OomKilled, EventKind::Health],
            ..Default::default()
        };
        loop {
            let mut events = self.runtime.events(filter.clone());
            loop {
                let event = tokio::select! {
                    e = events.next() => e,
                    _ = shutdown.cancelled() => return,
                };
                let Some(Ok(event)) = event else { break };
                let role = event.labels.get(LABEL_ROLE).and_then(|r| Role::of_label(r));
                if !matches!(role, Some(ROLE | Role::Deployment)) {
                    continue;
                }
                let Some(name) = event.labels.get(LABEL_SERVICE) else {
                    continue;
                };
                let command = if event.unhealthy {
                    Command::Unhealthy("Docker's HEALTHCHECK reports it unhealthy".into())
                } else {
                    Command::Check
                };
                if let Some(actor) = self
                    .actors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(name)
                {
                    let _ = actor.tx.send(command);
                }
            }
            // The stream broke (daemon restart): the timer covers the gap.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Readiness and liveness plugins that do not exist (or are not
    /// readiness plugins), by field.
    pub fn plugin_problems(&self, spec: &ManagedServiceSpec) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        for (field, check) in [("readiness", &spec.readiness), ("liveness", &spec.liveness)] {
            if let Some(c) = check
                && !c.plugin.trim().is_empty()
                && let Err(e) = services::readiness_plugin(&self.registry, &spec.name, &c.plugin)
            {
                problems.push(FieldProblem {
                    field: format!("{field}.plugin"),
                    message: e.to_string(),
                });
            }
        }
        problems
    }

    /// The status of every supervised service, by name.
    pub fn statuses(&self) -> Vec<ServiceStatus> {
        let actors = self.actors.lock().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<ServiceStatus> = actors
            .values()
            .map(|a| a.status.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Restarts and services by state, in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP slipway_service_restarts_total Restarts of managed services after a failure."
        );
        let _ = writeln!(out, "# TYPE slipway_service_restarts_total counter");
        let _ = writeln!(
            out,
            "slipway_service_restarts_total {}",
            self.restarts_total.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP slipway_managed_services Managed services, by state."
        );
        let _ = writeln!(out, "# TYPE slipway_managed_services gauge");
        let statuses = self.statuses();
        for state in [
            ServiceState::Starting,
            ServiceState::Ready,
            ServiceState::Restarting,
            ServiceState::Failed,
            ServiceState::Stopped,
        ] {
            let n = statuses.iter().filter(|s| s.state == state).count();
            let name = serde_json::to_value(state).unwrap_or_default();
            let _ = writeln!(out, "slipway_managed_services{{state={name}}} {n}");
        }
    }

    /// The status of the service `name`; `None` when it is not supervised.
    pub fn status(&self, name: &str) -> Option<ServiceStatus> {
        self.actors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|a| a.status.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Restart a service now (also one that is `failed`: its budget starts
    /// over).
    pub fn restart(&self, name: &str) -> Result<(), SupervisorError> {
        let actors = self.actors.lock().unwrap_or_else(|p| p.into_inner());
        let actor = actors
            .get(name)
            .ok_or_else(|| SupervisorError::Unknown(name.to_owned()))?;
        let _ = actor.tx.send(Command::Restart);
        Ok(())
    }

    /// The last `tail` lines of the service's log (its output and the
    /// supervisor's events about it).
    pub fn logs(&self, name: &str, tail: usize) -> Result<String, SupervisorError> {
        let path = self.settings.logs_dir.join(format!("{name}.log"));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(SupervisorError::Store(e.to_string())),
        };
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(tail);
        Ok(lines[from..].iter().map(|l| format!("{l}\n")).collect())
    }
}
