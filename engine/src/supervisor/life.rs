//! One managed service's life, owned by its actor: adopt the pod an
//! earlier engine left running or create one, wait for readiness, then
//! watch (exit, the image's own health verdict, liveness) and restart
//! within the budget, or fail and wait for a user.

use super::{
    Command, LABEL_SPEC, ROLE, RestartBudget, ServiceState, ServiceStatus, SupervisorSettings,
};
use crate::job::{Network, ReadinessSpec, now_ms};
use crate::logs::{JobLog, LogStream};
use crate::plugins::Registry;
use crate::runner::container;
use crate::runner::gpu::{self, GpuDecision};
use crate::runner::pod::{Pod, PodSpec, ServiceContainer};
use crate::runner::services::ServiceView;
use crate::runner::services::{
    self, Judged, Prober, ReadinessPlugin, RunningService, ServiceLog, follow_log, watch_exit,
};
use crate::runner::{
    LABEL_COMMIT, LABEL_DEPLOYMENT, LABEL_ENGINE, LABEL_MANAGED, LABEL_ROLE, LABEL_SERVICE, Role,
};
use crate::runtime::{ContainerSummary, Runtime};
use crate::service::{ManagedServiceSpec, RestartMode};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One service's life: its actor's state.
pub(super) struct Life {
    pub(super) runtime: Runtime,
    pub(super) registry: Arc<Registry>,
    pub(super) settings: SupervisorSettings,
    pub(super) spec: ManagedServiceSpec,
    pub(super) status: Arc<Mutex<ServiceStatus>>,
    pub(super) log: JobLog,
    pub(super) restarts_total: Arc<AtomicU64>,
}

/// Why a container's life ended.
enum End {
    Stop,
    /// A user asked for a restart.
    Restart,
    Failure {
        reason: String,
        exit_code: Option<i64>,
    },
}

