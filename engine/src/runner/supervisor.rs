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

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{
    EventsOptionsBuilder, ListContainersOptionsBuilder, RestartContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::container;
use super::gpu::{self, GpuDecision};
use super::pod::{Pod, PodSpec, ServiceContainer};
use super::services::{
    self, Judged, Prober, ReadinessPlugin, RunningService, ServiceLog, follow_log, watch_exit,
};
use super::{LABEL_ENGINE, LABEL_MANAGED, LABEL_ROLE, LABEL_SERVICE};
use crate::job::{FieldProblem, Network, ReadinessSpec, now_ms};
use crate::logs::JobLog;
use crate::plugins::Registry;
use crate::plugins::bindings::Service;
use crate::queue::JobStore;
use crate::service::{ManagedServiceSpec, RestartMode, RestartPolicy};

/// Hash of the declaration a container was made from, to spot drift.
pub const LABEL_SPEC: &str = "io.slipway.spec";
const ROLE: &str = "managed-service";

/// What a managed service is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    Starting,
    Ready,
    Restarting,
    /// Past its restart budget (or `never` restarts): stopped until restarted.
    Failed,
    /// Exited with 0 under `on-failure`.
    Stopped,
}

/// A managed service's status, as the API reports it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceStatus {
    pub name: String,
    pub state: ServiceState,
    pub container: Option<String>,
    /// Restarts after failures since the engine started.
    pub restarts: u64,
    /// Why it is in this state (the last failure).
    pub reason: Option<String>,
    pub since_ms: u64,
}

#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    pub engine_id: String,
    pub holder_image: String,
    /// Each service's event and output log is `<logs_dir>/<name>.log`.
    pub logs_dir: PathBuf,
    /// How often declared and actual state are compared anyway.
    pub reconcile_every: Duration,
    pub stop_grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("no managed service `{0}`")]
    Unknown(String),
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

