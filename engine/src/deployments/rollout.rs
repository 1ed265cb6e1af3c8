//! One rollout: gate, prepare, start the new release beside the old one
//! (or in its place where a published port or a named volume cannot be
//! shared), wait for health, then retire the old release or bring it back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::announce::{self, Event};
use super::record::{
    Deployment, HealthState, Release, ReleasedService, Rollout, RolloutResult, SyncState,
};
use super::secrets::SecretMarkers;
use super::{Deployments, release};
use crate::compose;
use crate::job::{JobSpec, JobState, Trigger, TriggerKind, now_ms};
use crate::logs::{JobLog, LogStream};
use crate::runner::image::{self, DockerfileSource, ImageRequest};
use crate::runner::{LABEL_ENGINE, LABEL_MANAGED};
use crate::service::ManagedService;
use crate::supervisor::ServiceState;

/// What a rollout deploys.
pub(super) enum Target {
    /// This commit of the branch.
    Commit(String),
    /// The branch's head, read now.
    Head,
    /// A release that ran before (`rollback`).
    Release(Release),
}

/// How long a stopped service's containers may take to go.
const STOP_WAIT: Duration = Duration::from_secs(60);
/// How often a rollout looks at its services.
const POLL: Duration = Duration::from_millis(250);

impl Deployments {
    /// Roll `target` out on deployment `name`; the outcome is in its record
    /// and history. `Err` only when the store fails.
    pub(super) async fn roll_out(
        self: &Arc<Self>,
        name: &str,
        target: Target,
        cause: &str,
    ) -> Result<(), super::DeploymentError> {
        let started = (Instant::now(), now_ms());
        let mut d = self.get(name).await?;
        let log = JobLog::at(self.logs_dir.join(format!("{name}.log")));
        let commit = match &target {
            Target::Commit(c) => c.clone(),
            Target::Release(r) => r.commit.clone(),
            Target::Head => match self.head_of(&d).await {
                Ok(c) => c,
                Err(reason) => {
                    d.reason = Some(format!("cannot read the branch's head: {reason}"));
                    self.store.put_deployment(d).await?;
                    return Ok(());
                }
            },
        };
        d.sync = SyncState::Deploying;
        d.wanted = Some(commit.clone());
        d.reason = None;
        let owed = announce::messages(&d, Event::Deploying, &commit, started.1, None, now_ms());
        self.store
            .put_deployment_announcing(d.clone(), owed)
            .await?;
        log.line(
            LogStream::Engine,
            &format!("rollout of {} ({cause})", short(&commit)),
        );

        let mut rollout = Rollout {
            commit: commit.clone(),
            cause: cause.to_owned(),
            gate_job: None,
            result: RolloutResult::Failed,
            reason: None,
            started_ms: started.1,
            duration_ms: 0,
        };
        let new = match target {
            Target::Release(r) => Ok(r.services),
            _ => self.prepare(&d, &commit, &log, &mut rollout).await,
        };
        let outcome = match new {
            Ok(services) => self.switch(&d, &commit, services, &log).await,
            Err(reason) => Err(reason),
        };
        let mut d = self.get(name).await?;
        match outcome {
            Ok(release) => {
                rollout.result = RolloutResult::Deployed;
                let replaced = d.running.take();
                // A rollback pins the release it left: that commit (the
                // branch's head, as a rule) is not rolled out again until
                // the branch moves or a user asks (`up`).
                d.failed_commit = match cause {
                    "rollback" => replaced.as_ref().map(|r| r.commit.clone()),
                    _ => None,
                };
                match replaced {
                    Some(r) if r.commit != release.commit => d.previous = Some(r),
                    _ => {} // the same commit again (`up`): what ran before stays
                }
                d.running = Some(release);
                d.sync = SyncState::Synced;
                d.health = HealthState::Healthy;
                d.reason = None;
                log.line(
                    LogStream::Engine,
                    &format!("{} is deployed and healthy", short(&commit)),
                );
            }
            Err(Failure { result, reason }) => {
                rollout.result = result;
                rollout.reason = Some(reason.clone());
                d.sync = SyncState::Failed;
                d.failed_commit = Some(commit.clone());
                d.reason = Some(match (result, d.running_commit()) {
                    (RolloutResult::RolledBack, Some(old)) => {
                        format!("{} rolled back to {}: {reason}", short(&commit), short(old))
                    }
                    _ => format!("{} not deployed: {reason}", short(&commit)),
                });
                log.line(LogStream::Engine, d.reason.as_deref().unwrap_or_default());
            }
        }
        rollout.duration_ms = started.0.elapsed().as_millis() as u64;
        let owed = announce::messages(
            &d,
            Event::Ended(rollout.result),
            &commit,
            started.1,
            rollout.reason.as_deref(),
            now_ms(),
        );
        *self
            .rollouts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(rollout.result.name())
            .or_default() += 1;
        d.remember(rollout);
        let keep: Vec<String> = [&d.running, &d.previous]
            .into_iter()
            .flatten()
            .map(|r| r.commit.clone())
            .collect();
        self.store.put_deployment_announcing(d, owed).await?;
        // Only while no rollout of it runs: a rollout's own checkout is
        // not in `keep` until it is recorded.
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        self.prune_checkouts(name, &keep);
        Ok(())
    }

