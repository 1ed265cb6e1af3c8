//! The containers of a pod and how they are hardened (docs/design.md, "Containers").
//!
//! - The **workload** (job or workspace container): all capabilities
//!   dropped, `no-new-privileges`, read-only root with a tmpfs `/tmp`, a
//!   non-root user, `--init` (signals reach the steps, zombies are reaped),
//!   pids/memory/CPU limits with no extra swap; the only writable mounts are
//!   the ones the caller binds (the checkout). A job's runs its steps as
//!   its command (`batch`); a workspace's idles on an open stdin until
//!   removed, and steps run in it as execs.
//! - A **service** (postgres, redis, ...): hardened as far as an official
//!   image allows. Their entrypoints start as root and drop to their own
//!   user, so the only capabilities kept are the five that needs.
//! - The **holder**: owns the pod's network namespace; a busybox that idles,
//!   with no capabilities, and runs the TCP/HTTP probes.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};

/// Default cap on processes in a workload or service container.
pub const DEFAULT_PIDS: i64 = 512;

/// What a root entrypoint needs to hand its data directory to its user and
/// drop to it (postgres, redis, mysql images all do this).
const SERVICE_CAPABILITIES: [&str; 5] = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"];

/// The shell loop a workload and a holder idle in: `read` on a stdin that
/// stays open and never receives anything. Only needs `sh`.
pub const IDLE: [&str; 3] = ["sh", "-c", "read -r _ || true"];

#[derive(Debug, Clone, Default)]
pub struct ContainerLimits {
    pub memory_mb: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
}

impl From<&crate::job::Resources> for ContainerLimits {
    fn from(r: &crate::job::Resources) -> ContainerLimits {
        ContainerLimits {
            memory_mb: r.memory_mb,
            pids: r.pids,
            cpus: r.cpus,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(
        "image `{image}` is not available to the container engine (hint: build it first, or check the base-image map)"
    )]
    ImageMissing { image: String },
    #[error(
        "image `{image}` has no shell (`sh`): Slipway runs steps with `sh -c`, so the image needs one (hint: base it on an image with a shell)"
    )]
    NoShell { image: String },
    #[error("the container engine refused to {action}: {message}")]
    Engine {
        action: &'static str,
        message: String,
    },
    #[error("refusing to run a step as root (user `{0}`); steps run as a non-root uid:gid")]
    RootUser(String),
}

pub(crate) fn engine(action: &'static str) -> impl Fn(bollard::errors::Error) -> RunnerError {
    move |e| RunnerError::Engine {
        action,
        message: e.to_string(),
    }
}

pub(crate) fn is_root(user: &str) -> bool {
    let uid = user.split(':').next().unwrap_or("");
    uid.is_empty() || uid == "0" || uid == "root"
}

/// How a bind mount is relabelled where the daemon runs SELinux (Docker's
/// `z`/`Z`), so the container may use it at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelinuxLabel {
    /// `Z`: only this container (a job's checkout).
    Private,
    /// `z`: shared by the containers that mount it (a cache volume).
    Shared,
}

/// `source:target[:options]` for `HostConfig.binds`: `ro` when read-only,
/// and the SELinux relabel option when one is given.
pub fn bind(source: &str, target: &str, read_only: bool, label: Option<SelinuxLabel>) -> String {
    let mut options = Vec::new();
    if read_only {
        options.push("ro");
    }
    match label {
        Some(SelinuxLabel::Private) => options.push("Z"),
        Some(SelinuxLabel::Shared) => options.push("z"),
        None => {}
    }
    if options.is_empty() {
        format!("{source}:{target}")
    } else {
        format!("{source}:{target}:{}", options.join(","))
    }
}

/// Whether the daemon runs with SELinux (`docker info`'s security options
/// list `name=selinux`): then its mounts need relabelling.
pub fn daemon_uses_selinux(security_options: &[String]) -> bool {
    security_options
        .iter()
        .any(|o| o.split(',').any(|part| part == "name=selinux"))
}

/// One container to create in a pod.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// The command; `None` keeps the image's own (services only).
    pub cmd: Option<Vec<String>>,
    /// Replaces the image's entrypoint; `Some(vec![])` removes it.
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    /// `uid:gid`, or the image's own user when `None`.
    pub user: Option<String>,
    /// `host:container[:ro]`.
    pub binds: Vec<String>,
    pub labels: HashMap<String, String>,
    pub limits: ContainerLimits,
    /// `none`, `bridge`, `host`, or `container:<holder>`.
    pub network: String,
    pub hardening: Hardening,
    /// Docker keeps at most this much of the container's output (MiB, in
    /// two rotated json-file files); `None`: the daemon's default logging.
    pub output_kept_mb: Option<u64>,
    /// GPUs to request (`-1`: all), as `--gpus` does.
    pub gpus: Option<i64>,
}

