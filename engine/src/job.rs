//! Jobs: the spec a client submits, the record the store keeps, and the
//! state machine that moves a job from `queued` to a final state.
//!
//! Invariant: a job's final state is written once, by the attempt holding the
//! current fencing number. Every transition is a method that checks the
//! current state (and fence) and returns `Err` instead of corrupting it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A job's id: a sequence number, unique and increasing per store.
pub type JobId = u64;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The most GPUs one job may ask for by count.
pub const MAX_GPUS: u32 = 64;

/// Problems of a `gpus` / `gpu` pair (a job's, a workspace's or a managed
/// service's).
pub fn gpu_problems(gpus: Option<Gpus>, gpu: Option<GpuPolicy>) -> Vec<FieldProblem> {
    let problem = |field: &str, message: String| FieldProblem {
        field: field.to_owned(),
        message,
    };
    match gpus {
        Some(Gpus::Count(n)) if n == 0 || n > MAX_GPUS => vec![problem(
            "gpus",
            format!("{n} must be between 1 and {MAX_GPUS}, or \"all\""),
        )],
        None if gpu.is_some() => vec![problem(
            "gpu",
            "says what to do when GPUs are missing, but `gpus` asks for none; set `gpus` (a count or \"all\")".into(),
        )],
        _ => vec![],
    }
}

/// Validation tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    #[default]
    Fast,
    Full,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Fast => "fast",
            Tier::Full => "full",
        }
    }
}

/// Resource limits of a job's container.
#[derive(Debug, Clone, Default, PartialEq, ToSchema, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub cpus: Option<f64>,
    pub memory_mb: Option<u64>,
    pub pids: Option<u64>,
}

/// A service container a job needs.
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    pub image: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub command: Vec<String>,
    /// Ports it listens on inside the job's pod (`127.0.0.1:<port>`).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// How to tell it is ready; default: `tcp` on the first port.
    pub readiness: Option<ReadinessSpec>,
    #[serde(default)]
    pub resources: Resources,
}

#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadinessSpec {
    pub plugin: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// Network a job's containers get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    #[default]
    None,
    Bridge,
    Host,
}

/// GPUs a job asks for: a count, or every GPU the host has (`"all"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Gpus {
    Count(u32),
    Every(AllGpus),
}

/// The word `all` in `gpus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub enum AllGpus {
    #[serde(rename = "all")]
    All,
}

/// What to do when the host has no GPU to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GpuPolicy {
    /// Fail the job before anything starts, naming what is missing.
    #[default]
    Required,
    /// Run on the CPU (`SLIPWAY_GPU=0`), the fallback kept in the record.
    Preferred,
}

/// What a client submits (docs/design.md, "Job spec"). Unknown fields are an error.
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub repository: String,
    pub commit: String,
    #[serde(default)]
    pub tier: Tier,
    pub profile: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Name → reference (e.g. `env:GITHUB_TOKEN`, `file:/run/secrets/x`).
    /// Stored as references, never as values; API responses list names only.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    pub timeout_s: Option<u64>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub idempotency_key: Option<String>,
    /// Higher runs first; FIFO within a priority.
    #[serde(default)]
    pub priority: i32,
    /// Attempts before the job is `dead` (infrastructure failures only).
    pub max_attempts: Option<u32>,
    /// Set by the engine, never by a client: the ref (branch, tag, `HEAD`)
    /// that `commit` was resolved from at submit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_from: Option<String>,
    /// Set by the engine, never by a client: what submitted the job when
    /// it was not a client of the API (a watch, a deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// GPUs for the job's container (a count or `"all"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<Gpus>,
    /// `required` (the default) or `preferred` (fall back to the CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuPolicy>,
    /// URLs told of the job's final state (or of every state change),
    /// signed with the Standard Webhooks scheme; at most 5.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callbacks: Vec<crate::callbacks::CallbackSpec>,
    /// Where the job's states are posted as commit statuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge: Option<crate::callbacks::ForgeSpec>,
}

/// What submitted a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ToSchema, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerKind {
    /// A client of the API (`POST /api/v1/jobs`, `slipway submit`, `run`).
    #[default]
    Api,
    /// A watch saw a new commit (by polling, or woken by a webhook).
    Watch,
    /// A deployment's gate.
    Deployment,
}

