//! The Docker runner as the scheduler's [`Executor`]: checkout at the exact
//! SHA → plan through the plugins (or the repo profile) → image by content
//! hash → a pod (holder, services waited for until ready, the job
//! container with the checkout as its only writable mount) → setup and
//! validation steps as execs in the job container → outcome. The pod and
//! the checkout are removed at the end, whatever happened.
//!
//! Failures of the repository (an unknown commit, a malformed hint file, a
//! failing build or step) are `Failed` and not retried; failures of the
//! infrastructure (Docker unreachable, a clone that cannot reach its remote)
//! are `InfrastructureError` and retried by the queue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;

use super::container::{ContainerLimits, RunnerError};
use super::exec::{StepEnd, StepExec, exec_step};
use super::image::{self, DockerfileSource, ImageRequest};
use super::pod::{Pod, PodSpec, WorkloadSpec};
use super::services;
use super::{LABEL_ENGINE, LABEL_JOB, LABEL_MANAGED};
use crate::checkout::{CheckoutError, Checkouts};
use crate::executor::{Attempt, ExecFuture, Executor};
use crate::job::{JobRecord, Network, Outcome, ServiceSpec, Tier};
use crate::plan::plan_repository;
use crate::plugins::Registry;
use crate::plugins::bindings::OptionPair;
use crate::profile::Profile;
use crate::queue::JobStore;

/// Settings of the runner (from the configuration).
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// This engine's id, on every container it creates.
    pub engine_id: String,
    pub base_images: BTreeMap<String, String>,
    pub ecosystem_order: Vec<String>,
    /// The uid:gid steps run as; the checkout is handed to it.
    pub job_user: (u32, u32),
    /// Network for image builds (`host` where there is no bridge).
    pub build_network: String,
    /// Image of each pod's holder (a busybox with `sh` and `nc`).
    pub holder_image: String,
    pub stop_grace: Duration,
}

/// Cheap to clone: the state is shared.
#[derive(Clone)]
pub struct DockerExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    docker: Docker,
    checkouts: Checkouts,
    registry: Arc<Registry>,
    store: Arc<dyn JobStore>,
    settings: RunnerSettings,
}

/// A step to run: its name and shell command.
struct Command {
    name: String,
    command: String,
}

impl DockerExecutor {
    pub fn new(
        docker: Docker,
        checkouts: Checkouts,
        registry: Arc<Registry>,
        store: Arc<dyn JobStore>,
        settings: RunnerSettings,
    ) -> DockerExecutor {
        DockerExecutor {
            inner: Arc::new(Inner {
                docker,
                checkouts,
                registry,
                store,
                settings,
            }),
        }
    }
}

