//! Self-update: the engine, running as a container, replaces itself with a
//! new image and comes back on the old one when the new one is not ready.
//!
//! The engine that is asked ([`SelfUpdate::start`]) checks the request,
//! tags the image it runs as `<repo>:backup-<unix time>`, records the
//! update as `updating` in `<state>/self-update.json`, arms the hand-over
//! and starts a short-lived **update worker** from the new image (role
//! label `update-worker`, the engine's mounts, env, user and network). The
//! worker ([`worker`]) stops the engine, keeps it under another name,
//! creates the same container on the new image and waits for its `/readyz`;
//! it then removes the old container, or puts the old one back and starts
//! it. The outcome is written to the same file, which `GET
//! /api/v1/system/update` serves from whichever engine runs.
//!
//! The hand-over: an engine told to stop while an update it started is
//! under way exits at once, the way a crash would, instead of draining.
//! Running jobs keep their containers and are taken over by the next
//! engine (the path a killed engine's successor takes, tested by the crash
//! test), ready workspaces stay open, managed services and deployments keep
//! running and are adopted.

pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::job::now_ms;
use crate::runtime::RuntimeError;
use crate::runtime::docker::DockerRuntime;
use crate::runtime::docker::engine_container::WorkerSpec;

/// The role label of the update worker's container.
pub const ROLE_UPDATE_WORKER: &str = "update-worker";
/// The file, in the state directory, that holds the last update.
pub const STATUS_FILE: &str = "self-update.json";
/// How long the new engine has to become ready, unless the request says.
pub const DEFAULT_READY_TIMEOUT_S: u32 = 60;

/// `POST /api/v1/system/update`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// The image to update to (default: the image reference the engine was
    /// started from, as it is tagged now).
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._/:@-]*$"
    )]
    pub image: Option<String>,
    /// Seconds the new engine has to answer `/readyz` before the old one is
    /// put back (5 to 600; default 60).
    #[serde(default)]
    #[schema(minimum = 5, maximum = 600)]
    pub ready_timeout_s: Option<u32>,
}

/// Where an update stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    /// The worker is replacing the engine.
    Updating,
    /// The new engine is ready; the old container is gone.
    Updated,
    /// The new engine was not ready in time: the old one runs again.
    RolledBack,
    /// Neither engine could be made to run; `reason` says what was left.
    Failed,
}

/// The last update, as the worker left it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpdateStatus {
    /// Where it stands.
    pub state: UpdateState,
    /// The image reference the engine ran.
    pub from_image: String,
    /// Its image id.
    pub from_id: String,
    /// The image reference updated to.
    pub to_image: String,
    /// Its image id.
    pub to_id: String,
    /// The backup tag of the old image (`<repo>:backup-<unix time>`).
    pub backup: String,
    /// The engine's container name.
    pub container: String,
    /// When the update was asked for (ms since the epoch).
    pub started_ms: u64,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// Why it was rolled back or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why an update cannot start.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The engine is not a container.
    #[error(
        "this engine does not run in a container, so it cannot replace its container (update the binary and restart it instead)"
    )]
    NotInContainer,
    /// The image is not on the daemon.
    #[error("image `{0}` is not on the Docker daemon (build, load or pull it first)")]
    ImageNotFound(String),
    /// The engine already runs that image.
    #[error("the engine already runs image `{image}` ({id})")]
    AlreadyCurrent {
        /// The reference asked for.
        image: String,
        /// Its id.
        id: String,
    },
    /// Another update is under way.
    #[error("an update is under way (started {started_ms} ms since the epoch, to `{to_image}`)")]
    InProgress {
        /// When it started.
        started_ms: u64,
        /// Its image.
        to_image: String,
    },
    /// A bad request field.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The daemon refused something.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The status file could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The engine's side of self-update.
pub struct SelfUpdate {
    docker: DockerRuntime,
    own: Option<String>,
    engine_id: String,
    state_dir: PathBuf,
    /// Until when (ms since the epoch) a stop hands over instead of
    /// draining; 0: not armed.
    handover_until: AtomicU64,
}