/// What submitted a job, as its record shows: `{kind, watch, delivery}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, ToSchema, Serialize, Deserialize)]
pub struct Trigger {
    pub kind: TriggerKind,
    /// The watch whose look submitted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<String>,
    /// The forge's id of the webhook delivery that woke the watch; `None`
    /// for a poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
}

/// Problems of a list of services (a job's or a profile's).
pub fn service_problems(services: &[ServiceSpec]) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    let mut problem = |field: String, message: String| {
        problems.push(FieldProblem { field, message });
    };
    for (i, s) in services.iter().enumerate() {
        if s.name.is_empty()
            || s.name.len() > 63
            || !s
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            problem(
                format!("services[{i}].name"),
                format!("`{}` must be 1 to 63 letters, digits and `-`", s.name),
            );
        } else if services[..i].iter().any(|o| o.name == s.name) {
            problem(
                format!("services[{i}].name"),
                format!("`{}` names two services; names must be unique", s.name),
            );
        }
        if s.image.trim().is_empty() {
            problem(format!("services[{i}].image"), "is empty".into());
        }
        if s.ports.contains(&0) {
            problem(format!("services[{i}].ports"), "0 is not a port".into());
        }
        if s.resources.memory_mb == Some(0) {
            problem(
                format!("services[{i}].resources.memory_mb"),
                "must be greater than 0".into(),
            );
        }
        if let Some(r) = &s.readiness
            && r.plugin.trim().is_empty()
        {
            problem(
                format!("services[{i}].readiness.plugin"),
                "is empty (hint: e.g. `postgres`, `redis`, `http`, `tcp`)".into(),
            );
        }
    }
    problems
}

/// One problem with a submitted spec.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

/// Limits a spec is checked against (from the configuration).
#[derive(Debug, Clone)]
pub struct SpecPolicy {
    pub default_timeout_s: u64,
    pub max_timeout_s: u64,
    pub allow_local_paths: bool,
    pub allow_host_network: bool,
    pub default_max_attempts: u32,
}

impl Default for SpecPolicy {
    fn default() -> Self {
        SpecPolicy {
            default_timeout_s: 3600,
            max_timeout_s: 6 * 3600,
            allow_local_paths: false,
            allow_host_network: false,
            default_max_attempts: 3,
        }
    }
}

/// A full commit SHA: 40 hex digits (SHA-1), or 64 (SHA-256 repositories).
pub fn is_full_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl JobSpec {
    /// Every problem, by field (not just the first).
    pub fn validate(&self, policy: &SpecPolicy) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| {
            problems.push(FieldProblem {
                field: field.to_owned(),
                message,
            })
        };
        let repo = self.repository.trim();
        let is_url = ["https://", "http://", "ssh://", "git://", "git@"]
            .iter()
            .any(|p| repo.starts_with(p));
        // `file://` is a local path in disguise: the local-path rule holds.
        let repo = repo.strip_prefix("file://").unwrap_or(repo);
        if repo.is_empty() {
            problem("repository", "is empty; give a git URL".into());
        } else if !is_url {
            if !policy.allow_local_paths {
                problem(
                    "repository",
                    format!(
                        "`{repo}` is a local path; local paths are not allowed by this server's configuration"
                    ),
                );
            } else if !repo.starts_with('/') || repo.split('/').any(|c| c == "..") {
                problem(
                    "repository",
                    format!("`{repo}` must be an absolute path without `..`"),
                );
            }
        }
        let commit = self.commit.trim();
        if commit.is_empty() {
            problem("commit", "is empty; give a full commit SHA or a ref".into());
        } else if commit.len() == 40 && !is_full_sha(commit) {
            problem(
                "commit",
                format!(
                    "`{commit}` is 40 characters but not hexadecimal; a commit SHA is 40 hex digits"
                ),
            );
        } else if commit.starts_with('-')
            || commit.contains("..")
            || commit.contains(char::is_whitespace)
        {
            problem(
                "commit",
                format!("`{commit}` is neither a commit SHA nor a valid ref"),
            );
        }
        for p in crate::callbacks::problems(&self.callbacks) {
            problem(&p.field, p.message);
        }
        if let Some(forge) = &self.forge {
            for p in crate::callbacks::forge_problems(forge, &self.repository) {
                problem(&p.field, p.message);
            }
        }
        if self.trigger.is_some() {
            problem(
                "trigger",
                "is set by the engine: a job a client submits is triggered by the API".into(),
            );
        }
        if self.resolved_from.is_some() {
            problem(
                "resolved_from",
                "is set by the engine; give the branch or tag in `commit` and it is resolved at submit".into(),
            );
        }
        if let Some(t) = self.timeout_s
            && (t == 0 || t > policy.max_timeout_s)
        {
            problem(
                "timeout_s",
                format!(
                    "{t} must be between 1 and {} (the server's maximum)",
                    policy.max_timeout_s
                ),
            );
        }
        if let Some(cpus) = self.resources.cpus
            && !(cpus > 0.0 && cpus <= 1024.0)
        {
            problem("resources.cpus", format!("{cpus} must be greater than 0"));
        }
        if self.resources.memory_mb == Some(0) {
            problem("resources.memory_mb", "must be greater than 0".into());
        }
        if self.resources.pids == Some(0) {
            problem("resources.pids", "must be greater than 0".into());
        }
        if self.network == Network::Host && !policy.allow_host_network {
            problem(
                "network",
                "`host` is not allowed by this server's configuration".into(),
            );
        }
        for p in service_problems(&self.services) {
            problem(&p.field, p.message);
        }
        if self.max_attempts == Some(0) {
            problem("max_attempts", "must be at least 1".into());
        }
        for p in gpu_problems(self.gpus, self.gpu) {
            problem(&p.field, p.message);
        }
        if let Some(key) = &self.idempotency_key
            && (key.is_empty() || key.len() > 200)
        {
            problem("idempotency_key", "must be 1 to 200 characters".into());
        }
        for name in self.secrets.keys().chain(self.env.keys()) {
            if name.is_empty() || name.contains('=') {
                problem("env", format!("`{name}` is not a valid variable name"));
            }
        }
        for (name, reference) in &self.secrets {
            if let Err(e) = crate::secrets::check_reference(name, reference) {
                problem(&format!("secrets.{name}"), e.to_string());
            }
        }
        problems
    }
}

