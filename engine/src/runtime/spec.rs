//! The container the products ask a runtime for, and how it is locked
//! down (docs/design.md, "Containers"):
//!
//! - the **workload** (job or workspace container) and the **holder**
//!   ([`Hardening::Full`]): all capabilities dropped, `no-new-privileges`,
//!   read-only root with a tmpfs `/tmp`, a non-root user, an init process,
//!   pids/memory/CPU limits with no extra swap;
//! - a **service** ([`Hardening::Service`]): as far as an official image
//!   allows; its entrypoint starts as root and drops to its own user, so
//!   it keeps the five capabilities that needs.
//!
//! How a spec becomes an engine's request is the adapter's business.

use std::collections::HashMap;

/// Default cap on processes in a workload or service container.
pub const DEFAULT_PIDS: i64 = 512;

/// What a root entrypoint needs to hand its data directory to its user and
/// drop to it (postgres, redis, mysql images all do this).
pub const SERVICE_CAPABILITIES: [&str; 5] = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"];

/// The shell loop a workload and a holder idle in: `read` on a stdin that
/// stays open and never receives anything. Only needs `sh`.
pub const IDLE: [&str; 3] = ["sh", "-c", "read -r _ || true"];

/// Resource caps of one container (from a job's or service's `resources`).
#[derive(Debug, Clone, Default)]
pub struct ContainerLimits {
    /// Memory cap in MiB, swap included (no extra swap); `None`: unlimited.
    pub memory_mb: Option<u64>,
    /// Cap on processes; `None`: [`DEFAULT_PIDS`].
    pub pids: Option<u64>,
    /// CPUs the container may use (fractions allowed, e.g. `1.5`); `None`: unlimited.
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
    /// Container name, unique on the daemon (`<pod>-job`, `<pod>-svc-<name>`, ...).
    pub name: String,
    /// Image reference to run (a tag or an id).
    pub image: String,
    /// The command; `None` keeps the image's own (services only).
    pub cmd: Option<Vec<String>>,
    /// Replaces the image's entrypoint; `Some(vec![])` removes it.
    pub entrypoint: Option<Vec<String>>,
    /// Environment variables (`NAME`, value).
    pub env: Vec<(String, String)>,
    /// Working directory; `None`: the image's own.
    pub workdir: Option<String>,
    /// `uid:gid`, or the image's own user when `None`.
    pub user: Option<String>,
    /// `host:container[:ro]`.
    pub binds: Vec<String>,
    /// Docker labels: how the engine finds its containers again (role, job, service, ...).
    pub labels: HashMap<String, String>,
    /// Memory, process and CPU caps.
    pub limits: ContainerLimits,
    /// `none`, `bridge`, `host`, or `container:<holder>`.
    pub network: String,
    /// How far the container is locked down: [`Hardening::Full`] unless it is a service.
    pub hardening: Hardening,
    /// Docker keeps at most this much of the container's output (MiB, in
    /// two rotated json-file files); `None`: the daemon's default logging.
    pub output_kept_mb: Option<u64>,
    /// GPUs to request (`-1`: all), as `--gpus` does.
    pub gpus: Option<i64>,
    /// How the container's network namespace is reached from outside the
    /// pod (only the namespace's owner has any).
    pub reach: Reach,
}

/// How a pod is reached from beyond it: names on its user-defined network
/// (other containers there resolve them through the daemon's DNS) and
/// ports published on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reach {
    /// Names the pod answers to on its network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Ports published on the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<PublishedPort>,
}

/// A container port published on the host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublishedPort {
    /// Host address to bind; `None`: every address.
    pub host_ip: Option<String>,
    /// Host port; `None`: one the daemon picks.
    pub host_port: Option<u16>,
    /// The port inside the pod.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
