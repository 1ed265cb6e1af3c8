//! Preparing an environment, the part a job and a workspace share: checkout
//! at the exact SHA → plan through the plugins (or the repo profile) →
//! image by content hash → a pod (holder, services waited for until ready,
//! the workload container with the checkout as its only writable mount).
//! Then steps run in it as execs, one by one, stopping at the first that
//! fails or at a service's exit.
//!
//! Failures of the repository (an unknown commit, a malformed hint file, a
//! failing build or step, a service that never gets ready) are `Failed`;
//! failures of the infrastructure (Docker unreachable, a clone that cannot
//! reach its remote) are `InfrastructureError`, which the queue retries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Role;
use super::cache::{self, CacheVolume};
use super::container::{RunnerError, SelinuxLabel, bind};
use super::exec::{StepEnd, StepExec, exec_step};
use super::gpu::{self, GpuDecision};
use super::image::{self, DockerfileSource, ImageRequest, ResolvedImage};
use super::pod::{Pod, PodSpec, WorkloadSpec};
use super::services::{self, RunningService};
use crate::checkout::{Checkout, CheckoutError, Checkouts};
use crate::job::{FindingView, ImageRecord, JobSpec, Network, Outcome, Phase, RunRecord};
use crate::logs::{JobLog, LogStream};
use crate::plan::Step;
use crate::plan::{PlanReport, plan_repository};
use crate::plugins::Registry;
use crate::plugins::bindings::OptionPair;
use crate::profile::Profile;
use crate::queue::JobStore;
use crate::runtime::Runtime;

/// Settings of the runner (from the configuration).
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// This engine's id, on every container it creates.
    pub engine_id: String,
    /// Official base-image names mapped to a mirror, applied to every `FROM`
    /// (config `base_images`).
    pub base_images: BTreeMap<String, String>,
    /// Tie-break among ecosystems detected with equal confidence
    /// (`plugins.ecosystem_order`).
    pub ecosystem_order: Vec<String>,
    /// The uid:gid steps run as; the checkout is handed to it.
    pub job_user: (u32, u32),
    /// Network for image builds (`host` where there is no bridge).
    pub build_network: String,
    /// Image of each pod's holder (a busybox with `sh` and `nc`).
    pub holder_image: String,
    /// Time a stopped step gets between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// Extra CA bundle for generated image builds and job containers.
    pub ca_bundle: Option<std::path::PathBuf>,
    /// Size past which a package-manager cache volume is removed after a
    /// job (a profile's `cache.size_mb` overrides it).
    pub cache_budget_mb: u64,
    /// Runner images this engine used are removed, least recently used
    /// first, past this total (`None`: never).
    pub image_budget_mb: Option<u64>,
    /// What Docker keeps of a job container's output (MiB).
    pub output_kept_mb: u64,
    /// Relabel bind mounts for SELinux (the daemon runs with it).
    pub selinux_relabel: bool,
}

/// What jobs and workspaces share: the engine's handles and settings.
pub struct Runner {
    /// The container engine every pod, build, exec and volume goes through.
    pub runtime: Runtime,
    /// Where jobs' and workspaces' private checkouts are made and removed.
    pub checkouts: Checkouts,
    /// The loaded plugins: ecosystems for plans, readiness for services.
    pub registry: Arc<Registry>,
    /// The engine's store; read here for repo profiles.
    pub store: Arc<dyn JobStore>,
    /// Engine-wide settings from the configuration.
    pub settings: RunnerSettings,
}

/// The steps of each phase, as planned (or as the profile says).
#[derive(Debug, Clone, Default)]
pub struct Steps {
    /// Run once, before any validation step (dependency installation, ...).
    pub setup: Vec<Step>,
    /// Validation steps of both tiers.
    pub fast: Vec<Step>,
    /// Validation steps of the `full` tier only, run after the fast ones.
    pub full: Vec<Step>,
}

/// A prepared environment: the checkout and the running pod.
pub struct Environment {
    /// The private checkout at the exact commit, owned by the job user and
    /// bind-mounted at `/workspace`.
    pub checkout: Checkout,
    /// The holder (or solo) pod the services and the workload share.
    pub pod: Pod,
    /// The workload container the steps run in (empty until started when
    /// the request did not ask for an idle one).
    pub container: String,
    /// How the workload container is (or is to be) made.
    pub workload: WorkloadSpec,
    /// The services started in the pod, all ready; empty for a solo pod.
    pub services: Vec<RunningService>,
    /// Setup and validation steps: the profile's commands, else the plan's.
    pub steps: Steps,
    /// Tag of the runner image the workload runs (`slipway-runner/…:<hash>`).
    pub image: String,
    /// `name@version@sha256` of the plugin that planned it.
    pub planned_by: String,
    /// Where steps run in the workload container: `/workspace`, the checkout.
    pub workdir: String,
    /// The `uid:gid` steps run as (the job user, never root).
    pub user: String,
    /// What a job record keeps of the preparation.
    pub record: RunRecord,
    /// The package-manager cache volumes mounted, and their budget.
    pub caches: Vec<CacheVolume>,
    /// Size in bytes past which a cache volume is removed after a job
    /// (`cache.size_mb` of the profile, else `runner.cache_budget_mb`).
    pub cache_budget_bytes: u64,
}