impl Life {
    fn set(&self, state: ServiceState, container: Option<&str>, reason: Option<String>) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if s.state != state {
            s.since_ms = now_ms();
        }
        s.state = state;
        if let Some(c) = container {
            s.container = Some(c.to_owned());
        }
        s.reason = reason;
    }

    fn event(&self, text: &str) {
        tracing::info!(service = %self.spec.name, "{text}");
        self.log.line(LogStream::Engine, text);
    }

    /// The role its container carries: a deployment's services say so.
    fn role(&self) -> Role {
        match self.spec.deployment {
            Some(_) => Role::Deployment,
            None => ROLE,
        }
    }

    fn pod_spec(&self) -> PodSpec {
        let mut labels = HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_ENGINE.to_owned(), self.settings.engine_id.clone()),
            (LABEL_SERVICE.to_owned(), self.spec.name.clone()),
        ]);
        let (network, reach) = match &self.spec.deployment {
            Some(d) => {
                labels.extend([
                    (LABEL_DEPLOYMENT.to_owned(), d.deployment.clone()),
                    (LABEL_COMMIT.to_owned(), d.commit.clone()),
                ]);
                (d.network.clone(), d.reach.clone())
            }
            None => (
                match self.spec.network {
                    Network::None => "none",
                    Network::Bridge => "bridge",
                    Network::Host => "host",
                }
                .into(),
                Default::default(),
            ),
        };
        PodSpec {
            name: format!("slipway-{}-svc-{}", self.settings.engine_id, self.spec.name),
            labels,
            holder_image: self.settings.holder_image.clone(),
            network,
            reach,
        }
    }

    pub(super) async fn run(self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut budget = RestartBudget::new(&self.spec.restart);
        let mut current = self.adopt().await;
        loop {
            let (pod, container) = match current.take() {
                Some(found) => found,
                None => match self.create().await {
                    Ok(made) => made,
                    Err(failure) => {
                        // Nothing runs: retry like a crash, within the budget
                        // (unless retrying cannot help).
                        match self
                            .after_failure(&mut budget, failure, None, None, &mut rx)
                            .await
                        {
                            Next::Retry => continue,
                            Next::End => return,
                        }
                    }
                },
            };
            let end = self.supervise(&pod, &container, &mut rx).await;
            match end {
                End::Stop => {
                    pod.remove().await;
                    self.event("stopped and removed");
                    return;
                }
                End::Restart => {
                    budget.reset();
                    self.event("restarting (asked for)");
                    if self.restart_container(&container).await {
                        current = Some((pod, container));
                    } else {
                        pod.remove().await;
                    }
                }
                End::Failure { reason, exit_code } => {
                    match self
                        .after_failure(
                            &mut budget,
                            Failure::retry(reason),
                            exit_code,
                            Some(&container),
                            &mut rx,
                        )
                        .await
                    {
                        Next::Retry => {
                            if self.restart_container(&container).await {
                                current = Some((pod, container));
                            } else {
                                pod.remove().await;
                            }
                        }
                        Next::End => {
                            pod.remove().await;
                            return;
                        }
                    }
                }
            }
        }
    }

    /// In a final state: wait for a user's restart (the budget starts over)
    /// or removal.
    async fn wait_for_a_user(
        &self,
        budget: &mut RestartBudget,
        rx: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Next {
        loop {
            match rx.recv().await {
                Some(Command::Restart) => {
                    budget.reset();
                    self.event("restarting (asked for)");
                    return Next::Retry;
                }
                Some(Command::Stop) | None => return Next::End,
                Some(_) => {}
            }
        }
    }

    /// Decide what follows a failure: a restart after a backoff, or a
    /// final state that waits for a user's restart or removal.
    async fn after_failure(
        &self,
        budget: &mut RestartBudget,
        failure: Failure,
        exit_code: Option<i64>,
        container: Option<&str>,
        rx: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Next {
        let policy = &self.spec.restart;
        let reason = failure.reason;
        let final_state = match policy.mode {
            _ if failure.permanent => {
                self.event(&format!("failed: {reason}"));
                self.set(ServiceState::Failed, None, Some(reason.clone()));
                return self.wait_for_a_user(budget, rx).await;
            }
            RestartMode::OnFailure if exit_code == Some(0) => Some(ServiceState::Stopped),
            RestartMode::Never => Some(ServiceState::Failed),
            _ => None,
        };
        let final_state = final_state.or_else(|| match budget.record(Instant::now()) {
            Some(_) => None,
            None => Some(ServiceState::Failed),
        });
        if let Some(state) = final_state {
            let why = if state == ServiceState::Failed && policy.mode != RestartMode::Never {
                format!(
                    "{reason}; restarted {} times within {} s, the restart budget: not restarting again",
                    policy.max_restarts, policy.window_s
                )
            } else {
                reason
            };
            self.event(&format!(
                "{}: {why}",
                if state == ServiceState::Failed {
                    "failed"
                } else {
                    "stopped"
                }
            ));
            self.set(state, None, Some(why));
            // Stopped, not removed: its logs stay readable.
            if let Some(id) = container {
                self.stop(id).await;
            }
            return self.wait_for_a_user(budget, rx).await;
        }
        let backoff = budget.backoff();
        self.restarts_total.fetch_add(1, Ordering::Relaxed);
        {
            let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
            s.restarts += 1;
        }
        self.event(&format!(
            "restarting in {} ms: {reason}",
            backoff.as_millis()
        ));
        self.set(ServiceState::Restarting, None, Some(reason));
        let sleep = tokio::time::sleep(backoff);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return Next::Retry,
                cmd = rx.recv() => match cmd {
                    Some(Command::Stop) | None => return Next::End,
                    Some(Command::Restart) => return Next::Retry,
                    Some(_) => {}
                },
            }
        }
    }

    /// Restart the container in place (keeps its id, volumes and pod).
    async fn restart_container(&self, id: &str) -> bool {
        match self
            .runtime
            .restart_container(id, self.settings.stop_grace)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                self.event(&format!(
                    "could not restart the container ({e}); making a new one"
                ));
                false
            }
        }
    }

    /// A pod an earlier engine left running for this declaration, if whole.
    async fn adopt(&self) -> Option<(Pod, String)> {
        let labels = [
            format!("{LABEL_ENGINE}={}", self.settings.engine_id),
            format!("{LABEL_SERVICE}={}", self.spec.name),
        ];
        // Only this service's pod: a job's service of the same name has
        // role `service`, and job holders carry no service label.
        let found: Vec<_> = self
            .runtime
            .list_containers(&labels)
            .await
            .ok()?
            .into_iter()
            .filter(|c| {
                let role = c.labels.get(LABEL_ROLE).and_then(|r| Role::of_label(r));
                role == Some(Role::Holder) || role == Some(self.role())
            })
            .collect();
        let hash = spec_hash(&self.spec);
        let role_of =
            |c: &ContainerSummary| c.labels.get(LABEL_ROLE).and_then(|r| Role::of_label(r));
        let holder = found
            .iter()
            .find(|c| role_of(c) == Some(Role::Holder) && c.running);
        let service = found.iter().find(|c| {
            role_of(c) == Some(self.role()) && c.running && c.labels.get(LABEL_SPEC) == Some(&hash)
        });
        if let (Some(h), Some(s), 2) = (holder, service, found.len()) {
            let (h, s) = (h.id.clone(), s.id.clone());
            self.event(&format!("adopted the running container {}", short(&s)));
            let pod = Pod::adopt(
                &self.runtime,
                self.pod_spec(),
                h,
                vec![(self.role().label().to_owned(), s.clone())],
            );
            return Some((pod, s));
        }
        // Partial, stopped or drifted: start clean.
        for c in found {
            container::remove(&self.runtime, &c.id).await;
        }
        None
    }

    async fn create(&self) -> Result<(Pod, String), Failure> {
        let spec = &self.spec;
        let gpu = match spec.gpus {
            None => GpuDecision::None,
            Some(_) => {
                let offer = gpu::offer(&self.runtime).await.map_err(|e| {
                    Failure::retry(format!("asking the container engine about GPUs: {e}"))
                })?;
                gpu::decide(spec.gpus, spec.gpu, &offer)
            }
        };
        match &gpu {
            // Retrying cannot give the host a GPU.
            GpuDecision::Refused(reason) => {
                return Err(Failure {
                    reason: reason.clone(),
                    permanent: true,
                });
            }
            GpuDecision::Fallback(reason) => self.event(&format!("gpu: {reason}")),
            GpuDecision::Devices(_) | GpuDecision::None => {}
        }
        for v in &spec.volumes {
            let labels = HashMap::from([
                (LABEL_MANAGED.to_owned(), "true".to_owned()),
                (LABEL_ENGINE.to_owned(), self.settings.engine_id.clone()),
                (LABEL_SERVICE.to_owned(), spec.name.clone()),
            ]);
            let name = volume_name(&self.settings.engine_id, &spec.name, &v.name);
            self.runtime
                .create_volume(&name, labels)
                .await
                .map_err(|e| Failure::retry(format!("cannot create volume `{}`: {e}", v.name)))?;
        }
        // Read at each start, never stored: a secret rotated at its source
        // is what the next container gets. A missing one may yet appear (a
        // file mounted late), so it is retried with the restart budget.
        let secrets = crate::secrets::resolve(&spec.secrets)
            .map_err(|e| Failure::retry(format!("cannot start the container: {e}")))?;
        self.log.redact(secrets.iter().map(|(_, v)| v.as_str()));
        let pod = Pod::create(&self.runtime, self.pod_spec())
            .await
            .map_err(|e| Failure::retry(format!("cannot start the pod: {e}")))?;
        let container = ServiceContainer {
            name: spec.name.clone(),
            image: spec.image.clone(),
            env: spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .chain(secrets)
                .chain(gpu.env())
                .collect(),
            command: spec.command.clone(),
            limits: (&spec.resources).into(),
            role: self.role(),
            binds: spec
                .volumes
                .iter()
                .map(|v| {
                    format!(
                        "{}:{}",
                        volume_name(&self.settings.engine_id, &spec.name, &v.name),
                        v.path
                    )
                })
                .chain(spec.deployment.iter().flat_map(|d| d.binds.iter().cloned()))
                .collect(),
            labels: spec
                .deployment
                .iter()
                .flat_map(|d| d.labels.clone())
                .chain([(LABEL_SPEC.to_owned(), spec_hash(spec))])
                .collect(),
            gpus: gpu.devices(),
            entrypoint: spec.deployment.as_ref().and_then(|d| d.entrypoint.clone()),
            user: spec.deployment.as_ref().and_then(|d| d.user.clone()),
            workdir: spec.deployment.as_ref().and_then(|d| d.workdir.clone()),
        };
        match pod.start_service(&container).await {
            Ok(id) => {
                self.event(&format!(
                    "started container {} from `{}`",
                    short(&id),
                    spec.image
                ));
                Ok((pod, id))
            }
            Err(e) => {
                pod.remove().await;
                Err(Failure::retry(format!("cannot start the container: {e}")))
            }
        }
    }

    fn plugin_view(&self, check: Option<&ReadinessSpec>) -> ServiceView {
        services::plugin_view(
            &self.spec.name,
            &self.spec.image,
            &self.spec.env,
            &self.spec.ports,
            check.map(|c| &c.options),
        )
    }

    async fn prober(
        &self,
        check: Option<&ReadinessSpec>,
        default: bool,
    ) -> Result<Option<Prober>, String> {
        let name = match check {
            Some(c) => c.plugin.clone(),
            None if default && !self.spec.ports.is_empty() => "tcp".to_owned(),
            None => return Ok(None),
        };
        let plugin: ReadinessPlugin =
            services::readiness_plugin(&self.registry, &self.spec.name, &name)
                .map_err(|e| e.to_string())?;
        let probe = services::probe_of(&plugin, &self.plugin_view(check), &self.spec.name)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Some(Prober::new(plugin, probe)))
    }

    /// One container life: startup (readiness), then watch until it ends.
    async fn supervise(
        &self,
        pod: &Pod,
        container: &str,
        rx: &mut mpsc::UnboundedReceiver<Command>,
    ) -> End {
        self.set(ServiceState::Starting, Some(container), None);
        // An adopted container's secrets are redacted too (they were read
        // when it was created, by this engine or the one before).
        if let Ok(secrets) = crate::secrets::resolve(&self.spec.secrets) {
            self.log.redact(secrets.iter().map(|(_, v)| v.as_str()));
        }
        let kept = Arc::new(ServiceLog::default());
        let since = (now_ms() / 1000).saturating_sub(1) as i64;
        follow_log(
            &self.runtime,
            container,
            &self.spec.name,
            &self.log,
            &kept,
            since,
        );
        let exited = watch_exit(&self.runtime, container);
        let readiness = match self.prober(self.spec.readiness.as_ref(), true).await {
            Ok(p) => p,
            Err(reason) => {
                return End::Failure {
                    reason,
                    exit_code: None,
                };
            }
        };
        let liveness = match self.prober(self.spec.liveness.as_ref(), false).await {
            Ok(p) => p,
            Err(reason) => {
                return End::Failure {
                    reason,
                    exit_code: None,
                };
            }
        };
        let running = RunningService::new(
            self.spec.name.clone(),
            container.to_owned(),
            self.plugin_view(self.spec.readiness.as_ref()),
            readiness.as_ref().map(|p| p.plugin.clone()),
            kept,
            exited,
        );

        // Startup: readiness gates `ready`; commands still count meanwhile.
        if let Some(mut prober) = readiness {
            let wait = services::wait_ready(
                &self.runtime,
                pod.holder(),
                &running,
                &mut prober,
                &self.log,
            );
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    result = &mut wait => {
                        if let Err(e) = result {
                            return End::Failure { reason: e.to_string(), exit_code: running.exit_code() };
                        }
                        break;
                    }
                    cmd = rx.recv() => match cmd {
                        Some(Command::Stop) | None => return End::Stop,
                        Some(Command::Restart) => return End::Restart,
                        Some(Command::Unhealthy(reason)) => return End::Failure { reason, exit_code: None },
                        Some(Command::Check) => {}
                    },
                }
            }
        }
        self.set(ServiceState::Ready, Some(container), None);
        self.event("ready");

        // Running: liveness, exits, Docker's verdicts, commands.
        let mut liveness = liveness;
        let period = liveness
            .as_ref()
            .map(|p| Duration::from_millis(p.probe.period_ms.into()))
            .unwrap_or(Duration::from_secs(3600));
        let threshold = liveness
            .as_ref()
            .map(|p| p.probe.failure_threshold)
            .unwrap_or(1);
        let mut failures = 0u32;
        loop {
            tokio::select! {
                code = running.exited() => {
                    let oom = self.oom_killed(container).await;
                    return End::Failure { reason: exit_reason(code, oom), exit_code: Some(code) };
                }
                cmd = rx.recv() => match cmd {
                    Some(Command::Stop) | None => return End::Stop,
                    Some(Command::Restart) => return End::Restart,
                    Some(Command::Unhealthy(reason)) => return End::Failure { reason, exit_code: None },
                    Some(Command::Check) => {
                        if let Some(end) = self.check(container).await {
                            return end;
                        }
                    }
                },
                _ = tokio::time::sleep(period), if liveness.is_some() => {
                    let Some(prober) = liveness.as_mut() else { continue };
                    match prober.attempt(&self.runtime, pod.holder(), &running).await {
                        Judged::Ready => failures = 0,
                        Judged::NotReady(r) | Judged::Failed(r) | Judged::PluginFailed(r) => {
                            failures += 1;
                            self.event(&format!("liveness check failed ({failures}/{threshold}): {r}"));
                            if failures >= threshold {
                                return End::Failure {
                                    reason: format!("liveness check failed {failures} times in a row: {r}"),
                                    exit_code: None,
                                };
                            }
                        }
                    }
                }
            }
        }
    }

    /// A failure when the container is gone or not running.
    async fn check(&self, container: &str) -> Option<End> {
        match self.runtime.inspect_container(container).await {
            Ok(c) if c.running => None,
            Ok(c) => {
                let code = c.exit_code.unwrap_or(-1);
                Some(End::Failure {
                    reason: exit_reason(code, c.oom_killed),
                    exit_code: Some(code),
                })
            }
            Err(e) => Some(End::Failure {
                reason: format!("the container is gone: {e}"),
                exit_code: None,
            }),
        }
    }

    async fn oom_killed(&self, container: &str) -> bool {
        self.runtime
            .inspect_container(container)
            .await
            .is_ok_and(|c| c.oom_killed)
    }

    /// Stop the container, keeping it (and its logs) for inspection.
    async fn stop(&self, container: &str) {
        let _ = self
            .runtime
            .stop_container(container, self.settings.stop_grace)
            .await;
    }
}