/// A job's lifecycle state.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ToSchema, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    /// Waiting out a backoff before the next attempt.
    Retrying,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
    /// Attempts exhausted.
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 8] = [
        JobState::Queued,
        JobState::Running,
        JobState::Retrying,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::TimedOut,
        JobState::Dead,
    ];

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded
                | JobState::Failed
                | JobState::Cancelled
                | JobState::TimedOut
                | JobState::Dead
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Retrying => "retrying",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::TimedOut => "timed_out",
            JobState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.name() == s)
    }
}

/// How an attempt ended, as its executor reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    /// The job's own steps failed (e.g. a red test suite): not retried.
    Failed {
        reason: String,
    },
    /// Slipway or its infrastructure failed (Docker down, image build
    /// network error): retried with backoff.
    InfrastructureError {
        reason: String,
    },
    TimedOut,
    Cancelled,
}

/// What a running job is doing, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub struct Progress {
    pub step: u32,
    pub steps: u32,
    pub message: String,
}

/// A lease on a running job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub worker: String,
    pub fence: u64,
    pub expires_ms: Millis,
}

/// One state change, kept with the job.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub struct Event {
    pub at_ms: Millis,
    pub from: Option<JobState>,
    pub to: JobState,
    pub attempt: u32,
    pub reason: String,
}

/// One finding of a validator plugin (file, line, column, severity, rule, message).
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub struct FindingView {
    pub file: Option<String>,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub severity: String,
    pub rule: Option<String>,
    pub message: String,
}

/// What one step of a job did.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub command: String,
    /// `None` when it was stopped (timeout, cancel).
    pub exit_code: Option<i64>,
    pub duration_ms: u64,
    /// Byte range of its output in the job's log.
    pub log_start: u64,
    pub log_end: u64,
    pub findings: Vec<FindingView>,
    /// Why there are no findings although the step has a report.
    pub findings_error: Option<String>,
}

/// The image a job ran in.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub struct ImageRecord {
    pub tag: String,
    pub id: String,
    pub cache_hit: bool,
    pub build_ms: u64,
}

