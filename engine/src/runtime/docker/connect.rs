//! Connecting to the container engine: `DOCKER_HOST`, the default socket,
//! rootless Docker (`$XDG_RUNTIME_DIR/docker.sock`) and Podman's Docker API
//! socket, in that order; the API version is negotiated (Docker 20.10 speaks
//! 1.41), and the engine must answer a ping.

use std::path::PathBuf;

use bollard::Docker;

use super::DockerRuntime;
use crate::runtime::HostFacts;

/// No candidate endpoint gave a container engine that answered a ping.
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
pub async fn connect() -> Result<DockerRuntime, DockerError> {
    connect_any(candidates()).await
}

/// The first of `endpoints` that answers.
pub async fn connect_any(endpoints: Vec<String>) -> Result<DockerRuntime, DockerError> {
    let mut tried = Vec::new();
    for endpoint in endpoints {
        match try_endpoint(&endpoint).await {
            Ok(client) => {
                tracing::debug!(%endpoint, "connected to the container engine");
                return Ok(DockerRuntime::new(client));
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

/// What the engine says about itself.
pub(super) async fn host_facts(docker: &Docker) -> Result<HostFacts, bollard::errors::Error> {
    let info = docker.info().await?;
    let version = docker.version().await?;
    let podman = version
        .components
        .iter()
        .flatten()
        .any(|c| c.name.to_ascii_lowercase().contains("podman"));
    let security = info.security_options.unwrap_or_default();
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
        security_options: security,
        runtimes: {
            let mut runtimes: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
            runtimes.sort();
            runtimes
        },
        default_runtime: info.default_runtime.unwrap_or_default(),
    })
}
