//! The engine's own host: whether it runs in a container, and whether
//! the daemon can then see its state directory at the same path.

use super::ContainerRuntime;

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

/// Why the daemon cannot mount job checkouts from the engine's state
/// directory, with the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateDirError {
    /// The daemon could not describe the engine's own container.
    #[error("cannot inspect the engine's own container `{container}`: {reason}")]
    Inspect {
        /// The engine's container id, as found by [`own_container`].
        container: String,
        /// The daemon's error.
        reason: String,
    },
    /// No mount of the engine's container covers the state directory: it
    /// lives in the container's own filesystem, which the daemon cannot bind.
    #[error(
        "the state directory {dir} is inside the engine's container, so the daemon cannot mount job checkouts from it (fix: run the engine with `-v {dir}:{dir}`, the same path on both sides)"
    )]
    NotMounted {
        /// The state directory, as the engine sees it.
        dir: String,
    },
    /// The mount covering the state directory has a different path on the
    /// host, so paths the engine hands the daemon would name other files.
    #[error(
        "the state directory {dir} is mounted from {host_path} on the host (a {kind}), but the daemon resolves checkout paths on the host side (fix: mount it at the same path, `-v {destination}:{destination}`, or set SLIPWAY_STATE_DIR to a directory mounted that way)"
    )]
    OtherPath {
        /// The state directory, as the engine sees it.
        dir: String,
        /// The mount's source on the host.
        host_path: String,
        /// Where the mount is in the engine's container.
        destination: String,
        /// The mount's type (`bind`, `volume`, ...; `mount` when unknown).
        kind: String,
    },
}

/// The daemon mounts checkouts from `state_dir` into job containers by
/// path, so when the engine runs in container `own`, `state_dir` must be a
/// bind mount with the same path on the host.
pub async fn check_state_dir_is_shared(
    runtime: &dyn ContainerRuntime,
    own: &str,
    state_dir: &std::path::Path,
) -> Result<(), StateDirError> {
    let me = match runtime.inspect_container(own).await {
        Ok(me) => me,
        // A container, but not one of this daemon's (e.g. a VM or sandbox
        // that looks like one, talking to another daemon): paths are the
        // daemon's own, nothing to check.
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => {
            return Err(StateDirError::Inspect {
                container: own.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    let covering = me
        .mounts
        .iter()
        .filter(|m| !m.destination.is_empty() && state_dir.starts_with(&m.destination))
        .max_by_key(|m| m.destination.len());
    let dir = state_dir.display().to_string();
    let Some(mount) = covering else {
        return Err(StateDirError::NotMounted { dir });
    };
    if mount.source != mount.destination {
        return Err(StateDirError::OtherPath {
            dir,
            host_path: mount.source.clone(),
            destination: mount.destination.clone(),
            kind: if mount.kind.is_empty() {
                "mount".into()
            } else {
                mount.kind.clone()
            },
        });
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
