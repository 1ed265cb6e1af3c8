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

/// The wall clock now, in ms since the Unix epoch (0 if the clock is before it).
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
    /// The default: setup, then the fast validation steps.
    #[default]
    Fast,
    /// Setup, the fast steps, then the full ones; stops at the first failure.
    Full,
}

impl Tier {
    /// The tier as the API and CLI spell it: `fast` or `full`.
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
    /// CPUs the container may use, fractions allowed (e.g. `1.5`), above 0
    /// and at most 1024; unset: no cap.
    #[schema(exclusive_minimum = 0, maximum = 1024)]
    pub cpus: Option<f64>,
    /// Memory cap in MiB, swap included, 1 to 2^30 (1 PiB); unset: no cap.
    #[schema(minimum = 1, maximum = 1_073_741_824)]
    pub memory_mb: Option<u64>,
    /// Cap on processes in the container, at least 1; unset: 512.
    #[schema(minimum = 1)]
    pub pids: Option<u64>,
}

/// A service container a job needs.
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// 1 to 63 letters, digits and `-`, unique within the job; names the
    /// service in logs and errors, and ends its container's name.
    #[schema(min_length = 1, max_length = 63, pattern = "^[A-Za-z0-9-]+$")]
    pub name: String,
    /// The image to run, e.g. `postgres:15`.
    #[schema(pattern = r"\S")]
    pub image: String,
    /// Environment of the service's container.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Replaces the image's `CMD` when not empty (the entrypoint stays).
    #[serde(default)]
    pub command: Vec<String>,
    /// Ports it listens on inside the job's pod (`127.0.0.1:<port>`), 1 to 65535.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// How to tell it is ready; default: `tcp` on the first port.
    pub readiness: Option<ReadinessSpec>,
    /// Limits of the service's container.
    #[serde(default)]
    pub resources: Resources,
}

/// Which readiness plugin decides that a service is ready, and its options.
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadinessSpec {
    /// A readiness plugin's name, e.g. `postgres`, `redis`, `http`, `tcp`,
    /// `log-line`, `exec`.
    #[schema(pattern = r"\S")]
    pub plugin: String,
    /// Options for the plugin (e.g. an HTTP path or a log pattern); one the
    /// plugin refuses fails the job before any container starts.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// Network a job's containers get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The default: no network beyond the pod's own loopback.
    #[default]
    None,
    /// The daemon's default bridge: outbound access, nothing published.
    Bridge,
    /// The host's network; refused unless the server's configuration allows it.
    Host,
}

/// GPUs a job asks for: a count, or every GPU the host has (`"all"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Gpus {
    /// This many GPUs, 1 to [`MAX_GPUS`].
    Count(u32),
    /// `"all"`: every GPU the host has.
    Every(AllGpus),
}

/// The word `all` in `gpus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub enum AllGpus {
    /// `"all"`, the only value.
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
    /// A git URL (`https://`, `http://`, `ssh://`, `git://`, `git@…`), or an
    /// absolute local path where the server's configuration allows local paths.
    #[schema(min_length = 1)]
    pub repository: String,
    /// A full commit SHA, or a ref (branch, tag, `HEAD`) that is resolved to
    /// one at submit and recorded in `resolved_from`. Not blank, no
    /// whitespace inside, no `..`, not starting with `-`; 40 characters are
    /// hex digits.
    #[schema(pattern = r"^\s*(?:[0-9a-fA-F]{40}|(?!-)(?!\S{40}\s*$)(?!\S*\.\.)\S+)\s*$")]
    pub commit: String,
    /// Which validation steps run: `fast` (the default) or `full`.
    #[serde(default)]
    pub tier: Tier,
    /// A stored repo profile's name (it must exist at submit); unset: the profile
    /// whose `repository` equals this job's, if any.
    pub profile: Option<String>,
    /// Environment of the job's container, over the plan's and the profile's.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Name → reference (e.g. `env:GITHUB_TOKEN`, `file:/run/secrets/x`).
    /// Stored as references, never as values; API responses list names only.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// The job's timeout in seconds, at most the server's maximum; unset: the
    /// server's default (6 h and 1 h out of the box).
    #[schema(minimum = 1)]
    pub timeout_s: Option<u64>,
    /// Limits of the job's container.
    #[serde(default)]
    pub resources: Resources,
    /// Services started next to the job, each ready before the steps run;
    /// empty: the profile's services, if any.
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    /// Network of the job's pod: `none` (the default), `bridge` or `host`.
    #[serde(default)]
    pub network: Network,
    /// Free-form key/value pairs kept with the job (a watch adds
    /// `io.slipway.watch` and `io.slipway.ref`); the runner ignores them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// 1 to 200 characters; a later submit with the same key returns the
    /// first job (200) instead of creating one.
    #[schema(min_length = 1, max_length = 200)]
    pub idempotency_key: Option<String>,
    /// Higher runs first; FIFO within a priority.
    #[serde(default)]
    pub priority: i32,
    /// Attempts before the job is `dead` (infrastructure failures only), at least 1.
    #[schema(minimum = 1)]
    pub max_attempts: Option<u32>,
    /// Set by the engine, never by a client: the ref (branch, tag, `HEAD`)
    /// that `commit` was resolved from at submit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub resolved_from: Option<String>,
    /// Set by the engine, never by a client: what submitted the job when
    /// it was not a client of the API (a watch, a deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
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
    #[schema(max_items = 5)]
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
    /// `api`, `watch` or `deployment`.
    pub kind: TriggerKind,
    /// The watch whose look submitted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<String>,
    /// The forge's id of the webhook delivery that woke the watch; `None`
    /// for a poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
}