/// What to prepare, and for whom.
pub struct PrepareRequest<'a> {
    /// The job's (or workspace's) spec: repository, commit, profile, env,
    /// secrets, services, resources, network, GPUs.
    pub spec: &'a JobSpec,
    /// Folder name of the checkout under the checkouts directory.
    pub checkout_name: &'a str,
    /// Prefix of the pod's container names.
    pub pod_name: String,
    /// Labels on every container (managed, engine, job or workspace).
    pub labels: HashMap<String, String>,
    /// [`Role::Job`] or [`Role::Workspace`].
    pub role: Role,
    /// Start the workload idle, for steps as execs (a workspace); else it
    /// is left to the caller, who starts it with its steps as its command
    /// once the services are ready (a job, see `batch`).
    pub idle_workload: bool,
    /// Where the preparation logs (checkout, plan, image build, services);
    /// the job's secrets are registered with it for redaction.
    pub log: &'a JobLog,
    /// Stops the preparation on a cancel or timeout: an image build or the
    /// wait for services is abandoned, with [`Outcome::Cancelled`].
    pub cancel: &'a CancellationToken,
}

/// Where the phases of a preparation are reported.
pub trait Progress: Sync {
    /// Phase `step` of `steps` (1-based, e.g. `2/5 plan`) begins; `message`
    /// says what it does.
    fn phase(
        &self,
        step: u32,
        steps: u32,
        message: String,
    ) -> futures_util::future::BoxFuture<'_, ()>;
}

/// The workload's mounts and what comes with them.
struct Mounts {
    binds: Vec<String>,
    /// Variables that point tools at a mount (the CA bundle's).
    env: Vec<(String, String)>,
    caches: Vec<CacheVolume>,
    cache_budget_bytes: u64,
}

/// The steps of each phase: the profile's commands replace the plan's
/// where set.
pub fn steps_for(profile: Option<&Profile>, plan: &PlanReport) -> Steps {
    let commands = |prefix: &str, list: Vec<String>| -> Vec<Step> {
        list.into_iter()
            .enumerate()
            .map(|(i, command)| Step {
                name: format!("{prefix}-{}", i + 1),
                command,
                report: None,
            })
            .collect()
    };
    let setup = match profile.and_then(|p| p.setup.clone()) {
        Some(cmds) => commands("setup", cmds),
        None => plan.setup.clone(),
    };
    let (fast, full) = match profile.and_then(|p| p.validation.clone()) {
        Some(v) => (commands("fast", v.fast), commands("full", v.full)),
        None => (plan.validation.fast.clone(), plan.validation.full.clone()),
    };
    Steps { setup, fast, full }
}

/// What a step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRun {
    /// The step's name: the plan's, or `setup-<n>`/`fast-<n>`/`full-<n>` for a
    /// profile's commands.
    pub name: String,
    /// The shell command, run with `sh -c`.
    pub command: String,
    /// Exit code, timeout or cancel.
    pub end: StepEnd,
    /// Wall-clock time of the step, a stop's grace period included.
    pub duration: Duration,
    /// Byte range of its output in the log.
    pub log_start: u64,
    /// End of that range (exclusive): the log's size when the step ended.
    pub log_end: u64,
}

/// Why a job's profile could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The job names a profile deleted since it was submitted.
    #[error("profile `{0}` no longer exists")]
    Gone(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::queue::StoreError),
}

impl Runner {
    /// The job's profile: the one it names, else the one for its repository.
    pub async fn profile_for(&self, spec: &JobSpec) -> Result<Option<Profile>, ProfileError> {
        match &spec.profile {
            Some(name) => self
                .store
                .get_profile(name)
                .await?
                .map(Some)
                .ok_or_else(|| ProfileError::Gone(name.clone())),
            None => Ok(self
                .store
                .list_profiles()
                .await?
                .into_iter()
                .find(|p| p.repository.as_deref() == Some(spec.repository.as_str()))),
        }
    }

