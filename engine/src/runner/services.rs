//! A job's services: started in its pod, their logs followed into the job
//! log, and waited for until a readiness plugin says each is ready. Then
//! watched: a service that exits while the job runs fails the job.
//!
//! The plugin decides *what* to probe and *whether* a result means ready;
//! the engine runs the probe: an exec in the service container, a TCP
//! connection or HTTP request from the pod's holder (inside the pod's
//! network namespace), or a regex on the service's log as it arrives.
//! Probes start right away and repeat on a short interval that grows to the
//! plugin's period, and again at once whenever the service logs a line
//! (services say when they are up), so a job starts within moments of its
//! services being ready.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::Role;
use super::container::{LineBuffer, RunnerError};
use super::exec::capture;
use super::pod::{Pod, ServiceContainer};
use crate::job::ServiceSpec;
use crate::logs::{JobLog, LogStream};
use crate::plugins::bindings::{
    HttpCheck, OptionPair, Probe, ProbeAction, ProbeOutput, Service, Verdict,
};
use crate::plugins::{PreparedPlugin, Registry, World};
use crate::runtime::{LogsOptions, OutputStream, Runtime};

/// Lines of a service's log kept for log-line probes and failure reports.
const KEPT_LINES: usize = 500;
/// Output of one probe kept (each stream).
const PROBE_OUTPUT_CAP: usize = 64 * 1024;
/// First pause between probes; doubles up to the plugin's period.
const FIRST_INTERVAL: Duration = Duration::from_millis(10);
/// The readiness plugin used when a service names none but declares ports.
const DEFAULT_READINESS: &str = "tcp";

/// Why a service could not be started, did not become ready, or stopped while
/// it was needed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The container engine could not start the service's container.
    #[error("service `{name}`: {source}")]
    Start {
        /// The service's name, from its spec.
        name: String,
        /// What the container engine said.
        source: RunnerError,
    },
    /// The spec names a readiness plugin that is not installed as one.
    #[error(
        "service `{name}`: no readiness plugin `{plugin}` (readiness plugins here: {known}; hint: check `readiness.plugin`, or run `slipway plugins list`)"
    )]
    UnknownPlugin {
        /// The service's name, from its spec.
        name: String,
        /// The readiness plugin its spec names (`tcp` when it names none
        /// but declares ports).
        plugin: String,
        /// The active readiness plugins, `, `-separated.
        known: String,
    },
    /// The readiness plugin could not be loaded, its `probe` call failed, or it
    /// gave a log-line pattern that is not a regex.
    #[error("service `{name}`: readiness plugin {plugin}: {message}")]
    Plugin {
        /// The service's name, from its spec.
        name: String,
        /// The plugin: `name@version@sha256` when it could not be loaded,
        /// else `name@version`.
        plugin: String,
        /// What went wrong.
        message: String,
    },
    /// The startup deadline passed before the probe passed `success_threshold`
    /// times in a row.
    #[error(
        "service `{name}` was not ready within its startup deadline of {deadline_s:.1} s; last probe: {last}"
    )]
    NotReady {
        /// The service's name, from its spec.
        name: String,
        /// The probe's startup deadline, in seconds.
        deadline_s: f64,
        /// What the last attempt found: the plugin's reason, with the
        /// probe's output.
        last: String,
    },
    /// The plugin judged that the service will never become ready (e.g. bad
    /// credentials): no point waiting for the deadline.
    #[error("service `{name}` will not become ready: {reason}")]
    Failed {
        /// The service's name, from its spec.
        name: String,
        /// The plugin's reason, with the probe's output.
        reason: String,
    },
    /// The service's container stopped, before it was ready or while the job
    /// ran.
    #[error("service `{name}` exited with code {code}{when}; its last log lines:\n{tail}")]
    Exited {
        /// The service's name, from its spec.
        name: String,
        /// The container's exit code.
        code: i64,
        /// ` before it was ready` or ` while the job was running`: the end of
        /// the message's first clause.
        when: &'static str,
        /// The last 20 lines of its log.
        tail: String,
    },
}

