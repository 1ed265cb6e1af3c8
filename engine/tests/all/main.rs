//! The engine's integration tests, in one test binary: each module is one
//! capability tested through real components (a real Docker engine, real
//! redb files, real compiled plugins, the real `slipway` binary, HTTP on
//! loopback). One binary links the engine once instead of once per file;
//! tests that must not share a process with others stay binaries of their
//! own: `crash` (its own harness: it SIGKILLs an engine mid-stream) and
//! `zz_docker_daemon_restart` (it restarts dockerd, so it runs last).

#[path = "../support/mod.rs"]
#[macro_use]
mod support;

mod api;
mod callbacks;
mod checkout;
mod cli_client;
mod cli_doctor;
mod cli_faults;
mod cli_plugins;
mod cli_pod_manifest;
mod cli_serve;
mod cli_serve_tls;
mod dashboard;
mod deployments;
mod docker_runner;
mod e2e_jobs;
mod engine_restart;
mod examples;
mod job_faults;
mod managed_services;
mod plan;
mod plugin_host;
mod queue;
mod replicas;
mod services;
mod store_suite;
mod store_tls;
mod watches;
mod workspaces;