    /// Gate, Compose file, images: the new release's services, or why not.
    async fn prepare(
        &self,
        d: &Deployment,
        commit: &str,
        log: &JobLog,
        rollout: &mut Rollout,
    ) -> Result<Vec<ReleasedService>, Failure> {
        let name = &d.spec.name;
        if let Some(tier) = d.spec.gate {
            let (job, state) = self.gate(d, commit, tier).await.map_err(Failure::prepare)?;
            rollout.gate_job = Some(job);
            if state != JobState::Succeeded {
                return Err(Failure {
                    result: RolloutResult::GateFailed,
                    reason: format!(
                        "its gate job {job} ({} tier) ended {}",
                        tier.name(),
                        state.name()
                    ),
                });
            }
            log.line(LogStream::Engine, &format!("gate job {job} succeeded"));
        }
        let checkouts = self.runner.checkouts.clone();
        let (repository, sha, dir) = (
            d.spec.repository.clone(),
            commit.to_owned(),
            format!("deploy-{name}-{}", &commit[..commit.len().min(12)]),
        );
        let checkout = tokio::task::spawn_blocking(move || match checkouts.existing(&dir) {
            Some(path) => Ok(path),
            None => checkouts.prepare(&repository, &sha, &dir).map(|c| c.path),
        })
        .await
        .map_err(|e| Failure::prepare(e.to_string()))?
        .map_err(|e| Failure::prepare(format!("checkout: {e}")))?;
        let file = compose::find_file(&checkout, d.spec.file.as_deref())
            .map_err(|e| Failure::prepare(e.to_string()))?;
        let markers = SecretMarkers::new(&d.spec.secrets);
        let mut stack = compose::load(&checkout, &file, &markers.vars(&d.spec.env))
            .map_err(|e| Failure::prepare(e.to_string()))?;
        let secrets = markers
            .extract(&mut stack)
            .map_err(|e| Failure::prepare(format!("{file}: {e}")))?;
        let mut images = BTreeMap::new();
        for s in &stack.services {
            let Some(build) = &s.build else { continue };
            let context = checkout.join(&build.context);
            let request = ImageRequest {
                repo_slug: &format!("deploy-{name}-{}", s.name),
                dockerfile: DockerfileSource::Repository(
                    build
                        .dockerfile
                        .clone()
                        .unwrap_or_else(|| "Dockerfile".into())
                        .into(),
                ),
                checkout: &context,
                base_images: &self.runner.settings.base_images,
                network: &self.runner.settings.build_network,
                ca_bundle: None,
                build: image::BuildOptions {
                    args: build.args.clone(),
                    target: build.target.clone(),
                },
            };
            let built = image::resolve(&self.runner.runtime, &request, log)
                .await
                .map_err(|e| Failure::prepare(format!("service `{}`: {e}", s.name)))?;
            images.insert(s.name.clone(), built.tag);
        }
        let engine = self.runner.settings.engine_id.as_str();
        let labels = HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (
                LABEL_ENGINE.to_owned(),
                self.runner.settings.engine_id.clone(),
            ),
            (crate::runner::LABEL_DEPLOYMENT.to_owned(), name.clone()),
        ]);
        self.runner
            .runtime
            .create_network(&release::network_name(engine, name), labels.clone())
            .await
            .map_err(|e| Failure::prepare(format!("the deployment's network: {e}")))?;
        for volume in &stack.volumes {
            self.runner
                .runtime
                .create_volume(&release::volume_name(engine, name, volume), labels.clone())
                .await
                .map_err(|e| Failure::prepare(format!("volume `{volume}`: {e}")))?;
        }
        release::services(engine, name, commit, &stack, &images, &secrets).map_err(Failure::prepare)
    }

    /// Submit the gate job and wait for its end.
    async fn gate(
        &self,
        d: &Deployment,
        commit: &str,
        tier: crate::job::Tier,
    ) -> Result<(crate::job::JobId, JobState), String> {
        let mut job: JobSpec = serde_json::from_value(serde_json::json!({
            "repository": d.spec.repository, "commit": commit, "tier": tier,
            "profile": d.spec.gate_profile,
        }))
        .map_err(|e| e.to_string())?;
        job.idempotency_key = Some(format!(
            "deployment/{}/{commit}/{}",
            d.spec.name,
            tier.name()
        ));
        job.labels
            .insert(crate::runner::LABEL_DEPLOYMENT.into(), d.spec.name.clone());
        job.trigger = Some(Trigger {
            kind: TriggerKind::Deployment,
            watch: None,
            delivery: None,
        });
        let submitted = self.store.submit(job).await.map_err(|e| e.to_string())?;
        self.scheduler.wake();
        let id = submitted.record.id;
        loop {
            match self.store.get(id).await.map_err(|e| e.to_string())? {
                Some(r) if r.state.is_final() => return Ok((id, r.state)),
                Some(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                None => return Err(format!("gate job {id} disappeared")),
            }
        }
    }

    /// Start `new` and retire the running release, or bring it back.
    async fn switch(
        &self,
        d: &Deployment,
        commit: &str,
        new: Vec<ReleasedService>,
        log: &JobLog,
    ) -> Result<Release, Failure> {
        let old: Vec<ReleasedService> = d.running.iter().flat_map(|r| r.services.clone()).collect();
        // What runs is what is declared now (after `down`, nothing is).
        let declared: Vec<String> = self
            .store
            .list_services()
            .await
            .map_err(|e| Failure::prepare(e.to_string()))?
            .into_iter()
            .map(|s| s.spec.name)
            .collect();
        let running = |name: &str| declared.iter().any(|n| n == name);
        // Services that left the Compose file keep running unless `prune`.
        let left: Vec<ReleasedService> = old
            .iter()
            .filter(|o| !new.iter().any(|n| n.name == o.name))
            .cloned()
            .collect();
        // An old version that holds a host port or a named volume the new
        // one needs is stopped first; the others run side by side.
        let mut stopped = Vec::new();
        for n in new.iter().filter(|n| !running(&n.spec.name)) {
            if let Some(o) = old
                .iter()
                .find(|o| o.name == n.name && o.spec.name != n.spec.name)
                && exclusive(o)
            {
                log.line(LogStream::Engine, &format!("service `{}`: stopping the old version first (it holds a published port or a named volume)", n.name));
                self.remove(&o.spec.name).await.map_err(Failure::prepare)?;
                stopped.push(o.clone());
            }
        }
        let added: Vec<&ReleasedService> = new.iter().filter(|n| !running(&n.spec.name)).collect();
        let deadline = Instant::now() + Duration::from_secs(d.spec.health_timeout_s);
        let started = self.start_in_order(&new, &added, deadline, log).await;
        let healthy = match started {
            Ok(()) => self.wait_ready(&new, deadline).await,
            Err(e) => Err(e),
        };
        match healthy {
            Ok(()) => {
                for o in old
                    .iter()
                    .filter(|o| !new.iter().any(|n| n.spec.name == o.spec.name))
                {
                    if left.iter().any(|l| l.spec.name == o.spec.name) && !d.spec.prune {
                        continue;
                    }
                    let _ = self.remove(&o.spec.name).await;
                }
                let mut services = new;
                if !d.spec.prune {
                    services.extend(left);
                }
                Ok(Release {
                    commit: commit.to_owned(),
                    services,
                    at_ms: now_ms(),
                })
            }
            Err(reason) => {
                log.line(
                    LogStream::Engine,
                    &format!("not healthy: {reason}; bringing the running release back"),
                );
                for n in &added {
                    let _ = self.remove(&n.spec.name).await;
                }
                for o in &stopped {
                    let _ = self.declare(o).await;
                }
                if !stopped.is_empty() {
                    let back = Instant::now() + Duration::from_secs(d.spec.health_timeout_s);
                    if let Err(e) = self.wait_ready(&stopped, back).await {
                        log.line(
                            LogStream::Engine,
                            &format!("the old release is not healthy again either: {e}"),
                        );
                    }
                }
                Err(Failure {
                    result: if d.running.is_some() {
                        RolloutResult::RolledBack
                    } else {
                        RolloutResult::Failed
                    },
                    reason,
                })
            }
        }
    }

    /// Declare `added` in start order; a service waits for the services it
    /// depends on to be ready (Compose's `service_healthy`; `service_started`
    /// is met once declared, as order already gives).
    async fn start_in_order(
        &self,
        all: &[ReleasedService],
        added: &[&ReleasedService],
        deadline: Instant,
        log: &JobLog,
    ) -> Result<(), String> {
        for s in added {
            let needs: Vec<ReleasedService> = s
                .healthy_deps
                .iter()
                .filter_map(|dep| all.iter().find(|a| &a.name == dep).cloned())
                .collect();
            if !needs.is_empty() {
                self.wait_ready(&needs, deadline).await?;
            }
            self.declare(s).await?;
            log.line(
                LogStream::Engine,
                &format!("service `{}`: started as {}", s.name, s.spec.name),
            );
        }
        Ok(())
    }

    async fn declare(&self, s: &ReleasedService) -> Result<(), String> {
        self.store
            .put_service(ManagedService::new(s.spec.clone()), false)
            .await
            .map_err(|e| e.to_string())?;
        self.supervisor.sync().await;
        Ok(())
    }

    /// Undeclare a managed service and wait until its containers are gone.
    async fn remove(&self, name: &str) -> Result<(), String> {
        self.store
            .delete_service(name)
            .await
            .map_err(|e| e.to_string())?;
        self.supervisor.sync().await;
        let labels = [
            format!("{LABEL_ENGINE}={}", self.runner.settings.engine_id),
            format!("{}={name}", crate::runner::LABEL_SERVICE),
        ];
        let until = Instant::now() + STOP_WAIT;
        while Instant::now() < until {
            match self.runner.runtime.list_containers(&labels).await {
                Ok(list) if list.is_empty() => return Ok(()),
                _ => tokio::time::sleep(POLL).await,
            }
        }
        Err(format!(
            "service {name}: its containers did not go within {} s",
            STOP_WAIT.as_secs()
        ))
    }

    /// Until every one of `services` is ready, or why not by `deadline`.
    async fn wait_ready(
        &self,
        services: &[ReleasedService],
        deadline: Instant,
    ) -> Result<(), String> {
        loop {
            let mut waiting = None;
            for s in services {
                let status = self.supervisor.status(&s.spec.name);
                match status.as_ref().map(|st| st.state) {
                    Some(ServiceState::Ready) => {}
                    Some(ServiceState::Failed) | Some(ServiceState::Stopped) => {
                        let why = status.and_then(|st| st.reason).unwrap_or_default();
                        return Err(format!("service `{}` failed: {why}", s.name));
                    }
                    _ => waiting = Some((s, status)),
                }
            }
            let Some((s, status)) = waiting else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                let why = status
                    .and_then(|st| st.reason)
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                return Err(format!(
                    "service `{}` was not healthy within the health timeout{why}",
                    s.name
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// After a restart: a rollout the earlier engine left under way is
    /// undone (its new services removed, the running release declared
    /// again), so two versions never stay up side by side.
    pub(super) async fn recover(&self) {
        let Ok(list) = self.store.list_deployments().await else {
            return;
        };
        for mut d in list.into_iter().filter(|d| d.sync == SyncState::Deploying) {
            let keep: Vec<String> = d
                .running
                .iter()
                .flat_map(|r| r.services.iter().map(|s| s.spec.name.clone()))
                .collect();
            if let Ok(services) = self.store.list_services().await {
                for s in services {
                    let ours = s
                        .spec
                        .deployment
                        .as_ref()
                        .is_some_and(|b| b.deployment == d.spec.name);
                    if ours && !keep.contains(&s.spec.name) {
                        let _ = self.store.delete_service(&s.spec.name).await;
                    }
                }
            }
            if let Some(running) = &d.running {
                for s in &running.services {
                    let _ = self
                        .store
                        .put_service(ManagedService::new(s.spec.clone()), false)
                        .await;
                }
            }
            self.supervisor.sync().await;
            d.sync = SyncState::Failed;
            d.failed_commit = d.wanted.clone();
            d.reason = Some(
                "a rollout was interrupted by an engine restart and undone; `up` tries again"
                    .into(),
            );
            // Its receivers were told it began: they are told how it ended.
            let now = now_ms();
            let owed = match &d.wanted {
                Some(commit) => announce::messages(
                    &d,
                    Event::Ended(RolloutResult::Failed),
                    commit,
                    now,
                    d.reason.as_deref(),
                    now,
                ),
                None => Vec::new(),
            };
            let _ = self.store.put_deployment_announcing(d, owed).await;
        }
    }
}

/// Why a rollout did not deploy, and how it ended.
pub(super) struct Failure {
    result: RolloutResult,
    reason: String,
}

impl Failure {
    /// Before anything was touched.
    fn prepare(reason: impl Into<String>) -> Failure {
        Failure {
            result: RolloutResult::Failed,
            reason: reason.into(),
        }
    }
}

/// Whether two versions of the service cannot run at once.
fn exclusive(s: &ReleasedService) -> bool {
    s.spec.deployment.as_ref().is_some_and(|b| {
        !b.reach.publish.is_empty()
            || b.binds
                .iter()
                .any(|bind| bind.starts_with("slipway-deploy-"))
    })
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}