pub struct Supervisor {
    docker: Docker,
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
    pub fn new(
        docker: Docker,
        store: Arc<dyn JobStore>,
        registry: Arc<Registry>,
        settings: SupervisorSettings,
    ) -> Arc<Supervisor> {
        Arc::new(Supervisor {
            docker,
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
        let declared = match self.store.list_services() {
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
                docker: self.docker.clone(),
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
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            (
                "label".to_owned(),
                vec![
                    format!("{LABEL_ENGINE}={}", self.settings.engine_id),
                    format!("{LABEL_ROLE}={ROLE}"),
                ],
            ),
            (
                "event".to_owned(),
                vec!["die".into(), "oom".into(), "health_status".into()],
            ),
        ]);
        loop {
            let options = EventsOptionsBuilder::new().filters(&filters).build();
            let mut events = self.docker.events(Some(options));
            loop {
                let event = tokio::select! {
                    e = events.next() => e,
                    _ = shutdown.cancelled() => return,
                };
                let Some(Ok(event)) = event else { break };
                let attributes = event.actor.and_then(|a| a.attributes).unwrap_or_default();
                let Some(name) = attributes.get(LABEL_SERVICE) else {
                    continue;
                };
                let action = event.action.unwrap_or_default();
                let command = if action.starts_with("health_status: unhealthy") {
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

/// One service's life: its actor's state.
struct Life {
    docker: Docker,
    registry: Arc<Registry>,
    settings: SupervisorSettings,
    spec: ManagedServiceSpec,
    status: Arc<Mutex<ServiceStatus>>,
    log: JobLog,
    restarts_total: Arc<AtomicU64>,
}

/// Why a container's life ended.
enum End {
    Stop,
    /// A user asked for a restart.
    Restart,
    Failure {
        reason: String,
        exit_code: Option<i64>,
    },
}

impl Life {
    fn set(&self, state: ServiceState, container: Option<&str>, reason: Option<String>) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if s.state != state {
            s.since_ms = now_ms();
        }
        s.state = state;
        if let Some(c) = container {
            s.container = Some(c.to_owned());
        }
        s.reason = reason;
    }

    fn event(&self, text: &str) {
        tracing::info!(service = %self.spec.name, "{text}");
        self.log.line("slipway", text);
    }

    fn pod_spec(&self) -> PodSpec {
        PodSpec {
            name: format!("slipway-{}-svc-{}", self.settings.engine_id, self.spec.name),
            labels: HashMap::from([
                (LABEL_MANAGED.to_owned(), "true".to_owned()),
                (LABEL_ENGINE.to_owned(), self.settings.engine_id.clone()),
                (LABEL_SERVICE.to_owned(), self.spec.name.clone()),
            ]),
            holder_image: self.settings.holder_image.clone(),
            network: match self.spec.network {
                Network::None => "none",
                Network::Bridge => "bridge",
                Network::Host => "host",
            }
            .into(),
        }
    }

    async fn run(self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut budget = RestartBudget::new(&self.spec.restart);
        let mut current = self.adopt().await;
        loop {
            let (pod, container) = match current.take() {
                Some(found) => found,
                None => match self.create().await {
                    Ok(made) => made,
                    Err(failure) => {
                        // Nothing runs: retry like a crash, within the budget
                        // (unless retrying cannot help).
                        match self
                            .after_failure(&mut budget, failure, None, None, &mut rx)
                            .await
                        {
                            Next::Retry => continue,
                            Next::End => return,
                        }
                    }
                },
            };
            let end = self.supervise(&pod, &container, &mut rx).await;
            match end {
                End::Stop => {
                    pod.remove().await;
                    self.event("stopped and removed");
                    return;
                }
                End::Restart => {
                    budget.reset();
                    self.event("restarting (asked for)");
                    if self.restart_container(&container).await {
                        current = Some((pod, container));
                    } else {
                        pod.remove().await;
                    }
                }
                End::Failure { reason, exit_code } => {
                    match self
                        .after_failure(
                            &mut budget,
                            Failure::retry(reason),
                            exit_code,
                            Some(&container),
                            &mut rx,
                        )
                        .await
                    {
                        Next::Retry => {
                            if self.restart_container(&container).await {
                                current = Some((pod, container));
                            } else {
                                pod.remove().await;
                            }
                        }
                        Next::End => {
                            pod.remove().await;
                            return;
                        }
                    }
                }
            }
        }
    }

    /// In a final state: wait for a user's restart (the budget starts over)
    /// or removal.
    async fn wait_for_a_user(
        &self,
        budget: &mut RestartBudget,
        rx: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Next {
        loop {
            match rx.recv().await {
                Some(Command::Restart) => {
                    budget.reset();
                    self.event("restarting (asked for)");
                    return Next::Retry;
                }
                Some(Command::Stop) | None => return Next::End,
                Some(_) => {}
            }
        }
    }

    /// Decide what follows a failure: a restart after a backoff, or a
    /// final state that waits for a user's restart or removal.
    async fn after_failure(
        &self,
        budget: &mut RestartBudget,
        failure: Failure,
        exit_code: Option<i64>,
        container: Option<&str>,
        rx: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Next {
        let policy = &self.spec.restart;
        let reason = failure.reason;
        let final_state = match policy.mode {
            _ if failure.permanent => {
                self.event(&format!("failed: {reason}"));
                self.set(ServiceState::Failed, None, Some(reason.clone()));
                return self.wait_for_a_user(budget, rx).await;
            }
            RestartMode::OnFailure if exit_code == Some(0) => Some(ServiceState::Stopped),
            RestartMode::Never => Some(ServiceState::Failed),
            _ => None,
        };
        let final_state = final_state.or_else(|| match budget.record(Instant::now()) {
            Some(_) => None,
            None => Some(ServiceState::Failed),
        });
        if let Some(state) = final_state {
            let why = if state == ServiceState::Failed && policy.mode != RestartMode::Never {
                format!(
                    "{reason}; restarted {} times within {} s, the restart budget: not restarting again",
                    policy.max_restarts, policy.window_s
                )
            } else {
                reason
            };
            self.event(&format!(
                "{}: {why}",
                if state == ServiceState::Failed {
                    "failed"
                } else {
                    "stopped"
                }
            ));
            self.set(state, None, Some(why));
            // Stopped, not removed: its logs stay readable.
            if let Some(id) = container {
                self.stop(id).await;
            }
            return self.wait_for_a_user(budget, rx).await;
        }
        let backoff = budget.backoff();
        self.restarts_total.fetch_add(1, Ordering::Relaxed);
        {
            let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
            s.restarts += 1;
        }
        self.event(&format!(
            "restarting in {} ms: {reason}",
            backoff.as_millis()
        ));
        self.set(ServiceState::Restarting, None, Some(reason));
        let sleep = tokio::time::sleep(backoff);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return Next::Retry,
                cmd = rx.recv() => match cmd {
                    Some(Command::Stop) | None => return Next::End,
                    Some(Command::Restart) => return Next::Retry,
                    Some(_) => {}
                },
            }
        }
    }

    /// Restart the container in place (keeps its id, volumes and pod).
    async fn restart_container(&self, id: &str) -> bool {
        let options = RestartContainerOptionsBuilder::new()
            .t(self.settings.stop_grace.as_secs() as i32)
            .build();
        match self.docker.restart_container(id, Some(options)).await {
            Ok(()) => true,
            Err(e) => {
                self.event(&format!(
                    "could not restart the container ({e}); making a new one"
                ));
                false
            }
        }
    }

    /// A pod an earlier engine left running for this declaration, if whole.
    async fn adopt(&self) -> Option<(Pod, String)> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![
                format!("{LABEL_ENGINE}={}", self.settings.engine_id),
                format!("{LABEL_SERVICE}={}", self.spec.name),
            ],
        )]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        // Only this service's pod: a job's service of the same name has
        // role `service`, and job holders carry no service label.
        let found: Vec<_> = self
            .docker
            .list_containers(Some(options))
            .await
            .ok()?
            .into_iter()
            .filter(|c| {
                let role = c.labels.as_ref().and_then(|l| l.get(LABEL_ROLE));
                matches!(role.map(String::as_str), Some("holder") | Some(ROLE))
            })
            .collect();
        let hash = spec_hash(&self.spec);
        let role_of = |c: &bollard::models::ContainerSummary| {
            c.labels
                .as_ref()
                .and_then(|l| l.get(LABEL_ROLE).cloned())
                .unwrap_or_default()
        };
        let running = |c: &bollard::models::ContainerSummary| {
            c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
        };
        let holder = found.iter().find(|c| role_of(c) == "holder" && running(c));
        let service = found.iter().find(|c| {
            role_of(c) == ROLE
                && running(c)
                && c.labels.as_ref().and_then(|l| l.get(LABEL_SPEC)) == Some(&hash)
        });
        if let (Some(h), Some(s), 2) = (holder, service, found.len())
            && let (Some(h), Some(s)) = (h.id.clone(), s.id.clone())
        {
            self.event(&format!("adopted the running container {}", short(&s)));
            let pod = Pod::adopt(
                &self.docker,
                self.pod_spec(),
                h,
                vec![(ROLE.to_owned(), s.clone())],
            );
            return Some((pod, s));
        }
        // Partial, stopped or drifted: start clean.
        for c in found {
            if let Some(id) = c.id {
                container::remove(&self.docker, &id).await;
            }
        }
        None
    }

    async fn create(&self) -> Result<(Pod, String), Failure> {
        let spec = &self.spec;
        let gpu = match spec.gpus {
            None => GpuDecision::None,
            Some(_) => {
                let offer = gpu::offer(&self.docker).await.map_err(|e| {
                    Failure::retry(format!("asking the container engine about GPUs: {e}"))
                })?;
                gpu::decide(spec.gpus, spec.gpu, &offer)
            }
        };
        match &gpu {
            // Retrying cannot give the host a GPU.
            GpuDecision::Refused(reason) => {
                return Err(Failure {
                    reason: reason.clone(),
                    permanent: true,
                });
            }
            GpuDecision::Fallback(reason) => self.event(&format!("gpu: {reason}")),
            GpuDecision::Devices(_) | GpuDecision::None => {}
        }
        for v in &spec.volumes {
            let options = bollard::models::VolumeCreateRequest {
                name: Some(volume_name(&self.settings.engine_id, &spec.name, &v.name)),
                labels: Some(HashMap::from([
                    (LABEL_MANAGED.to_owned(), "true".to_owned()),
                    (LABEL_ENGINE.to_owned(), self.settings.engine_id.clone()),
                    (LABEL_SERVICE.to_owned(), spec.name.clone()),
                ])),
                ..Default::default()
            };
            self.docker
                .create_volume(options)
                .await
                .map_err(|e| Failure::retry(format!("cannot create volume `{}`: {e}", v.name)))?;
        }
        let pod = Pod::create(&self.docker, self.pod_spec())
            .await
            .map_err(|e| Failure::retry(format!("cannot start the pod: {e}")))?;
        let container = ServiceContainer {
            name: spec.name.clone(),
            image: spec.image.clone(),
            env: spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .chain(gpu.env())
                .collect(),
            command: spec.command.clone(),
            limits: (&spec.resources).into(),
            role: ROLE,
            binds: spec
                .volumes
                .iter()
                .map(|v| {
                    format!(
                        "{}:{}",
                        volume_name(&self.settings.engine_id, &spec.name, &v.name),
                        v.path
                    )
                })
                .collect(),
            labels: HashMap::from([(LABEL_SPEC.to_owned(), spec_hash(spec))]),
            gpus: gpu.devices(),
        };
        match pod.start_service(&container).await {
            Ok(id) => {
                self.event(&format!(
                    "started container {} from `{}`",
                    short(&id),
                    spec.image
                ));
                Ok((pod, id))
            }
            Err(e) => {
                pod.remove().await;
                Err(Failure::retry(format!("cannot start the container: {e}")))
            }
        }
    }

    fn plugin_view(&self, check: Option<&ReadinessSpec>) -> Service {
        services::plugin_view(
            &self.spec.name,
            &self.spec.image,
            &self.spec.env,
            &self.spec.ports,
            check.map(|c| &c.options),
        )
    }

    async fn prober(
        &self,
        check: Option<&ReadinessSpec>,
        default: bool,
    ) -> Result<Option<Prober>, String> {
        let name = match check {
            Some(c) => c.plugin.clone(),
            None if default && !self.spec.ports.is_empty() => "tcp".to_owned(),
            None => return Ok(None),
        };
        let plugin: ReadinessPlugin =
            services::readiness_plugin(&self.registry, &self.spec.name, &name)
                .map_err(|e| e.to_string())?;
        let probe = services::probe_of(&plugin, &self.plugin_view(check), &self.spec.name)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Some(Prober::new(plugin, probe)))
    }

    /// One container life: startup (readiness), then watch until it ends.
    async fn supervise(
        &self,
        pod: &Pod,
        container: &str,
        rx: &mut mpsc::UnboundedReceiver<Command>,
    ) -> End {
        self.set(ServiceState::Starting, Some(container), None);
        let kept = Arc::new(ServiceLog::default());
        let since = (now_ms() / 1000).saturating_sub(1) as i32;
        follow_log(
            &self.docker,
            container,
            &self.spec.name,
            &self.log,
            &kept,
            since,
        );
        let exited = watch_exit(&self.docker, container);
        let readiness = match self.prober(self.spec.readiness.as_ref(), true).await {
            Ok(p) => p,
            Err(reason) => {
                return End::Failure {
                    reason,
                    exit_code: None,
                };
            }
        };
        let liveness = match self.prober(self.spec.liveness.as_ref(), false).await {
            Ok(p) => p,
            Err(reason) => {
                return End::Failure {
                    reason,
                    exit_code: None,
                };
            }
        };
        let running = RunningService::new(
            self.spec.name.clone(),
            container.to_owned(),
            self.plugin_view(self.spec.readiness.as_ref()),
            readiness.as_ref().map(|p| p.plugin.clone()),
            kept,
            exited,
        );

        // Startup: readiness gates `ready`; commands still count meanwhile.
        if let Some(mut prober) = readiness {
            let wait =
                services::wait_ready(&self.docker, pod.holder(), &running, &mut prober, &self.log);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    result = &mut wait => {
                        if let Err(e) = result {
                            return End::Failure { reason: e.to_string(), exit_code: running.exit_code() };
                        }
                        break;
                    }
                    cmd = rx.recv() => match cmd {
                        Some(Command::Stop) | None => return End::Stop,
                        Some(Command::Restart) => return End::Restart,
                        Some(Command::Unhealthy(reason)) => return End::Failure { reason, exit_code: None },
                        Some(Command::Check) => {}
                    },
                }
            }
        }
        self.set(ServiceState::Ready, Some(container), None);
        self.event("ready");

