//! Live workspaces: an environment prepared exactly like a job's (see
//! [`super::prepare`]) and kept open: files edited over the API, the fast
//! or full steps run on demand with findings from validator plugins, and a
//! reset that brings files back to the base commit and services back to
//! their state right after setup (the readiness plugins' `snapshot` and
//! `reset` commands).
//!
//! One call at a time per workspace: the environment sits behind an async
//! lock, and a call that finds it taken is refused (`Busy`), never queued
//! behind a long test run. A reaper closes workspaces past their idle
//! timeout or maximum lifetime; a workspace whose container dies is
//! `failed` and cleaned up. A ready workspace outlives a crash of the
//! engine: what it needs to go on is stored beside its record, and the
//! next engine takes it over (a graceful stop closes it).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::exec::{StepEnd, capture};
use super::prepare::{
    Environment, PrepareRequest, Progress, Runner, Steps, hand_over, step_output,
};
use super::services::{RunningService, ServiceLog, follow_log, watch_exit};
use super::{LABEL_ENGINE, LABEL_MANAGED};
use crate::job::{FieldProblem, Outcome, SpecPolicy, Tier, now_ms};
use crate::logs::JobLog;
use crate::plugins::bindings::Step;
use crate::workspace::{
    HISTORY_KEPT, RuntimeService, StepResult, ValidateResult, WorkspaceRecord, WorkspaceRequest,
    WorkspaceRuntime, WorkspaceState,
};

/// The label naming a workspace's containers.
pub const LABEL_WORKSPACE: &str = "io.slipway.workspace";
/// Tool outputs left out of a workspace's diff (`.git/info/exclude`).
const TOOL_OUTPUTS: &[&str] = &[
    ".slipway/",
    "__pycache__/",
    "*.pyc",
    ".pytest_cache/",
    ".ruff_cache/",
    ".mypy_cache/",
    "node_modules/",
    ".eslintcache",
    "target/",
    ".bundle/",
    "coverage/",
];

#[derive(Debug, Clone)]
pub struct WorkspaceSettings {
    /// Open workspaces at most; more are refused with 429.
    pub max_open: usize,
    /// `full` validate calls per workspace.
    pub max_full_runs: u32,
    /// A step's timeout unless the spec sets `timeout_s`.
    pub step_timeout: Duration,
    /// Output kept per step (the end is kept).
    pub output_cap: usize,
    /// Each workspace's log is `<logs_dir>/<id>.log`.
    pub logs_dir: PathBuf,
    pub policy: SpecPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("no workspace `{0}`")]
    NotFound(String),
    #[error("workspace `{id}` is {state}{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Gone {
        id: String,
        state: &'static str,
        reason: Option<String>,
    },
    #[error("workspace `{0}` is still preparing")]
    Preparing(String),
    #[error("another call is running on workspace `{0}`; calls on one workspace never interleave")]
    Busy(String),
    #[error("{open} workspaces are open, the most this server allows ({max})")]
    TooMany { open: usize, max: usize },
    #[error("workspace `{id}` has used its {max} `full` validate runs")]
    FullRunsUsed { id: String, max: u32 },
    #[error("the patch does not apply, nothing was changed: {0}")]
    PatchFailed(String),
    #[error("path `{path}`: {why}")]
    BadPath { path: String, why: String },
    #[error("no file `{0}` in the workspace")]
    NoFile(String),
    #[error("{0}")]
    ServiceReset(String),
    #[error("invalid workspace request")]
    Invalid(Vec<FieldProblem>),
    #[error("{0}")]
    Internal(String),
}

fn internal(e: impl std::fmt::Display) -> WorkspaceError {
    WorkspaceError::Internal(e.to_string())
}

/// One open workspace.
struct Live {
    record: Mutex<WorkspaceRecord>,
    /// The environment; `None` while preparing and after it closed.
    env: Arc<tokio::sync::Mutex<Option<Environment>>>,
    log: JobLog,
    /// (service container, argv) that brings each service back to its
    /// state right after setup.
    resets: Mutex<Vec<(String, String, Vec<String>)>>,
    cancel: CancellationToken,
    step_timeout: Duration,
    /// Bumped whenever the files may have changed (an edit, a reset, steps).
    generation: std::sync::atomic::AtomicU64,
    /// The diff against the base commit as of a generation, kept current
    /// in the background so a validate rarely waits for git.
    tree: Mutex<Option<(u64, String)>>,
}

impl Live {
    fn new(
        record: WorkspaceRecord,
        log: JobLog,
        step_timeout: Duration,
        env: Option<Environment>,
        resets: Vec<(String, String, Vec<String>)>,
    ) -> Arc<Live> {
        Arc::new(Live {
            record: Mutex::new(record),
            env: Arc::new(tokio::sync::Mutex::new(env)),
            log,
            resets: Mutex::new(resets),
            cancel: CancellationToken::new(),
            step_timeout,
            generation: Default::default(),
            tree: Mutex::new(None),
        })
    }

    fn snapshot(&self) -> WorkspaceRecord {
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut WorkspaceRecord)) -> WorkspaceRecord {
        let mut r = self.record.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut r);
        r.clone()
    }
}

/// Progress of a preparing workspace shows in its record.
struct RecordProgress<'a>(&'a Live);

