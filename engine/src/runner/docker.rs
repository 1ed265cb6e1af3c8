//! Connecting to the container engine: `DOCKER_HOST`, the default socket,
//! rootless Docker (`$XDG_RUNTIME_DIR/docker.sock`) and Podman's Docker API
//! socket, in that order; the API version is negotiated (Docker 20.10 speaks
//! 1.41), and the engine must answer a ping.

use std::path::PathBuf;

use bollard::Docker;

#[derive(Debug, thiserror::Error)]
#[error("no Docker or Podman engine answered; tried: {}{hint}", tried.join("; "))]
pub struct DockerError {
    /// Each candidate and why it failed.
    pub tried: Vec<String>,
    hint: String,
}

/// The candidate endpoints, in order.
fn candidates() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(host) = std::env::var("DOCKER_HOST")
        && !host.is_empty()
    {
        out.push(host);
    }
    out.push("unix:///var/run/docker.sock".into());
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR") {
        let dir = PathBuf::from(runtime);
        out.push(format!("unix://{}", dir.join("docker.sock").display()));
        out.push(format!(
            "unix://{}",
            dir.join("podman/podman.sock").display()
        ));
    }
    out.push("unix:///run/podman/podman.sock".into());
    out
}

async fn try_endpoint(endpoint: &str) -> Result<Docker, String> {
    let client = if let Some(path) = endpoint.strip_prefix("unix://") {
        // Say plainly why a socket cannot be used (the HTTP client's error
        // only says "Connect").
        if let Err(e) = std::os::unix::net::UnixStream::connect(path) {
            return Err(match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    use std::os::unix::fs::MetadataExt;
                    let owner = std::fs::metadata(path)
                        .map(|m| {
                            format!(
                                "owned by uid {} gid {}, mode {:o}",
                                m.uid(),
                                m.gid(),
                                m.mode() & 0o777
                            )
                        })
                        .unwrap_or_default();
                    format!("permission denied: the socket is {owner}; this process may not use it")
                }
                std::io::ErrorKind::NotFound => "no socket there".to_owned(),
                _ => e.to_string(),
            });
        }
        Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
            .map_err(|e| e.to_string())?
    } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
        Docker::connect_with_http(endpoint, 120, bollard::API_DEFAULT_VERSION)
            .map_err(|e| e.to_string())?
    } else {
        return Err("unsupported scheme (use unix://, tcp:// or http://)".into());
    };
    let client = client
        .negotiate_version()
        .await
        .map_err(|e| e.to_string())?;
    client
        .ping()
        .await
        .map_err(|e| format!("no answer to ping: {e}"))?;
    Ok(client)
}

/// The first of the usual endpoints that answers.
pub async fn connect() -> Result<Docker, DockerError> {
    connect_any(candidates()).await
}

/// The first of `endpoints` that answers.
pub async fn connect_any(endpoints: Vec<String>) -> Result<Docker, DockerError> {
    let mut tried = Vec::new();
    for endpoint in endpoints {
        match try_endpoint(&endpoint).await {
            Ok(client) => {
                tracing::debug!(%endpoint, "connected to the container engine");
                return Ok(client);
            }
            Err(why) => tried.push(format!("{endpoint} ({why})")),
        }
    }
    let permission = tried.iter().any(|t| t.contains("ermission denied"));
    let hint = if permission {
        " (hint: add this user to the socket's group, e.g. `usermod -aG docker $USER`, or set DOCKER_HOST)"
    } else {
        " (hint: start the daemon, e.g. `dockerd` or `systemctl start docker`, or set DOCKER_HOST)"
    };
    Err(DockerError {
        tried,
        hint: hint.into(),
    })
}

/// What the container engine says about itself, for `slipway doctor`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HostFacts {
    /// `Docker` or `Podman`.
    pub engine: String,
    pub version: String,
    pub api_version: String,
    pub rootless: bool,
    pub cgroup_version: String,
    pub memory_limit: bool,
    pub pids_limit: bool,
    pub cpu_limit: bool,
    pub root_dir: String,
    pub os: String,
}

pub async fn host_facts(docker: &Docker) -> Result<HostFacts, bollard::errors::Error> {
    let info = docker.info().await?;
    let version = docker.version().await?;
    let podman = version
        .components
        .iter()
        .flatten()
        .any(|c| c.name.to_ascii_lowercase().contains("podman"));
    let security = info.security_options.clone().unwrap_or_default();
    Ok(HostFacts {
        engine: if podman { "Podman" } else { "Docker" }.into(),
        version: version.version.unwrap_or_default(),
        api_version: docker.client_version().to_string(),
        rootless: security.iter().any(|s| s.contains("rootless")),
        cgroup_version: info
            .cgroup_version
            .map(|v| v.to_string())
            .unwrap_or_default(),
        memory_limit: info.memory_limit.unwrap_or(false),
        pids_limit: info.pids_limit.unwrap_or(false),
        cpu_limit: info.cpu_cfs_quota.unwrap_or(false),
        root_dir: info.docker_root_dir.unwrap_or_default(),
        os: info.operating_system.unwrap_or_default(),
    })
}