        // Running: liveness, exits, Docker's verdicts, commands.
        let mut liveness = liveness;
        let period = liveness
            .as_ref()
            .map(|p| Duration::from_millis(p.probe.period_ms.into()))
            .unwrap_or(Duration::from_secs(3600));
        let threshold = liveness
            .as_ref()
            .map(|p| p.probe.failure_threshold)
            .unwrap_or(1);
        let mut failures = 0u32;
        loop {
            tokio::select! {
                code = running.exited() => {
                    let oom = self.oom_killed(container).await;
                    return End::Failure { reason: exit_reason(code, oom), exit_code: Some(code) };
                }
                cmd = rx.recv() => match cmd {
                    Some(Command::Stop) | None => return End::Stop,
                    Some(Command::Restart) => return End::Restart,
                    Some(Command::Unhealthy(reason)) => return End::Failure { reason, exit_code: None },
                    Some(Command::Check) => {
                        if let Some(end) = self.check(container).await {
                            return end;
                        }
                    }
                },
                _ = tokio::time::sleep(period), if liveness.is_some() => {
                    let Some(prober) = liveness.as_mut() else { continue };
                    match prober.attempt(&self.docker, pod.holder(), &running).await {
                        Judged::Ready => failures = 0,
                        Judged::NotReady(r) | Judged::Failed(r) | Judged::PluginFailed(r) => {
                            failures += 1;
                            self.event(&format!("liveness check failed ({failures}/{threshold}): {r}"));
                            if failures >= threshold {
                                return End::Failure {
                                    reason: format!("liveness check failed {failures} times in a row: {r}"),
                                    exit_code: None,
                                };
                            }
                        }
                    }
                }
            }
        }
    }

    /// A failure when the container is gone or not running.
    async fn check(&self, container: &str) -> Option<End> {
        match self.docker.inspect_container(container, None).await {
            Ok(c) if c.state.as_ref().and_then(|s| s.running) == Some(true) => None,
            Ok(c) => {
                let state = c.state.unwrap_or_default();
                let code = state.exit_code.unwrap_or(-1);
                Some(End::Failure {
                    reason: exit_reason(code, state.oom_killed.unwrap_or(false)),
                    exit_code: Some(code),
                })
            }
            Err(e) => Some(End::Failure {
                reason: format!("the container is gone: {e}"),
                exit_code: None,
            }),
        }
    }

    async fn oom_killed(&self, container: &str) -> bool {
        self.docker
            .inspect_container(container, None)
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.oom_killed)
            .unwrap_or(false)
    }

    /// Stop the container, keeping it (and its logs) for inspection.
    async fn stop(&self, container: &str) {
        let options = StopContainerOptionsBuilder::new()
            .t(self.settings.stop_grace.as_secs() as i32)
            .build();
        let _ = self.docker.stop_container(container, Some(options)).await;
    }
}