impl Inner {
    /// The job's profile: the one it names, else the one for its repository.
    fn profile(&self, job: &JobRecord) -> Result<Option<Profile>, String> {
        match &job.spec.profile {
            Some(name) => self
                .store
                .get_profile(name)
                .map_err(|e| e.to_string())?
                .map(Some)
                .ok_or_else(|| format!("profile `{name}` no longer exists")),
            None => Ok(self
                .store
                .list_profiles()
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|p| p.repository.as_deref() == Some(job.spec.repository.as_str()))),
        }
    }

    async fn run(self: Arc<Self>, attempt: Attempt) -> Outcome {
        let name = format!("job-{}", attempt.job.id);
        let outcome = self.clone().run_in_checkout(&attempt, &name).await;
        let checkouts = self.checkouts.clone();
        let cleanup = tokio::task::spawn_blocking(move || checkouts.remove(&name)).await;
        if let Ok(Err(e)) = cleanup {
            attempt
                .log
                .line("slipway", &format!("could not remove the checkout: {e}"));
        }
        outcome
    }

    async fn run_in_checkout(self: Arc<Self>, attempt: &Attempt, name: &str) -> Outcome {
        let job = &attempt.job;
        let log = &attempt.log;
        let profile = match self.profile(job) {
            Ok(p) => p,
            Err(reason) => return Outcome::Failed { reason },
        };

        attempt.report(1, 5, "checkout").await;
        let (checkouts, source, commit, dir) = (
            self.checkouts.clone(),
            job.spec.repository.clone(),
            job.spec.commit.clone(),
            name.to_owned(),
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
            | Ok(Err(e @ CheckoutError::HeadMismatch { .. })) => {
                return Outcome::Failed {
                    reason: e.to_string(),
                };
            }
            Ok(Err(e)) => {
                return Outcome::InfrastructureError {
                    reason: format!("checkout: {e}"),
                };
            }
            Err(e) => {
                return Outcome::InfrastructureError {
                    reason: format!("checkout task: {e}"),
                };
            }
        };
        log.line(
            "slipway",
            &format!(
                "checked out {} at {}",
                job.spec.repository,
                checkout.sha.as_deref().unwrap_or("(directory snapshot)")
            ),
        );

        attempt.report(2, 5, "plan").await;
        let mut options = Vec::new();
        if let Some(path) = profile.as_ref().and_then(|p| p.dockerfile.clone()) {
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
                return Outcome::Failed {
                    reason: format!("plan: {e}"),
                };
            }
            Ok(Err(e)) => {
                return Outcome::InfrastructureError {
                    reason: format!("plan: {e}"),
                };
            }
            Err(e) => {
                return Outcome::InfrastructureError {
                    reason: format!("plan task: {e}"),
                };
            }
        };
        log.line(
            "slipway",
            &format!("plan: {} via {}", plan.ecosystem, plan.plugin),
        );

        attempt.report(3, 5, "image").await;
        let dockerfile = match (&plan.dockerfile, &plan.dockerfile_path) {
            (Some(text), _) => DockerfileSource::Generated(text.clone()),
            (None, Some(path)) => DockerfileSource::Repository(path.into()),
            (None, None) => {
                return Outcome::Failed {
                    reason: "the plan names no Dockerfile".into(),
                };
            }
        };
        let slug = slug_of(&job.spec.repository);
        let request = ImageRequest {
            repo_slug: &slug,
            dockerfile,
            checkout: &checkout.path,
            base_images: &self.settings.base_images,
            network: &self.settings.build_network,
        };
        let image = match image::resolve(&self.docker, &request, log).await {
            Ok(image) => image,
            Err(e) => {
                return Outcome::Failed {
                    reason: e.to_string(),
                };
            }
        };

        // Steps: the profile's commands replace the plan's where set.
        let setup: Vec<Command> = match profile.as_ref().and_then(|p| p.setup.clone()) {
            Some(cmds) => cmds
                .into_iter()
                .enumerate()
                .map(|(i, c)| Command {
                    name: format!("setup-{}", i + 1),
                    command: c,
                })
                .collect(),
            None => plan
                .setup
                .iter()
                .map(|s| Command {
                    name: s.name.clone(),
                    command: s.command.clone(),
                })
                .collect(),
        };
        let (fast, full): (Vec<Command>, Vec<Command>) =
            match profile.as_ref().and_then(|p| p.validation.clone()) {
                Some(v) => (
                    v.fast
                        .into_iter()
                        .enumerate()
                        .map(|(i, c)| Command {
                            name: format!("fast-{}", i + 1),
                            command: c,
                        })
                        .collect(),
                    v.full
                        .into_iter()
                        .enumerate()
                        .map(|(i, c)| Command {
                            name: format!("full-{}", i + 1),
                            command: c,
                        })
                        .collect(),
                ),
                None => (
                    plan.validation
                        .fast
                        .iter()
                        .map(|s| Command {
                            name: s.name.clone(),
                            command: s.command.clone(),
                        })
                        .collect(),
                    plan.validation
                        .full
                        .iter()
                        .map(|s| Command {
                            name: s.name.clone(),
                            command: s.command.clone(),
                        })
                        .collect(),
                ),
            };
        let mut steps = setup;
        steps.extend(fast);
        if job.spec.tier == Tier::Full {
            steps.extend(full);
        }

        let mut env: Vec<(String, String)> = plan
            .env
            .iter()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        env.extend(profile.iter().flat_map(|p| p.env.clone()));
        env.extend(job.spec.env.clone());
        let mut services = job.spec.services.clone();
        if services.is_empty()
            && let Some(p) = &profile
        {
            services = p.services.clone();
        }
        let network = match job.spec.network {
            Network::None => "none",
            Network::Bridge => "bridge",
            Network::Host => "host",
        };
        let pod_spec = PodSpec {
            name: format!(
                "slipway-{}-job{}-a{}",
                self.settings.engine_id, job.id, attempt.fence
            ),
            labels: [
                (LABEL_MANAGED.to_owned(), "true".to_owned()),
                (LABEL_JOB.to_owned(), job.id.to_string()),
                (LABEL_ENGINE.to_owned(), self.settings.engine_id.clone()),
            ]
            .into(),
            holder_image: self.settings.holder_image.clone(),
            network: network.into(),
        };
        let workload = WorkloadSpec {
            image: image.tag.clone(),
            env,
            workdir: Some("/workspace".into()),
            user: format!("{uid}:{gid}"),
            binds: vec![format!("{}:/workspace", checkout.path.display())],
            limits: ContainerLimits {
                memory_mb: job.spec.resources.memory_mb,
                pids: job.spec.resources.pids,
                cpus: job.spec.resources.cpus,
            },
            role: "job",
        };
        attempt
            .report(4, 5, format!("{} service(s)", services.len()))
            .await;
        let pod = match Pod::create(&self.docker, pod_spec).await {
            Ok(pod) => pod,
            Err(e) => return runner_failure("the job's pod", e),
        };
        let outcome = self
            .run_in_pod(attempt, &pod, &workload, &services, &steps)
            .await;
        pod.remove().await;
        outcome
    }

    /// Start the workload and the services together, wait until every
    /// service is ready, then run the steps in the workload, one by one,
    /// stopping at the first that fails or at a service's exit.
    async fn run_in_pod(
        &self,
        attempt: &Attempt,
        pod: &Pod,
        workload: &WorkloadSpec,
        services: &[ServiceSpec],
        steps: &[Command],
    ) -> Outcome {
        let log = &attempt.log;
        let (container, services) = tokio::join!(
            pod.start_workload(workload),
            services::start_and_wait(
                &self.docker,
                pod,
                services,
                &self.registry,
                log,
                &attempt.cancel
            )
        );
        let services = match services {
            Ok(Some(services)) => services,
            Ok(None) => return Outcome::Cancelled,
            Err(e) if e.is_infrastructure() => {
                return Outcome::InfrastructureError {
                    reason: e.to_string(),
                };
            }
            Err(e) => {
                return Outcome::Failed {
                    reason: e.to_string(),
                };
            }
        };
        let container = match container {
            Ok(id) => id,
            Err(e) => return runner_failure("the job container", e),
        };

        attempt.report(5, 5, format!("{} steps", steps.len())).await;
        for (i, step) in steps.iter().enumerate() {
            log.line(
                "slipway",
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
                workdir: workload.workdir.clone(),
                user: workload.user.clone(),
            };
            // The job's own timeout arrives as a cancel from the scheduler;
            // this bound only guards against a lost cancel.
            let bound = Duration::from_secs(attempt.job.spec.timeout_s.unwrap_or(6 * 3600) + 60);
            let stop = attempt.cancel.child_token();
            let run = exec_step(
                &self.docker,
                &container,
                &exec,
                log,
                bound,
                self.settings.stop_grace,
                &stop,
            );
            tokio::pin!(run);
            let ended = tokio::select! {
                ended = &mut run => ended,
                died = services::first_exit(&services) => {
                    stop.cancel();
                    let _ = run.await;
                    return Outcome::Failed { reason: died.to_string() };
                }
            };
            match ended {
                Ok(o) if o.end == StepEnd::Exited(0) => {
                    log.line(
                        "slipway",
                        &format!(
                            "step `{}` passed in {:.2} s",
                            step.name,
                            o.duration.as_secs_f64()
                        ),
                    );
                }
                Ok(o) => match o.end {
                    StepEnd::Exited(code) => {
                        return Outcome::Failed {
                            reason: format!("step `{}` exited with {code}", step.name),
                        };
                    }
                    StepEnd::TimedOut => return Outcome::TimedOut,
                    StepEnd::Cancelled => return Outcome::Cancelled,
                },
                Err(e) => return runner_failure("a step", e),
            }
        }
        Outcome::Succeeded
    }
}

/// A runner error as an outcome: the job's fault (an image that is missing
/// or has no shell) fails it; the engine's is retried.
fn runner_failure(what: &str, e: RunnerError) -> Outcome {
    match e {
        RunnerError::Engine { .. } => Outcome::InfrastructureError {
            reason: format!("{what}: {e}"),
        },
        _ => Outcome::Failed {
            reason: format!("{what}: {e}"),
        },
    }
}

impl Executor for DockerExecutor {
    fn execute(&self, attempt: Attempt) -> ExecFuture {
        Box::pin(self.inner.clone().run(attempt))
    }
}

/// `owner/name` of a repository URL or path, for image names.
fn slug_of(repository: &str) -> String {
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
fn hand_over(path: &std::path::Path, uid: u32, gid: u32) -> Result<(), CheckoutError> {
    fn walk(p: &std::path::Path, uid: u32, gid: u32) -> std::io::Result<()> {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
        if p.symlink_metadata()?.is_dir() {
            for entry in std::fs::read_dir(p)? {
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
