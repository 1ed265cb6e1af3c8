//! The Docker runner: the only module that talks to the container engine
//! (and the only one that imports bollard).
//!
//! - [`docker`]: finding and connecting to Docker or Podman, with the API
//!   version negotiated and an error that names everything tried.
//! - [`image`]: the job's image, built once and reused by content hash.
//! - [`container`]: the hardened, labelled containers of a pod.
//! - [`pod`]: a job's containers in one private network namespace: a
//!   holder, its services, and the workload container the steps run in.
//! - [`exec`]: steps (streamed into the job log, with a timeout and cancel
//!   that stop the step's process group) and probes, as execs.
//! - [`services`]: a job's services, their readiness through plugins, and
//!   their exits.
//! - [`executor`]: all of it as the scheduler's `Executor`.

pub mod container;
pub mod docker;
pub mod exec;
pub mod executor;
pub mod image;
pub mod pod;
pub mod services;

pub use container::{ContainerLimits, RunnerError};
pub use docker::{DockerError, connect};
pub use exec::{StepEnd, StepExec, StepOutcome, exec_step};
pub use pod::{Pod, PodSpec, ServiceContainer, WorkloadSpec};

/// Labels every Slipway container carries (DESIGN: "Containers").
pub const LABEL_MANAGED: &str = "io.slipway.managed";
pub const LABEL_ROLE: &str = "io.slipway.role";
pub const LABEL_JOB: &str = "io.slipway.job";
pub const LABEL_SERVICE: &str = "io.slipway.service";
/// Which engine (state directory) owns the container, so engines sharing a
/// daemon never adopt or remove each other's containers.
pub const LABEL_ENGINE: &str = "io.slipway.engine";

/// Remove every container this engine created that no attempt owns any
/// more. Run at start: no attempt survives a restart (their leases expire
/// and the jobs go back to the queue), so every container labelled with
/// this engine's id is a leftover. Returns how many were removed.
pub async fn reconcile(
    docker: &bollard::Docker,
    engine_id: &str,
) -> Result<usize, bollard::errors::Error> {
    use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
    let filters = std::collections::HashMap::from([(
        "label".to_owned(),
        vec![
            format!("{LABEL_MANAGED}=true"),
            format!("{LABEL_ENGINE}={engine_id}"),
        ],
    )]);
    let leftovers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await?;
    let mut removed = 0;
    for container in leftovers {
        let Some(id) = container.id else { continue };
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(&id, Some(options)).await {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "could not remove a leftover container")
            }
        }
    }
    Ok(removed)
}