/// Why a service is not running, and whether a restart could help.
struct Failure {
    reason: String,
    /// Retrying cannot help (e.g. it requires GPUs the host has none of):
    /// `failed` at once, until a user restarts it.
    permanent: bool,
}

impl Failure {
    fn retry(reason: String) -> Failure {
        Failure {
            reason,
            permanent: false,
        }
    }
}

enum Next {
    Retry,
    End,
}

/// The same words whether the exit was seen by `wait` or by a check.
fn exit_reason(code: i64, oom: bool) -> String {
    format!(
        "the container exited with code {code}{}",
        if oom { " (killed: out of memory)" } else { "" }
    )
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn volume_name(engine: &str, service: &str, volume: &str) -> String {
    format!("slipway-{engine}-{service}-{volume}")
}

/// Hash of a declaration, as a label value.
pub fn spec_hash(spec: &ManagedServiceSpec) -> String {
    use sha2::Digest;
    let json = serde_json::to_vec(spec).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(&json)[..12])
}

/// Restarts within a sliding window, and the backoff before the next one.
#[derive(Debug)]
pub struct RestartBudget {
    max: u32,
    window: Duration,
    first: Duration,
    cap: Duration,
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    pub fn new(policy: &RestartPolicy) -> RestartBudget {
        RestartBudget {
            max: policy.max_restarts,
            window: Duration::from_secs(policy.window_s),
            first: Duration::from_millis(policy.backoff_ms),
            cap: Duration::from_millis(policy.max_backoff_ms),
            recent: VecDeque::new(),
        }
    }

