//! Commands run in a container that is already up (`docker exec`): the
//! steps of a job or workspace in its workload container, and the probes of
//! its services.
//!
//! A step is wrapped so it records its pid first: an exec'd process leads
//! its own process group, so a timeout or cancel signals that whole group
//! (SIGTERM, a grace period, then SIGKILL) and leaves the container, and
//! everything else running in it, untouched.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::container::{LineBuffer, RunnerError, engine, is_root};
use crate::logs::{JobLog, LogStream};
use crate::runtime::{ExecSpec, Output, OutputStream, Runtime};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEnd {
    /// It ran to its end with this exit code (-1 when the runtime reported none).
    Exited(i64),
    /// It ran past its timeout; its process group was stopped.
    TimedOut,
    /// The job or call was cancelled; its process group was stopped.
    Cancelled,
}

/// How a step ended and how long it took.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    /// How the step ended.
    pub end: StepEnd,
    /// Wall-clock time of the step, start to end (a stop's grace period
    /// included).
    pub duration: Duration,
}

/// A step to run in a workload container.
#[derive(Debug, Clone)]
pub struct StepExec {
    /// Shell command, run with `sh -c`.
    pub command: String,
    /// Environment variables of the step, on top of the container's.
    pub env: Vec<(String, String)>,
    /// Working directory; `None`: the container's own.
    pub workdir: Option<String>,
    /// `uid:gid`; never root.
    pub user: String,
}

/// Numbers the pid files of steps, so concurrent steps never share one.
static STEP_SERIAL: AtomicU64 = AtomicU64::new(0);

/// Run one step in `container` to its end, its output streamed line by line
/// into `log` as it happens.
pub async fn exec_step(
    runtime: &Runtime,
    container: &str,
    step: &StepExec,
    log: &JobLog,
    timeout: Duration,
    grace: Duration,
    cancel: &CancellationToken,
) -> Result<StepOutcome, RunnerError> {
    if is_root(&step.user) {
        return Err(RunnerError::RootUser(step.user.clone()));
    }
    let started = Instant::now();
    let pidfile = format!(
        "/tmp/.slipway-step-{}-{}",
        std::process::id(),
        STEP_SERIAL.fetch_add(1, Ordering::Relaxed)
    );
    // `$1` is the command, `$2` the pid file: no quoting of either needed.
    // The wrapper leads the step's process group, runs the command in the
    // same shell (no extra fork) and removes its pid file itself, so a step
    // costs one exec.
    let wrapper =
        "c=$1 f=$2; set --; echo $$ > \"$f\" || exit 125; trap 'rm -f \"$f\"' EXIT; eval \"$c\"";
    let spec = ExecSpec {
        argv: vec![
            "sh".to_owned(),
            "-c".to_owned(),
            wrapper.to_owned(),
            "slipway-step".to_owned(),
            step.command.clone(),
            pidfile.clone(),
        ],
        env: step.env.clone(),
        workdir: step.workdir.clone(),
        user: Some(step.user.clone()),
    };
    let exec = runtime
        .exec(container, spec)
        .await
        .map_err(engine("start an exec"))?;
    let (exec, mut output) = (exec.id, exec.output);

    let (mut out, mut err) = (LineBuffer::default(), LineBuffer::default());
    let mut feed = |item: Output| match item.stream {
        OutputStream::Stdout => out.push(&item.bytes, |l| log.line(LogStream::Stdout, l)),
        OutputStream::Stderr => err.push(&item.bytes, |l| log.line(LogStream::Stderr, l)),
    };
    let pump = async {
        while let Some(item) = output.next().await {
            match item {
                Ok(item) => feed(item),
                Err(e) => return Err(engine("read a step's output")(e)),
            }
        }
        Ok(())
    };
    tokio::pin!(pump);
    let stopped = tokio::select! {
        done = &mut pump => { done?; None }
        _ = tokio::time::sleep(timeout) => Some(StepEnd::TimedOut),
        _ = cancel.cancelled() => Some(StepEnd::Cancelled),
    };
    if let Some(end) = stopped {
        log.line(
            LogStream::Engine,
            &format!(
                "stopping the step ({end:?}): SIGTERM, then SIGKILL after {} s",
                grace.as_secs()
            ),
        );
        signal_group(runtime, container, &pidfile, "TERM").await;
        let ended = tokio::time::timeout(grace, &mut pump).await.is_ok();
        // The output may end with the step's first process while others of
        // its group ignore SIGTERM: whatever is left gets SIGKILL.
        signal_group(runtime, container, &pidfile, "KILL").await;
        if !ended {
            // Don't wait forever for a process that left the group (`setsid`).
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut pump).await;
        }
    }
    out.flush(|l| log.line(LogStream::Stdout, l));
    err.flush(|l| log.line(LogStream::Stderr, l));
    let end = match stopped {
        Some(end) => end,
        None => {
            let code = runtime
                .exec_exit_code(&exec)
                .await
                .map_err(engine("inspect an exec"))?;
            StepEnd::Exited(code.unwrap_or(-1))
        }
    };
    if stopped.is_some() {
        remove_pidfile(runtime, container, &pidfile, &step.user).await;
    }
    Ok(StepOutcome {
        end,
        duration: started.elapsed(),
    })
}