impl SelfUpdate {
    /// Self-update for the engine `engine_id` in container `own` (`None`:
    /// not a container, every request is refused).
    pub fn new(
        docker: DockerRuntime,
        own: Option<String>,
        engine_id: String,
        state_dir: PathBuf,
    ) -> Arc<SelfUpdate> {
        Arc::new(SelfUpdate {
            docker,
            own,
            engine_id,
            state_dir,
            handover_until: AtomicU64::new(0),
        })
    }

    /// Whether a stop now should hand over (an update this engine started
    /// is under way) instead of draining.
    pub fn handing_over(&self) -> bool {
        now_ms() < self.handover_until.load(Ordering::SeqCst)
    }

    /// The last update, if any.
    pub fn last(&self) -> Option<UpdateStatus> {
        read_status(&self.state_dir)
    }

    /// Check the request, tag the backup, start the worker.
    pub async fn start(&self, request: UpdateRequest) -> Result<UpdateStatus, UpdateError> {
        let own = self.own.as_deref().ok_or(UpdateError::NotInContainer)?;
        let timeout = request.ready_timeout_s.unwrap_or(DEFAULT_READY_TIMEOUT_S);
        if !(5..=600).contains(&timeout) {
            return Err(UpdateError::Invalid {
                field: "ready_timeout_s",
                message: format!("{timeout} is outside 5..=600 seconds"),
            });
        }
        if let Some(last) = self.last().filter(|s| s.state == UpdateState::Updating) {
            // A worker that died leaves `updating` behind: after the longest
            // update could take, it no longer blocks the next one.
            if now_ms().saturating_sub(last.started_ms) < 15 * 60 * 1000 {
                return Err(UpdateError::InProgress {
                    started_ms: last.started_ms,
                    to_image: last.to_image,
                });
            }
        }
        if let Some(image) = request.image.as_deref().filter(|i| !valid_image_ref(i)) {
            return Err(UpdateError::Invalid {
                field: "image",
                message: format!(
                    "`{}` is not an image reference (`name[:tag]`, `registry/name@sha256:…`)",
                    image.escape_debug()
                ),
            });
        }
        // A host that looks like a container but whose daemon does not
        // know the id (a VM with `/.dockerenv`) is not one.
        let engine = match self.docker.engine_container(own).await {
            Err(RuntimeError::NotFound { .. }) => return Err(UpdateError::NotInContainer),
            other => other?,
        };
        let to_image = match request.image {
            Some(image) => image,
            None => engine.image_ref.clone(),
        };
        use crate::runtime::ContainerRuntime as _;
        let to_id = self
            .docker
            .image_id(&to_image)
            .await?
            .ok_or_else(|| UpdateError::ImageNotFound(to_image.clone()))?;
        if to_id == engine.image_id {
            return Err(UpdateError::AlreadyCurrent {
                image: to_image,
                id: to_id,
            });
        }
        let started_ms = now_ms();
        let repo = backup_repo(&engine.image_ref);
        let tag = format!("backup-{}", started_ms / 1000);
        self.docker.tag_image(&engine.image_id, &repo, &tag).await?;
        let status = UpdateStatus {
            state: UpdateState::Updating,
            from_image: engine.image_ref.clone(),
            from_id: engine.image_id.clone(),
            to_image: to_image.clone(),
            to_id,
            backup: format!("{repo}:{tag}"),
            container: engine.name.clone(),
            started_ms,
            finished_ms: None,
            reason: None,
        };
        write_status(&self.state_dir, &status)?;
        // Armed before the worker can stop us; long enough for the worker
        // to get to the stop, not forever if it never does.
        self.handover_until.store(
            started_ms + (u64::from(timeout) + 120) * 1000,
            Ordering::SeqCst,
        );
        let spec = WorkerSpec {
            name: format!("{}-update-{}", engine.name, started_ms / 1000),
            image: to_image.clone(),
            command: vec![
                "slipway".into(),
                "update-worker".into(),
                "--engine".into(),
                engine.id.clone(),
                "--image".into(),
                to_image,
                "--ready-timeout".into(),
                timeout.to_string(),
                "--state-dir".into(),
                self.state_dir.display().to_string(),
            ],
            labels: [
                (
                    crate::runner::LABEL_ROLE.to_owned(),
                    ROLE_UPDATE_WORKER.to_owned(),
                ),
                (
                    crate::runner::LABEL_ENGINE.to_owned(),
                    self.engine_id.clone(),
                ),
            ]
            .into(),
        };
        if let Err(e) = self.docker.start_worker(own, &spec).await {
            self.handover_until.store(0, Ordering::SeqCst);
            let failed = UpdateStatus {
                state: UpdateState::Failed,
                finished_ms: Some(now_ms()),
                reason: Some(format!("the update worker did not start: {e}")),
                ..status
            };
            write_status(&self.state_dir, &failed)?;
            return Err(e.into());
        }
        tracing::info!(to = %status.to_image, backup = %status.backup, "self-update: worker started");
        Ok(status)
    }
}