impl Progress for RecordProgress<'_> {
    fn phase(&self, step: u32, steps: u32, message: String) -> BoxFuture<'_, ()> {
        self.0
            .update(|r| r.progress = Some(format!("{step}/{steps} {message}")));
        async {}.boxed()
    }
}

pub struct Workspaces {
    runner: Arc<Runner>,
    settings: WorkspaceSettings,
    live: Mutex<HashMap<String, Arc<Live>>>,
}

impl Workspaces {
    /// Open workspaces of an earlier life of the engine are taken over
    /// (see [`Workspaces::adopt`]).
    pub async fn new(runner: Arc<Runner>, settings: WorkspaceSettings) -> Arc<Workspaces> {
        let _ = std::fs::create_dir_all(&settings.logs_dir);
        let this = Arc::new(Workspaces {
            runner,
            settings,
            live: Mutex::new(HashMap::new()),
        });
        if let Ok(records) = this.runner.store.list_workspaces() {
            for r in records.into_iter().filter(|r| r.state.is_open()) {
                this.adopt(r).await;
            }
        }
        this
    }

    /// Take over a workspace the store says is open: a `ready` one whose
    /// containers and checkout survived goes on where it was (its files,
    /// history, services and their reset commands); any other fails with
    /// the reason, and what is left of it is removed.
    async fn adopt(self: &Arc<Self>, mut record: WorkspaceRecord) {
        let id = record.id.clone();
        let log = self.log(&id);
        match self.reattach(&record, &log).await {
            Ok((env, runtime)) => {
                let resets = runtime
                    .services
                    .iter()
                    .filter_map(|s| {
                        let reset = s.reset.clone()?;
                        Some((s.name.clone(), s.container.clone(), reset))
                    })
                    .collect();
                log.line(
                    "slipway",
                    "the engine restarted: workspace taken over, files and services as they were",
                );
                tracing::info!(workspace = %id, "taken over after an engine restart");
                let container = env.container.clone();
                let step_timeout = Duration::from_millis(runtime.step_timeout_ms);
                let live = Live::new(record, log, step_timeout, Some(env), resets);
                self.live
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, live.clone());
                self.watch(&live, &container);
            }
            Err(why) => {
                let engine_id = &self.runner.settings.engine_id;
                let owner = format!("{LABEL_WORKSPACE}={id}");
                let pod_name = pod_name(engine_id, &id);
                if let Ok((pod, _)) = super::Pod::find(
                    &self.runner.docker,
                    engine_id,
                    &owner,
                    &pod_name,
                    "workspace",
                )
                .await
                {
                    pod.remove().await;
                }
                let checkouts = self.runner.checkouts.clone();
                let name = id.clone();
                let _ = tokio::task::spawn_blocking(move || checkouts.remove(&name)).await;
                let reason = format!("the engine restarted and {why}");
                log.line("slipway", &format!("workspace failed: {reason}"));
                tracing::warn!(workspace = %id, "{reason}");
                record.state = WorkspaceState::Failed;
                record.progress = None;
                record.reason = Some(reason);
                let _ = self.runner.store.put_workspace_runtime(&id, None).await;
                let _ = self.runner.store.put_workspace(record).await;
            }
        }
    }

    /// Each workspace's log is `<logs_dir>/<id>.log`.
    fn log(&self, id: &str) -> JobLog {
        JobLog::at(self.settings.logs_dir.join(format!("{id}.log")))
    }

    /// The environment of a workspace found open at start, rebuilt from
    /// its stored runtime and the containers the daemon still runs; `Err`
    /// says why it cannot go on (the caller removes what is left).
    async fn reattach(
        &self,
        record: &WorkspaceRecord,
        log: &JobLog,
    ) -> Result<(Environment, WorkspaceRuntime), String> {
        if record.state != WorkspaceState::Ready {
            return Err("it was still preparing: create it again".into());
        }
        let id = &record.id;
        let runtime = match self.runner.store.get_workspace_runtime(id) {
            Ok(Some(r)) => r,
            Ok(None) => return Err("what it needs to go on was not stored".into()),
            Err(e) => return Err(format!("what it needs to go on cannot be read ({e})")),
        };
        let path = self
            .runner
            .checkouts
            .existing(id)
            .ok_or("its checkout is gone")?;
        let docker = &self.runner.docker;
        let engine_id = &self.runner.settings.engine_id;
        let (pod, _) = super::Pod::find(
            docker,
            engine_id,
            &format!("{LABEL_WORKSPACE}={id}"),
            &pod_name(engine_id, id),
            "workspace",
        )
        .await
        .map_err(|e| format!("the Docker daemon does not answer ({e})"))?;
        let running = async |container: &str| {
            docker
                .inspect_container(container, None)
                .await
                .ok()
                .and_then(|c| c.state)
                .and_then(|s| s.running)
                == Some(true)
        };
        if !running(&runtime.container).await {
            return Err("its workspace container is gone or stopped".into());
        }
        let mut services = Vec::new();
        for s in &runtime.services {
            if !running(&s.container).await {
                return Err(format!("its service `{}` is gone or stopped", s.name));
            }
            let kept = Arc::new(ServiceLog::default());
            let since = (now_ms() / 1000) as i32;
            follow_log(docker, &s.container, &s.name, log, &kept, since);
            services.push(RunningService::new(
                s.name.clone(),
                s.container.clone(),
                s.service.clone(),
                None,
                kept,
                watch_exit(docker, &s.container),
            ));
        }
        let env = Environment {
            checkout: crate::checkout::Checkout {
                path,
                sha: record.base_sha.clone(),
            },
            pod,
            container: runtime.container.clone(),
            workload: Default::default(),
            services,
            steps: Steps {
                setup: Vec::new(),
                fast: runtime.fast.clone(),
                full: runtime.full.clone(),
            },
            image: record.image.clone().unwrap_or_default(),
            planned_by: record.planned_by.clone().unwrap_or_default(),
            workdir: runtime.workdir.clone(),
            user: runtime.user.clone(),
            record: Default::default(),
            caches: Vec::new(),
            cache_budget_bytes: 0,
        };
        Ok((env, runtime))
    }

    /// Close idle and expired workspaces until `shutdown`.
    pub async fn reap(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
            let now = now_ms();
            let due: Vec<(String, String)> = self
                .live_list()
                .into_iter()
                .filter_map(|l| {
                    let r = l.snapshot();
                    if r.state != WorkspaceState::Ready {
                        return None;
                    }
                    if now.saturating_sub(r.created_ms) > r.max_lifetime_s * 1000 {
                        Some((
                            r.id,
                            format!("reached its maximum lifetime of {} s", r.max_lifetime_s),
                        ))
                    } else if now.saturating_sub(r.last_used_ms) > r.idle_timeout_s * 1000 {
                        Some((r.id, format!("idle for more than {} s", r.idle_timeout_s)))
                    } else {
                        None
                    }
                })
                .collect();
            for (id, reason) in due {
                tracing::info!(workspace = %id, "{reason}: closing");
                let _ = self.close(&id, WorkspaceState::Closed, reason).await;
            }
        }
    }

    /// Close every open workspace (the engine is stopping; a restarted
    /// engine could not adopt them).
    pub async fn close_all(&self, reason: &str) {
        for live in self.live_list() {
            let id = live.snapshot().id;
            let _ = self
                .close(&id, WorkspaceState::Closed, reason.to_owned())
                .await;
        }
    }

    fn live_list(&self) -> Vec<Arc<Live>> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn live(&self, id: &str) -> Option<Arc<Live>> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Prepare a workspace; it is `preparing` until its setup has run.
    pub async fn create(
        self: &Arc<Self>,
        request: WorkspaceRequest,
    ) -> Result<WorkspaceRecord, WorkspaceError> {
        let problems = request.validate(&self.settings.policy);
        if !problems.is_empty() {
            return Err(WorkspaceError::Invalid(problems));
        }
        let open = self
            .live_list()
            .iter()
            .filter(|l| l.snapshot().state.is_open())
            .count();
        if open >= self.settings.max_open {
            return Err(WorkspaceError::TooMany {
                open,
                max: self.settings.max_open,
            });
        }
        let id = format!("ws-{:012x}", fastrand::u64(..) >> 16);
        let now = now_ms();
        let record = WorkspaceRecord {
            id: id.clone(),
            state: WorkspaceState::Preparing,
            reason: None,
            progress: Some("queued".into()),
            repository: request.spec.repository.clone(),
            tier: request.spec.tier,
            base_sha: None,
            image: None,
            planned_by: None,
            plugins: Vec::new(),
            created_ms: now,
            last_used_ms: now,
            idle_timeout_s: request.idle_timeout_s,
            max_lifetime_s: request.max_lifetime_s,
            full_runs: 0,
            history: Vec::new(),
        };
        self.runner
            .store
            .put_workspace(record.clone())
            .await
            .map_err(internal)?;
        let step_timeout = request
            .spec
            .timeout_s
            .map(Duration::from_secs)
            .unwrap_or(self.settings.step_timeout);
        let live = Live::new(
            record.clone(),
            self.log(&id),
            step_timeout,
            None,
            Vec::new(),
        );
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), live.clone());
        let this = self.clone();
        // Hold the environment's lock from the start: calls made while it
        // prepares are told so instead of finding nothing.
        let guard = live
            .env
            .clone()
            .try_lock_owned()
            .map_err(|_| internal("a new workspace's lock is taken"))?;
        tokio::spawn(async move { this.prepare(live, request, guard).await });
        Ok(record)
    }

    async fn prepare(
        self: Arc<Self>,
        live: Arc<Live>,
        request: WorkspaceRequest,
        mut guard: tokio::sync::OwnedMutexGuard<Option<Environment>>,
    ) {
        let id = live.snapshot().id;
        let engine_id = self.runner.settings.engine_id.clone();
        let prepare = PrepareRequest {
            spec: &request.spec,
            checkout_name: &id,
            pod_name: pod_name(&engine_id, &id),
            labels: [
                (LABEL_MANAGED.to_owned(), "true".to_owned()),
                (LABEL_ENGINE.to_owned(), engine_id.clone()),
                (LABEL_WORKSPACE.to_owned(), id.clone()),
            ]
            .into(),
            role: "workspace",
            idle_workload: true,
            log: &live.log,
            cancel: &live.cancel,
        };
        let env = match self.runner.prepare(&prepare, &RecordProgress(&live)).await {
            Ok(env) => env,
            Err(outcome) => {
                drop(guard);
                self.fail(&live, describe(&outcome)).await;
                return;
            }
        };
        live.update(|r| r.progress = Some("setup".into()));
        let ready = self.finish_setup(&live, &env).await;
        match ready {
            Ok(base) => {
                let (image, planned_by, plugins) = (
                    env.image.clone(),
                    env.planned_by.clone(),
                    env.record.plugins.clone(),
                );
                self.watch(&live, &env.container);
                // What a restarted engine needs to take it over, stored
                // before it is `ready`.
                let runtime = runtime_of(&env, &live);
                if let Err(e) = self
                    .runner
                    .store
                    .put_workspace_runtime(&id, Some(runtime))
                    .await
                {
                    tracing::warn!(workspace = %id, error = %e, "its runtime was not stored: a restart will fail it");
                }
                // The environment is in place before anyone is told `ready`.
                *guard = Some(env);
                drop(guard);
                let record = live.update(|r| {
                    r.state = WorkspaceState::Ready;
                    r.progress = None;
                    r.base_sha = Some(base);
                    r.image = Some(image);
                    r.planned_by = Some(planned_by);
                    r.plugins = plugins;
                    r.last_used_ms = now_ms();
                });
                let _ = self.runner.store.put_workspace(record).await;
            }
            Err(reason) => {
                *guard = Some(env);
                drop(guard);
                self.fail(&live, reason).await;
            }
        }
    }

    /// Setup steps, the base commit, and the services' snapshots.
    async fn finish_setup(&self, live: &Live, env: &Environment) -> Result<String, String> {
        self.runner
            .run_steps(
                env,
                &env.steps.setup,
                &live.log,
                &live.cancel,
                live.step_timeout,
                |_| {},
            )
            .await
            .map_err(|o| format!("setup: {}", describe(&o)))?;
        let base = self.base_commit(env).await?;
        for s in &env.services {
            let Some(plugin) = &s.plugin else { continue };
            let snapshot = plugin.state_command(&s.service, false).await;
            let reset = plugin.state_command(&s.service, true).await;
            let (Ok(Some(snapshot)), Ok(Some(reset))) = (snapshot, reset) else {
                continue;
            };
            let ran = capture(
                &self.runner.docker,
                &s.container,
                &snapshot,
                None,
                Duration::from_secs(120),
                64 * 1024,
            )
            .await;
            match ran {
                Ok(c) if c.exit_code == Some(0) => {
                    live.log
                        .line("slipway", &format!("service `{}`: snapshot taken", s.name));
                    live.resets.lock().unwrap_or_else(|p| p.into_inner()).push((
                        s.name.clone(),
                        s.container.clone(),
                        reset,
                    ));
                }
                Ok(c) => {
                    return Err(format!(
                        "service `{}`: its snapshot command failed (exit {:?}): {}",
                        s.name,
                        c.exit_code,
                        c.stderr.trim()
                    ));
                }
                Err(e) => return Err(format!("service `{}`: snapshot: {e}", s.name)),
            }
        }
        Ok(base)
    }

    /// The commit files are compared with and reset to. A plain directory
    /// (no commit) becomes a git repository with one commit first.
    async fn base_commit(&self, env: &Environment) -> Result<String, String> {
        let sha = self.base_commit_of(env).await?;
        // What tools write (reports, caches) is not an edit: keep it out of
        // the diff, its hash and `reset`'s clean-up (the repository's own
        // `.gitignore` applies too).
        let exclude = env.checkout.path.join(".git/info/exclude");
        if let Some(dir) = exclude.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(&exclude, TOOL_OUTPUTS.join("\n") + "\n").map_err(|e| e.to_string())?;
        Ok(sha)
    }

    async fn base_commit_of(&self, env: &Environment) -> Result<String, String> {
        if let Some(sha) = &env.checkout.sha {
            return Ok(sha.clone());
        }
        let path = env.checkout.path.clone();
        let checkouts = self.runner.checkouts.clone();
        let (uid, gid) = self.runner.settings.job_user;
        tokio::task::spawn_blocking(move || {
            let git = |args: &[&str]| checkouts.git(Some(&path), args);
            git(&["init", "-q"])?;
            git(&["add", "-A"])?;
            git(&[
                "-c",
                "user.name=slipway",
                "-c",
                "user.email=slipway@localhost",
                "commit",
                "-q",
                "--no-verify",
                "--allow-empty",
                "-m",
                "workspace base",
            ])?;
            let sha = git(&["rev-parse", "HEAD"])?;
            hand_over(&path, uid, gid)?;
            Ok::<_, crate::checkout::CheckoutError>(sha)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }

    /// A workspace whose container stops is `failed`, and cleaned up.
    fn watch(self: &Arc<Self>, live: &Arc<Live>, container: &str) {
        let (this, live, container) = (self.clone(), live.clone(), container.to_owned());
        tokio::spawn(async move {
            let Some(code) = super::container::wait_exit(&this.runner.docker, &container).await
            else {
                return;
            };
            // A closing workspace's container stops too: not a failure.
            if live.snapshot().state == WorkspaceState::Ready && !live.cancel.is_cancelled() {
                let id = live.snapshot().id;
                let reason = format!(
                    "the workspace container stopped (exit code {code}); was it stopped or killed from outside?"
                );
                let _ = this.close(&id, WorkspaceState::Failed, reason).await;
            }
        });
    }

    async fn fail(&self, live: &Live, reason: String) {
        let id = live.snapshot().id;
        let _ = self.close(&id, WorkspaceState::Failed, reason).await;
    }

    /// Close a workspace: its pod and checkout are removed; the record
    /// stays with `state` and `reason`.
    pub async fn close(
        &self,
        id: &str,
        state: WorkspaceState,
        reason: String,
    ) -> Result<WorkspaceRecord, WorkspaceError> {
        let live = self.live(id).ok_or_else(|| self.missing(id))?;
        live.cancel.cancel();
        let env = live.env.lock().await.take();
        if let Some(env) = env {
            env.pod.remove().await;
        }
        let checkouts = self.runner.checkouts.clone();
        let name = id.to_owned();
        let _ = tokio::task::spawn_blocking(move || checkouts.remove(&name)).await;
        let record = live.update(|r| {
            r.state = state;
            r.reason = Some(reason.clone());
            r.progress = None;
        });
        live.log.line(
            "slipway",
            &format!("workspace {}: {reason}", state_name(state)),
        );
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        let _ = self.runner.store.put_workspace_runtime(id, None).await;
        self.runner
            .store
            .put_workspace(record.clone())
            .await
            .map_err(internal)?;
        Ok(record)
    }

    /// `DELETE`: close it.
    pub async fn delete(&self, id: &str) -> Result<WorkspaceRecord, WorkspaceError> {
        self.close(id, WorkspaceState::Closed, "deleted".into())
            .await
    }

    fn missing(&self, id: &str) -> WorkspaceError {
        match self.runner.store.get_workspace(id) {
            Ok(Some(r)) => WorkspaceError::Gone {
                id: id.to_owned(),
                state: state_name(r.state),
                reason: r.reason,
            },
            _ => WorkspaceError::NotFound(id.to_owned()),
        }
    }

    pub fn get(&self, id: &str) -> Result<WorkspaceRecord, WorkspaceError> {
        if let Some(live) = self.live(id) {
            return Ok(live.snapshot());
        }
        self.runner
            .store
            .get_workspace(id)
            .map_err(internal)?
            .ok_or_else(|| WorkspaceError::NotFound(id.to_owned()))
    }

    /// Every workspace, newest first (history left out).
    pub fn list(&self) -> Result<Vec<WorkspaceRecord>, WorkspaceError> {
        let mut stored = self.runner.store.list_workspaces().map_err(internal)?;
        for r in stored.iter_mut() {
            if let Some(live) = self.live(&r.id) {
                *r = live.snapshot();
            }
            r.history.clear();
        }
        stored.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
        Ok(stored)
    }

    /// The environment of a ready workspace, locked for one call.
    async fn lock(
        &self,
        id: &str,
    ) -> Result<(Arc<Live>, tokio::sync::OwnedMutexGuard<Option<Environment>>), WorkspaceError>
    {
        let live = self.live(id).ok_or_else(|| self.missing(id))?;
        let guard = match live.env.clone().try_lock_owned() {
            Ok(g) => g,
            Err(_) => {
                return Err(match live.snapshot().state {
                    WorkspaceState::Preparing => WorkspaceError::Preparing(id.to_owned()),
                    _ => WorkspaceError::Busy(id.to_owned()),
                });
            }
        };
        if guard.is_none() {
            return Err(self.missing(id));
        }
        live.update(|r| r.last_used_ms = now_ms());
        Ok((live, guard))
    }

    /// Run the `fast` (or `fast` then `full`) steps; stop at the first
    /// failure. Every result is kept in the workspace's history.
    pub async fn validate(&self, id: &str, tier: Tier) -> Result<ValidateResult, WorkspaceError> {
        let (live, guard) = self.lock(id).await?;
        let env = guard.as_ref().expect("checked by lock");
        if tier == Tier::Full {
            let used = live.snapshot().full_runs;
            if used >= self.settings.max_full_runs {
                return Err(WorkspaceError::FullRunsUsed {
                    id: id.to_owned(),
                    max: self.settings.max_full_runs,
                });
            }
            live.update(|r| r.full_runs += 1);
        }
        let started = Instant::now();
        // What the steps run on (usually known already: edits refresh it).
        let diff = self.current_diff(env, &live).await?;
        let mut steps: Vec<Step> = env.steps.fast.clone();
        if tier == Tier::Full {
            steps.extend(env.steps.full.clone());
        }
        let mut results = Vec::new();
        let mut ok = true;
        for step in &steps {
            let result = self.run_step(&live, env, step).await;
            let passed = result.exit_code == Some(0);
            results.push(result);
            if !passed {
                ok = false;
                break;
            }
        }
        // Steps may have written files: refresh behind the response.
        self.refresh_diff(env, &live);
        let result = ValidateResult {
            tier,
            ok,
            duration_ms: started.elapsed().as_millis() as u64,
            at_ms: now_ms(),
            diff_sha256: sha256_hex(diff.as_bytes()),
            steps: results,
            note: empty_tiers(&env.steps, tier),
        };
        let record = live.update(|r| {
            r.history.push(result.clone());
            let extra = r.history.len().saturating_sub(HISTORY_KEPT);
            r.history.drain(..extra);
            r.last_used_ms = now_ms();
        });
        drop(guard);
        // Kept durably, but the caller does not wait for the commit.
        let store = self.runner.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.put_workspace(record).await {
                tracing::warn!(error = %e, "a validate result was not stored");
            }
        });
        Ok(result)
    }

    async fn run_step(&self, live: &Live, env: &Environment, step: &Step) -> StepResult {
        let mut ran = None;
        let outcome = self
            .runner
            .run_steps(
                env,
                std::slice::from_ref(step),
                &live.log,
                &live.cancel,
                live.step_timeout,
                |r| ran = Some(r.clone()),
            )
            .await;
        let (stdout, mut output) = match &ran {
            Some(r) => step_output(live.log.path(), r.log_start, r.log_end),
            None => Default::default(),
        };
        if let Err(Outcome::Failed { reason }) = &outcome
            && ran.is_none()
        {
            // Not the step itself: a service exited while it ran.
            output.push_str(&format!("\n[slipway] {reason}"));
        }
        let (exit_code, timed_out, duration) = match &ran {
            Some(r) => match r.end {
                StepEnd::Exited(code) => (Some(code), false, r.duration),
                StepEnd::TimedOut => (None, true, r.duration),
                StepEnd::Cancelled => (None, false, r.duration),
            },
            None => (None, false, Duration::ZERO),
        };
        let (findings, findings_error) = match &step.report {
            None => (Vec::new(), None),
            Some(report) => match self
                .runner
                .findings(&env.checkout.path, report, &stdout)
                .await
            {
                Ok(f) => (f, None),
                Err(e) => (Vec::new(), Some(e)),
            },
        };
        StepResult {
            name: step.name.clone(),
            command: step.command.clone(),
            exit_code,
            duration_ms: duration.as_millis() as u64,
            output: keep_end(output, self.settings.output_cap),
            findings,
            findings_error,
            timed_out,
        }
    }

    /// The workspace's changes against its base commit, as a unified diff.
    pub async fn diff(&self, id: &str) -> Result<String, WorkspaceError> {
        let (live, guard) = self.lock(id).await?;
        let env = guard.as_ref().expect("checked by lock");
        self.current_diff(env, &live).await
    }

    /// The diff against the base commit as the files are now: the kept one
    /// when nothing changed since it was made, else made now.
    async fn current_diff(&self, env: &Environment, live: &Live) -> Result<String, WorkspaceError> {
        use std::sync::atomic::Ordering;
        let generation = live.generation.load(Ordering::SeqCst);
        if let Some((g, diff)) = live.tree.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && *g == generation
        {
            return Ok(diff.clone());
        }
        let job = diff_job(&self.runner, env, live);
        let diff = tokio::task::spawn_blocking(job)
            .await
            .map_err(internal)?
            .map_err(internal)?;
        keep_diff(live, generation, &diff);
        Ok(diff)
    }

    /// The files may have changed: a new generation, whose diff is made in
    /// the background (the caller holds the workspace; nothing else writes).
    fn refresh_diff(&self, env: &Environment, live: &Arc<Live>) {
        use std::sync::atomic::Ordering;
        let generation = live.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let job = diff_job(&self.runner, env, live);
        let live = live.clone();
        tokio::task::spawn_blocking(move || {
            if let Ok(diff) = job() {
                keep_diff(&live, generation, &diff);
            }
        });
    }

    /// Apply a unified diff: all of it or nothing.
    pub async fn patch(&self, id: &str, patch: &str) -> Result<WorkspaceRecord, WorkspaceError> {
        let (live, guard) = self.lock(id).await?;
        let env = guard.as_ref().expect("checked by lock");
        for path in patch_paths(patch) {
            check_relative(&path)?;
        }
        let file = self.settings.logs_dir.join(format!("{id}.patch"));
        std::fs::write(&file, patch).map_err(internal)?;
        let (checkouts, dir, (uid, gid)) = (
            self.runner.checkouts.clone(),
            env.checkout.path.clone(),
            self.runner.settings.job_user,
        );
        let target = file.clone();
        let applied = tokio::task::spawn_blocking(move || {
            let f = target.to_string_lossy().to_string();
            // `--check` first: git applies all hunks or none, and says which failed.
            checkouts.git(Some(&dir), &["apply", "--check", "--whitespace=nowarn", &f])?;
            checkouts.git(Some(&dir), &["apply", "--whitespace=nowarn", &f])?;
            drop_bytecode(&checkouts, &dir)?;
            hand_over(&dir, uid, gid)
        })
        .await
        .map_err(internal)?;
        let _ = std::fs::remove_file(&file);
        if let Err(e) = applied {
            let text = match e {
                crate::checkout::CheckoutError::Git { stderr, .. } => stderr,
                other => other.to_string(),
            };
            return Err(WorkspaceError::PatchFailed(
                text.replace(&*file.to_string_lossy(), "patch"),
            ));
        }
        self.refresh_diff(env, &live);
        Ok(live.snapshot())
    }

    pub async fn read_file(&self, id: &str, path: &str) -> Result<Vec<u8>, WorkspaceError> {
        let (_live, guard) = self.lock(id).await?;
        let env = guard.as_ref().expect("checked by lock");
        let file = confine(&env.checkout.path, path, false)?;
        match std::fs::read(&file) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(WorkspaceError::NoFile(path.into()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => {
                Err(WorkspaceError::NoFile(path.into()))
            }
            Err(e) => Err(internal(e)),
        }
    }

    /// Write a file (creating its folders); `Ok(true)` when it existed.
    pub async fn write_file(
        &self,
        id: &str,
        path: &str,
        bytes: &[u8],
    ) -> Result<bool, WorkspaceError> {
        let (live, guard) = self.lock(id).await?;
        let env = guard.as_ref().expect("checked by lock");
        let file = confine(&env.checkout.path, path, true)?;
        let existed = file.exists();
        let (uid, gid) = self.runner.settings.job_user;
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(internal)?;
            hand_over(&env.checkout.path, uid, gid).map_err(internal)?;
        }
        std::fs::write(&file, bytes).map_err(internal)?;
        std::os::unix::fs::lchown(&file, Some(uid), Some(gid)).map_err(internal)?;
        self.refresh_diff(env, &live);
        Ok(existed)
    }

    pub async fn delete_file(&self, id: &str, path: &str) -> Result<(), WorkspaceError> {
        let (live, guard) = self.lock(id).await?;
        let env = guard.as_ref().expect("checked by lock");
        let file = confine(&env.checkout.path, path, false)?;
        match std::fs::remove_file(&file) {
            Ok(()) => {
                self.refresh_diff(env, &live);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(WorkspaceError::NoFile(path.into()))
            }
            Err(e) => Err(internal(e)),
        }
    }

    /// Files back to the base commit, services back to their snapshot.
    pub async fn reset(&self, id: &str) -> Result<WorkspaceRecord, WorkspaceError> {
        let (live, guard) = self.lock(id).await?;
        let env = guard.as_ref().expect("checked by lock");
        let base = live.snapshot().base_sha.unwrap_or_default();
        let (checkouts, dir, (uid, gid)) = (
            self.runner.checkouts.clone(),
            env.checkout.path.clone(),
            self.runner.settings.job_user,
        );
        tokio::task::spawn_blocking(move || {
            checkouts.git(Some(&dir), &["reset", "-q", "--hard", &base])?;
            // Untracked files go; ignored ones (what setup built) stay.
            checkouts.git(Some(&dir), &["clean", "-q", "-f", "-d"])?;
            drop_bytecode(&checkouts, &dir)?;
            hand_over(&dir, uid, gid)
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        self.refresh_diff(env, &live);
        let resets = live
            .resets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (name, container, argv) in resets {
            let c = capture(
                &self.runner.docker,
                &container,
                &argv,
                None,
                Duration::from_secs(120),
                64 * 1024,
            )
            .await
            .map_err(internal)?;
            if c.exit_code != Some(0) {
                return Err(WorkspaceError::ServiceReset(format!(
                    "service `{name}`: its reset command failed (exit {:?}): {}",
                    c.exit_code,
                    c.stderr.trim()
                )));
            }
            live.log.line(
                "slipway",
                &format!("service `{name}`: reset to its snapshot"),
            );
        }
        Ok(live.snapshot())
    }
}

/// The prefix of the names of a workspace's containers.
/// The note of a validate result whose tier (or the fast tier a full run
/// starts with) has no steps.
fn empty_tiers(steps: &Steps, tier: Tier) -> Option<String> {
    let mut empty = Vec::new();
    if steps.fast.is_empty() {
        empty.push(crate::plan::empty_tier_note("fast"));
    }
    if tier == Tier::Full && steps.full.is_empty() {
        empty.push(crate::plan::empty_tier_note("full"));
    }
    (!empty.is_empty()).then(|| empty.join("; "))
}

fn pod_name(engine_id: &str, id: &str) -> String {
    format!("slipway-{engine_id}-{id}")
}

/// What a restarted engine needs to take a ready workspace over.
fn runtime_of(env: &Environment, live: &Live) -> WorkspaceRuntime {
    let resets = live.resets.lock().unwrap_or_else(|p| p.into_inner());
    WorkspaceRuntime {
        container: env.container.clone(),
        workdir: env.workdir.clone(),
        user: env.user.clone(),
        step_timeout_ms: live.step_timeout.as_millis() as u64,
        fast: env.steps.fast.clone(),
        full: env.steps.full.clone(),
        services: env
            .services
            .iter()
            .map(|s| RuntimeService {
                name: s.name.clone(),
                container: s.container.clone(),
                service: s.service.clone(),
                reset: resets
                    .iter()
                    .find(|(name, _, _)| name == &s.name)
                    .map(|(_, _, argv)| argv.clone()),
            })
            .collect(),
    }
}

/// Numbers the private git indexes, so diffs never share one.
static INDEX_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A blocking job that stages the files in a private git index (the
/// repository's own index is left alone) and diffs them against the base.
fn diff_job(
    runner: &Runner,
    env: &Environment,
    live: &Live,
) -> impl FnOnce() -> Result<String, crate::checkout::CheckoutError> + Send + 'static {
    let base = live.snapshot().base_sha.unwrap_or_default();
    let (checkouts, path) = (runner.checkouts.clone(), env.checkout.path.clone());
    move || {
        let n = INDEX_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let index = format!(".git/slipway-index-{}-{n}", std::process::id());
        let with_index = [("GIT_INDEX_FILE", index.as_str())];
        let result = checkouts
            .git_env(Some(&path), &with_index, &["add", "-A"])
            .and_then(|_| {
                checkouts.git_env(
                    Some(&path),
                    &with_index,
                    &["diff", "--cached", "--no-color", "--no-ext-diff", &base],
                )
            });
        let _ = std::fs::remove_file(path.join(&index));
        result.map(|d| if d.is_empty() { d } else { d + "\n" })
    }
}

/// Keep `diff` as the one of `generation`, unless a newer one began.
fn keep_diff(live: &Live, generation: u64, diff: &str) {
    if live.generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
        *live.tree.lock().unwrap_or_else(|p| p.into_inner()) = Some((generation, diff.to_owned()));
    }
}

