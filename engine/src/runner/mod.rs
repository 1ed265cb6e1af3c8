//! The Docker runner: the only module that talks to the container engine
//! (and the only one that imports bollard).
//!
//! - [`docker`]: finding and connecting to Docker or Podman, with the API
//!   version negotiated and an error that names everything tried.
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
//! - [`batch`]: a job's steps as its container's own command, followed
//!   through the container's output (and again after an engine restart).
//! - [`exec`]: steps (streamed into the job log, with a timeout and cancel
//!   that stop the step's process group) and probes, as execs.
//! - [`services`]: a job's services, their readiness through plugins, and
//!   their exits.
//! - [`prepare`]: what a job and a workspace share: checkout, plan, image,
//!   pod with services; then steps in it.
//! - [`executor`]: a job, as the scheduler's `Executor`.
//! - [`workspaces`]: environments kept open for edit-validate loops.
//! - [`supervisor`]: long-running managed services kept as declared and
//!   healthy (readiness, liveness, Docker events, restarts with a budget).

pub mod batch;
pub mod build_hints;
pub mod cache;
pub mod container;
pub mod docker;
pub mod exec;
pub mod executor;
pub mod gpu;
pub mod image;
pub mod image_gc;
pub mod pod;
pub mod prepare;
pub mod services;
pub mod supervisor;
pub mod workspaces;

pub use container::{ContainerLimits, RunnerError};
pub use docker::{DockerError, connect};
pub use exec::{StepEnd, StepExec, StepOutcome, exec_step};
pub use pod::{Pod, PodSpec, ServiceContainer, WorkloadSpec};

/// Labels every Slipway container carries (docs/design.md, "Containers").
pub const LABEL_MANAGED: &str = "io.slipway.managed";
pub const LABEL_ROLE: &str = "io.slipway.role";
pub const LABEL_JOB: &str = "io.slipway.job";
pub const LABEL_SERVICE: &str = "io.slipway.service";
/// Which engine (state directory) owns the container, so engines sharing a
/// daemon never adopt or remove each other's containers.
pub const LABEL_ENGINE: &str = "io.slipway.engine";

/// The containers (running or not) this engine created that also carry
/// every label of `labels` (`key=value`).
pub(crate) async fn engine_containers(
    docker: &bollard::Docker,
    engine_id: &str,
    labels: &[String],
) -> Result<Vec<bollard::models::ContainerSummary>, bollard::errors::Error> {
    use bollard::query_parameters::ListContainersOptionsBuilder;
    let mut wanted = vec![
        format!("{LABEL_MANAGED}=true"),
        format!("{LABEL_ENGINE}={engine_id}"),
    ];
    wanted.extend_from_slice(labels);
    let filters = std::collections::HashMap::from([("label".to_owned(), wanted)]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    docker.list_containers(Some(options)).await
}

/// Remove every container this engine created that is not to be kept
/// (`keep` sees its labels): run at start. `serve` keeps the pods of the
/// jobs still running in its store (their attempts are taken over and
/// followed again) and declared managed services (adopted by the
/// supervisor); the rest are leftovers. Returns how many were removed.
pub async fn reconcile(
    docker: &bollard::Docker,
    engine_id: &str,
    keep: impl Fn(&std::collections::HashMap<String, String>) -> bool,
) -> Result<usize, bollard::errors::Error> {
    let leftovers = engine_containers(docker, engine_id, &[]).await?;
    let mut removed = 0;
    for container in leftovers {
        if container.labels.as_ref().is_some_and(&keep) {
            continue;
        }
        let Some(id) = container.id else { continue };
        container::remove(docker, &id).await;
        removed += 1;
    }
    Ok(removed)
}
