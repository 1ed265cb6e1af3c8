//! Containers as the products use them, over the runtime seam: created
//! and started (a failed start removes what was created), waited for, and
//! removed for sure (retried in the background while the engine is away).
//! What a container is and how it is hardened is `runtime::spec`.

use std::time::Duration;

pub use crate::runtime::spec::{
    ContainerLimits, ContainerSpec, DEFAULT_PIDS, Hardening, IDLE, SelinuxLabel, TMP_OPTIONS, bind,
    daemon_uses_selinux,
};
use crate::runtime::{ContainerRuntime, Runtime, RuntimeError};

/// Why a container of a job or workspace could not be created, started or run.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The container engine does not have the image the container names.
    #[error(
        "image `{image}` is not available to the container engine (hint: build it first, or check the base-image map)"
    )]
    ImageMissing {
        /// The image reference (tag or id) the container asked for.
        image: String,
    },
    /// The image has no `sh` (e.g. `FROM scratch`), so no step can run in it.
    #[error(
        "image `{image}` has no shell (`sh`): Slipway runs steps with `sh -c`, so the image needs one (hint: base it on an image with a shell)"
    )]
    NoShell {
        /// The image without a shell.
        image: String,
    },
    /// Any other refusal of the container engine (daemon error, conflict, ...).
    #[error("the container engine refused to {action}: {message}")]
    Engine {
        /// What the engine was asked to do, e.g. `create the container`.
        action: &'static str,
        /// The runtime's error, as text.
        message: String,
    },
    /// A step or the workload container would run as root (uid 0, `root` or
    /// no user); holds the user asked for.
    #[error("refusing to run a step as root (user `{0}`); steps run as a non-root uid:gid")]
    RootUser(String),
}

impl RunnerError {
    /// `action` failed in the runtime; a missing image or shell says so.
    pub(crate) fn from_runtime(action: &'static str, image: &str, e: RuntimeError) -> RunnerError {
        match e {
            RuntimeError::ImageMissing(_) => RunnerError::ImageMissing {
                image: image.to_owned(),
            },
            RuntimeError::NoShell => RunnerError::NoShell {
                image: image.to_owned(),
            },
            other => RunnerError::Engine {
                action,
                message: other.to_string(),
            },
        }
    }
}

/// `action` failed in the runtime.
pub(crate) fn engine(action: &'static str) -> impl Fn(RuntimeError) -> RunnerError {
    move |e| RunnerError::Engine {
        action,
        message: e.to_string(),
    }
}

pub(crate) fn is_root(user: &str) -> bool {
    let uid = user.split(':').next().unwrap_or("");
    uid.is_empty() || uid == "0" || uid == "root"
}

/// Create `spec` without starting it; returns the container id.
pub async fn create(runtime: &Runtime, spec: &ContainerSpec) -> Result<String, RunnerError> {
    runtime
        .create_container(spec)
        .await
        .map_err(|e| RunnerError::from_runtime("create the container", &spec.image, e))
}

/// Create and start `spec`; returns the container id. A container that
/// fails to start is removed again.
pub async fn create_and_start(
    runtime: &Runtime,
    spec: &ContainerSpec,
) -> Result<String, RunnerError> {
    let id = create(runtime, spec).await?;
    if let Err(e) = runtime.start_container(&id).await {
        remove(runtime, &id).await;
        return Err(RunnerError::from_runtime(
            "start the container",
            &spec.image,
            e,
        ));
    }
    Ok(id)
}

/// Wait until the container stops: its exit code, or `None` when it was
/// removed or the runtime went away first.
pub async fn wait_exit(runtime: &Runtime, id: &str) -> Option<i64> {
    runtime.wait_container(id).await
}

/// Remove a container and its anonymous volumes, whatever its state.
pub async fn remove(runtime: &Runtime, id: &str) {
    if try_remove(runtime.as_ref(), id).await.is_err() {
        // The daemon may be restarting (its containers stop, and stay as
        // stopped containers): keep trying for a while in the background.
        let (runtime, id) = (runtime.clone(), id.to_owned());
        tokio::spawn(async move {
            let mut pause = Duration::from_secs(1);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
            loop {
                tokio::time::sleep(pause).await;
                match try_remove(runtime.as_ref(), &id).await {
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
async fn try_remove(runtime: &dyn ContainerRuntime, id: &str) -> Result<(), RuntimeError> {
    runtime.remove_container(id).await.inspect_err(|e| {
        tracing::debug!(container = %id, error = %e, "could not remove a container (yet)");
    })
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

    #[test]
    fn root_is_refused() {
        assert!(is_root("0:0") && is_root("root") && is_root("") && !is_root("1000:1000"));
    }
}
