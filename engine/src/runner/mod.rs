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
