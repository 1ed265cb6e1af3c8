//! A pod: the containers of one job (or workspace) sharing one private
//! network namespace (docs/design.md, "Seams"). A holder container owns the
//! namespace (`--network none` unless the job asks for a network); the
//! services and the workload join it with `--network container:<holder>`,
//! so services answer on `127.0.0.1:<port>` and nothing outside the pod
//! reaches them. The holder also runs the TCP and HTTP probes, from inside
//! the namespace. Removing the pod removes every container of it.
//!
//! A pod without services needs no holder (nothing joins it, nothing is
//! probed): [`Pod::solo`] lets the workload own the namespace itself, which
//! saves a container start on every such job.

use std::collections::HashMap;

use super::container::{
    self, ContainerLimits, ContainerSpec, Hardening, IDLE, RunnerError, create_and_start,
};
use super::{LABEL_ROLE, LABEL_SERVICE, Role};
use crate::runtime::spec::Reach;
use crate::runtime::{Runtime, RuntimeError};

/// What every container of a pod shares.
#[derive(Debug, Clone)]
pub struct PodSpec {
    /// Prefix of the container names, e.g. `slipway-serve-ab12-job7-a1`.
    pub name: String,
    /// Labels on every container (managed, engine, job or workspace).
    pub labels: HashMap<String, String>,
    /// The holder's image: a busybox (needs `sh`, `nc`).
    pub holder_image: String,
    /// The pod's network: `none`, `bridge`, `host`, or a user-defined one.
    pub network: String,
    /// Names on that network and ports published on the host (the holder's).
    pub reach: Reach,
}

/// The long-running container the steps run in.
#[derive(Debug, Clone, Default)]
pub struct WorkloadSpec {
    /// Image to run; its entrypoint never runs (steps are the commands), but it needs `sh`.
    pub image: String,
    /// Environment (`NAME`, value): plan, profile, job, secrets, GPU and CA variables.
    pub env: Vec<(String, String)>,
    /// Working directory (`/workspace`, the checkout); `None`: the image's own.
    pub workdir: Option<String>,
    /// `uid:gid`; never root.
    pub user: String,
    /// Docker bind specs, `source:target[:options]`: the checkout, caches, the CA bundle.
    pub binds: Vec<String>,
    /// Memory, process and CPU caps of the container.
    pub limits: ContainerLimits,
    /// [`Role::Job`] or [`Role::Workspace`].
    pub role: Role,
    /// What Docker keeps of its output when it runs steps as its command
    /// (MiB; the engine reads it as it comes, and again after a restart).
    pub output_kept_mb: Option<u64>,
    /// GPUs it gets (`-1`: all); see `gpu`.
    pub gpus: Option<i64>,
}

/// A service container to start in the pod.
#[derive(Debug, Clone)]
pub struct ServiceContainer {
    /// The service's name: its container is `<pod>-svc-<name>`, and it is labelled with it.
    pub name: String,
    /// Image to run, with its own entrypoint and user.
    pub image: String,
    /// Environment of the container (`NAME`, value).
    pub env: Vec<(String, String)>,
    /// Empty: the image's own command.
    pub command: Vec<String>,
    /// Memory, process and CPU caps of the container.
    pub limits: ContainerLimits,
    /// [`Role::Service`] (a job's or a workspace's) or [`Role::ManagedService`].
    pub role: Role,
    /// Named volumes, `name:/path`.
    pub binds: Vec<String>,
    /// Labels beyond the pod's.
    pub labels: HashMap<String, String>,
    /// GPUs it gets (`-1`: all); see `gpu`.
    pub gpus: Option<i64>,
    /// Replaces the image's entrypoint; `None`: the image's own.
    pub entrypoint: Option<Vec<String>>,
    /// `uid:gid` or a user name; `None`: the image's own.
    pub user: Option<String>,
    /// Working directory; `None`: the image's own.
    pub workdir: Option<String>,
}

/// A running pod: its holder (or, solo, its workload) and every member container;
/// [`Pod::remove`] removes them all.
pub struct Pod {
    runtime: Runtime,
    spec: PodSpec,
    /// The namespace's owner: the holder, or in a solo pod the workload
    /// once started.
    holder: std::sync::OnceLock<String>,
    /// Every container but the holder: (role, id). Behind a lock so the
    /// workload and the services can start at the same time.
    members: std::sync::Mutex<Vec<(String, String)>>,
}