/// What the last attempt of a job ran (docs/design.md, "Job record").
#[derive(Debug, Clone, PartialEq, Eq, Default, ToSchema, Serialize, Deserialize)]
pub struct RunRecord {
    pub attempt: u32,
    pub fence: u64,
    /// The exact commit (`None` for a directory snapshot).
    pub sha: Option<String>,
    pub image: Option<ImageRecord>,
    /// Every plugin used, `name@version@sha256` where known.
    pub plugins: Vec<String>,
    pub steps: Vec<StepRecord>,
    /// Milliseconds per phase, by [`Phase`] name.
    pub phases_ms: BTreeMap<String, u64>,
    /// Byte offset in the job's log where the first step's output begins.
    #[serde(default)]
    pub steps_log_start: u64,
    /// What a reader of the outcome should know (e.g. a tier that had no
    /// steps, so its success checked nothing).
    #[serde(default)]
    pub notes: Vec<String>,
    /// `name@version@sha256` of the third-party plugins its plan used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub third_party_plugins: Vec<String>,
    /// Why a job that preferred GPUs ran on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_fallback: Option<String>,
}

/// The phases of an attempt, in order; their names key
/// [`RunRecord::phases_ms`] (a wire field: the names are the contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Checkout,
    Plan,
    Image,
    /// Starting the pod and waiting for its services.
    Services,
    Steps,
    /// Removing the pod and the checkout, pruning caches.
    Cleanup,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Checkout => "checkout",
            Phase::Plan => "plan",
            Phase::Image => "image",
            Phase::Services => "services",
            Phase::Steps => "steps",
            Phase::Cleanup => "cleanup",
        }
    }
}

impl RunRecord {
    /// Record how long `phase` took.
    pub fn timed(&mut self, phase: Phase, took: std::time::Duration) {
        self.phases_ms
            .insert(phase.name().to_owned(), took.as_millis() as u64);
    }
}

/// The persisted record of a job (rmp-serde; schema version in the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub spec: JobSpec,
    pub state: JobState,
    pub attempt: u32,
    pub max_attempts: u32,
    pub lease: Option<Lease>,
    /// Earliest time of the next attempt (retry backoff).
    pub not_before_ms: Millis,
    pub created_ms: Millis,
    pub updated_ms: Millis,
    pub cancel_requested: bool,
    pub progress: Option<Progress>,
    pub reason: Option<String>,
    pub events: Vec<Event>,
    /// What the last attempt ran (image, plugins, steps, timings).
    #[serde(default)]
    pub run: Option<RunRecord>,
}

/// A transition that the current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("job {id} is {state}, so it cannot be {action}")]
    WrongState {
        id: JobId,
        state: &'static str,
        action: &'static str,
    },
    #[error(
        "job {id}: attempt with fence {got} is stale (current fence {current}); its report is refused"
    )]
    StaleFence { id: JobId, got: u64, current: u64 },
}

/// Retry backoff: exponential from 1 s, capped at 5 min, with full jitter
/// in the upper half so retries of many jobs spread out.
pub fn backoff_ms(attempt: u32, jitter: f64) -> Millis {
    let base = 1000u64
        .saturating_mul(1u64 << attempt.min(16).saturating_sub(1))
        .min(300_000);
    base / 2 + ((base / 2) as f64 * jitter.clamp(0.0, 1.0)) as u64
}

impl JobRecord {
    pub fn new(id: JobId, spec: JobSpec, policy: &SpecPolicy, now: Millis) -> JobRecord {
        let max_attempts = spec.max_attempts.unwrap_or(policy.default_max_attempts);
        JobRecord {
            id,
            spec,
            state: JobState::Queued,
            attempt: 0,
            max_attempts,
            lease: None,
            not_before_ms: 0,
            created_ms: now,
            updated_ms: now,
            cancel_requested: false,
            progress: None,
            reason: None,
            events: vec![Event {
                at_ms: now,
                from: None,
                to: JobState::Queued,
                attempt: 0,
                reason: "submitted".into(),
            }],
            run: None,
        }
    }

    fn wrong(&self, action: &'static str) -> TransitionError {
        TransitionError::WrongState {
            id: self.id,
            state: self.state.name(),
            action,
        }
    }

    fn set_state(&mut self, to: JobState, reason: impl Into<String>, now: Millis) {
        let reason = reason.into();
        self.events.push(Event {
            at_ms: now,
            from: Some(self.state),
            to,
            attempt: self.attempt,
            reason: reason.clone(),
        });
        self.state = to;
        self.updated_ms = now;
        if to.is_final() || to == JobState::Retrying {
            self.reason = Some(reason);
        }
    }