/// How far a container is locked down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hardening {
    /// Workload and holder: no capabilities, read-only root, idles on stdin.
    Full,
    /// Service: only the capabilities a root entrypoint needs to drop to
    /// its user; its root filesystem stays writable (databases write there).
    Service,
}

/// The scratch `/tmp` of a hardened container. `exec` is explicit because
/// Docker's tmpfs default is `noexec`, and tools build and run helpers there
/// (`go test` runs its test binary from `/tmp/go-build…`); `nosuid` and
/// `nodev` keep it from granting anything.
pub const TMP_OPTIONS: &str = "rw,exec,nosuid,nodev,size=256m,mode=1777";

impl ContainerSpec {
    pub(crate) fn host_config(&self) -> HostConfig {
        let memory = self.limits.memory_mb.map(|mb| (mb * 1024 * 1024) as i64);
        let full = self.hardening == Hardening::Full;
        HostConfig {
            binds: Some(self.binds.clone()),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: (!full).then(|| SERVICE_CAPABILITIES.map(str::to_owned).to_vec()),
            security_opt: Some(vec!["no-new-privileges".into()]),
            readonly_rootfs: Some(full),
            init: Some(true),
            tmpfs: full.then(|| HashMap::from([("/tmp".to_owned(), TMP_OPTIONS.to_owned())])),
            network_mode: Some(self.network.clone()),
            memory,
            // No swap beyond the memory limit.
            memory_swap: memory,
            pids_limit: Some(self.limits.pids.map(|p| p as i64).unwrap_or(DEFAULT_PIDS)),
            nano_cpus: self.limits.cpus.map(|c| (c * 1e9) as i64),
            device_requests: self.gpus.map(|count| {
                vec![DeviceRequest {
                    count: Some(count),
                    capabilities: Some(vec![vec!["gpu".to_owned()]]),
                    ..Default::default()
                }]
            }),
            log_config: self.output_kept_mb.map(|mb| HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), format!("{}m", mb.div_ceil(2).max(1))),
                    ("max-file".to_owned(), "2".to_owned()),
                ])),
            }),
            ..Default::default()
        }
    }

    fn body(&self) -> ContainerCreateBody {
        // Only the idle loop reads stdin: everything else gets EOF there.
        let idles = self
            .cmd
            .as_ref()
            .is_some_and(|c| c.iter().map(String::as_str).eq(IDLE));
        ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: self.cmd.clone(),
            entrypoint: self.entrypoint.clone(),
            env: Some(self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: self.workdir.clone(),
            user: self.user.clone(),
            labels: Some(self.labels.clone()),
            open_stdin: Some(idles),
            // No network: runc's own fresh namespace (loopback only, up)
            // instead of an empty libnetwork sandbox; ~70 ms less per start.
            network_disabled: Some(self.network == "none"),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            host_config: Some(self.host_config()),
            ..Default::default()
        }
    }
}

/// Create `spec` without starting it; returns the container id.
pub async fn create(docker: &Docker, spec: &ContainerSpec) -> Result<String, RunnerError> {
    let options = CreateContainerOptionsBuilder::new()
        .name(&spec.name)
        .build();
    let created = docker
        .create_container(Some(options), spec.body())
        .await
        .map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ref message,
            } if is_missing_image(message) => RunnerError::ImageMissing {
                image: spec.image.clone(),
            },
            other => engine("create the container")(other),
        })?;
    Ok(created.id)
}

/// Create and start `spec`; returns the container id. A container that
/// fails to start is removed again.
pub async fn create_and_start(
    docker: &Docker,
    spec: &ContainerSpec,
) -> Result<String, RunnerError> {
    let id = create(docker, spec).await?;
    if let Err(e) = docker.start_container(&id, None).await {
        remove(docker, &id).await;
        let text = e.to_string();
        if text.contains("executable file not found") && text.contains("\"sh\"") {
            return Err(RunnerError::NoShell {
                image: spec.image.clone(),
            });
        }
        return Err(engine("start the container")(e));
    }
    Ok(id)
}

