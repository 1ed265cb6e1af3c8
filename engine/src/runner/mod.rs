//! The Docker runner: the only module that talks to the container engine
//! (and the only one that imports bollard).
//!
//! - [`docker`]: finding and connecting to Docker or Podman, with the API
//!   version negotiated and an error that names everything tried.
//! - [`container`]: one step in a fresh, hardened, labelled container, with
//!   its output streamed into the job log, a timeout (SIGTERM, grace, kill),
//!   cancel, and removal whatever happens.
//!
//! - [`image`]: the job's image, built once and reused by content hash.
//!
//! - [`executor`]: all of it as the scheduler's `Executor`.
//!
//! Still to come (the Docker runner issue): pods with services, cache
//! volumes, secret redaction, recovery of running jobs after a restart.

pub mod container;
pub mod docker;
pub mod executor;
pub mod image;

pub use container::{ContainerLimits, RunnerError, StepContainer, StepEnd, StepOutcome, run_step};
pub use docker::{DockerError, connect};

/// Labels every Slipway container carries (DESIGN: "Containers").
pub const LABEL_MANAGED: &str = "io.slipway.managed";
pub const LABEL_ROLE: &str = "io.slipway.role";
pub const LABEL_JOB: &str = "io.slipway.job";
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