    /// Can an attempt start now?
    pub fn is_due(&self, now: Millis) -> bool {
        matches!(self.state, JobState::Queued | JobState::Retrying) && self.not_before_ms <= now
    }

    /// Start an attempt under `fence` (a number greater than every fence
    /// handed out before, from the store).
    pub fn lease(
        &mut self,
        worker: &str,
        fence: u64,
        lease_ms: u64,
        now: Millis,
    ) -> Result<(), TransitionError> {
        if !self.is_due(now) {
            return Err(self.wrong("leased"));
        }
        self.attempt += 1;
        self.lease = Some(Lease {
            worker: worker.to_owned(),
            fence,
            expires_ms: now + lease_ms,
        });
        self.progress = None;
        self.set_state(
            JobState::Running,
            format!("attempt {} leased by {worker}", self.attempt),
            now,
        );
        Ok(())
    }

    fn check_fence(&self, fence: u64) -> Result<(), TransitionError> {
        match &self.lease {
            Some(l) if self.state == JobState::Running && l.fence == fence => Ok(()),
            Some(l) => Err(TransitionError::StaleFence {
                id: self.id,
                got: fence,
                current: l.fence,
            }),
            None => Err(TransitionError::StaleFence {
                id: self.id,
                got: fence,
                current: 0,
            }),
        }
    }

    /// Keep the lease alive; tells the holder whether cancel was asked for.
    pub fn heartbeat(
        &mut self,
        fence: u64,
        lease_ms: u64,
        now: Millis,
    ) -> Result<bool, TransitionError> {
        self.check_fence(fence)?;
        if let Some(l) = &mut self.lease {
            l.expires_ms = now + lease_ms;
        }
        Ok(self.cancel_requested)
    }

    pub fn report_progress(
        &mut self,
        fence: u64,
        progress: Progress,
        now: Millis,
    ) -> Result<(), TransitionError> {
        self.check_fence(fence)?;
        self.progress = Some(progress);
        self.updated_ms = now;
        Ok(())
    }

    /// Record what the attempt holding `fence` ran so far.
    pub fn record_run(
        &mut self,
        fence: u64,
        run: RunRecord,
        now: Millis,
    ) -> Result<(), TransitionError> {
        self.check_fence(fence)?;
        self.run = Some(run);
        self.updated_ms = now;
        Ok(())
    }

    /// Record the end of the attempt holding `fence`.
    pub fn complete(
        &mut self,
        fence: u64,
        outcome: Outcome,
        jitter: f64,
        now: Millis,
    ) -> Result<(), TransitionError> {
        self.check_fence(fence)?;
        self.lease = None;
        match outcome {
            Outcome::Succeeded => self.set_state(JobState::Succeeded, "succeeded", now),
            Outcome::Failed { reason } => self.set_state(JobState::Failed, reason, now),
            Outcome::TimedOut => self.set_state(JobState::TimedOut, "timed out", now),
            Outcome::Cancelled => self.set_state(JobState::Cancelled, "cancelled", now),
            Outcome::InfrastructureError { reason } => self.retry_or_die(reason, jitter, now),
        }
        Ok(())
    }

    fn retry_or_die(&mut self, reason: String, jitter: f64, now: Millis) {
        if self.cancel_requested {
            self.set_state(
                JobState::Cancelled,
                format!("cancelled (attempt ended with: {reason})"),
                now,
            );
        } else if self.attempt >= self.max_attempts {
            self.set_state(
                JobState::Dead,
                format!("{reason}; {} attempts exhausted", self.attempt),
                now,
            );
        } else {
            self.not_before_ms = now + backoff_ms(self.attempt, jitter);
            self.set_state(JobState::Retrying, reason, now);
        }
    }

    /// The holder stopped heartbeating: the attempt is treated as an
    /// infrastructure failure (retried or dead).
    pub fn expire_lease(&mut self, jitter: f64, now: Millis) -> Result<(), TransitionError> {
        match &self.lease {
            Some(l) if self.state == JobState::Running && l.expires_ms <= now => {
                let reason = format!(
                    "lease of attempt {} (fence {}) expired",
                    self.attempt, l.fence
                );
                self.lease = None;
                self.retry_or_die(reason, jitter, now);
                Ok(())
            }
            _ => Err(self.wrong("expired")),
        }
    }