/// Whether `image` reads as an image reference: lowercase name parts with
/// `.`, `_`, `-`, `/`, an optional registry port, `:tag`, `@digest`.
fn valid_image_ref(image: &str) -> bool {
    !image.is_empty()
        && image.len() <= 256
        && !image.starts_with(['-', '.', '/', ':', '@'])
        && image
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_/:@".contains(&b))
}

/// The repository part of an image reference (`registry:5000/slipway:1.2`
/// is `registry:5000/slipway`); an id alone backs up as `slipway`.
pub fn backup_repo(image_ref: &str) -> String {
    if image_ref.starts_with("sha256:") || image_ref.is_empty() {
        return "slipway".into();
    }
    let without_digest = image_ref.split('@').next().unwrap_or(image_ref);
    match without_digest.rsplit_once(':') {
        // A colon after the last slash is the tag's; before it, a port's.
        Some((repo, tag)) if !tag.contains('/') => repo.to_owned(),
        _ => without_digest.to_owned(),
    }
}

/// The status file's contents, if it holds a status.
pub fn read_status(state_dir: &Path) -> Option<UpdateStatus> {
    let text = std::fs::read_to_string(state_dir.join(STATUS_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Replace the status file (written aside, then renamed: a reader never
/// sees half of it).
pub fn write_status(state_dir: &Path, status: &UpdateStatus) -> Result<(), UpdateError> {
    let path = state_dir.join(STATUS_FILE);
    let aside = state_dir.join(format!("{STATUS_FILE}.tmp"));
    let text = serde_json::to_vec_pretty(status).unwrap_or_default();
    std::fs::write(&aside, text)
        .and_then(|()| std::fs::rename(&aside, &path))
        .map_err(|source| UpdateError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backup_keeps_the_repository_and_drops_tag_and_digest() {
        assert_eq!(backup_repo("slipway:latest"), "slipway");
        assert_eq!(backup_repo("slipway"), "slipway");
        assert_eq!(
            backup_repo("registry:5000/team/slipway:1.2"),
            "registry:5000/team/slipway"
        );
        assert_eq!(
            backup_repo("registry:5000/slipway"),
            "registry:5000/slipway"
        );
        assert_eq!(backup_repo("slipway@sha256:abc"), "slipway");
        assert_eq!(backup_repo("sha256:0123"), "slipway");
    }

    #[test]
    fn image_references_are_checked_before_the_daemon_is_asked() {
        for good in [
            "slipway:1.4",
            "registry:5000/team/slipway@sha256:ab12",
            "slipway",
        ] {
            assert!(valid_image_ref(good), "{good}");
        }
        for bad in ["", "-x", "slip way", "a\nb", ":tag", "x;rm"] {
            assert!(!valid_image_ref(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_status_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_status(dir.path()).is_none());
        let status = UpdateStatus {
            state: UpdateState::RolledBack,
            from_image: "slipway:test".into(),
            from_id: "sha256:a".into(),
            to_image: "slipway:broken".into(),
            to_id: "sha256:b".into(),
            backup: "slipway:backup-1".into(),
            container: "slipway".into(),
            started_ms: 1,
            finished_ms: Some(2),
            reason: Some("not ready".into()),
        };
        write_status(dir.path(), &status).unwrap();
        let back = read_status(dir.path()).unwrap();
        assert_eq!(back.state, UpdateState::RolledBack);
        assert_eq!(back.reason.as_deref(), Some("not ready"));
        assert!(!dir.path().join("self-update.json.tmp").exists());
    }
}
