//! Live workspaces: an environment prepared exactly like a job's (see
//! [`crate::runner::prepare`]) and kept open: files edited over the API, the fast
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
//!
//! - this file: the live workspaces and their lifecycle (create, prepare,
//!   set up, take over after a restart, reap, close);
//! - `calls`: what a client does with an open one (validate, diff,
//!   patch, files, reset);
//! - `paths`: paths a client names, confined to the checkout.

mod calls;
mod paths;
#[cfg(test)]
mod tests;
mod tree_guard;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::job::{FieldProblem, Outcome, SpecPolicy, now_ms};
use crate::logs::{JobLog, LogStream};
use crate::runner::exec::capture;
use crate::runner::prepare::{Environment, PrepareRequest, Progress, Runner, Steps, hand_over};
use crate::runner::services::{RunningService, ServiceLog, follow_log, watch_exit};
use crate::runner::{LABEL_ENGINE, LABEL_MANAGED, Role};
use crate::workspace::{
    RuntimeService, WorkspaceRecord, WorkspaceRequest, WorkspaceRuntime, WorkspaceState,
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

/// Limits and places of the workspaces (from the `workspaces.*` configuration).
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
    /// What a workspace's spec is validated against, as a job's is.
    pub policy: SpecPolicy,
}

/// Why a workspace call was refused or failed; the API maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// No workspace has this id, open or not (404).
    #[error("no workspace `{0}`")]
    NotFound(String),
    /// The workspace exists but is no longer open (410).
    #[error("workspace `{id}` is {state}{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Gone {
        /// The workspace's id (`ws-…`).
        id: String,
        /// Its stored state, normally `closed` or `failed`.
        state: &'static str,
        /// Why it closed or failed (idle, lifetime, a dead container, ...),
        /// when known.
        reason: Option<String>,
    },
    /// The call needs a ready workspace and this one is still being prepared (409).
    #[error("workspace `{0}` is still preparing")]
    Preparing(String),
    /// Another call holds the workspace; calls are refused, never queued (409).
    #[error("another call is running on workspace `{0}`; calls on one workspace never interleave")]
    Busy(String),
    /// Creating one more would pass `workspaces.max_open` (429).
    #[error("{open} workspaces are open, the most this server allows ({max})")]
    TooMany {
        /// Workspaces open (preparing or ready) now.
        open: usize,
        /// The configured maximum (`workspaces.max_open`).
        max: usize,
    },
    /// A `full` validate past `workspaces.max_full_runs`; the fast tier still
    /// works (429).
    #[error("workspace `{id}` has used its {max} `full` validate runs")]
    FullRunsUsed {
        /// The workspace's id.
        id: String,
        /// The configured cap (`workspaces.max_full_runs`).
        max: u32,
    },
    /// `git apply` refused the patch; no file changed. Holds git's message (409).
    #[error("the patch does not apply, nothing was changed: {0}")]
    PatchFailed(String),
    /// A path that is absolute, has `..`, touches `.git` or leaves the
    /// checkout through a symlink (422).
    #[error("path `{path}`: {why}")]
    BadPath {
        /// The path as the client gave it.
        path: String,
        /// Which rule it breaks.
        why: String,
    },
    /// The path is fine but names no file (a missing one or a directory) (404).
    #[error("no file `{0}` in the workspace")]
    NoFile(String),
    /// A service's reset command failed during a reset; the files are back at
    /// the base commit, that service's state is not (500).
    #[error("{0}")]
    ServiceReset(String),
    /// The create request has problems, by field (422).
    #[error("invalid workspace request")]
    Invalid(Vec<FieldProblem>),
    /// The engine failed (store, runtime, git); 500, the text is logged and not
    /// sent to the client.
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
    /// The tree guard's fingerprint as of a generation: while no edit
    /// came between, a validate starts from it without asking git.
    guarded: Mutex<Option<(u64, String, tree_guard::Stamp)>>,
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
            guarded: Mutex::new(None),
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

/// Every workspace this engine has open, with the runner they prepare and
/// run through; `serve` keeps one, shared by the API handlers.
pub struct Workspaces {
    runner: Arc<Runner>,
    settings: WorkspaceSettings,
    live: Mutex<HashMap<String, Arc<Live>>>,
}

