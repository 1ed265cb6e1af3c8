//! One step in a fresh, hardened container.
//!
//! Hardened by default (DESIGN: "Containers"): all capabilities dropped,
//! `no-new-privileges`, read-only root filesystem with a tmpfs `/tmp`, a
//! non-root user, `--init` (so signals reach the step and zombies are
//! reaped), pids/memory/CPU limits with no extra swap, no network unless
//! asked, no Docker socket; the only writable mounts are the ones the caller
//! binds (the checkout). Output is streamed line by line into the job log as
//! it happens. A timeout or cancel stops the container (SIGTERM, a grace
//! period, then SIGKILL). The container is removed whatever happens.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::logs::JobLog;

/// Default cap on processes in a step container.
pub const DEFAULT_PIDS: i64 = 512;

#[derive(Debug, Clone, Default)]
pub struct ContainerLimits {
    pub memory_mb: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
}

/// What to run, and where.
#[derive(Debug, Clone)]
pub struct StepContainer {
    pub image: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    /// `uid:gid`; never root.
    pub user: String,
    /// `host:container[:ro]`; the only writable places besides `/tmp`.
    pub binds: Vec<String>,
    pub labels: HashMap<String, String>,
    pub limits: ContainerLimits,
    /// `none` unless the job asks for a network.
    pub network: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEnd {
    Exited(i64),
    TimedOut,
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub end: StepEnd,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(
        "image `{image}` is not available to the container engine (hint: build it first, or check the base-image map)"
    )]
    ImageMissing { image: String },
    #[error("the container engine refused to {action}: {message}")]
    Engine {
        action: &'static str,
        message: String,
    },
    #[error("refusing to run a step as root (user `{0}`); steps run as a non-root uid:gid")]
    RootUser(String),
}

fn engine(action: &'static str) -> impl Fn(bollard::errors::Error) -> RunnerError {
    move |e| RunnerError::Engine {
        action,
        message: e.to_string(),
    }
}

impl StepContainer {
    fn host_config(&self) -> HostConfig {
        let memory = self.limits.memory_mb.map(|mb| (mb * 1024 * 1024) as i64);
        HostConfig {
            binds: Some(self.binds.clone()),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            readonly_rootfs: Some(true),
            init: Some(true),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_owned(),
                "rw,nosuid,nodev,size=256m,mode=1777".to_owned(),
            )])),
            network_mode: Some(self.network.clone()),
            memory,
            // No swap beyond the memory limit.
            memory_swap: memory,
            pids_limit: Some(self.limits.pids.map(|p| p as i64).unwrap_or(DEFAULT_PIDS)),
            nano_cpus: self.limits.cpus.map(|c| (c * 1e9) as i64),
            ..Default::default()
        }
    }

    fn body(&self) -> ContainerCreateBody {
        ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: Some(self.argv.clone()),
            env: Some(self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: self.workdir.clone(),
            user: Some(self.user.clone()),
            labels: Some(self.labels.clone()),
            // The image's entrypoint never runs: the step is the command.
            entrypoint: Some(vec![]),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            host_config: Some(self.host_config()),
            ..Default::default()
        }
    }
}

fn is_root(user: &str) -> bool {
    let uid = user.split(':').next().unwrap_or("");
    uid.is_empty() || uid == "0" || uid == "root"
}

/// Run one step to its end; the container is removed afterwards.
pub async fn run_step(
    docker: &Docker,
    spec: &StepContainer,
    log: &JobLog,
    timeout: Duration,
    grace: Duration,
    cancel: &CancellationToken,
) -> Result<StepOutcome, RunnerError> {
    if is_root(&spec.user) {
        return Err(RunnerError::RootUser(spec.user.clone()));
    }
    let created = docker
        .create_container(None::<CreateContainerOptions>, spec.body())
        .await
        .map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            } => RunnerError::ImageMissing {
                image: spec.image.clone(),
            },
            other => engine("create the container")(other),
        })?;
    let id = created.id;
    let result = drive(docker, &id, log, timeout, grace, cancel).await;
    let remove = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    if let Err(e) = docker.remove_container(&id, Some(remove)).await {
        tracing::warn!(container = %id, error = %e, "could not remove a step container; the reconcile pass will");
    }
    result
}