    /// Count a restart at `now`; `None` when it would exceed the budget.
    pub fn record(&mut self, now: Instant) -> Option<Duration> {
        while let Some(t) = self.recent.front() {
            if now.duration_since(*t) > self.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() as u32 >= self.max {
            return None;
        }
        self.recent.push_back(now);
        Some(self.backoff())
    }

    /// Backoff before the restart just recorded: doubling, capped.
    pub fn backoff(&self) -> Duration {
        let n = self.recent.len().saturating_sub(1).min(30) as u32;
        self.first.saturating_mul(1 << n).min(self.cap)
    }

    pub fn reset(&mut self) {
        self.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_and_stop_at_the_budget() {
        let policy = RestartPolicy {
            max_restarts: 3,
            window_s: 60,
            backoff_ms: 100,
            max_backoff_ms: 250,
            ..RestartPolicy::default()
        };
        let mut b = RestartBudget::new(&policy);
        let t0 = Instant::now();
        assert_eq!(b.record(t0), Some(Duration::from_millis(100)));
        assert_eq!(b.record(t0), Some(Duration::from_millis(200)));
        assert_eq!(b.record(t0), Some(Duration::from_millis(250)), "capped");
        assert_eq!(
            b.record(t0),
            None,
            "the fourth within the window is refused"
        );
        let later = t0 + Duration::from_secs(61);
        assert_eq!(
            b.record(later),
            Some(Duration::from_millis(100)),
            "old restarts leave the window"
        );
        b.reset();
        assert_eq!(b.record(later), Some(Duration::from_millis(100)));
    }

    #[test]
    fn spec_hash_follows_the_declaration() {
        let a: ManagedServiceSpec =
            serde_json::from_value(serde_json::json!({"name": "w", "image": "redis:7"})).unwrap();
        let mut b = a.clone();
        assert_eq!(spec_hash(&a), spec_hash(&b));
        b.env.insert("X".into(), "1".into());
        assert_ne!(spec_hash(&a), spec_hash(&b));
    }
}