impl Workspaces {
    /// Open workspaces of an earlier life of the engine are taken over
    /// (see `Workspaces::adopt`).
    pub async fn new(runner: Arc<Runner>, settings: WorkspaceSettings) -> Arc<Workspaces> {
        let _ = std::fs::create_dir_all(&settings.logs_dir);
        let this = Arc::new(Workspaces {
            runner,
            settings,
            live: Mutex::new(HashMap::new()),
        });
        if let Ok(records) = this.runner.store.list_workspaces().await {
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
                    LogStream::Engine,
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
                if let Ok((pod, _)) = crate::runner::Pod::find(
                    &self.runner.runtime,
                    engine_id,
                    &owner,
                    &pod_name,
                    Role::Workspace,
                )
                .await
                {
                    pod.remove().await;
                }
                let checkouts = self.runner.checkouts.clone();
                let name = id.clone();
                let _ = tokio::task::spawn_blocking(move || checkouts.remove(&name)).await;
                let reason = format!("the engine restarted and {why}");
                log.line(LogStream::Engine, &format!("workspace failed: {reason}"));
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
        let stored = match self.runner.store.get_workspace_runtime(id).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err("what it needs to go on was not stored".into()),
            Err(e) => return Err(format!("what it needs to go on cannot be read ({e})")),
        };
        let path = self
            .runner
            .checkouts
            .existing(id)
            .ok_or("its checkout is gone")?;
        let runtime = &self.runner.runtime;
        let engine_id = &self.runner.settings.engine_id;
        let (pod, _) = crate::runner::Pod::find(
            runtime,
            engine_id,
            &format!("{LABEL_WORKSPACE}={id}"),
            &pod_name(engine_id, id),
            Role::Workspace,
        )
        .await
        .map_err(|e| format!("the Docker daemon does not answer ({e})"))?;
        let running = async |container: &str| {
            runtime
                .inspect_container(container)
                .await
                .is_ok_and(|c| c.running)
        };
        if !running(&stored.container).await {
            return Err("its workspace container is gone or stopped".into());
        }
        let mut services = Vec::new();
        for s in &stored.services {
            if !running(&s.container).await {
                return Err(format!("its service `{}` is gone or stopped", s.name));
            }
            let kept = Arc::new(ServiceLog::default());
            let since = (now_ms() / 1000) as i64;
            follow_log(runtime, &s.container, &s.name, log, &kept, since);
            services.push(RunningService::new(
                s.name.clone(),
                s.container.clone(),
                s.service.clone(),
                None,
                kept,
                watch_exit(runtime, &s.container),
            ));
        }
        let env = Environment {
            checkout: crate::checkout::Checkout {
                path,
                sha: record.base_sha.clone(),
            },
            pod,
            container: stored.container.clone(),
            workload: Default::default(),
            services,
            steps: Steps {
                setup: Vec::new(),
                fast: stored.fast.clone(),
                full: stored.full.clone(),
            },
            image: record.image.clone().unwrap_or_default(),
            planned_by: record.planned_by.clone().unwrap_or_default(),
            workdir: stored.workdir.clone(),
            user: stored.user.clone(),
            record: Default::default(),
            caches: Vec::new(),
            cache_budget_bytes: 0,
        };
        Ok((env, stored))
    }

    /// Close idle and expired workspaces until `shutdown`.
    pub async fn reap(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
            let records: Vec<WorkspaceRecord> =
                self.live_list().iter().map(|l| l.snapshot()).collect();
            for (id, reason) in due_for_closing(&records, now_ms()) {
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
            role: Role::Workspace,
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
                &self.runner.runtime,
                &s.container,
                &snapshot,
                None,
                Duration::from_secs(120),
                64 * 1024,
            )
            .await;
            match ran {
                Ok(c) if c.exit_code == Some(0) => {
                    live.log.line(
                        LogStream::Engine,
                        &format!("service `{}`: snapshot taken", s.name),
                    );
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
            let Some(code) =
                crate::runner::container::wait_exit(&this.runner.runtime, &container).await
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
        let Some(live) = self.live(id) else {
            return Err(self.missing(id).await);
        };
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
            LogStream::Engine,
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

    async fn missing(&self, id: &str) -> WorkspaceError {
        match self.runner.store.get_workspace(id).await {
            Ok(Some(r)) => WorkspaceError::Gone {
                id: id.to_owned(),
                state: state_name(r.state),
                reason: r.reason,
            },
            _ => WorkspaceError::NotFound(id.to_owned()),
        }
    }

    /// The workspace `id` as it is now (live if open, else as stored),
    /// history included.
    pub async fn get(&self, id: &str) -> Result<WorkspaceRecord, WorkspaceError> {
        if let Some(live) = self.live(id) {
            return Ok(live.snapshot());
        }
        self.runner
            .store
            .get_workspace(id)
            .await
            .map_err(internal)?
            .ok_or_else(|| WorkspaceError::NotFound(id.to_owned()))
    }

    /// Every workspace, newest first (history left out).
    pub async fn list(&self) -> Result<Vec<WorkspaceRecord>, WorkspaceError> {
        let mut stored = self
            .runner
            .store
            .list_workspaces()
            .await
            .map_err(internal)?;
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
        let Some(live) = self.live(id) else {
            return Err(self.missing(id).await);
        };
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
            return Err(self.missing(id).await);
        }
        live.update(|r| r.last_used_ms = now_ms());
        Ok((live, guard))
    }
}

/// The ready workspaces past their maximum lifetime or idle timeout at
/// `now`, with why; one still preparing is never reaped (its setup may
/// legitimately take longer than the idle timeout).
fn due_for_closing(records: &[WorkspaceRecord], now: u64) -> Vec<(String, String)> {
    records
        .iter()
        .filter(|r| r.state == WorkspaceState::Ready)
        .filter_map(|r| {
            if now.saturating_sub(r.created_ms) > r.max_lifetime_s * 1000 {
                Some(format!(
                    "reached its maximum lifetime of {} s",
                    r.max_lifetime_s
                ))
            } else if now.saturating_sub(r.last_used_ms) > r.idle_timeout_s * 1000 {
                Some(format!("idle for more than {} s", r.idle_timeout_s))
            } else {
                None
            }
            .map(|reason| (r.id.clone(), reason))
        })
        .collect()
}

/// The prefix of the names of a workspace's containers.
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

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed { reason } | Outcome::InfrastructureError { reason } => reason.clone(),
        Outcome::TimedOut => "timed out".into(),
        Outcome::Cancelled => "cancelled".into(),
        Outcome::Succeeded => "succeeded".into(),
    }
}

/// A state's name as the API spells it: `preparing`, `ready`, `closed`, `failed`.
pub fn state_name(state: WorkspaceState) -> &'static str {
    match state {
        WorkspaceState::Preparing => "preparing",
        WorkspaceState::Ready => "ready",
        WorkspaceState::Closed => "closed",
        WorkspaceState::Failed => "failed",
    }
}