impl Pod {
    /// Start the holder; the pod exists from here on, so whatever fails
    /// later must end in [`Pod::remove`].
    pub async fn create(runtime: &Runtime, spec: PodSpec) -> Result<Pod, RunnerError> {
        let holder = ContainerSpec {
            name: format!("{}-holder", spec.name),
            image: spec.holder_image.clone(),
            cmd: Some(IDLE.map(str::to_owned).to_vec()),
            entrypoint: Some(vec![]),
            env: vec![],
            workdir: None,
            user: Some("65534:65534".into()),
            binds: vec![],
            labels: labels(&spec.labels, Role::Holder, None),
            limits: ContainerLimits {
                memory_mb: Some(32),
                pids: Some(64),
                cpus: None,
            },
            network: spec.network.clone(),
            hardening: Hardening::Full,
            output_kept_mb: None,
            gpus: None,
            reach: spec.reach.clone(),
        };
        let holder = create_and_start(runtime, &holder).await?;
        Ok(Pod {
            runtime: runtime.clone(),
            spec,
            holder: holder.into(),
            members: Default::default(),
        })
    }

    /// A pod for a workload alone (no services): no holder; the workload
    /// gets the pod's network itself. Nothing may join it but the workload.
    pub fn solo(runtime: &Runtime, spec: PodSpec) -> Pod {
        Pod {
            runtime: runtime.clone(),
            spec,
            holder: std::sync::OnceLock::new(),
            members: Default::default(),
        }
    }

    /// A pod found running after an engine restart: its holder and members.
    pub fn adopt(
        runtime: &Runtime,
        spec: PodSpec,
        holder: String,
        members: Vec<(String, String)>,
    ) -> Pod {
        Pod {
            runtime: runtime.clone(),
            spec,
            holder: holder.into(),
            members: std::sync::Mutex::new(members),
        }
    }

    /// The pod labelled `owner` (`io.slipway.job=<id>`, ...) as the
    /// daemon has it after an engine restart, and the names and ids of
    /// its services. `workload` is the role of the container that owns
    /// the namespace in a pod without a holder.
    pub async fn find(
        runtime: &Runtime,
        engine_id: &str,
        owner: &str,
        pod_name: &str,
        workload: Role,
    ) -> Result<(Pod, Vec<(String, String)>), RuntimeError> {
        let found = super::engine_containers(runtime, engine_id, &[owner.to_owned()]).await?;
        let (mut holder, mut solo, mut members, mut services) =
            (None, None, Vec::new(), Vec::new());
        for c in found {
            let (cid, labels) = (c.id, c.labels);
            let role = labels.get(LABEL_ROLE).cloned().unwrap_or_default();
            if role == Role::Holder.label() {
                holder = Some(cid);
                continue;
            }
            if role == Role::Service.label()
                && let Some(name) = labels.get(LABEL_SERVICE)
            {
                services.push((name.clone(), cid.clone()));
            }
            if role == workload.label() {
                solo = Some(cid.clone());
            }
            members.push((role, cid));
        }
        let spec = PodSpec {
            name: pod_name.to_owned(),
            labels: HashMap::new(),
            holder_image: String::new(),
            network: String::new(),
            reach: Default::default(),
        };
        // A solo pod: its workload owns the namespace.
        let holder = holder.or(solo).unwrap_or_default();
        Ok((Pod::adopt(runtime, spec, holder, members), services))
    }