impl ServiceError {
    /// Whether the engine (not the job's spec or its services) failed.
    pub fn is_infrastructure(&self) -> bool {
        matches!(
            self,
            ServiceError::Start {
                source: RunnerError::Engine { .. },
                ..
            }
        )
    }
}

/// A service's log as far as it is kept, with a signal for new lines.
#[derive(Default)]
pub struct ServiceLog {
    lines: Mutex<(u64, VecDeque<String>)>,
    grew: Notify,
}

impl ServiceLog {
    fn push(&self, line: &str) {
        let mut guard = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        guard.0 += 1;
        guard.1.push_back(line.to_owned());
        if guard.1.len() > KEPT_LINES {
            guard.1.pop_front();
        }
        drop(guard);
        self.grew.notify_waiters();
    }

    /// The first line at or after number `from` that matches, and the
    /// number to continue from.
    fn find(&self, from: u64, pattern: &regex::Regex) -> (Option<String>, u64) {
        let guard = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let (total, lines) = (&guard.0, &guard.1);
        let first_kept = total - lines.len() as u64;
        let skip = from.saturating_sub(first_kept) as usize;
        for (i, line) in lines.iter().enumerate().skip(skip) {
            if pattern.is_match(line) {
                return (Some(line.clone()), first_kept + i as u64 + 1);
            }
        }
        (None, *total)
    }

    /// The last `n` lines, joined.
    pub fn tail(&self, n: usize) -> String {
        let guard = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let skip = guard.1.len().saturating_sub(n);
        guard
            .1
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A readiness plugin, ready to call.
#[derive(Clone)]
pub struct ReadinessPlugin {
    /// `name@version` of the plugin, as logs and errors name it.
    pub id: String,
    prepared: Arc<PreparedPlugin>,
    registry: Arc<Registry>,
}

impl ReadinessPlugin {
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::plugins::PluginSandbox, &PreparedPlugin) -> T + Send + 'static,
    ) -> Option<T> {
        let (registry, prepared) = (self.registry.clone(), self.prepared.clone());
        tokio::task::spawn_blocking(move || f(registry.sandbox(), &prepared))
            .await
            .ok()
    }

    /// The plugin's `snapshot` (or with `reset`, `reset`) argv.
    pub async fn state_command(
        &self,
        service: &ServiceView,
        reset: bool,
    ) -> Result<Option<Vec<String>>, String> {
        let service = service.wit();
        self.call(move |s, p| s.state_command(p, &service, reset))
            .await
            .ok_or_else(|| "the plugin call did not finish".to_owned())?
            .map_err(|e| e.to_string())
    }
}

/// A started service.
pub struct RunningService {
    /// The service's name, from its spec.
    pub name: String,
    /// Id of the service's container.
    pub container: String,
    /// The service as plugins see it.
    pub service: ServiceView,
    /// Its readiness plugin; `None` when nothing checks its readiness (no
    /// plugin named and no ports, or a workspace's service adopted running).
    pub plugin: Option<ReadinessPlugin>,
    /// The last lines of its log (up to 500), for log-line probes and failure
    /// reports.
    pub log: Arc<ServiceLog>,
    /// The exit code once the container has stopped.
    exited: watch::Receiver<Option<i64>>,
}

impl RunningService {
    /// A started service from its parts; `exited` is the [`watch_exit`] of its
    /// container.
    pub fn new(
        name: String,
        container: String,
        service: ServiceView,
        plugin: Option<ReadinessPlugin>,
        log: Arc<ServiceLog>,
        exited: watch::Receiver<Option<i64>>,
    ) -> RunningService {
        RunningService {
            name,
            container,
            service,
            plugin,
            log,
            exited,
        }
    }