/// Send `signal` to the process group of the step whose pid is in `pidfile`.
async fn signal_group(runtime: &Runtime, container: &str, pidfile: &str, signal: &str) {
    let script = format!("kill -{signal} -\"$(cat '{pidfile}')\" 2>/dev/null");
    if let Err(e) = capture(
        runtime,
        container,
        &["sh".into(), "-c".into(), script],
        None,
        Duration::from_secs(5),
        1024,
    )
    .await
    {
        tracing::warn!(container, error = %e, "could not signal a step");
    }
}

async fn remove_pidfile(runtime: &Runtime, container: &str, pidfile: &str, user: &str) {
    let argv = ["rm".to_owned(), "-f".to_owned(), pidfile.to_owned()];
    let _ = capture(
        runtime,
        container,
        &argv,
        Some(user),
        Duration::from_secs(5),
        1024,
    )
    .await;
}

/// What a short command printed, and how it ended.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// `None` when it did not finish within its time.
    pub exit_code: Option<i64>,
    /// What it wrote to stdout, up to the cap, decoded lossily as UTF-8.
    pub stdout: String,
    /// What it wrote to stderr, up to the cap, decoded lossily as UTF-8.
    pub stderr: String,
    /// Wall-clock time until it ended or the timeout passed.
    pub elapsed: Duration,
}

/// Run `argv` in `container` and collect its output (each stream capped at
/// `cap` bytes). A command still running at `timeout` is left to finish on
/// its own and reported with no exit code.
pub async fn capture(
    runtime: &Runtime,
    container: &str,
    argv: &[String],
    user: Option<&str>,
    timeout: Duration,
    cap: usize,
) -> Result<Captured, RunnerError> {
    let started = Instant::now();
    let spec = ExecSpec {
        argv: argv.to_vec(),
        user: user.map(str::to_owned),
        ..Default::default()
    };
    let exec = runtime
        .exec(container, spec)
        .await
        .map_err(engine("start an exec"))?;
    let (exec, mut output) = (exec.id, exec.output);
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let read = async {
        while let Some(item) = output.next().await {
            let item = item.map_err(engine("read an exec's output"))?;
            let (buffer, message) = match item.stream {
                OutputStream::Stdout => (&mut stdout, item.bytes),
                OutputStream::Stderr => (&mut stderr, item.bytes),
            };
            let room = cap.saturating_sub(buffer.len());
            buffer.extend_from_slice(&message[..message.len().min(room)]);
        }
        Ok::<_, RunnerError>(())
    };
    let finished = tokio::time::timeout(timeout, read).await;
    let exit_code = match finished {
        Ok(result) => {
            result?;
            runtime
                .exec_exit_code(&exec)
                .await
                .map_err(engine("inspect an exec"))?
        }
        Err(_) => None,
    };
    Ok(Captured {
        exit_code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        elapsed: started.elapsed(),
    })
}