/// Python's bytecode cache trusts a source file's size and mtime in whole
/// seconds: a file edited back and forth within a second would run stale.
fn drop_bytecode(
    checkouts: &crate::checkout::Checkouts,
    dir: &Path,
) -> Result<(), crate::checkout::CheckoutError> {
    checkouts
        .git(Some(dir), &["clean", "-q", "-f", "-X", "--", "*.pyc"])
        .map(|_| ())
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed { reason } | Outcome::InfrastructureError { reason } => reason.clone(),
        Outcome::TimedOut => "timed out".into(),
        Outcome::Cancelled => "cancelled".into(),
        Outcome::Succeeded => "succeeded".into(),
    }
}

pub fn state_name(state: WorkspaceState) -> &'static str {
    match state {
        WorkspaceState::Preparing => "preparing",
        WorkspaceState::Ready => "ready",
        WorkspaceState::Closed => "closed",
        WorkspaceState::Failed => "failed",
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The last `cap` bytes of `text` (on a character boundary), marked.
fn keep_end(text: String, cap: usize) -> String {
    if text.len() <= cap {
        return text;
    }
    let mut start = text.len() - cap;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[… {start} bytes cut …]\n{}", &text[start..])
}

/// Refuse absolute paths, `..`, and the repository's `.git`.
fn check_relative(path: &str) -> Result<(), WorkspaceError> {
    let bad = |why: &str| WorkspaceError::BadPath {
        path: path.to_owned(),
        why: why.to_owned(),
    };
    if path.is_empty() {
        return Err(bad("is empty"));
    }
    let p = Path::new(path);
    if p.is_absolute() {
        return Err(bad(
            "absolute paths are refused; paths are relative to the checkout",
        ));
    }
    for c in p.components() {
        match c {
            Component::ParentDir => {
                return Err(bad("`..` is refused: paths stay inside the checkout"));
            }
            Component::Normal(n) if n == ".git" => {
                return Err(bad("`.git` is the workspace's own; it cannot be edited"));
            }
            Component::Normal(_) | Component::CurDir => {}
            _ => return Err(bad("not a plain relative path")),
        }
    }
    Ok(())
}

/// `path` inside `root`, refusing anything that leaves it, also through
/// symlinks. With `create`, the file (and its folders) may not exist yet.
fn confine(root: &Path, path: &str, create: bool) -> Result<PathBuf, WorkspaceError> {
    check_relative(path)?;
    let root = root.canonicalize().map_err(internal)?;
    let joined = root.join(path);
    // The deepest part that exists must resolve inside the root.
    let mut existing = joined.clone();
    while !existing.exists() && existing.symlink_metadata().is_err() {
        match existing.parent() {
            Some(p) => existing = p.to_path_buf(),
            None => break,
        }
    }
    let resolved = existing
        .canonicalize()
        .map_err(|_| WorkspaceError::BadPath {
            path: path.to_owned(),
            why: "a symlink on the way points nowhere".into(),
        })?;
    if !resolved.starts_with(&root) {
        return Err(WorkspaceError::BadPath {
            path: path.to_owned(),
            why: "it leaves the checkout through a symlink".into(),
        });
    }
    if !create && !joined.exists() {
        return Err(WorkspaceError::NoFile(path.to_owned()));
    }
    Ok(joined)
}

/// The paths a unified diff touches (from `---`/`+++` and `diff --git`).
fn patch_paths(patch: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for line in patch.lines() {
        let names: Vec<&str> = if let Some(rest) = line.strip_prefix("diff --git ") {
            rest.split_whitespace().collect()
        } else if let Some(rest) = line
            .strip_prefix("--- ")
            .or_else(|| line.strip_prefix("+++ "))
        {
            vec![rest.split('\t').next().unwrap_or(rest).trim()]
        } else {
            continue;
        };
        for name in names {
            if name == "/dev/null" {
                continue;
            }
            let name = name
                .strip_prefix("a/")
                .or_else(|| name.strip_prefix("b/"))
                .unwrap_or(name);
            paths.push(name.to_owned());
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("src")).unwrap();
        std::fs::write(root.join("src/app.py"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
        assert!(confine(root, "src/app.py", false).is_ok());
        assert!(confine(root, "src/new/deep.py", true).is_ok());
        for (path, why) in [
            ("/etc/passwd", "absolute"),
            ("src/../../x", "`..`"),
            (".git/config", "`.git`"),
            ("out/passwd", "symlink"),
            ("out/new.txt", "symlink"),
        ] {
            let e = confine(root, path, true).unwrap_err().to_string();
            assert!(e.contains(why), "{path}: {e}");
        }
        assert!(matches!(
            confine(root, "missing.py", false),
            Err(WorkspaceError::NoFile(_))
        ));
    }

    #[test]
    fn patch_paths_are_found_in_every_header() {
        let patch = "diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-a\n+b\n\
                     --- /dev/null\n+++ b/../evil\n";
        assert_eq!(
            patch_paths(patch),
            ["app.py", "app.py", "app.py", "app.py", "../evil"]
        );
    }

    #[test]
    fn output_keeps_its_end() {
        assert_eq!(keep_end("short".into(), 10), "short");
        let cut = keep_end("0123456789abcdef".into(), 6);
        assert!(
            cut.ends_with("\nabcdef") && cut.contains("10 bytes cut"),
            "{cut}"
        );
    }
}