    /// Resolve (build on a miss) one image. A cancel (or timeout) stops a
    /// build: dropping its stream makes the daemon stop it and remove its
    /// intermediate containers.
    async fn build(
        &self,
        request: &ImageRequest<'_>,
        log: &JobLog,
        cancel: &CancellationToken,
    ) -> Result<ResolvedImage, Outcome> {
        tokio::select! {
            built = image::resolve(&self.runtime, request, log) => {
                built.map_err(|e| Outcome::Failed { reason: e.to_string() })
            }
            _ = cancel.cancelled() => {
                log.line(LogStream::Engine, "image build stopped: the attempt was asked to stop");
                Err(Outcome::Cancelled)
            }
        }
    }

    /// Prepare everything up to a running pod. On failure nothing of the
    /// pod is left; the checkout is the caller's to remove.
    pub async fn prepare(
        &self,
        req: &PrepareRequest<'_>,
        progress: &dyn Progress,
    ) -> Result<Environment, Outcome> {
        let (spec, log) = (req.spec, req.log);
        let mut record = RunRecord::default();
        let mut clock = Instant::now();
        let mut lap = |record: &mut RunRecord, phase: Phase| {
            record.timed(phase, clock.elapsed());
            clock = Instant::now();
        };
        let profile = self.profile_for(spec).await.map_err(|e| match e {
            ProfileError::Gone(_) => Outcome::Failed {
                reason: e.to_string(),
            },
            ProfileError::Store(_) => Outcome::InfrastructureError {
                reason: e.to_string(),
            },
        })?;
        // GPUs first: a job that requires them fails before anything starts.
        let gpu = self.gpus_for(spec, log, &mut record).await?;
        // Secrets next: nothing is logged before their values are known
        // (the repository's git credential is one too).
        let secrets = self.secrets_for(spec, log)?;

        progress.phase(1, 5, "checkout".into()).await;
        let checkout = self.check_out(spec, req.checkout_name, log).await?;
        record.sha = checkout.sha.clone();
        lap(&mut record, Phase::Checkout);

        progress.phase(2, 5, "plan".into()).await;
        let plan = self.plan_for(&checkout, profile.as_ref(), log).await?;
        record.plugins.push(plan.plugin.clone());
        record.plugins.extend(plan.steps_from.clone());
        record.third_party_plugins = plan.third_party.clone();
        record.plan = plan.facts();
        lap(&mut record, Phase::Plan);

        progress.phase(3, 5, "image".into()).await;
        let slug = slug_of(&spec.repository);
        let image = self
            .image_for(&slug, &plan, profile.as_ref(), &checkout, log, req.cancel)
            .await?;
        record.image = Some(ImageRecord {
            tag: image.tag.clone(),
            id: image.id.clone(),
            cache_hit: image.hit,
            build_ms: image.build_time.as_millis() as u64,
        });
        lap(&mut record, Phase::Image);

        let steps = steps_for(profile.as_ref(), &plan);
        let mut env: Vec<(String, String)> = plan
            .env
            .iter()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        env.extend(profile.iter().flat_map(|p| p.env.clone()));
        env.extend(spec.env.clone());
        env.extend(secrets);
        env.extend(gpu.env());
        let mut service_specs = spec.services.clone();
        if service_specs.is_empty()
            && let Some(p) = &profile
        {
            service_specs = p.services.clone();
        }
        let mounts = self
            .mounts_for(&checkout, &slug, &plan, profile.as_ref(), log)
            .await?;
        env.extend(mounts.env);
        let (uid, gid) = self.settings.job_user;
        let workload = WorkloadSpec {
            image: image.tag.clone(),
            env,
            workdir: Some("/workspace".into()),
            user: format!("{uid}:{gid}"),
            binds: mounts.binds,
            limits: (&spec.resources).into(),
            role: req.role,
            output_kept_mb: Some(self.settings.output_kept_mb),
            gpus: gpu.devices(),
        };

        progress
            .phase(4, 5, format!("{} service(s)", service_specs.len()))
            .await;
        let (pod, container, services) = self.start_pod(req, &workload, &service_specs).await?;
        lap(&mut record, Phase::Services);
        record.plugins.extend(
            services
                .iter()
                .filter_map(|s| s.plugin.as_ref().map(|p| p.id.clone())),
        );
        Ok(Environment {
            checkout,
            pod,
            container,
            services,
            steps,
            image: image.tag,
            planned_by: plan.plugin.clone(),
            workdir: "/workspace".into(),
            user: workload.user.clone(),
            workload,
            record,
            caches: mounts.caches,
            cache_budget_bytes: mounts.cache_budget_bytes,
        })
    }