async fn drive(
    docker: &Docker,
    id: &str,
    log: &JobLog,
    timeout: Duration,
    grace: Duration,
    cancel: &CancellationToken,
) -> Result<StepOutcome, RunnerError> {
    let started = Instant::now();
    docker
        .start_container(id, None)
        .await
        .map_err(engine("start the container"))?;
    // Stream output as it happens. Docker's follow stream can close before
    // the last bytes of a container that just exited, so after the exit the
    // whole log is read once more and only what was not seen is kept.
    let streams = std::sync::Arc::new(std::sync::Mutex::new(Streams::default()));
    let follow = LogsOptionsBuilder::new()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .build();
    let mut stream = docker.logs(id, Some(follow));
    let (shared, writer) = (streams.clone(), log.clone());
    let pump = tokio::spawn(async move {
        while let Some(Ok(item)) = stream.next().await {
            shared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .feed(item, &writer, true);
        }
    });

    let wait = async {
        let mut waiting = docker.wait_container(id, None);
        match waiting.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(engine("wait for the container")(e)),
            None => Err(RunnerError::Engine {
                action: "wait for the container",
                message: "the wait stream ended".into(),
            }),
        }
    };
    tokio::pin!(wait);
    let end = tokio::select! {
        code = &mut wait => StepEnd::Exited(code?),
        _ = tokio::time::sleep(timeout) => StepEnd::TimedOut,
        _ = cancel.cancelled() => StepEnd::Cancelled,
    };
    if end != StepEnd::Exited(0) && !matches!(end, StepEnd::Exited(_)) {
        log.line(
            "slipway",
            &format!(
                "stopping the step ({end:?}): SIGTERM, then SIGKILL after {} s",
                grace.as_secs()
            ),
        );
        let stop = StopContainerOptionsBuilder::new()
            .t(grace.as_secs() as i32)
            .build();
        if let Err(e) = docker.stop_container(id, Some(stop)).await {
            tracing::warn!(container = %id, error = %e, "stop failed; the container is removed by force");
        }
        let _ = tokio::time::timeout(grace + Duration::from_secs(5), &mut wait).await;
    }
    // Give the live stream a moment to end by itself, then read the rest.
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while !pump.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await
        }
    })
    .await;
    pump.abort();
    let all = LogsOptionsBuilder::new()
        .follow(false)
        .stdout(true)
        .stderr(true)
        .build();
    let mut rest = docker.logs(id, Some(all));
    let mut state = std::mem::take(&mut *streams.lock().unwrap_or_else(|p| p.into_inner()));
    state.rewind();
    while let Some(Ok(item)) = rest.next().await {
        state.feed(item, log, false);
    }
    state.finish(log);
    Ok(StepOutcome {
        end,
        duration: started.elapsed(),
    })
}

/// Both output streams: lines emitted so far, and how many bytes of each
/// were seen, so a second read of the whole log emits only the rest.
#[derive(Default)]
struct Streams {
    out: LineBuffer,
    err: LineBuffer,
    seen: [u64; 2],
    /// Bytes of each stream already consumed during a re-read.
    replayed: [u64; 2],
}

impl Streams {
    /// Start a re-read from the beginning of the log.
    fn rewind(&mut self) {
        self.replayed = [0, 0];
    }

    fn feed(&mut self, item: LogOutput, log: &JobLog, live: bool) {
        let (index, message) = match item {
            LogOutput::StdOut { message } | LogOutput::Console { message } => (0, message),
            LogOutput::StdErr { message } => (1, message),
            LogOutput::StdIn { .. } => return,
        };
        let mut bytes: &[u8] = &message;
        if !live {
            // Skip what the live stream already delivered.
            let already = self.seen[index].saturating_sub(self.replayed[index]);
            let skip = (already as usize).min(bytes.len());
            self.replayed[index] += bytes.len() as u64;
            bytes = &bytes[skip..];
        }
        self.seen[index] += bytes.len() as u64;
        let (buffer, name) = if index == 0 {
            (&mut self.out, "stdout")
        } else {
            (&mut self.err, "stderr")
        };
        buffer.push(bytes, |l| log.line(name, l));
    }

    fn finish(&mut self, log: &JobLog) {
        self.out.flush(|l| log.line("stdout", l));
        self.err.flush(|l| log.line("stderr", l));
    }
}

/// Splits a byte stream into lines; a partial line waits for its end.
#[derive(Default)]
struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&str)) {
        self.pending.extend_from_slice(bytes);
        while let Some(at) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=at).collect();
            emit(String::from_utf8_lossy(&line[..line.len() - 1]).trim_end_matches('\r'));
        }
    }

    fn flush(&mut self, mut emit: impl FnMut(&str)) {
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
    fn root_is_refused_and_hardening_is_on() {
        assert!(is_root("0:0") && is_root("root") && is_root("") && !is_root("1000:1000"));
        let spec = StepContainer {
            image: "i".into(),
            argv: vec!["true".into()],
            env: vec![],
            workdir: None,
            user: "1000:1000".into(),
            binds: vec![],
            labels: HashMap::new(),
            limits: ContainerLimits {
                memory_mb: Some(64),
                ..Default::default()
            },
            network: "none".into(),
        };
        let hc = spec.host_config();
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(
            (hc.memory, hc.memory_swap),
            (Some(64 << 20), Some(64 << 20))
        );
        assert_eq!(hc.pids_limit, Some(DEFAULT_PIDS));
    }
}
