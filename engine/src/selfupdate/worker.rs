//! The update worker (`slipway update-worker`, run from the new image by
//! the engine it replaces): stop the engine, keep it aside, start the same
//! container on the new image, wait for `/readyz`, then remove the old one
//! or put it back.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::{UpdateState, UpdateStatus, read_status, write_status};
use crate::job::now_ms;
use crate::runtime::docker::DockerRuntime;
use crate::runtime::{ContainerRuntime, ExecSpec, RuntimeError};

/// What the engine tells the worker.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    /// The engine container's id.
    pub engine: String,
    /// The image to run it on.
    pub image: String,
    /// How long the new engine has to answer `/readyz`.
    pub ready_timeout: Duration,
    /// The state directory (the status file's).
    pub state_dir: PathBuf,
}

/// How long a stopping engine may take: a handing-over engine exits at
/// once; one that drains gets what `docker stop` would give it.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// Replace the engine; the outcome is also written to the status file.
pub async fn run(docker: &DockerRuntime, args: &WorkerArgs) -> UpdateStatus {
    let mut status = read_status(&args.state_dir).unwrap_or_else(|| UpdateStatus {
        state: UpdateState::Updating,
        from_image: String::new(),
        from_id: String::new(),
        to_image: args.image.clone(),
        to_id: String::new(),
        backup: String::new(),
        container: String::new(),
        started_ms: now_ms(),
        finished_ms: None,
        reason: None,
    });
    let (state, reason) = match replace(docker, args).await {
        Ok(()) => (UpdateState::Updated, None),
        Err(Failure::RolledBack(why)) => (UpdateState::RolledBack, Some(why)),
        Err(Failure::Stuck(why)) => (UpdateState::Failed, Some(why)),
    };
    status.state = state;
    status.reason = reason;
    status.finished_ms = Some(now_ms());
    if let Err(e) = write_status(&args.state_dir, &status) {
        tracing::error!(error = %e, "self-update: the outcome could not be recorded");
    }
    status
}

enum Failure {
    /// The new engine did not come up; the old one runs again.
    RolledBack(String),
    /// Something is left for the operator.
    Stuck(String),
}

fn stuck(what: &str) -> impl Fn(RuntimeError) -> Failure + '_ {
    move |e| Failure::Stuck(format!("{what}: {e}"))
}

async fn replace(docker: &DockerRuntime, args: &WorkerArgs) -> Result<(), Failure> {
    let old = docker
        .engine_container(&args.engine)
        .await
        .map_err(stuck("inspecting the engine"))?;
    let aside = format!("{}-replaced-{}", old.name, now_ms() / 1000);
    docker
        .stop_for_update(&old.id, STOP_GRACE)
        .await
        .map_err(stuck("stopping the engine"))?;
    docker
        .rename_container(&old.id, &aside)
        .await
        .map_err(stuck("renaming the stopped engine"))?;
    let why = match start_new(docker, args, &old.id, &old.name).await {
        Ok(()) => {
            docker
                .remove_keeping_volumes(&old.id)
                .await
                .map_err(stuck("removing the old engine container"))?;
            tracing::info!(image = %args.image, "self-update: the new engine is ready");
            return Ok(());
        }
        Err(why) => why,
    };
    tracing::warn!(reason = %why, "self-update: rolling back");
    // Put the old engine back under its name.
    docker
        .rename_container(&old.id, &old.name)
        .await
        .map_err(|e| Failure::Stuck(format!("{why}; then renaming the old engine back: {e}")))?;
    docker
        .start_container(&old.id)
        .await
        .map_err(|e| Failure::Stuck(format!("{why}; then starting the old engine: {e}")))?;
    match wait_ready(docker, &old.id, args.ready_timeout).await {
        Ok(()) => Err(Failure::RolledBack(why)),
        Err(e) => Err(Failure::Stuck(format!(
            "{why}; the old engine, started again, is not ready either: {e}"
        ))),
    }
}

/// Create and start the new container under `name`; wait for it. On any
/// failure it is removed again, and the reason returned.
async fn start_new(
    docker: &DockerRuntime,
    args: &WorkerArgs,
    old: &str,
    name: &str,
) -> Result<(), String> {
    let new = docker
        .recreate_on(old, &args.image, name)
        .await
        .map_err(|e| format!("creating the engine on {}: {e}", args.image))?;
    let outcome = match docker.start_container(&new).await {
        Ok(()) => wait_ready(docker, &new, args.ready_timeout).await,
        Err(e) => Err(format!("starting the engine on {}: {e}", args.image)),
    };
    if outcome.is_err() {
        // It never became ready, so it has nothing to drain: stop it soon.
        let _ = docker.stop_for_update(&new, Duration::from_secs(3)).await;
        let _ = docker.remove_keeping_volumes(&new).await;
    }
    outcome
}

/// Until `timeout`, ask the engine in `container` for `/readyz` (`slipway
/// healthcheck --ready` inside it, which works whatever its network).
async fn wait_ready(
    docker: &DockerRuntime,
    container: &str,
    timeout: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    while started.elapsed() < timeout {
        if !docker.is_running(container).await {
            let code = docker.wait_container(container).await;
            return Err(format!(
                "the engine exited (code {}) before it was ready; its last check: {last}",
                code.map_or_else(|| "unknown".into(), |c| c.to_string())
            ));
        }
        match ready_check(docker, container).await {
            Ok(()) => return Ok(()),
            Err(why) => last = why,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!(
        "not ready within {} s; its last check: {last}",
        timeout.as_secs()
    ))
}

async fn ready_check(docker: &DockerRuntime, container: &str) -> Result<(), String> {
    let spec = ExecSpec {
        argv: vec!["slipway".into(), "healthcheck".into(), "--ready".into()],
        env: vec![],
        workdir: None,
        user: None,
    };
    let mut exec = docker
        .exec(container, spec)
        .await
        .map_err(|e| e.to_string())?;
    let mut said = String::new();
    while let Some(Ok(out)) = exec.output.next().await {
        if said.len() < 2048 {
            said.push_str(&String::from_utf8_lossy(&out.bytes));
        }
    }
    match docker.exec_exit_code(&exec.id).await {
        Ok(Some(0)) => Ok(()),
        Ok(code) => Err(format!(
            "exit {}: {}",
            code.unwrap_or(-1),
            crate::plugins::quote::quote(said.trim())
        )),
        Err(e) => Err(e.to_string()),
    }
}