    /// What a job asking for GPUs gets: devices, the CPU (noted in the
    /// record), or a refusal.
    async fn gpus_for(
        &self,
        spec: &JobSpec,
        log: &JobLog,
        record: &mut RunRecord,
    ) -> Result<GpuDecision, Outcome> {
        let gpu = match spec.gpus {
            None => return Ok(GpuDecision::None),
            Some(_) => {
                let offer =
                    gpu::offer(&self.runtime)
                        .await
                        .map_err(|e| Outcome::InfrastructureError {
                            reason: format!("asking the container engine about GPUs: {e}"),
                        })?;
                gpu::decide(spec.gpus, spec.gpu, &offer)
            }
        };
        match &gpu {
            GpuDecision::Refused(reason) => {
                return Err(Outcome::Failed {
                    reason: reason.clone(),
                });
            }
            GpuDecision::Fallback(reason) => {
                log.line(LogStream::Engine, reason);
                record.gpu_fallback = Some(reason.clone());
            }
            GpuDecision::Devices(n) => log.line(
                LogStream::Engine,
                &match n {
                    -1 => "gpus: every GPU of the host".to_owned(),
                    n => format!("gpus: {n}"),
                },
            ),
            GpuDecision::None => {}
        }
        Ok(gpu)
    }

    /// The job's secrets, and every secret value the log must redact (the
    /// repository's git credential included).
    fn secrets_for(&self, spec: &JobSpec, log: &JobLog) -> Result<Vec<(String, String)>, Outcome> {
        let secrets = crate::secrets::resolve(&spec.secrets).map_err(|e| Outcome::Failed {
            reason: e.to_string(),
        })?;
        let git_auth = self
            .checkouts
            .auth_for(&spec.repository)
            .map_err(|e| Outcome::Failed {
                reason: format!("checkout: {e}"),
            })?;
        log.redact(
            secrets
                .iter()
                .map(|(_, v)| v.as_str())
                .chain(git_auth.secrets.iter().map(|s| s.as_str())),
        );
        Ok(secrets)
    }