/// The largest memory cap, in MiB (1 PiB): larger does not fit the container
/// engine's byte count.
pub const MAX_MEMORY_MB: u64 = 1 << 30;

/// Problems of container limits (a job's, a service's, a profile's), their
/// fields named under `prefix` (e.g. `resources`).
pub fn resource_problems(prefix: &str, resources: &Resources) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    if let Some(cpus) = resources.cpus
        && !(cpus > 0.0 && cpus <= 1024.0)
    {
        problems.push(FieldProblem {
            field: format!("{prefix}.cpus"),
            message: format!("{cpus} must be greater than 0 and at most 1024"),
        });
    }
    if let Some(mb) = resources.memory_mb
        && mb > MAX_MEMORY_MB
    {
        problems.push(FieldProblem {
            field: format!("{prefix}.memory_mb"),
            message: format!("{mb} is more than {MAX_MEMORY_MB} (1 PiB)"),
        });
    }
    for (name, value) in [("memory_mb", resources.memory_mb), ("pids", resources.pids)] {
        if value == Some(0) {
            problems.push(FieldProblem {
                field: format!("{prefix}.{name}"),
                message: "must be greater than 0".into(),
            });
        }
    }
    problems
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
        for p in resource_problems(&format!("services[{i}].resources"), &s.resources) {
            problem(p.field, p.message);
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

/// What is wrong with `repository` as a job's (or a deployment's) source:
/// a git URL, or an absolute local path where the configuration allows them.
pub fn repository_problem(repository: &str, policy: &SpecPolicy) -> Option<String> {
    let repo = repository.trim();
    let is_url = ["https://", "http://", "ssh://", "git://", "git@"]
        .iter()
        .any(|p| repo.starts_with(p));
    // A URL names a host: `http://` or `git@` alone do not.
    if is_url {
        let after = repo.split_once("://").map_or(&repo[4..], |(_, rest)| rest);
        if after.is_empty() || after.starts_with('/') || after.starts_with(char::is_whitespace) {
            return Some(format!("`{repo}` names no host"));
        }
    }
    // `file://` is a local path in disguise: the local-path rule holds.
    let repo = repo.strip_prefix("file://").unwrap_or(repo);
    if repo.is_empty() {
        Some("is empty; give a git URL".into())
    } else if is_url {
        None
    } else if !policy.allow_local_paths {
        Some(format!(
            "`{repo}` is a local path; local paths are not allowed by this server's configuration"
        ))
    } else if !repo.starts_with('/') || repo.split('/').any(|c| c == "..") {
        Some(format!("`{repo}` must be an absolute path without `..`"))
    } else {
        None
    }
}

/// One problem with a submitted spec.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize)]
pub struct FieldProblem {
    /// Path of the offending field, e.g. `commit`, `services[0].name` or
    /// `secrets.TOKEN`.
    pub field: String,
    /// What is wrong with it and, where possible, what to give instead.
    pub message: String,
}

/// Limits a spec is checked against (from the configuration).
#[derive(Debug, Clone)]
pub struct SpecPolicy {
    /// Timeout of a job whose spec sets none, in seconds.
    pub default_timeout_s: u64,
    /// The longest timeout a spec may ask for, in seconds; longer is refused.
    pub max_timeout_s: u64,
    /// Whether `repository` may be a local path (config `allow_local_paths`).
    pub allow_local_paths: bool,
    /// Whether a job may ask for `network: host` (off by default).
    pub allow_host_network: bool,
    /// Attempts of a job whose spec sets no `max_attempts`.
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
        if let Some(message) = repository_problem(&self.repository, policy) {
            problem("repository", message);
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
        for p in resource_problems("resources", &self.resources) {
            problem(&p.field, p.message);
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
    /// Submitted, waiting for a free slot.
    Queued,
    /// An attempt holds the lease and runs it.
    Running,
    /// Waiting out a backoff before the next attempt.
    Retrying,
    /// Setup and every validation step of its tier passed.
    Succeeded,
    /// The repository's fault (a failing step or build, an unknown commit, a
    /// service never ready): not retried.
    Failed,
    /// Cancelled on request (the API, or Ctrl-C during `slipway run`).
    Cancelled,
    /// It ran past its timeout and was stopped.
    TimedOut,
    /// Attempts exhausted.
    Dead,
}

impl JobState {
    /// Every state, in lifecycle order (metrics, and the names a filter accepts).
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

    /// Whether the job is done for good: nothing changes its state any more.
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

    /// The state as the API spells it, e.g. `timed_out`.
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

    /// The state the API name `s` spells; `None` for an unknown name.
    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.name() == s)
    }
}

/// How an attempt ended, as its executor reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Setup and every step of the tier exited 0.
    Succeeded,
    /// The job's own steps failed (e.g. a red test suite): not retried.
    Failed {
        /// What failed, as the job's `reason` shows it.
        reason: String,
    },
    /// Slipway or its infrastructure failed (Docker down, image build
    /// network error): retried with backoff.
    InfrastructureError {
        /// What failed; the job's `reason` while retrying, and when `dead`.
        reason: String,
    },
    /// The job's timeout ran out and its steps were stopped.
    TimedOut,
    /// The attempt was stopped on request (a cancel) before it ended.
    Cancelled,
}

