//! Jobs: one attempt of a job from a prepared environment to its outcome.
//!
//! - [`executor`]: the scheduler's [`crate::executor::Executor`] on the
//!   container runtime: prepare (see [`crate::runner::prepare`]), start the
//!   job container with setup and the tier's steps as its command, follow
//!   it to its end, remove the pod and the checkout; after an engine
//!   restart, find a running attempt's container and follow it again.
//! - [`batch`]: the steps as the container's own command, a driver that
//!   marks each step's end, and the reading of its output back into steps
//!   (and again after a restart, skipping what the log already has).

pub mod batch;
pub mod executor;
