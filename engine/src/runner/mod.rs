//! The runner: what jobs, workspaces and managed services are made of, on
//! top of the container-runtime seam (`crate::runtime`; Docker is one
//! implementation of it).
//!
//! - [`image`]: the job's image, built once and reused by content hash.
//! - [`build_hints`]: why a build failed (a missing base image, a registry
//!   out of reach, TLS interception), said with what would help.
//! - [`gpu`]: what GPUs the daemon offers, and what a job asking for some
//!   gets (devices, a CPU fallback, or a refusal before anything starts).
//! - [`image_gc`]: least-recently-used runner images removed past a budget.
//! - [`cache`]: package-manager cache volumes, one per manager and
//!   repository, pruned past their budget.
//! - [`container`]: the hardened, labelled containers of a pod.
//! - [`pod`]: a job's containers in one private network namespace: a
//!   holder, its services, and the workload container the steps run in.
//! - [`exec`]: steps (streamed into the job log, with a timeout and cancel
//!   that stop the step's process group) and probes, as execs.
//! - [`services`]: a job's services, their readiness through plugins, and
//!   their exits.
//! - [`prepare`]: what a job and a workspace share: checkout, plan, image,
//!   pod with services; then steps in it.
//!
//! The products built from these are [`crate::jobs`], [`crate::workspaces`]
//! and [`crate::supervisor`].

pub mod build_hints;
pub mod cache;
pub mod container;
pub mod exec;
pub mod gpu;
pub mod image;
pub mod image_gc;
pub mod pod;
pub mod prepare;
pub mod services;

pub use crate::runtime::docker::DockerError;
pub use crate::runtime::{Runtime, connect};
pub use container::{ContainerLimits, RunnerError};
pub use exec::{StepEnd, StepExec, StepOutcome, exec_step};
pub use pod::{Pod, PodSpec, ServiceContainer, WorkloadSpec};

/// Labels every Slipway container carries (docs/design.md, "Containers").
pub const LABEL_MANAGED: &str = "io.slipway.managed";
/// What a container is for: a [`Role`]'s label (`holder`, `job`, ...).
pub const LABEL_ROLE: &str = "io.slipway.role";
/// On every container of a job's pod: the job's id.
pub const LABEL_JOB: &str = "io.slipway.job";
/// A service's name: on a job's or workspace's service containers, and on
/// every container of a managed service's pod.
pub const LABEL_SERVICE: &str = "io.slipway.service";
/// What a container is for: the value of its `io.slipway.role` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Role {
    /// Owns a pod's network namespace (and runs its TCP/HTTP probes).
    Holder,
    /// A job's workload: the steps run as its command.
    #[default]
    Job,
    /// A workspace's workload: idle, steps run in it as execs.
    Workspace,
    /// A service of a job or a workspace.
    Service,
    /// A managed service's container.
    ManagedService,
    /// A container of a deployment's Compose service (a managed service
    /// the deployment declared).
    Deployment,
    /// A one-off helper that works on a cache volume.
    Cache,
}

impl Role {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Role::Holder => "holder",
            Role::Job => "job",
            Role::Workspace => "workspace",
            Role::Service => "service",
            Role::ManagedService => "managed-service",
            Role::Deployment => "deployment",
            Role::Cache => "cache",
        }
    }

    /// The role a label value names.
    pub fn of_label(value: &str) -> Option<Role> {
        [
            Role::Holder,
            Role::Job,
            Role::Workspace,
            Role::Service,
            Role::ManagedService,
            Role::Deployment,
            Role::Cache,
        ]
        .into_iter()
        .find(|r| r.label() == value)
    }
}

/// The deployment a container belongs to (`io.slipway.role=deployment`).
pub const LABEL_DEPLOYMENT: &str = "io.slipway.deployment";
/// The commit a deployment's container was built and configured from.
pub const LABEL_COMMIT: &str = "io.slipway.commit";

/// Which engine (state directory) owns the container, so engines sharing a
/// daemon never adopt or remove each other's containers.
pub const LABEL_ENGINE: &str = "io.slipway.engine";

/// The containers (running or not) this engine created that also carry
/// every label of `labels` (`key=value`).
pub(crate) async fn engine_containers(
    runtime: &Runtime,
    engine_id: &str,
    labels: &[String],
) -> Result<Vec<crate::runtime::ContainerSummary>, crate::runtime::RuntimeError> {
    let mut wanted = vec![
        format!("{LABEL_MANAGED}=true"),
        format!("{LABEL_ENGINE}={engine_id}"),
    ];
    wanted.extend_from_slice(labels);
    runtime.list_containers(&wanted).await
}

/// Remove every container this engine created that is not to be kept
/// (`keep` sees its labels): run at start. `serve` keeps the pods of the
/// jobs still running in its store (their attempts are taken over and
/// followed again) and declared managed services (adopted by the
/// supervisor); the rest are leftovers. Returns how many were removed.
pub async fn reconcile(
    runtime: &Runtime,
    engine_id: &str,
    keep: impl Fn(&std::collections::HashMap<String, String>) -> bool,
) -> Result<usize, crate::runtime::RuntimeError> {
    let leftovers = engine_containers(runtime, engine_id, &[]).await?;
    let mut removed = 0;
    for container in leftovers {
        if keep(&container.labels) {
            continue;
        }
        container::remove(runtime, &container.id).await;
        removed += 1;
    }
    Ok(removed)
}
