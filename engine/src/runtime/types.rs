//! What a container runtime answers with: engine-owned types, so no
//! product sees an engine's own models.

use std::collections::HashMap;
use std::pin::Pin;

use bytes::Bytes;

/// A stream the runtime produces (output, events, build progress).
pub type BoxStream<T> = Pin<Box<dyn futures_util::Stream<Item = T> + Send>>;

/// Why a call to the container runtime failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// The container, image, exec or volume does not exist (any more).
    #[error("no such {what} `{name}`")]
    NotFound {
        /// What kind of object: `container`, `image`, `exec`, `volume`.
        what: &'static str,
        /// The id or name it was asked for by.
        name: String,
    },
    /// The image a container was to run is not on the engine.
    #[error("image `{0}` is not available to the container engine")]
    ImageMissing(String),
    /// The container's command needs `sh` and the image has none.
    #[error("the image has no shell (`sh`)")]
    NoShell,
    /// The engine refused, or did not answer.
    #[error("the container engine refused to {action}: {message}")]
    Engine {
        /// What the engine was asked to do, e.g. `start an exec`.
        action: &'static str,
        /// The engine's (or the connection's) error.
        message: String,
    },
}

impl RuntimeError {
    /// It is [`RuntimeError::NotFound`]: the object does not exist (any more).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RuntimeError::NotFound { .. })
    }
}

/// One container as a listing shows it.
#[derive(Debug, Clone, Default)]
pub struct ContainerSummary {
    /// The container's full id.
    pub id: String,
    /// Its labels: role, engine, job or workspace, service.
    pub labels: HashMap<String, String>,
    /// Its main process is running (not created, exited or paused).
    pub running: bool,
}

/// One container as an inspection shows it.
#[derive(Debug, Clone, Default)]
pub struct ContainerInfo {
    /// The container's full id.
    pub id: String,
    /// Its main process is running.
    pub running: bool,
    /// Set once it stopped.
    pub exit_code: Option<i64>,
    /// The kernel killed its main process for memory.
    pub oom_killed: bool,
    /// Its labels, as created.
    pub labels: HashMap<String, String>,
    /// Its image as created (the name it was asked for).
    pub image: String,
    /// Its command as created.
    pub cmd: Vec<String>,
    /// `uid:gid` it runs as; empty: the image's own user.
    pub user: String,
    /// When it last started (RFC 3339), if it did.
    pub started_at: Option<String>,
    /// Its binds, volumes and tmpfs mounts.
    pub mounts: Vec<Mount>,
}

/// A mount of a container.
#[derive(Debug, Clone, Default)]
pub struct Mount {
    /// The volume's name, for a named volume.
    pub name: Option<String>,
    /// The host path (a bind) or the volume's data directory.
    pub source: String,
    /// Where it is in the container.
    pub destination: String,
    /// `bind`, `volume`, `tmpfs`.
    pub kind: String,
}

/// Which stream of a container or exec a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A chunk of a container's or exec's output, as it came.
#[derive(Debug, Clone)]
pub struct Output {
    /// The stream it came from.
    pub stream: OutputStream,
    /// The raw bytes; a chunk may end mid-line (or mid-character).
    pub bytes: Bytes,
}

/// Which of a container's output to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogsOptions {
    /// Keep reading until the container stops.
    pub follow: bool,
    /// Only output since this time (seconds since the epoch; 0: all).
    pub since_s: i64,
    /// Each chunk starts with its RFC 3339 time and a space, as
    /// `docker logs --timestamps` and `kubectl logs --timestamps` print.
    pub timestamps: bool,
}

/// A command to run in a running container.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    /// The program and its arguments, run directly (no shell unless `argv` names one).
    pub argv: Vec<String>,
    /// Variables (`NAME`, value) added to the container's environment for this exec.
    pub env: Vec<(String, String)>,
    /// Working directory; `None`: the container's.
    pub workdir: Option<String>,
    /// `uid:gid`; `None`: the container's user.
    pub user: Option<String>,
}