/// What a running job is doing, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub struct Progress {
    /// The current phase, from 1.
    pub step: u32,
    /// How many phases there are: 5 for a job (checkout, plan, image,
    /// services, steps).
    pub steps: u32,
    /// What the phase does, e.g. `plan` or `12 steps`.
    pub message: String,
}

/// A lease on a running job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The engine process holding it (`slipway-<pid>` by default).
    pub worker: String,
    /// The attempt's fencing number, greater than every earlier one; reports
    /// under any other fence are refused.
    pub fence: u64,
    /// When it runs out unless the worker heartbeats; then the attempt counts
    /// as an infrastructure failure.
    pub expires_ms: Millis,
}

/// One state change, kept with the job.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub struct Event {
    /// When it happened (Unix ms).
    pub at_ms: Millis,
    /// The state before; `null` for the first event (`submitted`).
    pub from: Option<JobState>,
    /// The state after.
    pub to: JobState,
    /// The attempt number at the time; 0 before the first attempt.
    pub attempt: u32,
    /// Why: `submitted`, `attempt 1 leased by slipway-42`, or the outcome's
    /// reason.
    pub reason: String,
}

/// One finding of a validator plugin (file, line, column, severity, rule, message).
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub struct FindingView {
    /// Path relative to the repository root; `null` when the tool names none.
    pub file: Option<String>,
    /// Line in `file`, where the tool gives one.
    pub line: Option<u32>,
    /// Column in that line, where the tool gives one.
    pub column: Option<u32>,
    /// `error`, `warning` or `info`.
    pub severity: String,
    /// The tool's rule or test id (e.g. `E501`, `no-unused-vars`), if any.
    pub rule: Option<String>,
    /// What the tool says.
    pub message: String,
}

/// What one step of a job did.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's name: the plan's, or `setup-<n>`/`fast-<n>`/`full-<n>` for a
    /// profile's commands.
    pub name: String,
    /// The shell command it ran (with `sh -c`).
    pub command: String,
    /// `None` when it was stopped (timeout, cancel).
    pub exit_code: Option<i64>,
    /// Wall-clock time from start to end, in ms.
    pub duration_ms: u64,
    /// Byte range of its output in the job's log.
    pub log_start: u64,
    /// End of that range (exclusive).
    pub log_end: u64,
    /// What validator plugins found in the step's report; empty when it has
    /// none.
    pub findings: Vec<FindingView>,
    /// Why there are no findings although the step has a report.
    pub findings_error: Option<String>,
}

