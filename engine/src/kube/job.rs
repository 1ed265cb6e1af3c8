//! A job's Pod from the same data its Docker pod is made of: the plan of
//! the repository at the commit (through the ecosystem plugins), the
//! profile's steps, env, services and limits, the runner image's tag by
//! content hash (`runner::image::content_tag`), the readiness plugins'
//! probes, and the steps' driver (`jobs::batch::Script`). Nothing is
//! built or started: the result is a [`JobPod`] for
//! [`manifest::pod`](super::manifest::pod).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::manifest::{CheckoutSource, JobPod, PodService, SOURCE_MOUNT, Sidecars, WORKSPACE};
use super::source::{LocalRepo, SourceError};
use crate::job::{Network, Tier};
use crate::jobs::batch::Script;
use crate::plan::{PlanError, PlanReport, plan_repository};
use crate::plugins::Registry;
use crate::plugins::bindings::OptionPair;
use crate::profile::Profile;
use crate::runner::image::{self, DockerfileSource, ImageError, ImageRequest};
use crate::runner::prepare::{slug_of, steps_for};
use crate::runner::services::{self, ServiceError};
use crate::runner::{LABEL_MANAGED, LABEL_ROLE, Role};

/// Annotation: the job's tier.
pub const ANNOTATION_TIER: &str = "io.slipway.tier";
/// Annotation: the exact commit.
pub const ANNOTATION_COMMIT: &str = "io.slipway.commit";
/// Label: the repository's slug (as in the image's name).
pub const LABEL_REPOSITORY: &str = "io.slipway.repository";

/// What to write a Pod for.
pub struct JobPodRequest<'a> {
    /// The loaded plugins (ecosystem for the plan, readiness for probes).
    pub registry: &'a Arc<Registry>,
    /// `plugins.ecosystem_order` of the configuration.
    pub ecosystem_order: &'a [String],
    /// `base_images` of the configuration (part of the image's hash).
    pub base_images: &'a BTreeMap<String, String>,
    /// The configured CA bundle's bytes (part of a generated image's hash).
    pub ca_bundle: Option<&'a [u8]>,
    /// The repository at its commit.
    pub repo: &'a LocalRepo,
    /// The repo profile, when one applies.
    pub profile: Option<&'a Profile>,
    /// Which steps run.
    pub tier: Tier,
    /// Prefix of the runner image's name (`registry.example/team`); `None`:
    /// the local tag.
    pub image_registry: Option<&'a str>,
    /// Where the checkout fetches from: a git URL or a local path; `None`:
    /// the repository's `origin`, else its own directory.
    pub checkout_from: Option<&'a str>,
    /// The checkout init container's image (needs `git` and `sh`).
    pub checkout_image: &'a str,
    /// Native sidecars or plain containers.
    pub sidecars: Sidecars,
    /// The job user `(uid, gid)`.
    pub user: (u32, u32),
}

