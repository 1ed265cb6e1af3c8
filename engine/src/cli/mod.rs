//! Subcommands. Each file owns one command family: it parses its arguments
//! (clap derive; the doc comments are the help) and prints results.

mod admin;
mod client;
mod deploy;
mod doctor;
mod plan;
mod plugins;
mod pod_manifest;
mod render;
mod scaffold;
mod serve;
mod services;
mod system;
mod tokens;
mod watch;
mod workspace;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use slipway::config::Config;
use slipway::plugins::sandbox::SandboxOptions;
use slipway::plugins::{PluginSandbox, Registry};

/// Slipway: run validation jobs against code repositories in hardened
/// containers, with ecosystem knowledge in sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "slipway", version, propagate_version = true)]
pub struct Cli {
    /// Configuration file (default: none; every key can also be set as SLIPWAY_<KEY>).
    #[arg(long, global = true, env = "SLIPWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Write logs as JSON lines.
    #[arg(long, global = true, env = "SLIPWAY_LOG_JSON")]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect, verify, scaffold and install plugins.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// Detect a local repository's ecosystem and show the image, setup and
    /// validation steps Slipway would use (no Docker needed). Exit code 2:
    /// nothing detected, or a hint file is malformed.
    Plan(plan::PlanArgs),
    /// Write the Kubernetes Pod a job of a local repository would get: the
    /// checkout at the exact SHA as an init container, services as
    /// sidecars, the workload hardened (docs/kubernetes.md). Nothing is
    /// built or started. Exit code 2: a problem with the repository,
    /// profile or flags.
    PodManifest(pod_manifest::PodManifestArgs),
    /// Run the engine: HTTP API, durable queue, Docker runner.
    Serve,
    /// Exit 0 when the server at SLIPWAY_URL answers `/healthz` (a container
    /// HEALTHCHECK). With `tls` configured it asks over HTTPS whatever the
    /// URL's scheme, trusting exactly the certificate in `tls.cert`.
    Healthcheck {
        #[arg(long, env = "SLIPWAY_URL", default_value = "http://127.0.0.1:7878")]
        url: String,
        /// Ask `/readyz` instead (Docker reachable, store open, plugins loaded).
        #[arg(long)]
        ready: bool,
    },
    /// Replace the engine's container with one on a new image (the engine
    /// must run as a container); rolled back when the new engine is not
    /// ready in time. Exit 0 updated, 1 refused or rolled back.
    SelfUpdate {
        #[command(flatten)]
        update: system::SelfUpdateArgs,
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// The update worker the engine starts from the new image.
    #[command(hide = true)]
    UpdateWorker(system::UpdateWorkerArgs),
    /// Move a store's contents between redb and PostgreSQL (`export`, then
    /// `import` with the other `store` configured).
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Preflight checks of this host (container engine, limits, state directory, disk, SELinux, plugins), each with its fix.
    Doctor(doctor::DoctorArgs),
    /// Run one job end to end without a server; exit code 0 only when it succeeded.
    Run(serve::RunArgs),
    /// Submit a job to a Slipway server.
    Submit {
        #[command(flatten)]
        job: client::SubmitArgs,
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// List jobs, newest first.
    Jobs {
        #[command(flatten)]
        filter: client::JobsArgs,
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// Show a job. Exit code: 0 succeeded, 1 failed/timed out/cancelled/dead, 3 not finished, 4 server unreachable.
    Status {
        #[command(flatten)]
        job: client::StatusArgs,
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// Print a job's log; `--follow` streams it until the job ends.
    Logs {
        #[command(flatten)]
        job: client::LogsArgs,
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// Cancel a job: at once when waiting, at its next heartbeat when running.
    Cancel {
        #[command(flatten)]
        job: client::CancelArgs,
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// API tokens: create (shown once), list, revoke.
    Tokens {
        #[command(subcommand)]
        command: tokens::TokensCommand,
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// Workspaces for edit-validate loops: create, list, apply, validate, diff, reset, rm.
    Workspace {
        #[command(subcommand)]
        command: workspace::WorkspaceCommand,
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// Long-running managed services: list, add, rm, restart, logs.
    Services {
        #[command(subcommand)]
        command: services::ServicesCommand,
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// Deployments (a Compose stack kept at a branch's head): add, list,
    /// status, up, down, rollback, history, logs.
    Deploy {
        #[command(subcommand)]
        command: deploy::DeployCommand,
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// Watched branches and tags (each new commit runs a job): add, list,
    /// show, rm, pause, resume.
    Watch {
        #[command(subcommand)]
        command: watch::WatchCommand,
        #[command(flatten)]
        server: client::ServerArgs,
    },
}

/// A TOML (or, by its `.json` extension, JSON) file as a JSON value, for
/// files that hold API bodies (profiles, services).
pub fn read_document(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "json") {
        return serde_json::from_str(&text).with_context(|| format!("{}", path.display()));
    }
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    Ok(serde_json::to_value(table)?)
}

fn healthcheck(url: &str, ready: bool, config: &Config) -> ExitCode {
    let route = if ready { "readyz" } else { "healthz" };
    if let Some(files) = &config.tls {
        // The engine this configuration describes speaks only HTTPS.
        return match slipway::tls::local::get_status(
            files,
            url,
            &format!("/{route}"),
            std::time::Duration::from_secs(3),
        ) {
            Ok(200) => ExitCode::SUCCESS,
            Ok(status) => {
                eprintln!("unhealthy: {url} (HTTPS) answered {status}");
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("unhealthy: {url} (HTTPS): {e}");
                ExitCode::from(1)
            }
        };
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(3)))
        .build()
        .into();
    match agent
        .get(format!("{}/{route}", url.trim_end_matches('/')))
        .call()
    {
        Ok(r) if r.status() == 200 => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("unhealthy: {} answered {}", url, r.status());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {e}");
            ExitCode::from(1)
        }
    }
}

pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Plugins(cmd) => plugins::run(cmd, &config),
        Command::Plan(args) => plan::run(args, &config),
        Command::PodManifest(args) => pod_manifest::run(args, &config),
        Command::Serve => serve::serve(&config),
        Command::Run(args) => serve::run(args, &config, !cli.log_json),
        Command::Doctor(args) => doctor::run(args, &config),
        Command::Admin { command } => admin::run(command, &config),
        Command::Healthcheck { url, ready } => Ok(healthcheck(&url, ready, &config)),
        Command::SelfUpdate { update, server } => system::self_update(update, &server),
        Command::UpdateWorker(args) => system::update_worker(args),
        Command::Submit { job, server } => client::submit(job, &server),
        Command::Jobs { filter, server } => client::jobs(filter, &server),
        Command::Status { job, server } => client::status(job, &server),
        Command::Logs { job, server } => client::logs(job, &server),
        Command::Cancel { job, server } => client::cancel(job, &server),
        Command::Services { command, server } => services::run(command, &server),
        Command::Watch { command, server } => watch::run(command, &server),
        Command::Deploy { command, server } => deploy::run(command, &server),
        Command::Workspace { command, server } => workspace::run(command, &server),
        Command::Tokens { command, server } => tokens::run(command, &server),
    }
}

/// How many plugin calls the command will make: a long-lived engine makes
/// many, and the pooling allocator's fast instantiation pays for its start
/// (a few ms of reserving slots); a one-shot command makes a few.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calls {
    /// `serve`, `run`: pooling allocator.
    Many,
    /// `plan`, `plugins`, `doctor`: on-demand allocation, calls made one
    /// at a time from the command's thread.
    Few,
}

/// The sandbox, sized for `calls`, with the on-disk compile cache of
/// `config`; falls back to an in-memory cache (with a warning) when the
/// state directory is not writable.
pub fn sandbox_for(config: &Config, calls: Calls) -> anyhow::Result<Arc<PluginSandbox>> {
    let options = SandboxOptions {
        cache_dir: Some(config.plugin_cache_dir()),
        policy: config.plugin_limits,
        pooling: calls == Calls::Many,
        single_caller: calls == Calls::Few,
    };
    match PluginSandbox::new(options.clone()) {
        Ok(s) => Ok(Arc::new(s)),
        Err(slipway::plugins::sandbox::SandboxError::Cache(e)) => {
            tracing::warn!(error = %e, "plugins will be compiled on every run");
            let s = PluginSandbox::new(SandboxOptions {
                cache_dir: None,
                ..options
            })
            .context("setting up the plugin sandbox")?;
            Ok(Arc::new(s))
        }
        Err(e) => Err(e).context("setting up the plugin sandbox"),
    }
}

/// The registry: bundled plugins, `SLIPWAY_PLUGINS_DIR`, and `<state>/plugins`.
/// Builds `plugins verify` rejected are rejected here too.
pub fn registry(config: &Config) -> anyhow::Result<Registry> {
    registry_for(config, Calls::Many)
}

/// [`registry`], with a sandbox sized for `calls`.
pub fn registry_for(config: &Config, calls: Calls) -> anyhow::Result<Registry> {
    let mut registry = Registry::load_trusting(
        sandbox_for(config, calls)?,
        true,
        &plugin_dirs(config),
        config.plugin_trust.clone(),
    );
    registry.apply_verdicts();
    Ok(registry)
}

fn plugin_dirs(config: &Config) -> Vec<PathBuf> {
    let mut dirs = config.plugin_dirs.clone();
    let own = config.state_dir.join("plugins");
    if own.is_dir() && !dirs.contains(&own) {
        dirs.push(own);
    }
    dirs
}