/// Whether `image` is present on the engine.
pub async fn has_image(docker: &Docker, image: &str) -> bool {
    docker.inspect_image(image).await.is_ok()
}

/// When the engine runs in a container, the id of that container, else
/// `None`. The id is read from the mount of `/etc/hostname`, which Docker
/// and Podman bind from the container's own folder; the hostname is only a
/// fallback, since with `--network host` it is the host's.
pub fn own_container() -> Option<String> {
    let inside = std::path::Path::new("/.dockerenv").exists()
        || std::path::Path::new("/run/.containerenv").exists();
    if !inside {
        return None;
    }
    std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|m| container_id_from_mountinfo(&m))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
}

/// The 64-hex container id in the source of the `/etc/hostname` mount
/// (`…/containers/<id>/hostname`, `…/overlay-containers/<id>/userdata/hostname`).
fn container_id_from_mountinfo(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        // Fields: id parent major:minor root mount-point options ...
        let mut fields = line.split(' ');
        let root = fields.nth(3)?;
        let mount_point = fields.next()?;
        if mount_point != "/etc/hostname" {
            return None;
        }
        root.split('/')
            .find(|c| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_owned)
    })
}

/// The daemon mounts checkouts from `state_dir` into job containers by
/// path, so when the engine runs in container `own`, `state_dir` must be a
/// bind mount with the same path on the host. `Err` says what is wrong and
/// the exact fix.
pub async fn check_state_dir_is_shared(
    docker: &Docker,
    own: &str,
    state_dir: &std::path::Path,
) -> Result<(), String> {
    let me = match docker.inspect_container(own, None).await {
        Ok(me) => me,
        // A container, but not one of this daemon's (e.g. a VM or sandbox
        // that looks like one, talking to another daemon): paths are the
        // daemon's own, nothing to check.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => return Ok(()),
        Err(e) => {
            return Err(format!(
                "cannot inspect the engine's own container `{own}`: {e}"
            ));
        }
    };
    let mounts = me.mounts.unwrap_or_default();
    let covering = mounts
        .iter()
        .filter(|m| {
            m.destination
                .as_deref()
                .is_some_and(|d| state_dir.starts_with(d))
        })
        .max_by_key(|m| m.destination.as_deref().map(str::len).unwrap_or(0));
    let dir = state_dir.display();
    let Some(mount) = covering else {
        return Err(format!(
            "the state directory {dir} is inside the engine's container, so the daemon cannot mount job checkouts from it (fix: run the engine with `-v {dir}:{dir}`, the same path on both sides)"
        ));
    };
    let source = mount.source.clone().unwrap_or_default();
    let destination = mount.destination.clone().unwrap_or_default();
    if source != destination {
        return Err(format!(
            "the state directory {dir} is mounted from {source} on the host (a {}), but the daemon resolves checkout paths on the host side (fix: mount it at the same path, `-v {destination}:{destination}`, or set SLIPWAY_STATE_DIR to a directory mounted that way)",
            mount.typ.as_deref().unwrap_or("mount")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::container_id_from_mountinfo;

    #[test]
    fn own_container_id_comes_from_the_hostname_mount() {
        let id = "4f1c0a6b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a";
        // As Docker 20.10 writes it (the root is relative to /var/lib/docker's filesystem).
        let docker = format!(
            "612 590 0:61 / / rw,relatime master:301 - overlay overlay rw\n\
             631 612 254:1 /var/lib/docker/containers/{id}/resolv.conf /etc/resolv.conf rw - ext4 /dev/vda rw\n\
             632 612 254:1 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/vda rw\n"
        );
        assert_eq!(container_id_from_mountinfo(&docker).as_deref(), Some(id));
        let podman = format!(
            "700 600 0:70 /containers/storage/overlay-containers/{id}/userdata/hostname /etc/hostname rw - tmpfs tmpfs rw\n"
        );
        assert_eq!(container_id_from_mountinfo(&podman).as_deref(), Some(id));
        // Not in a container (or a runtime that mounts no hostname file).
        assert_eq!(
            container_id_from_mountinfo("22 1 254:1 / / rw - ext4 /dev/vda rw\n"),
            None
        );
    }
}