/// Why a service is not running, and whether a restart could help.
struct Failure {
    reason: String,
    /// Retrying cannot help (e.g. it requires GPUs the host has none of):
    /// `failed` at once, until a user restarts it.
    permanent: bool,
}

impl Failure {
    fn retry(reason: String) -> Failure {
        Failure {
            reason,
            permanent: false,
        }
    }
}

enum Next {
    Retry,
    End,
}

/// The same words whether the exit was seen by `wait` or by a check.
fn exit_reason(code: i64, oom: bool) -> String {
    format!(
        "the container exited with code {code}{}",
        if oom { " (killed: out of memory)" } else { "" }
    )
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn volume_name(engine: &str, service: &str, volume: &str) -> String {
    format!("slipway-{engine}-{service}-{volume}")
}

/// Hash of a declaration, as a label value.
pub fn spec_hash(spec: &ManagedServiceSpec) -> String {
    use sha2::Digest;
    let json = serde_json::to_vec(spec).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(&json)[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_hash_follows_the_declaration() {
        let a: ManagedServiceSpec =
            serde_json::from_value(serde_json::json!({"name": "w", "image": "redis:7"})).unwrap();
        let mut b = a.clone();
        assert_eq!(spec_hash(&a), spec_hash(&b));
        b.env.insert("X".into(), "1".into());
        assert_ne!(spec_hash(&a), spec_hash(&b));
    }
}