    /// Resolves when the container stops, with its exit code.
    pub async fn exited(&self) -> i64 {
        let mut rx = self.exited.clone();
        loop {
            if let Some(code) = *rx.borrow_and_update() {
                return code;
            }
            if rx.changed().await.is_err() {
                // The watcher is gone (the pod is being removed): never.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The container's exit code; `None` while it runs.
    pub fn exit_code(&self) -> Option<i64> {
        *self.exited.borrow()
    }
}

/// Resolves when any of `services` stops: its error.
pub async fn first_exit(services: &[RunningService]) -> ServiceError {
    if services.is_empty() {
        std::future::pending::<()>().await;
    }
    let waits = services
        .iter()
        .map(|s| Box::pin(async move { (s, s.exited().await) }));
    let ((service, code), _, _) = futures_util::future::select_all(waits).await;
    ServiceError::Exited {
        name: service.name.clone(),
        code,
        when: " while the job was running",
        tail: service.log.tail(20),
    }
}

/// Start every service of `specs` in `pod`, following their logs into
/// `log`, and wait until all are ready (or one fails, or `cancel` fires:
/// then `Ok(None)`).
pub async fn start_and_wait(
    runtime: &Runtime,
    pod: &Pod,
    specs: &[ServiceSpec],
    registry: &Arc<Registry>,
    log: &JobLog,
    cancel: &CancellationToken,
) -> Result<Option<Vec<RunningService>>, ServiceError> {
    // Resolve every plugin and probe first: a bad option fails the job
    // before any container starts.
    let mut planned = Vec::new();
    for spec in specs {
        let service = service_view(spec);
        let plugin = match readiness_name(spec) {
            Some(name) => Some(readiness_plugin(registry, &spec.name, &name)?),
            None => None,
        };
        let probe = match &plugin {
            Some(p) => Some(probe_of(p, &service, &spec.name).await?),
            None => None,
        };
        planned.push((spec, service, plugin, probe));
    }

    let mut running = Vec::new();
    let mut probes = Vec::new();
    for (spec, service, plugin, probe) in planned {
        let container = ServiceContainer {
            name: spec.name.clone(),
            image: spec.image.clone(),
            env: spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            command: spec.command.clone(),
            limits: (&spec.resources).into(),
            role: Role::Service,
            binds: vec![],
            labels: Default::default(),
            gpus: None,
            entrypoint: None,
            user: None,
            workdir: None,
        };
        let id = pod
            .start_service(&container)
            .await
            .map_err(|source| ServiceError::Start {
                name: spec.name.clone(),
                source,
            })?;
        let service_log = Arc::new(ServiceLog::default());
        follow_log(runtime, &id, &spec.name, log, &service_log, 0);
        let exited = watch_exit(runtime, &id);
        log.line(
            LogStream::Engine,
            &format!(
                "service `{}` started from `{}`{}",
                spec.name,
                spec.image,
                match &plugin {
                    Some(p) => format!(", readiness by {}", p.id),
                    None => ": no readiness check (no plugin, no ports): ready once started".into(),
                }
            ),
        );
        running.push(RunningService {
            name: spec.name.clone(),
            container: id,
            service,
            plugin,
            log: service_log,
            exited,
        });
        probes.push(probe);
    }

    let holder = pod.holder().to_owned();
    let waits = running.iter().zip(probes).map(|(s, probe)| {
        let holder = holder.clone();
        async move {
            match (probe, &s.plugin) {
                (Some(probe), Some(plugin)) => {
                    let mut prober = Prober::new(plugin.clone(), probe);
                    wait_ready(runtime, &holder, s, &mut prober, log).await
                }
                _ => Ok(()),
            }
        }
    });
    let all = futures_util::future::try_join_all(waits);
    tokio::select! {
        result = all => result.map(|_| Some(running)),
        _ = cancel.cancelled() => Ok(None),
    }
}

/// The readiness plugin that decides when `spec` is ready: the one it
/// names, else `tcp` when it declares ports, else none (ready once started).
pub fn readiness_name(spec: &ServiceSpec) -> Option<String> {
    match &spec.readiness {
        Some(r) => Some(r.plugin.clone()),
        None if !spec.ports.is_empty() => Some(DEFAULT_READINESS.to_owned()),
        None => None,
    }
}

/// A service spec as readiness plugins see it.
pub fn service_view(spec: &ServiceSpec) -> ServiceView {
    plugin_view(
        &spec.name,
        &spec.image,
        &spec.env,
        &spec.ports,
        spec.readiness.as_ref().map(|r| &r.options),
    )
}

/// A service as readiness plugins see it, kept by the engine (a
/// workspace's runtime stores it); its WIT record is made at each call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceView {
    /// The service's name, from its spec.
    pub name: String,
    /// The image the service runs.
    pub image: String,
    /// Environment of the service's container, sorted by name.
    pub env: Vec<(String, String)>,
    /// Ports it listens on, inside the pod's network namespace.
    pub ports: Vec<u16>,
    /// `readiness.options` of its spec.
    pub options: Vec<(String, String)>,
}

impl ServiceView {
    /// The record a readiness plugin receives.
    pub fn wit(&self) -> Service {
        let pairs = |list: &[(String, String)]| {
            list.iter()
                .map(|(name, value)| OptionPair {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect()
        };
        Service {
            name: self.name.clone(),
            image: self.image.clone(),
            env: pairs(&self.env),
            ports: self.ports.clone(),
            options: pairs(&self.options),
        }
    }
}

/// A service as readiness plugins see it.
pub fn plugin_view(
    name: &str,
    image: &str,
    env: &std::collections::BTreeMap<String, String>,
    ports: &[u16],
    options: Option<&std::collections::BTreeMap<String, String>>,
) -> ServiceView {
    let pairs = |m: &std::collections::BTreeMap<String, String>| {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    ServiceView {
        name: name.to_owned(),
        image: image.to_owned(),
        env: pairs(env),
        ports: ports.to_vec(),
        options: options.map(pairs).unwrap_or_default(),
    }
}

/// Load the readiness plugin `name` for the service `service` (named in
/// errors); [`ServiceError::UnknownPlugin`] unless a readiness plugin has that
/// name.
pub fn readiness_plugin(
    registry: &Arc<Registry>,
    service: &str,
    name: &str,
) -> Result<ReadinessPlugin, ServiceError> {
    let unknown = || ServiceError::UnknownPlugin {
        name: service.to_owned(),
        plugin: name.to_owned(),
        known: registry
            .active(World::Readiness)
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let candidate = registry
        .get(name)
        .filter(|c| c.world() == Some(World::Readiness))
        .ok_or_else(unknown)?;
    let prepared = candidate
        .prepare(registry.sandbox())
        .map_err(|e| ServiceError::Plugin {
            name: service.to_owned(),
            plugin: candidate.full_id(),
            message: e.to_string(),
        })?;
    Ok(ReadinessPlugin {
        id: prepared.id.to_string(),
        prepared,
        registry: registry.clone(),
    })
}

/// Ask `plugin` for its probe of `service` (`name` in errors); a log-line
/// probe's pattern is checked here, before any container starts.
pub async fn probe_of(
    plugin: &ReadinessPlugin,
    service: &ServiceView,
    name: &str,
) -> Result<Probe, ServiceError> {
    let s = service.wit();
    let result = plugin.call(move |sandbox, p| sandbox.probe(p, &s)).await;
    let fail = |message: String| ServiceError::Plugin {
        name: name.to_owned(),
        plugin: plugin.id.clone(),
        message,
    };
    let probe = result
        .ok_or_else(|| fail("the plugin call did not finish".into()))?
        .map_err(|e| fail(e.to_string()))?;
    if let ProbeAction::LogLine(pattern) = &probe.action {
        regex::Regex::new(pattern).map_err(|e| {
            fail(format!(
                "its log-line pattern `{pattern}` is not a regex: {e}"
            ))
        })?;
    }
    Ok(probe)
}

/// Follow the service's log into the job log (stream `service/<name>`) and
/// into `kept` for log-line probes.
pub fn follow_log(
    runtime: &Runtime,
    id: &str,
    name: &str,
    log: &JobLog,
    kept: &Arc<ServiceLog>,
    since_s: i64,
) {
    let options = LogsOptions {
        follow: true,
        since_s,
        timestamps: false,
    };
    let mut stream = runtime.logs(id, options);
    let (log, kept, name) = (log.clone(), kept.clone(), name.to_owned());
    tokio::spawn(async move {
        let (mut out, mut err) = (LineBuffer::default(), LineBuffer::default());
        // Kept lines feed probes and failure reasons: redacted like the file.
        let mut emit = |l: &str| {
            log.line(LogStream::Service(&name), l);
            kept.push(&log.redacted(l));
        };
        while let Some(Ok(item)) = stream.next().await {
            match item.stream {
                OutputStream::Stdout => out.push(&item.bytes, &mut emit),
                OutputStream::Stderr => err.push(&item.bytes, &mut emit),
            }
        }
        out.flush(&mut emit);
        err.flush(&mut emit);
    });
}

/// A watch that turns `Some(exit code)` when the container stops.
pub fn watch_exit(runtime: &Runtime, id: &str) -> watch::Receiver<Option<i64>> {
    let (tx, rx) = watch::channel(None);
    let (runtime, id) = (runtime.clone(), id.to_owned());
    tokio::spawn(async move {
        // Removed or the daemon went away: nothing to report.
        if let Some(code) = super::container::wait_exit(&runtime, &id).await {
            let _ = tx.send(Some(code));
        }
    });
    rx
}

/// One plugin's probe for one service, run attempt by attempt.
pub struct Prober {
    /// The readiness plugin that judges each attempt.
    pub plugin: ReadinessPlugin,
    /// The probe and its timing, as the plugin gave them.
    pub probe: Probe,
    pattern: Option<regex::Regex>,
    /// Log lines already searched by a log-line probe.
    cursor: u64,
}

/// How one probe attempt was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    /// The plugin says the service is ready (one success towards the threshold).
    Ready,
    /// Not ready yet: the plugin's reason, with the probe's output; try again.
    NotReady(String),
    /// The plugin says it never will be.
    Failed(String),
    /// The plugin trapped, looped or was otherwise stopped: a failed probe.
    PluginFailed(String),
}

impl Prober {
    /// A prober of `probe`; a log-line probe searches from the log's first line.
    pub fn new(plugin: ReadinessPlugin, probe: Probe) -> Prober {
        let pattern = match &probe.action {
            ProbeAction::LogLine(p) => regex::Regex::new(p).ok(),
            _ => None,
        };
        Prober {
            plugin,
            probe,
            pattern,
            cursor: 0,
        }
    }

    /// Whether attempts wait for the log themselves (no pause needed).
    fn waits_for_log(&self) -> bool {
        self.pattern.is_some()
    }

    /// Run the probe once and have the plugin judge it. A probe gets its
    /// whole timeout even near a deadline: a cut-short probe would hide the
    /// real reason behind a timeout.
    pub async fn attempt(&mut self, runtime: &Runtime, holder: &str, s: &RunningService) -> Judged {
        let timeout = Duration::from_millis(self.probe.timeout_ms.into());
        let output = run_probe(
            runtime,
            holder,
            s,
            &self.probe.action,
            self.pattern.as_ref(),
            timeout,
            &mut self.cursor,
        )
        .await;
        let (service, judged) = (s.service.wit(), output.clone());
        let verdict = self
            .plugin
            .call(move |sandbox, p| sandbox.judge(p, &service, &judged))
            .await;
        match verdict {
            Some(Ok(Verdict::Ready)) => Judged::Ready,
            Some(Ok(Verdict::NotReady(reason))) => Judged::NotReady(describe(&reason, &output)),
            Some(Ok(Verdict::Failed(reason))) => Judged::Failed(describe(&reason, &output)),
            Some(Err(e)) => Judged::PluginFailed(format!("the readiness plugin failed: {e}")),
            None => Judged::PluginFailed("the readiness plugin call did not finish".into()),
        }
    }
}

/// Probe until the plugin says ready, the startup deadline passes, the
/// plugin says it never will be, or the container exits.
pub async fn wait_ready(
    runtime: &Runtime,
    holder: &str,
    s: &RunningService,
    prober: &mut Prober,
    log: &JobLog,
) -> Result<(), ServiceError> {
    let started = Instant::now();
    let probe = prober.probe.clone();
    let deadline = started + Duration::from_millis(probe.startup_deadline_ms.into());
    let period = Duration::from_millis(probe.period_ms.into());
    let mut interval = FIRST_INTERVAL;
    let mut successes = 0u32;
    let mut attempts = 0u32;
    let mut last;
    loop {
        if let Some(code) = s.exit_code() {
            return Err(ServiceError::Exited {
                name: s.name.clone(),
                code,
                when: " before it was ready",
                tail: s.log.tail(20),
            });
        }
        attempts += 1;
        match prober.attempt(runtime, holder, s).await {
            Judged::Ready => {
                successes += 1;
                if successes >= probe.success_threshold {
                    log.line(
                        LogStream::Engine,
                        &format!(
                            "service `{}` ready after {:.2} s ({attempts} probe(s))",
                            s.name,
                            started.elapsed().as_secs_f64()
                        ),
                    );
                    return Ok(());
                }
                last = "ready, waiting for the success threshold".into();
                // Confirm quickly: the threshold asks for consecutive passes.
                interval = FIRST_INTERVAL;
            }
            Judged::NotReady(reason) => {
                successes = 0;
                last = reason;
            }
            Judged::Failed(reason) => {
                return Err(ServiceError::Failed {
                    name: s.name.clone(),
                    reason,
                });
            }
            Judged::PluginFailed(reason) => {
                successes = 0;
                log.line(
                    LogStream::Engine,
                    &format!("service `{}`: {reason}", s.name),
                );
                last = reason;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(ServiceError::NotReady {
                name: s.name.clone(),
                deadline_s: probe.startup_deadline_ms as f64 / 1000.0,
                last,
            });
        }
        if !prober.waits_for_log() {
            // Services log when they become ready: a new log line probes
            // again at once, so readiness is seen within one probe of it.
            let grew = s.log.grew.notified();
            tokio::select! {
                _ = tokio::time::sleep(interval.min(deadline - now)) => {
                    interval = (interval * 2).min(period);
                }
                _ = grew => interval = FIRST_INTERVAL,
            }
        }
    }
}

fn describe(reason: &str, output: &ProbeOutput) -> String {
    let mut text = reason.to_owned();
    let said = [output.stdout.trim(), output.stderr.trim()]
        .iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" | ");
    if !said.is_empty() && !reason.contains(&said) {
        let cut: String = said.chars().take(500).collect();
        text.push_str(&format!(" (probe output: {cut})"));
    }
    text
}

/// Run one probe attempt and report its raw result.
async fn run_probe(
    runtime: &Runtime,
    holder: &str,
    s: &RunningService,
    action: &ProbeAction,
    pattern: Option<&regex::Regex>,
    timeout: Duration,
    cursor: &mut u64,
) -> ProbeOutput {
    let started = Instant::now();
    let secs = timeout.as_secs_f64().ceil().max(1.0).to_string();
    let mut out = ProbeOutput {
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        connected: false,
        http_status: None,
        elapsed_ms: 0,
    };
    let run = |container: String, argv: Vec<String>| async move {
        capture(runtime, &container, &argv, None, timeout, PROBE_OUTPUT_CAP).await
    };
    match action {
        ProbeAction::Exec(argv) => match run(s.container.clone(), argv.clone()).await {
            Ok(c) => {
                out.exit_code = c.exit_code.map(|c| c as i32);
                out.stdout = c.stdout;
                out.stderr = c.stderr;
            }
            Err(e) => out.stderr = e.to_string(),
        },
        ProbeAction::Tcp(port) => {
            let argv = sh(
                "nc -w \"$1\" 127.0.0.1 \"$2\" </dev/null",
                &[&secs, &port.to_string()],
            );
            match run(holder.to_owned(), argv).await {
                Ok(c) => {
                    out.connected = c.exit_code == Some(0);
                    out.exit_code = c.exit_code.map(|c| c as i32);
                    out.stderr = c.stderr;
                }
                Err(e) => out.stderr = e.to_string(),
            }
        }
        ProbeAction::Http(HttpCheck { port, path }) => {
            let argv = sh(
                "printf 'GET %s HTTP/1.0\\r\\nHost: 127.0.0.1:%s\\r\\nConnection: close\\r\\n\\r\\n' \"$1\" \"$2\" | nc -w \"$3\" 127.0.0.1 \"$2\"",
                &[path, &port.to_string(), &secs],
            );
            match run(holder.to_owned(), argv).await {
                Ok(c) => {
                    let (status, body) = parse_http(&c.stdout);
                    out.connected = status.is_some();
                    out.http_status = status;
                    out.exit_code = c.exit_code.map(|c| c as i32);
                    out.stdout = body;
                    out.stderr = c.stderr;
                }
                Err(e) => out.stderr = e.to_string(),
            }
        }
        ProbeAction::LogLine(_) => {
            let Some(pattern) = pattern else {
                return out;
            };
            let wait = async {
                loop {
                    let grew = s.log.grew.notified();
                    tokio::pin!(grew);
                    grew.as_mut().enable();
                    let (found, next) = s.log.find(*cursor, pattern);
                    *cursor = next;
                    if let Some(line) = found {
                        return line;
                    }
                    grew.await;
                }
            };
            if let Ok(line) = tokio::time::timeout(timeout, wait).await {
                out.stdout = line;
                out.exit_code = Some(0);
                out.connected = true;
            }
        }
    }
    out.elapsed_ms = started.elapsed().as_millis().min(u32::MAX as u128) as u32;
    out
}

fn sh(script: &str, args: &[&str]) -> Vec<String> {
    let mut argv = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        script.to_owned(),
        "probe".to_owned(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    argv
}

/// The status code and body of a raw HTTP/1.x response.
fn parse_http(raw: &str) -> (Option<u16>, String) {
    let status = raw
        .lines()
        .next()
        .filter(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok());
    let body = raw
        .split_once("\r\n\r\n")
        .or_else(|| raw.split_once("\n\n"))
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_responses_are_parsed() {
        let (status, body) = parse_http("HTTP/1.1 503 Service Unavailable\r\nA: b\r\n\r\nnot yet");
        assert_eq!((status, body.as_str()), (Some(503), "not yet"));
        assert_eq!(parse_http("garbage").0, None);
    }

    #[test]
    fn log_search_resumes_after_the_last_match_and_survives_eviction() {
        let log = ServiceLog::default();
        let ready = regex::Regex::new("ready to accept").unwrap();
        log.push("starting");
        log.push("database system is ready to accept connections");
        let (found, next) = log.find(0, &ready);
        assert!(found.is_some() && next == 2);
        assert_eq!(log.find(next, &ready).0, None, "a match counts once");
        for i in 0..(KEPT_LINES + 10) {
            log.push(&format!("line {i}"));
        }
        log.push("ready to accept again");
        assert_eq!(
            log.find(next, &ready).0.as_deref(),
            Some("ready to accept again")
        );
        assert_eq!(
            log.tail(2),
            format!("line {}\nready to accept again", KEPT_LINES + 9)
        );
    }
}