    /// The job's private copy at its exact commit, handed to the job user.
    async fn check_out(
        &self,
        spec: &JobSpec,
        checkout_name: &str,
        log: &JobLog,
    ) -> Result<Checkout, Outcome> {
        let (checkouts, source, commit, dir) = (
            self.checkouts.clone(),
            spec.repository.clone(),
            spec.commit.clone(),
            checkout_name.to_owned(),
        );
        let (uid, gid) = self.settings.job_user;
        let checkout = match tokio::task::spawn_blocking(move || {
            let c = checkouts.prepare(&source, &commit, &dir)?;
            hand_over(&c.path, uid, gid)?;
            Ok::<_, CheckoutError>(c)
        })
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e @ CheckoutError::UnknownCommit { .. }))
            | Ok(Err(e @ CheckoutError::HeadMismatch { .. }))
            | Ok(Err(e @ CheckoutError::TooLarge { .. }))
            | Ok(Err(e @ CheckoutError::Credentials { .. })) => {
                return Err(Outcome::Failed {
                    reason: e.to_string(),
                });
            }
            Ok(Err(e)) => {
                return Err(Outcome::InfrastructureError {
                    reason: format!("checkout: {e}"),
                });
            }
            Err(e) => {
                return Err(Outcome::InfrastructureError {
                    reason: format!("checkout task: {e}"),
                });
            }
        };
        log.line(
            LogStream::Engine,
            &format!(
                "checked out {} at {}",
                spec.repository,
                checkout.sha.as_deref().unwrap_or("(directory snapshot)")
            ),
        );
        Ok(checkout)
    }

    /// The repository's plan by the ecosystem plugins (the profile may
    /// name its Dockerfile).
    async fn plan_for(
        &self,
        checkout: &Checkout,
        profile: Option<&Profile>,
        log: &JobLog,
    ) -> Result<PlanReport, Outcome> {
        let mut options = Vec::new();
        if let Some(path) = profile.and_then(|p| p.dockerfile.clone()) {
            options.push(OptionPair {
                name: "dockerfile".into(),
                value: path,
            });
        }
        let (registry, order, path) = (
            self.registry.clone(),
            self.settings.ecosystem_order.clone(),
            checkout.path.clone(),
        );
        let plan = match tokio::task::spawn_blocking(move || {
            plan_repository(&registry, &order, &path, &options)
        })
        .await
        {
            Ok(Ok(plan)) => plan,
            Ok(Err(e)) if e.is_input_problem() => {
                return Err(Outcome::Failed {
                    reason: format!("plan: {e}"),
                });
            }
            Ok(Err(e)) => {
                return Err(Outcome::InfrastructureError {
                    reason: format!("plan: {e}"),
                });
            }
            Err(e) => {
                return Err(Outcome::InfrastructureError {
                    reason: format!("plan task: {e}"),
                });
            }
        };
        log.line(
            LogStream::Engine,
            &format!("plan: {} via {}", plan.ecosystem, plan.plugin),
        );
        for id in &plan.third_party {
            log.line(
                LogStream::Engine,
                &format!("uses the third-party plugin {id}"),
            );
        }
        Ok(plan)
    }

    /// The job's image (built on a miss), with the plan's dependency layer
    /// on a repository's own image unless the profile brings its own steps.
    async fn image_for(
        &self,
        slug: &str,
        plan: &PlanReport,
        profile: Option<&Profile>,
        checkout: &Checkout,
        log: &JobLog,
        cancel: &CancellationToken,
    ) -> Result<ResolvedImage, Outcome> {
        let bundle = match &self.settings.ca_bundle {
            Some(path) => Some(
                std::fs::read(path).map_err(|e| Outcome::InfrastructureError {
                    reason: format!("the configured ca_bundle {}: {e}", path.display()),
                })?,
            ),
            None => None,
        };
        let dockerfile = match (&plan.dockerfile, &plan.dockerfile_path) {
            (Some(text), _) => DockerfileSource::Generated(text.clone()),
            (None, Some(path)) => DockerfileSource::Repository(path.into()),
            (None, None) => {
                return Err(Outcome::Failed {
                    reason: "the plan names no Dockerfile".into(),
                });
            }
        };
        let request = ImageRequest {
            repo_slug: slug,
            dockerfile,
            checkout: &checkout.path,
            base_images: &self.settings.base_images,
            network: &self.settings.build_network,
            ca_bundle: bundle.as_deref(),
            build: Default::default(),
        };
        let image = self.build(&request, log, cancel).await?;
        let own_steps = profile.is_some_and(|p| p.validation.is_some());
        let image = match &plan.deps_layer {
            Some(layer) if !own_steps => {
                let from = plan.steps_from.as_deref().unwrap_or("the steps' plugin");
                let request = ImageRequest {
                    dockerfile: DockerfileSource::Generated(image::deps_layer_dockerfile(
                        &image.tag, layer,
                    )),
                    ..request.clone()
                };
                log.line(
                    LogStream::Engine,
                    &format!("dependencies layered on {} (from {from})", image.tag),
                );
                let layered = self.build(&request, log, cancel).await.map_err(|o| match o {
                    Outcome::Failed { reason } => Outcome::Failed {
                        reason: format!(
                            "{reason}; this layer installs what the steps of {from} need on the repository's own image: install them in its Dockerfile, or give the repository a profile with its own steps (then nothing is layered)"
                        ),
                    },
                    other => other,
                })?;
                if let Err(e) = self.store.touch_image(&image.tag).await {
                    tracing::warn!(image = %image.tag, error = %e, "image use not recorded");
                }
                ResolvedImage {
                    build_time: image.build_time + layered.build_time,
                    hit: image.hit && layered.hit,
                    ..layered
                }
            }
            _ => image,
        };
        if let Err(e) = self.store.touch_image(&image.tag).await {
            tracing::warn!(image = %image.tag, error = %e, "image use not recorded");
        }
        Ok(image)
    }

    /// The workload's mounts: the checkout, the package caches (created
    /// and handed to the job user on first use) and the CA bundle.
    async fn mounts_for(
        &self,
        checkout: &Checkout,
        slug: &str,
        plan: &PlanReport,
        profile: Option<&Profile>,
        log: &JobLog,
    ) -> Result<Mounts, Outcome> {
        let (private, shared) = match self.settings.selinux_relabel {
            true => (Some(SelinuxLabel::Private), Some(SelinuxLabel::Shared)),
            false => (None, None),
        };
        let mut binds = vec![bind(
            &checkout.path.display().to_string(),
            "/workspace",
            false,
            private,
        )];
        let policy = profile.map(|p| p.cache.clone()).unwrap_or_default();
        let caches = if policy.enabled {
            cache::prepare(
                &self.runtime,
                &self.settings.engine_id,
                slug,
                &plan.cache,
                self.settings.job_user,
                &self.settings.holder_image,
                shared,
            )
            .await
            .map_err(|e| Outcome::InfrastructureError {
                reason: e.to_string(),
            })?
        } else {
            Vec::new()
        };
        for c in &caches {
            log.line(
                LogStream::Engine,
                &format!("cache {} at {}", c.name, c.path),
            );
            binds.push(bind(&c.name, &c.path, false, shared));
        }
        let mut env = Vec::new();
        if let Some(path) = &self.settings.ca_bundle {
            // A host file: not relabelled (see `ca_bundle` in the docs).
            binds.push(bind(
                &path.display().to_string(),
                image::CA_BUNDLE_PATH,
                true,
                None,
            ));
            env.extend(
                image::CA_BUNDLE_VARIABLES
                    .iter()
                    .map(|v| (v.to_string(), image::CA_BUNDLE_PATH.to_owned())),
            );
        }
        Ok(Mounts {
            binds,
            env,
            caches,
            cache_budget_bytes: policy.size_mb.unwrap_or(self.settings.cache_budget_mb) << 20,
        })
    }

    /// The pod with its services ready, and an idle workload when asked
    /// for (started together). On failure nothing of the pod is left.
    async fn start_pod(
        &self,
        req: &PrepareRequest<'_>,
        workload: &WorkloadSpec,
        service_specs: &[crate::job::ServiceSpec],
    ) -> Result<(Pod, String, Vec<RunningService>), Outcome> {
        let network = match req.spec.network {
            Network::None => "none",
            Network::Bridge => "bridge",
            Network::Host => "host",
        };
        let pod_spec = PodSpec {
            name: req.pod_name.clone(),
            labels: req.labels.clone(),
            holder_image: self.settings.holder_image.clone(),
            network: network.into(),
            reach: Default::default(),
        };
        let pod = if service_specs.is_empty() {
            Pod::solo(&self.runtime, pod_spec)
        } else {
            Pod::create(&self.runtime, pod_spec)
                .await
                .map_err(|e| runner_failure("the pod", e))?
        };
        let start_idle = async {
            if req.idle_workload {
                pod.start_workload(workload).await
            } else {
                Ok(String::new())
            }
        };
        let (container, started) = tokio::join!(
            start_idle,
            services::start_and_wait(
                &self.runtime,
                &pod,
                service_specs,
                &self.registry,
                req.log,
                req.cancel
            )
        );
        let failed = match (container, started) {
            (Ok(container), Ok(Some(services))) => return Ok((pod, container, services)),
            (_, Ok(None)) => Outcome::Cancelled,
            (_, Err(e)) if e.is_infrastructure() => Outcome::InfrastructureError {
                reason: e.to_string(),
            },
            (_, Err(e)) => Outcome::Failed {
                reason: e.to_string(),
            },
            (Err(e), _) => runner_failure(&format!("the {} container", req.role.label()), e),
        };
        pod.remove().await;
        Err(failed)
    }

    /// Run `steps` in the environment's workload one by one; stop at the
    /// first that does not pass, or when a service exits (then the step is
    /// stopped and the service's exit is the error). Each step's output
    /// goes to `log`.
    pub async fn run_steps(
        &self,
        env: &Environment,
        steps: &[Step],
        log: &JobLog,
        cancel: &CancellationToken,
        bound: Duration,
        mut each: impl FnMut(&StepRun),
    ) -> Result<(), Outcome> {
        for (i, step) in steps.iter().enumerate() {
            log.line(
                LogStream::Engine,
                &format!(
                    "step {}/{} `{}`: {}",
                    i + 1,
                    steps.len(),
                    step.name,
                    step.command
                ),
            );
            let exec = StepExec {
                command: step.command.clone(),
                env: vec![],
                workdir: Some(env.workdir.clone()),
                user: env.user.clone(),
            };
            let stop = cancel.child_token();
            let log_start = log.size();
            let run = exec_step(
                &self.runtime,
                &env.container,
                &exec,
                log,
                bound,
                self.settings.stop_grace,
                &stop,
            );
            tokio::pin!(run);
            let ended = tokio::select! {
                ended = &mut run => ended,
                died = services::first_exit(&env.services) => {
                    stop.cancel();
                    let _ = run.await;
                    if let Some(why) = self.stopped_from_outside(env).await {
                        return Err(Outcome::InfrastructureError { reason: format!("during step `{}`: {why}", step.name) });
                    }
                    return Err(Outcome::Failed { reason: died.to_string() });
                }
            };
            let outcome = match ended {
                Ok(o) => o,
                Err(e) => {
                    if let Some(why) = self.stopped_from_outside(env).await {
                        return Err(Outcome::InfrastructureError {
                            reason: format!("step `{}`: {why}", step.name),
                        });
                    }
                    return Err(runner_failure("a step", e));
                }
            };
            each(&StepRun {
                name: step.name.clone(),
                command: step.command.clone(),
                end: outcome.end,
                duration: outcome.duration,
                log_start,
                log_end: log.size(),
            });
            match outcome.end {
                StepEnd::Exited(0) => log.line(
                    LogStream::Engine,
                    &format!(
                        "step `{}` passed in {:.2} s",
                        step.name,
                        outcome.duration.as_secs_f64()
                    ),
                ),
                StepEnd::Exited(code) => {
                    // A step killed with its container (a daemon restart, a
                    // `docker stop`) is not the job's failure.
                    if let Some(why) = self.stopped_from_outside(env).await {
                        return Err(Outcome::InfrastructureError {
                            reason: format!("step `{}` ended with {code}: {why}", step.name),
                        });
                    }
                    return Err(Outcome::Failed {
                        reason: format!("step `{}` exited with {code}", step.name),
                    });
                }
                StepEnd::TimedOut => return Err(Outcome::TimedOut),
                StepEnd::Cancelled => return Err(Outcome::Cancelled),
            }
        }
        Ok(())
    }

    /// Why the workload container is no longer running, if it is not: it
    /// idles until the pod is removed, so only something outside the job
    /// (the daemon restarting, `docker stop`) ends it.
    async fn stopped_from_outside(&self, env: &Environment) -> Option<String> {
        match self.runtime.inspect_container(&env.container).await {
            Ok(c) if c.running => None,
            Ok(c) => Some(format!(
                "the job's container was stopped from outside (exit code {}; the Docker daemon restarted, or it was stopped or killed)",
                c.exit_code.unwrap_or(-1)
            )),
            Err(e) => Some(format!("the Docker daemon does not answer ({e})")),
        }
    }
}