/// Wait until the container stops: its exit code, or `None` when it was
/// removed or the daemon went away first.
pub async fn wait_exit(docker: &Docker, id: &str) -> Option<i64> {
    use futures_util::StreamExt;
    match docker.wait_container(id, None).next().await {
        Some(Ok(r)) => Some(r.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Some(code),
        _ => None,
    }
}

/// Docker says "No such image: x"; Podman "x: image not known".
fn is_missing_image(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("no such image") || m.contains("image not known")
}

/// Remove a container and its anonymous volumes, whatever its state.
pub async fn remove(docker: &Docker, id: &str) {
    if try_remove(docker, id).await.is_err() {
        // The daemon may be restarting (its containers stop, and stay as
        // stopped containers): keep trying for a while in the background.
        let (docker, id) = (docker.clone(), id.to_owned());
        tokio::spawn(async move {
            let mut pause = Duration::from_secs(1);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
            loop {
                tokio::time::sleep(pause).await;
                match try_remove(&docker, &id).await {
                    Ok(()) => {
                        tracing::info!(container = %id, "removed after the daemon came back");
                        return;
                    }
                    Err(e) if tokio::time::Instant::now() > deadline => {
                        tracing::warn!(container = %id, error = %e, "could not remove a container for 10 minutes; the next start's reconcile pass will");
                        return;
                    }
                    Err(_) => pause = (pause * 2).min(Duration::from_secs(30)),
                }
            }
        });
    }
}

/// Remove `id` (with its anonymous volumes); a container already gone is fine.
async fn try_remove(docker: &Docker, id: &str) -> Result<(), bollard::errors::Error> {
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(e) => {
            tracing::debug!(container = %id, error = %e, "could not remove a container (yet)");
            Err(e)
        }
    }
}

/// Splits a byte stream into lines; a partial line waits for its end.
#[derive(Default)]
pub(crate) struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    pub(crate) fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&str)) {
        self.pending.extend_from_slice(bytes);
        while let Some(at) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=at).collect();
            emit(String::from_utf8_lossy(&line[..line.len() - 1]).trim_end_matches('\r'));
        }
    }

    pub(crate) fn flush(&mut self, mut emit: impl FnMut(&str)) {
        if !self.pending.is_empty() {
            emit(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_buffer_joins_split_lines() {
        let mut lines = Vec::new();
        let mut b = LineBuffer::default();
        b.push(b"hel", |l| lines.push(l.to_owned()));
        b.push(b"lo\r\nwor", |l| lines.push(l.to_owned()));
        b.push(b"ld\n", |l| lines.push(l.to_owned()));
        b.push(b"tail", |l| lines.push(l.to_owned()));
        b.flush(|l| lines.push(l.to_owned()));
        assert_eq!(lines, vec!["hello", "world", "tail"]);
    }

    fn spec(hardening: Hardening) -> ContainerSpec {
        ContainerSpec {
            name: "n".into(),
            image: "i".into(),
            cmd: None,
            entrypoint: None,
            env: vec![],
            workdir: None,
            user: Some("1000:1000".into()),
            binds: vec![],
            labels: HashMap::new(),
            limits: ContainerLimits {
                memory_mb: Some(64),
                ..Default::default()
            },
            network: "none".into(),
            hardening,
            output_kept_mb: None,
            gpus: None,
        }
    }

    #[test]
    fn binds_carry_read_only_and_selinux_labels() {
        assert_eq!(
            bind("/c/job-1", "/workspace", false, None),
            "/c/job-1:/workspace"
        );
        assert_eq!(
            bind("/c/job-1", "/workspace", false, Some(SelinuxLabel::Private)),
            "/c/job-1:/workspace:Z"
        );
        assert_eq!(
            bind(
                "slipway-cache-pip-x",
                "/home/app/.cache/pip",
                false,
                Some(SelinuxLabel::Shared)
            ),
            "slipway-cache-pip-x:/home/app/.cache/pip:z"
        );
        assert_eq!(
            bind("/etc/ca.pem", "/ca.pem", true, None),
            "/etc/ca.pem:/ca.pem:ro"
        );
        assert!(daemon_uses_selinux(&[
            "name=seccomp,profile=default".into(),
            "name=selinux".into()
        ]));
        assert!(!daemon_uses_selinux(&[
            "name=seccomp,profile=default".into(),
            "name=apparmor".into()
        ]));
    }

    #[test]
    fn root_is_refused_and_hardening_is_on() {
        assert!(is_root("0:0") && is_root("root") && is_root("") && !is_root("1000:1000"));
        let hc = spec(Hardening::Full).host_config();
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(hc.cap_add, None);
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(
            (hc.memory, hc.memory_swap),
            (Some(64 << 20), Some(64 << 20))
        );
        assert_eq!(hc.pids_limit, Some(DEFAULT_PIDS));
    }

    #[test]
    fn services_keep_only_what_dropping_to_their_user_needs() {
        let hc = spec(Hardening::Service).host_config();
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(hc.cap_add.as_ref().map(Vec::len), Some(5));
        assert_eq!(hc.security_opt, Some(vec!["no-new-privileges".to_owned()]));
        assert_eq!(hc.readonly_rootfs, Some(false));
    }
}