    /// The containers of the pod but the holder: (role, id).
    pub fn members(&self) -> Vec<(String, String)> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The container that owns the namespace (empty in a solo pod before
    /// its workload starts).
    pub fn holder(&self) -> &str {
        self.holder.get().map(String::as_str).unwrap_or_default()
    }

    fn network(&self) -> String {
        match self.holder.get() {
            Some(holder) => format!("container:{holder}"),
            None => self.spec.network.clone(),
        }
    }

    /// Start the workload container, idle until steps are exec'd in it.
    pub async fn start_workload(&self, w: &WorkloadSpec) -> Result<String, RunnerError> {
        let id = self
            .start_workload_with(w, IDLE.map(str::to_owned).to_vec(), HashMap::new())
            .await?;
        self.check_shell(&id, &w.image).await?;
        Ok(id)
    }

    /// Start the workload container running `command` (a job's steps, see
    /// `batch`); `extra` labels beside the pod's. An image without `sh`
    /// shows in how the command ends.
    pub async fn start_workload_with(
        &self,
        w: &WorkloadSpec,
        command: Vec<String>,
        extra: HashMap<String, String>,
    ) -> Result<String, RunnerError> {
        if container::is_root(&w.user) {
            return Err(RunnerError::RootUser(w.user.clone()));
        }
        let mut labels = labels(&self.spec.labels, w.role, None);
        labels.extend(extra);
        let idles = command.iter().map(String::as_str).eq(IDLE);
        let spec = ContainerSpec {
            name: self.workload_name(w.role),
            image: w.image.clone(),
            cmd: Some(command),
            // The image's entrypoint never runs: steps are the commands.
            entrypoint: Some(vec![]),
            env: w.env.clone(),
            workdir: w.workdir.clone(),
            user: Some(w.user.clone()),
            binds: w.binds.clone(),
            labels,
            limits: w.limits.clone(),
            network: self.network(),
            hardening: Hardening::Full,
            output_kept_mb: w.output_kept_mb.filter(|_| !idles),
            gpus: w.gpus,
            reach: Default::default(),
        };
        let id = create_and_start(&self.runtime, &spec).await?;
        self.add((w.role.label(), &id));
        // In a solo pod the workload owns the namespace.
        let _ = self.holder.set(id.clone());
        Ok(id)
    }

    /// The workload container's name (`<pod>-job`, `<pod>-workspace`).
    pub fn workload_name(&self, role: Role) -> String {
        format!("{}-{}", self.spec.name, role.label())
    }

    /// Start a service container with its image's own entrypoint and user.
    pub async fn start_service(&self, s: &ServiceContainer) -> Result<String, RunnerError> {
        let mut labels = labels(&self.spec.labels, s.role, Some(&s.name));
        labels.extend(s.labels.clone());
        let spec = ContainerSpec {
            name: format!("{}-svc-{}", self.spec.name, s.name),
            image: s.image.clone(),
            cmd: (!s.command.is_empty()).then(|| s.command.clone()),
            entrypoint: s.entrypoint.clone(),
            env: s.env.clone(),
            workdir: s.workdir.clone(),
            user: s.user.clone(),
            binds: s.binds.clone(),
            labels,
            limits: s.limits.clone(),
            network: self.network(),
            hardening: Hardening::Service,
            output_kept_mb: None,
            gpus: s.gpus,
            reach: Default::default(),
        };
        let id = create_and_start(&self.runtime, &spec).await?;
        self.add((s.role.label(), &id));
        Ok(id)
    }

    /// Steps need `sh`. Without it the idle command fails right after the
    /// start (`--init` starts first), so ask the container to run `sh`.
    async fn check_shell(&self, id: &str, image: &str) -> Result<(), RunnerError> {
        let argv = ["sh".to_owned(), "-c".to_owned(), ":".to_owned()];
        let timeout = std::time::Duration::from_secs(30);
        let no_shell = || RunnerError::NoShell {
            image: image.to_owned(),
        };
        match super::exec::capture(&self.runtime, id, &argv, None, timeout, 4096).await {
            Ok(c) if c.exit_code == Some(0) => Ok(()),
            Ok(c) if c.exit_code == Some(126) || c.exit_code == Some(127) => Err(no_shell()),
            Ok(c) => Err(RunnerError::Engine {
                action: "run `sh` in the job container",
                message: format!("exit code {:?}: {}", c.exit_code, c.stderr.trim()),
            }),
            Err(e) => {
                let text = e.to_string();
                let exited = self
                    .runtime
                    .inspect_container(id)
                    .await
                    .ok()
                    .and_then(|c| c.exit_code);
                if text.contains("executable file not found") || exited == Some(127) {
                    Err(no_shell())
                } else {
                    Err(e)
                }
            }
        }
    }

    fn add(&self, (role, id): (&str, &str)) {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((role.to_owned(), id.to_owned()));
    }

    /// Remove every container of the pod, the holder last.
    pub async fn remove(self) {
        let members = self.members.into_inner().unwrap_or_else(|p| p.into_inner());
        let removals = members
            .iter()
            .map(|(_, id)| container::remove(&self.runtime, id));
        futures_util::future::join_all(removals).await;
        if let Some(holder) = self.holder.get()
            && !members.iter().any(|(_, id)| id == holder)
        {
            container::remove(&self.runtime, holder).await;
        }
    }
}

fn labels(
    base: &HashMap<String, String>,
    role: Role,
    service: Option<&str>,
) -> HashMap<String, String> {
    let mut labels = base.clone();
    labels.insert(LABEL_ROLE.to_owned(), role.label().to_owned());
    if let Some(name) = service {
        labels.insert(LABEL_SERVICE.to_owned(), name.to_owned());
    }
    labels
}
