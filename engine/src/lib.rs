//! Slipway: a job engine that runs validation jobs against code repositories
//! in hardened containers, with everything ecosystem-specific in sandboxed
//! WebAssembly plugins.
//!
//! # Layout
//! - [`api`]: the HTTP API (axum): jobs, logs, health and metrics.
//! - [`checkout`]: a job's private copy of the repository at its exact commit.
//! - [`config`]: `slipway.toml` and `SLIPWAY_*` variables, parsed raw, then
//!   resolved once into a validated [`config::Config`].
//! - [`plugins`]: the plugin host: the WIT bindings, the sandbox that runs one
//!   call of one plugin under limits, the precompiled-component cache, plugin
//!   manifests and the registry that picks one version per plugin name.
//! - [`job`]: the job spec, the persisted record and its state machine.
//! - [`queue`]: the durable store (redb, group commit) and the scheduler
//!   that leases jobs to the [`executor`] seam; [`logs`] keeps job logs.
//! - [`profile`]: repo profiles (what a repository's jobs share).
//! - [`runtime`]: the container-runtime seam (`ContainerRuntime`) and its
//!   Docker/Podman adapter, the only code that talks the Docker Engine API.
//! - [`runner`]: what the products are made of, over that seam: images by
//!   content hash, pods with services and readiness, steps as execs, cache
//!   volumes, and the preparation a job and a workspace share.
//! - [`jobs`]: a job's attempt on the runtime (the scheduler's executor).
//! - [`kube`]: a job as a Kubernetes Pod manifest (`slipway pod-manifest`).
//! - [`workspaces`]: environments kept open for edit-validate loops.
//! - [`supervisor`]: managed services kept as declared and healthy.
//! - [`service`]: managed service declarations.
//! - [`workspace`]: workspace records (environments kept open).
//! - [`tls`]: TLS terminated by `serve`: the certificate pair, its reload
//!   on change, the listener, and the client `slipway healthcheck` uses.
//! - [`tls_probe`]: whether outbound TLS to package registries is
//!   intercepted (for `slipway doctor`).
//! - [`plan`]: detection and planning of a repository through the ecosystem
//!   plugins; the report `slipway plan` prints.
//!
//! See `ARCHITECTURE.md` at the repository root for the map and invariants.

// A plugin error carries the plugin's id and its own words (~150 bytes);
// errors are rare and never on a hot path, so boxing them buys nothing.
#![allow(clippy::result_large_err)]
#![warn(missing_docs)]

pub mod api;
pub mod callbacks;
pub mod checkout;
pub mod compose;
pub mod config;
pub mod dashboard;
pub mod deployments;
pub mod error_chain;
pub mod executor;
pub mod git_auth;
pub mod job;
pub mod jobs;
pub mod kube;
pub mod logs;
pub mod metrics;
pub mod outbound;
pub mod plan;
pub mod plugins;
pub mod profile;
pub mod queue;
pub mod replica;
pub mod runner;
pub mod runtime;
pub mod secrets;
pub mod selfupdate;
pub mod service;
pub mod supervisor;
pub mod tls;
pub mod tls_probe;
pub mod token;
pub mod watches;
pub mod workspace;
pub mod workspaces;