    /// At engine start: this process takes over an attempt that an earlier
    /// one was running. The fence stays (it is the same attempt, going on:
    /// the executor follows its container again, or ends it).
    pub fn take_over(
        &mut self,
        worker: &str,
        lease_ms: u64,
        now: Millis,
    ) -> Result<(), TransitionError> {
        match &mut self.lease {
            Some(l) if self.state == JobState::Running => {
                l.worker = worker.to_owned();
                l.expires_ms = now + lease_ms;
                self.updated_ms = now;
                Ok(())
            }
            _ => Err(self.wrong("taken over")),
        }
    }

    /// When the attempt holding the lease began (its move to `running`).
    pub fn running_since(&self) -> Option<Millis> {
        self.events
            .iter()
            .rev()
            .find(|e| e.to == JobState::Running && e.attempt == self.attempt)
            .map(|e| e.at_ms)
    }

    /// Cancel: at once when waiting; when running, the holder is told on
    /// its next heartbeat and ends the attempt as `cancelled`.
    pub fn cancel(&mut self, now: Millis) -> Result<(), TransitionError> {
        match self.state {
            JobState::Queued | JobState::Retrying => {
                self.set_state(JobState::Cancelled, "cancelled before it ran", now);
                Ok(())
            }
            JobState::Running => {
                self.cancel_requested = true;
                self.updated_ms = now;
                Ok(())
            }
            _ => Err(self.wrong("cancelled")),
        }
    }