/// The image a job ran in.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `slipway-runner/<repo-slug>:<hash>`, the hash over everything the build reads.
    pub tag: String,
    /// The image's id (`sha256:…`).
    pub id: String,
    /// The tag existed already, so nothing was built.
    pub cache_hit: bool,
    /// How long the build took, in ms; 0 on a cache hit.
    pub build_ms: u64,
}

/// What the last attempt of a job ran (docs/design.md, "Job record").
#[derive(Debug, Clone, PartialEq, Eq, Default, ToSchema, Serialize, Deserialize)]
pub struct RunRecord {
    /// Which attempt this was, from 1.
    pub attempt: u32,
    /// That attempt's fencing number.
    pub fence: u64,
    /// The exact commit (`None` for a directory snapshot).
    pub sha: Option<String>,
    /// The image it ran in; `null` when it ended before one was ready.
    pub image: Option<ImageRecord>,
    /// Every plugin used, `name@version@sha256` where known.
    pub plugins: Vec<String>,
    /// The steps that ran, in order, setup first.
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
    /// What the plan decided, each fact with the file it came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlanFact>,
}

/// One decision of a job's plan and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema, Serialize, Deserialize)]
pub struct PlanFact {
    /// What was decided (`ecosystem`, `node`, `package manager`, `image`).
    pub what: String,
    /// The decision (`node`, `18`, `pnpm 8.15.0`, `node:18-slim`).
    pub value: String,
    /// `file` or `file:line` that decided it; `null` for a default.
    pub source: Option<String>,
    /// What the plugin saw there, in a few words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The phases of an attempt, in order; their names key
/// [`RunRecord::phases_ms`] (a wire field: the names are the contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Making the job's private copy of the repository at its exact commit.
    Checkout,
    /// Detection and the plan through the ecosystem plugins.
    Plan,
    /// Finding the runner image by content hash, or building it.
    Image,
    /// Starting the pod and waiting for its services.
    Services,
    /// Setup and the tier's validation steps.
    Steps,
    /// Removing the pod and the checkout, pruning caches.
    Cleanup,
}

impl Phase {
    /// The phase's key in [`RunRecord::phases_ms`], e.g. `checkout`.
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
    /// Sequence number, unique and increasing in submit order.
    pub id: JobId,
    /// The spec as submitted, a ref in `commit` already resolved to a SHA.
    pub spec: JobSpec,
    /// Where the job is in its life cycle.
    pub state: JobState,
    /// Attempts started so far; 0 until the first lease.
    pub attempt: u32,
    /// Attempts allowed before the job is `dead` (the spec's, else the
    /// server's default).
    pub max_attempts: u32,
    /// The running attempt's lease; `None` unless the job is `running`.
    pub lease: Option<Lease>,
    /// Earliest time of the next attempt (retry backoff).
    pub not_before_ms: Millis,
    /// When it was submitted.
    pub created_ms: Millis,
    /// When the record last changed: a state change, progress or a run report.
    pub updated_ms: Millis,
    /// A cancel was asked for while it ran; the attempt ends as `cancelled`
    /// once its worker sees this at the next heartbeat.
    pub cancel_requested: bool,
    /// What the current (or last) attempt last reported; cleared at each lease.
    pub progress: Option<Progress>,
    /// Why the job last retried or ended; `None` before either.
    pub reason: Option<String>,
    /// Every state change, oldest first, starting with `submitted`.
    pub events: Vec<Event>,
    /// What the last attempt ran (image, plugins, steps, timings).
    #[serde(default)]
    pub run: Option<RunRecord>,
}

/// A transition that the current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The job's state does not allow the action, e.g. cancelling a finished
    /// job (the API answers 409).
    #[error("job {id} is {state}, so it cannot be {action}")]
    WrongState {
        /// The job's id.
        id: JobId,
        /// Its current state, as the API spells it.
        state: &'static str,
        /// What was refused: `leased`, `cancelled`, `expired` or `taken over`.
        action: &'static str,
    },
    /// A report from an attempt that no longer holds the lease (or from none);
    /// it is dropped, so it cannot overwrite a newer attempt's result.
    #[error(
        "job {id}: attempt with fence {got} is stale (current fence {current}); its report is refused"
    )]
    StaleFence {
        /// The job's id.
        id: JobId,
        /// The fence the report came with.
        got: u64,
        /// The running attempt's fence; 0 when no attempt is running.
        current: u64,
    },
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
    /// A `queued` job submitted at `now`, with its `submitted` event;
    /// `max_attempts` is the spec's, else the policy's default.
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

    /// Store what the attempt holding `fence` is doing (shown by `status`).
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
