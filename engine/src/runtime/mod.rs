//! The container-runtime seam: what the products (jobs, workspaces, the
//! supervisor of managed services) need from a container engine, said in
//! the runtime's terms rather than Docker's.
//!
//! - [`ContainerRuntime`]: containers (create, start, inspect, list by
//!   label, stop, kill, restart, wait, remove), exec with streamed output,
//!   logs followed from a time, events (die, oom, health), images (look up
//!   by tag, build with streamed output, list, remove), volumes, and the
//!   host's facts.
//! - [`spec`]: the one container the products ask for, with its hardening
//!   and limits; how that becomes an engine's request is the adapter's job.
//! - [`types`]: what the runtime answers with (summaries, states, output,
//!   events, build progress, host facts) and [`RuntimeError`].
//! - [`docker`]: the Docker and Podman adapter, the only module that talks
//!   the Docker Engine API.
//! - [`host`]: whether the engine itself runs in a container, and whether
//!   the daemon then sees its state directory.
//! - [`memory`]: an in-memory runtime, for unit tests of product logic
//!   that need no daemon.
//!
//! A Kubernetes backend would implement the same trait (ARCHITECTURE.md
//! maps each method); products never see which one they run on.

/// The label naming the replica (its `node_id`) whose engine created a
/// container, on every container a `serve` creates.
pub const LABEL_NODE: &str = "io.slipway.node";

static NODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// This process's node id, set once by `serve` before it creates anything:
/// every container created after carries [`LABEL_NODE`].
pub fn set_node(id: &str) {
    let _ = NODE.set(id.to_owned());
}

/// The node id [`set_node`] set, if any.
pub fn node() -> Option<&'static str> {
    NODE.get().map(String::as_str)
}

pub mod docker;
pub mod host;
pub mod memory;
pub mod spec;
pub mod types;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use spec::{
    ContainerLimits, ContainerSpec, DEFAULT_PIDS, Hardening, IDLE, SERVICE_CAPABILITIES,
    SelinuxLabel, TMP_OPTIONS, bind, daemon_uses_selinux,
};
pub use types::{
    BoxStream, BuildEvent, BuildSpec, ContainerInfo, ContainerSummary, EventFilter, EventKind,
    Exec, ExecSpec, HostFacts, ImageSummary, LogsOptions, Mount, Output, OutputStream,
    RuntimeError, RuntimeEvent,
};

/// The runtime as the products hold it: cheap to clone, shared by tasks.
pub type Runtime = Arc<dyn ContainerRuntime>;

/// A container engine, as the products use it. Every method names
/// containers by id or name; "gone" is [`RuntimeError::NotFound`].
#[async_trait::async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    // --- containers ---

    /// Create `spec` without starting it; its id.
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, RuntimeError>;

    /// Start a created container.
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError>;

    /// The container's state, labels, command and mounts.
    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo, RuntimeError>;

    /// Every container (running or not) that carries all of `labels`
    /// (`key=value`).
    async fn list_containers(
        &self,
        labels: &[String],
    ) -> Result<Vec<ContainerSummary>, RuntimeError>;

    /// Stop: SIGTERM, `grace`, then SIGKILL. The container is kept.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;

    /// Send `signal` (`KILL`, `TERM`, ...) to the container's main process.
    async fn kill_container(&self, id: &str, signal: &str) -> Result<(), RuntimeError>;

    /// Restart in place (same id, volumes and namespace).
    async fn restart_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;

    /// Wait until the container stops: its exit code, or `None` when it
    /// was removed or the runtime went away first.
    async fn wait_container(&self, id: &str) -> Option<i64>;

    /// Remove the container and its anonymous volumes, whatever its state;
    /// one already gone is `Ok`.
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;

    /// The container's output: what it has, and with `follow` what comes
    /// until it stops.
    fn logs(&self, id: &str, options: LogsOptions) -> BoxStream<Result<Output, RuntimeError>>;

    // --- exec ---

    /// Start `spec` in a running container with its output attached.
    async fn exec(&self, container: &str, spec: ExecSpec) -> Result<Exec, RuntimeError>;

    /// How an exec ended: its exit code, `None` while it runs.
    async fn exec_exit_code(&self, exec: &str) -> Result<Option<i64>, RuntimeError>;

    // --- events ---

    /// Container events matching `filter`, as they happen (and from
    /// `since_ms` when given, replayed).
    fn events(&self, filter: EventFilter) -> BoxStream<Result<RuntimeEvent, RuntimeError>>;

    // --- images ---

    /// The id of the image tagged `tag`, `None` when there is none.
    async fn image_id(&self, tag: &str) -> Result<Option<String>, RuntimeError>;

    /// Build an image from a tar'd context; progress as it comes. The
    /// stream ends after the last line, or with one [`BuildEvent::Failed`].
    fn build_image(&self, spec: BuildSpec) -> BoxStream<BuildEvent>;

    /// Images carrying `label` (`key=value`).
    async fn list_images(&self, label: &str) -> Result<Vec<ImageSummary>, RuntimeError>;

    /// Remove an image by tag (refused while a container uses it).
    async fn remove_image(&self, tag: &str) -> Result<(), RuntimeError>;

    // --- volumes ---

    /// Whether a volume named `name` exists; any error (an unreachable daemon
    /// too) counts as "no".
    async fn volume_exists(&self, name: &str) -> bool;

    /// Create a named volume carrying `labels`; one that exists already is
    /// kept as it is, contents included, and is no error.
    async fn create_volume(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), RuntimeError>;

    /// Remove a volume (refused while a container uses it).
    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError>;

    // --- networks ---

    /// Create a user-defined network carrying `labels` (its members reach
    /// each other by name); one that exists already is no error.
    async fn create_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), RuntimeError>;

    /// Remove a network (refused while a container is attached).
    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError>;

    // --- host ---

    /// What the engine says about itself: version, limits it enforces,
    /// security options, container runtimes (GPUs).
    async fn host_facts(&self) -> Result<HostFacts, RuntimeError>;
}

/// The first of the usual endpoints that answers (Docker or Podman).
pub async fn connect() -> Result<Runtime, docker::DockerError> {
    Ok(Arc::new(docker::connect().await?))
}
