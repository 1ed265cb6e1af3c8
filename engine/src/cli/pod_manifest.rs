//! `slipway pod-manifest <repo> [--profile] [--tier] [--registry] [--sha]
//! [--sidecars] [--checkout-from] [--checkout-image]`: the Pod YAML a job
//! of the repository would get (docs/kubernetes.md). Nothing is built or
//! started.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use slipway::config::Config;
use slipway::job::Tier;
use slipway::kube::job::{JobPodRequest, job_pod};
use slipway::kube::manifest::{self, Sidecars};
use slipway::kube::source::LocalRepo;

/// The default checkout image: a small image with `git` and `sh`.
const CHECKOUT_IMAGE: &str = "alpine/git:v2.45.1";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TierArg {
    Fast,
    Full,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SidecarsArg {
    /// Services as init containers with `restartPolicy: Always` and a
    /// startup probe (Kubernetes 1.29+).
    Native,
    /// Services as ordinary containers; the workload waits for them itself
    /// (for runtimes without native sidecars, e.g. `podman kube play`).
    Plain,
}

#[derive(Debug, Args)]
pub struct PodManifestArgs {
    /// The repository: a local git repository's top directory.
    pub repo: PathBuf,
    /// A repo profile (TOML or JSON, as for `slipway run`): steps, env,
    /// services, limits.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Which steps the workload runs: setup and fast, or also full.
    #[arg(long, value_enum, default_value = "full")]
    pub tier: TierArg,
    /// Prefix of the runner image's name in the registry the cluster pulls
    /// from (e.g. `registry.example/ci`); default: the local tag.
    #[arg(long, value_name = "PREFIX")]
    pub registry: Option<String>,
    /// The commit (a SHA, branch or tag of the local repository; default:
    /// HEAD), resolved to its SHA.
    #[arg(long, value_name = "REV")]
    pub sha: Option<String>,
    /// How services run beside the workload.
    #[arg(long, value_enum, default_value = "native")]
    pub sidecars: SidecarsArg,
    /// Where the checkout init container fetches the commit: a git URL, or
    /// a local directory (mounted read-only as a hostPath); default: the
    /// repository's `origin`, else its own directory.
    #[arg(long, value_name = "URL|DIR")]
    pub checkout_from: Option<String>,
    /// The checkout init container's image (needs `git` and `sh`; runs as
    /// the job user, read-only root).
    #[arg(long, value_name = "IMAGE", default_value = CHECKOUT_IMAGE)]
    pub checkout_image: String,
}

pub fn run(args: PodManifestArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let profile = args
        .profile
        .as_deref()
        .map(super::serve::profile_file)
        .transpose()?;
    let repo = match LocalRepo::open(&args.repo, args.sha.as_deref()) {
        Ok(repo) => repo,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let ca_bundle = match &config.ca_bundle {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("the configured ca_bundle {}", path.display()))?,
        ),
        None => None,
    };
    let registry = Arc::new(super::registry_for(config, super::Calls::Few)?);
    let request = JobPodRequest {
        registry: &registry,
        ecosystem_order: &config.ecosystem_order,
        base_images: &config.base_images,
        ca_bundle: ca_bundle.as_deref(),
        repo: &repo,
        profile: profile.as_ref(),
        tier: match args.tier {
            TierArg::Fast => Tier::Fast,
            TierArg::Full => Tier::Full,
        },
        image_registry: args.registry.as_deref(),
        checkout_from: args.checkout_from.as_deref(),
        checkout_image: &args.checkout_image,
        sidecars: match args.sidecars {
            SidecarsArg::Native => Sidecars::Native,
            SidecarsArg::Plain => Sidecars::Plain,
        },
        user: slipway::runner::prepare::JOB_USER,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let built = rt.block_on(job_pod(&request));
    // The process ends right after: unmapping every loaded plugin's code
    // would only slow the exit down.
    std::mem::forget(registry);
    let job = match built {
        Ok(job) => job,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(if e.is_input_problem() { 2 } else { 1 }));
        }
    };
    let manifest = match manifest::pod(&job) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    print!("{}", manifest::to_yaml(&manifest)?);
    Ok(ExitCode::SUCCESS)
}