/// A started exec: its id (for its exit code) and its output.
pub struct Exec {
    /// The exec's id, for [`ContainerRuntime::exec_exit_code`] once the output ends.
    ///
    /// [`ContainerRuntime::exec_exit_code`]: crate::runtime::ContainerRuntime::exec_exit_code
    pub id: String,
    /// Its stdout and stderr as they come; ends when the command exits.
    pub output: BoxStream<Result<Output, RuntimeError>>,
}

/// Which events to receive.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Containers by id or name (empty: any).
    pub containers: Vec<String>,
    /// Labels every container must carry (`key=value`).
    pub labels: Vec<String>,
    /// Kinds wanted (empty: all).
    pub kinds: Vec<EventKind>,
    /// Replay from this time (ms since the epoch) where the engine keeps
    /// its events.
    pub since_ms: Option<u64>,
}

/// The container events the engine follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Its main process exited.
    Died,
    /// The kernel killed one of its processes for memory.
    OomKilled,
    /// Its own health check changed verdict.
    Health,
}

/// Something that happened to a container.
#[derive(Debug, Clone)]
pub struct RuntimeEvent {
    /// What happened.
    pub kind: EventKind,
    /// The container's id.
    pub container: String,
    /// The container's labels.
    pub labels: HashMap<String, String>,
    /// For [`EventKind::Health`]: the new verdict is "unhealthy".
    pub unhealthy: bool,
}

/// An image build.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// The build context as a tar archive.
    pub context: Vec<u8>,
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    /// The tag the built image gets (`name:tag`).
    pub tag: String,
    /// The network its `RUN` steps get (`none`, `bridge`, `host`).
    pub network: String,
    /// Labels on the built image (the engine marks its own images with them).
    pub labels: HashMap<String, String>,
    /// `--build-arg` values.
    pub args: HashMap<String, String>,
    /// The stage to build (`--target`); `None`: the last one.
    pub target: Option<String>,
}

/// Progress of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEvent {
    /// Output of the build, possibly several lines.
    Output(String),
    /// The build failed, with the engine's reason; nothing follows.
    Failed(String),
}

/// One image as a listing shows it.
#[derive(Debug, Clone, Default)]
pub struct ImageSummary {
    /// Its `name:tag` references; empty for a dangling image.
    pub tags: Vec<String>,
    /// Bytes, shared layers counted in each image.
    pub size: u64,
    /// Containers using it.
    pub containers: u64,
}

/// What the container engine says about itself, for `slipway doctor`,
/// SELinux relabelling and GPU requests.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HostFacts {
    /// `Docker` or `Podman`.
    pub engine: String,
    /// The engine's own version, e.g. `27.3.1`.
    pub version: String,
    /// The API version client and daemon agreed on, e.g. `1.47`.
    pub api_version: String,
    /// The daemon runs rootless (its security options say so).
    pub rootless: bool,
    /// The host's cgroup version, `1` or `2`; empty when not reported.
    pub cgroup_version: String,
    /// Memory limits are enforced; without them jobs run with no memory cap.
    pub memory_limit: bool,
    /// Process-count limits are enforced.
    pub pids_limit: bool,
    /// CPU limits (CFS quota) are enforced.
    pub cpu_limit: bool,
    /// The daemon's data directory (images, containers); empty when not reported.
    pub root_dir: String,
    /// The daemon host's operating system, e.g. `Ubuntu 24.04.1 LTS`.
    pub os: String,
    /// `name=seccomp,profile=default`, `name=selinux`, ...
    pub security_options: Vec<String>,
    /// Container runtimes it can run (`runc`, `nvidia`, ...), sorted.
    pub runtimes: Vec<String>,
    /// The runtime containers get unless they ask for another (`runc`, or `nvidia`).
    pub default_runtime: String,
}