/// Why a job's Pod could not be written.
#[derive(Debug, thiserror::Error)]
pub enum JobPodError {
    /// The repository could not be read at its commit.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A scratch directory for the commit's files could not be made.
    #[error("a scratch directory for the commit's files: {0}")]
    Scratch(std::io::Error),
    /// Planning failed (nothing detected, a malformed hint, a plugin).
    #[error("plan: {0}")]
    Plan(#[from] PlanError),
    /// The plan names no Dockerfile.
    #[error("plan: the plan names no Dockerfile, so there is no image to run")]
    NoDockerfile,
    /// The image's tag could not be computed (an unreadable build input).
    #[error("image: {0}")]
    Image(#[from] ImageError),
    /// A service's readiness plugin is unknown or its probe failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A local checkout source that is not a directory.
    #[error("--checkout-from {0}: not a URL and not a local directory")]
    CheckoutFrom(String),
    /// A blocking task did not finish.
    #[error("{0} did not finish")]
    Task(&'static str),
}

impl JobPodError {
    /// Whether the input (repository, profile, flags) is at fault rather
    /// than the machine: the CLI's exit code 2.
    pub fn is_input_problem(&self) -> bool {
        match self {
            JobPodError::Plan(e) => e.is_input_problem(),
            JobPodError::Scratch(_) | JobPodError::Task(_) => false,
            JobPodError::Source(SourceError::Git(_)) => false,
            _ => true,
        }
    }
}

/// Where the checkout comes from: `(url, hostPath)`.
fn checkout_source(
    repo: &LocalRepo,
    from: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<(String, Option<String>), JobPodError> {
    let local = |path: &Path| -> Result<(String, Option<String>), JobPodError> {
        let dir = path
            .canonicalize()
            .ok()
            .filter(|p| p.is_dir())
            .ok_or_else(|| JobPodError::CheckoutFrom(path.display().to_string()))?;
        Ok((
            format!("file://{SOURCE_MOUNT}"),
            Some(dir.display().to_string()),
        ))
    };
    match from {
        Some(url) if url.starts_with("file://") => {
            local(Path::new(url.trim_start_matches("file://")))
        }
        Some(url) if url.contains("://") || url.contains('@') => Ok((url.to_owned(), None)),
        Some(path) => local(Path::new(path)),
        None => match &repo.origin {
            Some(origin) => Ok((origin.clone(), None)),
            None => {
                notes.push(format!(
                    "the repository has no `origin` remote: the checkout reads it from the node's {} (a hostPath); pass --checkout-from <git URL> for a cluster",
                    repo.dir.display()
                ));
                local(&repo.dir)
            }
        },
    }
}

/// The runner image's tag, as `Runner::image_for` names it: the
/// repository's (or the generated) Dockerfile, with the plan's dependency
/// layer on top unless the profile brings its own steps.
fn image_tag(
    req: &JobPodRequest<'_>,
    plan: &PlanReport,
    files: &Path,
) -> Result<String, JobPodError> {
    let dockerfile = match (&plan.dockerfile, &plan.dockerfile_path) {
        (Some(text), _) => DockerfileSource::Generated(text.clone()),
        (None, Some(path)) => DockerfileSource::Repository(path.into()),
        (None, None) => return Err(JobPodError::NoDockerfile),
    };
    let slug = slug_of(&req.repo.dir.display().to_string());
    let request = ImageRequest {
        repo_slug: &slug,
        dockerfile,
        checkout: files,
        base_images: req.base_images,
        network: "none",
        ca_bundle: req.ca_bundle,
        build: Default::default(),
    };
    let mut tag = image::content_tag(&request)?;
    let own_steps = req.profile.is_some_and(|p| p.validation.is_some());
    if let Some(layer) = plan.deps_layer.as_deref().filter(|_| !own_steps) {
        tag = image::content_tag(&ImageRequest {
            dockerfile: DockerfileSource::Generated(image::deps_layer_dockerfile(&tag, layer)),
            ..request
        })?;
    }
    Ok(match req.image_registry {
        Some(prefix) => format!("{}/{tag}", prefix.trim_end_matches('/')),
        None => tag,
    })
}

/// The job's Pod, as data.
pub async fn job_pod(req: &JobPodRequest<'_>) -> Result<JobPod, JobPodError> {
    let mut notes = Vec::new();
    let scratch = tempfile::tempdir().map_err(JobPodError::Scratch)?;
    let files: PathBuf = scratch.path().join("checkout");
    std::fs::create_dir_all(&files).map_err(JobPodError::Scratch)?;
    let repo = req.repo.clone();
    let into = files.clone();
    tokio::task::spawn_blocking(move || repo.export(&into))
        .await
        .map_err(|_| JobPodError::Task("exporting the commit"))??;

    let options: Vec<OptionPair> = req
        .profile
        .and_then(|p| p.dockerfile.clone())
        .map(|value| OptionPair {
            name: "dockerfile".into(),
            value,
        })
        .into_iter()
        .collect();
    let (registry, order, path) = (
        req.registry.clone(),
        req.ecosystem_order.to_vec(),
        files.clone(),
    );
    let plan =
        tokio::task::spawn_blocking(move || plan_repository(&registry, &order, &path, &options))
            .await
            .map_err(|_| JobPodError::Task("planning"))??;
    tracing::debug!(ecosystem = %plan.ecosystem, plugin = %plan.plugin, "planned");

    let image = image_tag(req, &plan, &files)?;
    let planned = steps_for(req.profile, &plan);
    let mut steps = planned.setup.clone();
    let mut tiers = vec![("fast", &planned.fast)];
    if req.tier == Tier::Full {
        tiers.push(("full", &planned.full));
    }
    for (tier, list) in tiers {
        if list.is_empty() {
            notes.push(crate::plan::empty_tier_note(tier));
        }
        steps.extend(list.iter().cloned());
    }
    let script = Script::new(steps);

    let mut env: Vec<(String, String)> = plan
        .env
        .iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect();
    env.extend(req.profile.iter().flat_map(|p| p.env.clone()));

    let mut services_out = Vec::new();
    for spec in req.profile.map(|p| p.services.clone()).unwrap_or_default() {
        let probe = match services::readiness_name(&spec) {
            Some(name) => {
                let plugin = services::readiness_plugin(req.registry, &spec.name, &name)?;
                let view = services::service_view(&spec);
                Some(services::probe_of(&plugin, &view, &spec.name).await?)
            }
            None => None,
        };
        services_out.push(PodService { spec, probe });
    }

    if req.ca_bundle.is_some() {
        notes.push("the configured ca_bundle is part of the image's hash but not mounted: a Pod would take it from a ConfigMap".into());
    }
    let caches = req.profile.is_none_or(|p| p.cache.enabled) && !plan.cache.is_empty();
    if caches {
        let ids: Vec<&str> = plan.cache.iter().map(|c| c.id.as_str()).collect();
        notes.push(format!(
            "package-manager caches ({}) are not mounted: the Pod starts with empty ones (a PersistentVolumeClaim per cache would keep them)",
            ids.join(", ")
        ));
    }
    if req.profile.is_none_or(|p| p.network == Network::None) {
        notes.push("the job asks for no network; a Pod has the cluster's: a NetworkPolicy denying egress from `io.slipway.role=job` Pods is what `network: none` becomes".into());
    }

    let (url, host_path) = checkout_source(req.repo, req.checkout_from, &mut notes)?;
    let slug = slug_of(&req.repo.dir.display().to_string());
    let slug_label: String = image::name_component(&slug).chars().take(63).collect();
    // Short values only: Podman 4.3 refuses annotations longer than a
    // label's 63 characters (the steps are in the workload's command).
    let annotations = BTreeMap::from([
        (ANNOTATION_TIER.to_owned(), req.tier.name().to_owned()),
        (ANNOTATION_COMMIT.to_owned(), req.repo.sha.clone()),
    ]);
    Ok(JobPod {
        name: super::manifest::pod_name(&slug, &req.repo.sha),
        labels: BTreeMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_ROLE.to_owned(), Role::Job.label().to_owned()),
            (
                LABEL_REPOSITORY.to_owned(),
                slug_label.trim_end_matches('-').to_owned(),
            ),
        ]),
        annotations,
        image,
        command: script.command(),
        env,
        workdir: WORKSPACE.into(),
        user: req.user,
        resources: req.profile.map(|p| p.resources.clone()).unwrap_or_default(),
        services: services_out,
        checkout: CheckoutSource {
            url,
            sha: req.repo.sha.clone(),
            image: req.checkout_image.to_owned(),
            host_path,
        },
        sidecars: req.sidecars,
        notes,
    })
}