/// The step's stdout alone, and stdout and stderr as they came, from the
/// log lines in bytes `from..to` (`<ms> <stream> <text>`).
pub fn step_output(log: &std::path::Path, from: u64, to: u64) -> (String, String) {
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = Vec::new();
    if let Ok(mut f) = std::fs::File::open(log)
        && f.seek(SeekFrom::Start(from)).is_ok()
    {
        let _ = f.take(to.saturating_sub(from)).read_to_end(&mut bytes);
    }
    let text = String::from_utf8_lossy(&bytes);
    let (mut stdout, mut all) = (String::new(), String::new());
    for line in text.lines() {
        let mut parts = line.splitn(3, ' ');
        let (_, stream, rest) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
        match stream {
            Some("stdout") => {
                stdout.push_str(rest);
                stdout.push('\n');
                all.push_str(rest);
                all.push('\n');
            }
            Some("stderr") => {
                all.push_str(rest);
                all.push('\n');
            }
            _ => {}
        }
    }
    (stdout, all)
}

/// Largest report file read for findings.
const REPORT_CAP: u64 = 8 << 20;

impl Runner {
    /// Findings of a step's report (a file in the checkout, or its stdout)
    /// through the validator plugin that reads its format.
    pub async fn findings(
        &self,
        checkout: &std::path::Path,
        report: &crate::plan::StepReport,
        stdout: &str,
    ) -> Result<Vec<FindingView>, String> {
        let text = match &report.path {
            None => stdout.to_owned(),
            Some(p) => {
                if p.starts_with('/') || p.split('/').any(|c| c == "..") {
                    return Err(format!("the report path `{p}` leaves the checkout"));
                }
                let file = checkout.join(p);
                let resolved = file
                    .canonicalize()
                    .map_err(|_| format!("the step wrote no report at `{p}`"))?;
                if !resolved.starts_with(checkout.canonicalize().map_err(|e| e.to_string())?) {
                    return Err(format!(
                        "the report `{p}` leaves the checkout through a symlink"
                    ));
                }
                let meta = std::fs::metadata(&resolved).map_err(|e| e.to_string())?;
                if meta.len() > REPORT_CAP {
                    return Err(format!(
                        "the report `{p}` is larger than {} MiB",
                        REPORT_CAP >> 20
                    ));
                }
                std::fs::read_to_string(&resolved).map_err(|e| format!("reading `{p}`: {e}"))?
            }
        };
        let registry = self.registry.clone();
        let format = report.format.clone();
        tokio::task::spawn_blocking(move || {
            let sandbox = registry.sandbox();
            let Some(candidate) = registry.validator_for(&format) else {
                return Err(format!("no validator plugin reads `{format}` reports"));
            };
            let plugin = candidate
                .prepare(sandbox)
                .map_err(|e| format!("the `{format}` reader {}: {e}", candidate.name))?;
            sandbox
                .parse_report(&plugin, &format, &text)
                .map(|list| list.into_iter().map(finding_view).collect())
                .map_err(|e| format!("the `{format}` report could not be read: {e}"))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

fn finding_view(f: crate::plugins::bindings::Finding) -> FindingView {
    use crate::plugins::bindings::Severity;
    FindingView {
        file: f.file,
        line: f.line,
        column: f.column,
        severity: match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
        .into(),
        rule: f.rule,
        message: f.message,
    }
}

/// A runner error as an outcome: the job's fault (an image that is missing
/// or has no shell) fails it; the engine's is retried.
pub fn runner_failure(what: &str, e: RunnerError) -> Outcome {
    match e {
        RunnerError::Engine { .. } => Outcome::InfrastructureError {
            reason: format!("{what}: {e}"),
        },
        _ => Outcome::Failed {
            reason: format!("{what}: {e}"),
        },
    }
}

/// `owner-name` of a repository URL or path, for image names: its last
/// two components, `-`-joined (`examples-services-app`).
pub fn slug_of(repository: &str) -> String {
    let parts: Vec<&str> = repository
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .rsplit(['/', ':'])
        .filter(|s| !s.is_empty())
        .take(2)
        .collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("-")
}

/// Give the checkout to the uid:gid steps run as, so they can write in it
/// and the engine can always clean it.
pub fn hand_over(path: &std::path::Path, uid: u32, gid: u32) -> Result<(), CheckoutError> {
    fn walk(p: &std::path::Path, uid: u32, gid: u32) -> std::io::Result<()> {
        // A file that vanishes meanwhile (git's temporary files) is fine.
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        match std::os::unix::fs::lchown(p, Some(uid), Some(gid)) {
            Err(e) if gone(&e) => return Ok(()),
            other => other?,
        }
        let is_dir = match p.symlink_metadata() {
            Err(e) if gone(&e) => return Ok(()),
            other => other?.is_dir(),
        };
        if is_dir {
            let entries = match std::fs::read_dir(p) {
                Err(e) if gone(&e) => return Ok(()),
                other => other?,
            };
            for entry in entries {
                walk(&entry?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    walk(path, uid, gid).map_err(|e| CheckoutError::Io {
        path: path.display().to_string(),
        message: format!("cannot hand the checkout to {uid}:{gid}: {e}"),
    })
}

/// The job uid:gid (1000:1000, the user of every generated image).
pub const JOB_USER: (u32, u32) = (1000, 1000);

/// The engine cannot give checkouts to the job user: a deployment problem,
/// found at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the engine runs as uid {engine_uid} and cannot hand checkouts to the job user {}:{} in {dir} ({reason}); \
     fix: run it as root or as uid {} (the engine image's `slipway` user is uid {}; \
     with systemd: `useradd --system --uid {} ...` or `User=root`)",
    job_user.0, job_user.1, job_user.0, job_user.0, job_user.0
)]
pub struct HandOverError {
    /// The engine's effective uid (`?` when it could not be read).
    pub engine_uid: String,
    /// The uid:gid checkouts must be handed to ([`JOB_USER`]).
    pub job_user: (u32, u32),
    /// The state directory the hand-over was tried in.
    pub dir: String,
    /// Why the probe failed, typically that changing its owner was not permitted.
    pub reason: String,
}

/// Whether this process can give a checkout to the job user and remove it
/// afterwards, as every job needs: true for root, and for an engine that
/// runs as the job user itself. Checked at start (and by `doctor`), so a
/// wrong deployment fails there with the fix, never in its first job.
pub fn check_can_hand_over(state_dir: &std::path::Path) -> Result<(), HandOverError> {
    let (uid, gid) = JOB_USER;
    let probe = state_dir.join(format!(".hand-over-check-{}", std::process::id()));
    let result = (|| -> Result<(), String> {
        std::fs::create_dir_all(probe.join("dir")).map_err(|e| e.to_string())?;
        std::fs::write(probe.join("dir/file"), b"x").map_err(|e| e.to_string())?;
        hand_over(&probe, uid, gid).map_err(|e| e.to_string())?;
        std::fs::remove_dir_all(&probe).map_err(|e| e.to_string())
    })();
    if let Err(e) = result {
        use std::os::unix::fs::MetadataExt as _;
        // The probe's owner is this process's effective uid.
        let me = std::fs::symlink_metadata(&probe)
            .map(|m| m.uid().to_string())
            .unwrap_or_else(|_| "?".into());
        let _ = std::fs::remove_dir_all(&probe);
        return Err(HandOverError {
            engine_uid: me,
            job_user: (uid, gid),
            dir: state_dir.display().to_string(),
            reason: e,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs() {
        assert_eq!(
            super::slug_of("https://github.com/acme/web-app.git"),
            "acme-web-app"
        );
        assert_eq!(super::slug_of("git@github.com:acme/api"), "acme-api");
        assert_eq!(super::slug_of("/srv/repos/tool/"), "repos-tool");
    }
}