    /// The job's timeout in seconds.
    pub fn timeout_s(&self, policy: &SpecPolicy) -> u64 {
        self.spec
            .timeout_s
            .unwrap_or(policy.default_timeout_s)
            .min(policy.max_timeout_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_lists_are_checked_field_by_field() {
        let services: Vec<ServiceSpec> = serde_json::from_str(
            r#"[{"name": "db", "image": "postgres:15", "ports": [5432]},
                {"name": "db", "image": " ", "ports": [0], "readiness": {"plugin": ""}},
                {"name": "a_b", "image": "redis:7", "resources": {"memory_mb": 0}}]"#,
        )
        .unwrap();
        let fields: Vec<String> = service_problems(&services)
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect();
        assert_eq!(
            fields,
            [
                "services[1].name: `db` names two services; names must be unique",
                "services[1].image: is empty",
                "services[1].ports: 0 is not a port",
                "services[1].readiness.plugin: is empty (hint: e.g. `postgres`, `redis`, `http`, `tcp`)",
                "services[2].name: `a_b` must be 1 to 63 letters, digits and `-`",
                "services[2].resources.memory_mb: must be greater than 0",
            ]
        );
    }

    pub fn spec() -> JobSpec {
        serde_json::from_str(r#"{"repository": "https://example.com/r.git", "commit": "main"}"#)
            .unwrap()
    }

    fn record() -> JobRecord {
        JobRecord::new(1, spec(), &SpecPolicy::default(), 1000)
    }

    #[test]
    fn happy_path_and_fencing() {
        let mut r = record();
        r.lease("w", 7, 30_000, 1000).unwrap();
        assert_eq!(r.state, JobState::Running);
        assert_eq!(r.attempt, 1);
        let stale = r.complete(6, Outcome::Succeeded, 0.5, 1001).unwrap_err();
        assert_eq!(
            stale,
            TransitionError::StaleFence {
                id: 1,
                got: 6,
                current: 7
            }
        );
        r.complete(7, Outcome::Succeeded, 0.5, 1002).unwrap();
        assert_eq!(r.state, JobState::Succeeded);
        assert!(
            r.complete(7, Outcome::Failed { reason: "x".into() }, 0.5, 1003)
                .is_err(),
            "final state is written once"
        );
        assert_eq!(
            r.events.iter().map(|e| e.to).collect::<Vec<_>>(),
            vec![JobState::Queued, JobState::Running, JobState::Succeeded]
        );
    }

    #[test]
    fn infrastructure_errors_retry_then_die_and_red_tests_do_not_retry() {
        let mut r = record();
        r.max_attempts = 2;
        r.lease("w", 1, 10, 0).unwrap();
        r.complete(
            1,
            Outcome::InfrastructureError {
                reason: "docker down".into(),
            },
            0.0,
            100,
        )
        .unwrap();
        assert_eq!(r.state, JobState::Retrying);
        assert!(!r.is_due(100) && r.is_due(100 + 1000));
        r.lease("w", 2, 10, 2000).unwrap();
        r.complete(
            2,
            Outcome::InfrastructureError {
                reason: "docker down".into(),
            },
            0.0,
            2100,
        )
        .unwrap();
        assert_eq!(r.state, JobState::Dead);
        assert!(
            r.reason
                .as_deref()
                .unwrap()
                .contains("2 attempts exhausted")
        );

        let mut red = record();
        red.lease("w", 3, 10, 0).unwrap();
        red.complete(
            3,
            Outcome::Failed {
                reason: "tests failed".into(),
            },
            0.0,
            1,
        )
        .unwrap();
        assert_eq!(red.state, JobState::Failed);
    }

    #[test]
    fn lease_expiry_and_cancel() {
        let mut r = record();
        r.lease("w", 1, 10, 0).unwrap();
        assert!(r.expire_lease(0.0, 5).is_err(), "not yet expired");
        r.expire_lease(0.0, 10).unwrap();
        assert_eq!(r.state, JobState::Retrying);
        assert!(
            r.heartbeat(1, 10, 11).is_err(),
            "the expired attempt's heartbeat is refused"
        );
        r.cancel(12).unwrap();
        assert_eq!(r.state, JobState::Cancelled);
        assert_eq!(
            r.cancel(13).unwrap_err().to_string(),
            "job 1 is cancelled, so it cannot be cancelled"
        );

        let mut running = record();
        running.lease("w", 5, 1000, 0).unwrap();
        running.cancel(1).unwrap();
        assert!(
            running.heartbeat(5, 1000, 2).unwrap(),
            "the holder learns of the cancel"
        );
        running.complete(5, Outcome::Cancelled, 0.0, 3).unwrap();
        assert_eq!(running.state, JobState::Cancelled);
    }

    #[test]
    fn a_restarted_engine_takes_a_running_attempt_over_under_its_fence() {
        let mut r = record();
        r.lease("old", 4, 1000, 100).unwrap();
        r.take_over("new", 30_000, 5000).unwrap();
        let lease = r.lease.clone().unwrap();
        assert_eq!((lease.worker.as_str(), lease.fence), ("new", 4));
        assert_eq!(lease.expires_ms, 35_000, "a fresh lease");
        assert_eq!(r.running_since(), Some(100), "the attempt's time runs on");
        assert_eq!(r.state, JobState::Running);
        r.heartbeat(4, 1000, 6000).unwrap();
        r.complete(4, Outcome::Succeeded, 0.0, 7000).unwrap();
        assert!(
            r.take_over("new", 1000, 8000).is_err(),
            "only a running attempt is taken over"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_ms(1, 0.0), 500);
        assert_eq!(backoff_ms(1, 1.0), 1000);
        assert_eq!(backoff_ms(3, 1.0), 4000);
        assert_eq!(backoff_ms(30, 1.0), 300_000);
    }

    #[test]
    fn validation_lists_every_problem_by_field() {
        let bad: JobSpec = serde_json::from_str(
            r#"{"repository": "../etc", "commit": "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "timeout_s": 0, "network": "host", "resources": {"memory_mb": 0}}"#,
        )
        .unwrap();
        let fields: Vec<String> = bad
            .validate(&SpecPolicy::default())
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            vec![
                "repository",
                "commit",
                "timeout_s",
                "resources.memory_mb",
                "network"
            ]
        );
        assert!(spec().validate(&SpecPolicy::default()).is_empty());
        let local = JobSpec {
            repository: "/srv/repo".into(),
            ..spec()
        };
        let allow = SpecPolicy {
            allow_local_paths: true,
            ..SpecPolicy::default()
        };
        assert!(local.validate(&allow).is_empty());
        let traversal = JobSpec {
            repository: "/srv/../etc".into(),
            ..spec()
        };
        assert_eq!(traversal.validate(&allow)[0].field, "repository");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e =
            serde_json::from_str::<JobSpec>(r#"{"repository": "x", "commit": "y", "colour": 1}"#)
                .unwrap_err();
        assert!(e.to_string().contains("unknown field `colour`"), "{e}");
    }
}
