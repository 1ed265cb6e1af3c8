//! A job's steps as its workload container's own command.
//!
//! A job runs its steps once, in order, and is done, so its container runs
//! them itself instead of idling for one exec per step (workspaces keep
//! the idle container: they run steps on demand). That saves a container
//! round trip before the first step, and since Docker keeps a container's
//! output, an engine restarted mid-job can follow the same container again
//! from where its log stops ([`Resume`]) instead of starting over.
//!
//! The command is a small `sh` driver ([`DRIVER`]): each step runs as
//! `sh -c <command>`; after it the driver prints an end marker,
//! `##slipway:<nonce>:end <n> <exit code>`, on stdout *and* stderr (each
//! stream is ordered in itself, so a step's last line comes before its
//! marker on both), and it stops at the first step that fails. The nonce
//! is random per attempt, so no output is taken for a marker by accident.
//! The output is read with Docker's timestamps, which the job log keeps.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::logs::{JobLog, LogStream};
use crate::plan::{Step, StepReport};
use crate::runner::container::LineBuffer;
use crate::runner::exec::StepEnd;
use crate::runner::prepare::StepRun;
use crate::runtime::{EventFilter, EventKind, LogsOptions, Output, OutputStream, Runtime};

/// Label with the job's steps (names and reports; the commands are in the
/// container's command), so an adopting engine knows what it follows.
pub const LABEL_STEPS: &str = "io.slipway.steps";

/// Runs `$3...` one by one as `sh -c`; `$1` is the marker prefix. `$2` is
/// unused (so `$0` stays the driver's name in `ps`).
pub const DRIVER: &str = r#"m=$1; shift 2; i=0
for c in "$@"; do
  i=$((i+1))
  sh -c "$c"
  r=$?
  printf '%send %d %d\n' "$m" "$i" "$r"
  printf '%send %d %d\n' "$m" "$i" "$r" >&2
  [ "$r" -eq 0 ] || exit "$r"
done"#;

/// A job's steps and the nonce of their end markers.
pub struct Script {
    /// 128 random bits in hex, fresh per attempt, in every end marker: no step output
    /// passes for a marker by accident.
    pub nonce: String,
    /// The steps, in the order the driver runs them.
    pub steps: Vec<Step>,
}

impl Script {
    /// `steps` under a fresh nonce.
    pub fn new(steps: Vec<Step>) -> Script {
        Script {
            nonce: nonce(),
            steps,
        }
    }

    /// The container command that runs them.
    pub fn command(&self) -> Vec<String> {
        command(&self.nonce, &self.steps)
    }

    /// The labels an adopting engine reads them back from.
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(LABEL_STEPS.to_owned(), steps_label(&self.steps))])
    }

    /// The script of a container started with [`Script::command`] and
    /// [`Script::labels`].
    pub fn of_container(cmd: &[String], labels: &HashMap<String, String>) -> Option<Script> {
        let (nonce, commands) = parse_command(cmd)?;
        let steps = steps_of(labels.get(LABEL_STEPS)?, commands)?;
        Some(Script { nonce, steps })
    }
}

/// The container command that runs `steps` under the marker `nonce`.
fn command(nonce: &str, steps: &[Step]) -> Vec<String> {
    let mut argv = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        DRIVER.to_owned(),
        "slipway-steps".to_owned(),
        marker_prefix(nonce),
        "--".to_owned(),
    ];
    argv.extend(steps.iter().map(|s| s.command.clone()));
    argv
}

fn marker_prefix(nonce: &str) -> String {
    format!("##slipway:{nonce}:")
}

/// A fresh marker nonce: 128 random bits.
fn nonce() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// The nonce and step commands of a container started by [`command`].
fn parse_command(argv: &[String]) -> Option<(String, Vec<String>)> {
    if argv.len() < 6 || argv[2] != DRIVER {
        return None;
    }
    let nonce = argv[4]
        .strip_prefix("##slipway:")?
        .strip_suffix(':')?
        .to_owned();
    Some((nonce, argv[6..].to_vec()))
}

/// What the [`LABEL_STEPS`] label keeps of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelledStep {
    /// The step's name, as in [`Step::name`].
    pub name: String,
    /// `(format, path)` of its report, if it writes one.
    pub report: Option<(String, Option<String>)>,
}

fn steps_label(steps: &[Step]) -> String {
    let list: Vec<LabelledStep> = steps
        .iter()
        .map(|s| LabelledStep {
            name: s.name.clone(),
            report: s
                .report
                .as_ref()
                .map(|r| (r.format.clone(), r.path.clone())),
        })
        .collect();
    serde_json::to_string(&list).unwrap_or_default()
}

/// The steps of an adopted container: its label's names and reports with
/// its command's commands.
fn steps_of(label: &str, commands: Vec<String>) -> Option<Vec<Step>> {
    let list: Vec<LabelledStep> = serde_json::from_str(label).ok()?;
    if list.len() != commands.len() {
        return None;
    }
    Some(
        list.into_iter()
            .zip(commands)
            .map(|(l, command)| Step {
                name: l.name,
                command,
                report: l.report.map(|(format, path)| StepReport { format, path }),
            })
            .collect(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Out = 0,
    Err = 1,
}

impl Stream {
    fn log_stream(self) -> LogStream<'static> {
        match self {
            Stream::Out => LogStream::Stdout,
            Stream::Err => LogStream::Stderr,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Line {
        stream: Stream,
        ms: u64,
        text: String,
    },
    /// Step `step` (1-based) ended with `code`, as seen on `stream`.
    End {
        stream: Stream,
        ms: u64,
        step: usize,
        code: i64,
    },
}

/// Splits the container's two timestamped streams into lines and end
/// markers.
struct Demux {
    prefix: String,
    buffers: [LineBuffer; 2],
}

impl Demux {
    fn new(nonce: &str) -> Demux {
        Demux {
            prefix: marker_prefix(nonce),
            buffers: Default::default(),
        }
    }

    /// One frame of Docker's log stream: `<RFC 3339 time> <bytes>`.
    fn frame(&mut self, stream: Stream, bytes: &[u8], out: &mut Vec<Event>) {
        let (ms, payload) = split_timestamp(bytes);
        let prefix = &self.prefix;
        self.buffers[stream as usize].push(payload, |line| classify(prefix, stream, ms, line, out));
    }

    fn flush(&mut self, out: &mut Vec<Event>) {
        let ms = crate::job::now_ms();
        for stream in [Stream::Out, Stream::Err] {
            let prefix = &self.prefix;
            self.buffers[stream as usize].flush(|line| classify(prefix, stream, ms, line, out));
        }
    }
}

fn classify(prefix: &str, stream: Stream, ms: u64, line: &str, out: &mut Vec<Event>) {
    if let Some(at) = line.rfind(prefix)
        && let Some((step, code)) = parse_end(&line[at + prefix.len()..])
    {
        // A step's last output without a newline runs into the marker.
        if at > 0 {
            out.push(Event::Line {
                stream,
                ms,
                text: line[..at].to_owned(),
            });
        }
        out.push(Event::End {
            stream,
            ms,
            step,
            code,
        });
        return;
    }
    out.push(Event::Line {
        stream,
        ms,
        text: line.to_owned(),
    });
}

fn parse_end(rest: &str) -> Option<(usize, i64)> {
    let mut parts = rest.strip_prefix("end ")?.split(' ');
    let step = parts.next()?.parse().ok()?;
    let code = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((step, code))
}

/// Docker's `2026-11-24T17:31:50.123456789Z ` prefix as ms since the
/// epoch, and the rest. Without a readable time: now, and all of it.
fn split_timestamp(bytes: &[u8]) -> (u64, &[u8]) {
    if let Some(space) = bytes.iter().take(40).position(|b| *b == b' ')
        && let Ok(text) = std::str::from_utf8(&bytes[..space])
        && let Some(ms) = rfc3339_ms(text)
    {
        return (ms, &bytes[space + 1..]);
    }
    (crate::job::now_ms(), bytes)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as ms since the epoch.
pub fn rfc3339_ms(s: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if s.get(4..5)? != "-" || s.get(10..11)? != "T" || s.get(13..14)? != ":" {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        let first3 = format!("{:0<3}", &frac[..digits.min(3)]);
        millis = first3.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(0..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            sign * (rest.get(1..3)?.parse::<i64>().ok()? * 3600
                + rest.get(4..6)?.parse::<i64>().ok()? * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    u64::try_from(secs * 1000 + millis).ok()
}

/// Where an adopting engine picks a job's output up again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    /// Where the output of the step in progress begins in the log.
    pub from: u64,
    /// Steps already recorded: their output and ends are in the log.
    pub steps_done: usize,
    /// Time of the last output line in the log, and how many output lines
    /// carry that time: output up to there is in the log already.
    pub last_ms: u64,
    /// How many logged lines carry `last_ms`: that many replayed lines at that time
    /// are skipped as already logged.
    pub lines_at_last_ms: usize,
}

impl Resume {
    /// From the job log's output lines after byte `from` (where the step
    /// in progress began): `<ms> <stream> <text>`.
    pub fn from_log(log: &std::path::Path, from: u64, steps_done: usize) -> Resume {
        use std::io::{Read, Seek, SeekFrom};
        let mut text = Vec::new();
        if let Ok(mut f) = std::fs::File::open(log)
            && f.seek(SeekFrom::Start(from)).is_ok()
        {
            let _ = f.read_to_end(&mut text);
        }
        let mut resume = Resume {
            from,
            steps_done,
            ..Resume::default()
        };
        for line in String::from_utf8_lossy(&text).lines() {
            let mut parts = line.splitn(3, ' ');
            let (Some(ms), Some("stdout" | "stderr")) = (parts.next(), parts.next()) else {
                continue;
            };
            let Ok(ms) = ms.parse::<u64>() else { continue };
            if ms == resume.last_ms {
                resume.lines_at_last_ms += 1;
            } else if ms > resume.last_ms {
                resume.last_ms = ms;
                resume.lines_at_last_ms = 1;
            }
        }
        resume
    }
}

/// How following the steps ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// Every step ended with 0.
    Passed,
    /// Step `step` (0-based) ended with `code`; the steps after it never ran.
    Failed {
        /// The failed step (0-based).
        step: usize,
        /// Its non-zero exit code.
        code: i64,
    },
    /// The output ended during step `step` without its marker: the
    /// container stopped (killed from outside, out of memory, the daemon
    /// went away) or the driver was killed.
    Ended {
        /// The step in progress when the output ended (0-based).
        step: usize,
        /// Why reading the container's output failed; `None` when the stream just ended.
        error: Option<String>,
        /// That step so far (ended `Cancelled`: it has no exit code).
        partial: StepRun,
    },
}

/// Turns the container's events into the job log and step runs.
struct Tracker<'a> {
    steps: &'a [Step],
    log: &'a JobLog,
    /// The step running (0-based).
    current: usize,
    /// The highest step whose end each stream has shown (1-based; 0: none).
    passed: [usize; 2],
    /// Exit code of the current step, from its first marker.
    code: Option<i64>,
    step_started_ms: u64,
    step_log_start: u64,
    /// Lines of a stream that is already past the current step.
    held: Vec<Event>,
    resume: Option<Resume>,
    /// Set when a step failed: nothing follows it.
    failed: Option<(usize, i64)>,
}

impl<'a> Tracker<'a> {
    fn new(
        steps: &'a [Step],
        log: &'a JobLog,
        started_ms: u64,
        resume: Option<Resume>,
    ) -> Tracker<'a> {
        let step_log_start = match &resume {
            Some(r) if r.steps_done == 0 => r.from,
            _ => log.size(),
        };
        Tracker {
            steps,
            log,
            current: 0,
            passed: [0, 0],
            code: None,
            step_started_ms: started_ms,
            step_log_start,
            held: Vec::new(),
            resume,
            failed: None,
        }
    }

    /// Whether the current step's output is already in the log (replayed
    /// after an adoption).
    fn replaying_step(&self) -> bool {
        self.resume
            .as_ref()
            .is_some_and(|r| self.current < r.steps_done)
    }

    fn handle(&mut self, event: Event, each: &mut dyn FnMut(&StepRun)) {
        if self.failed.is_some() {
            return;
        }
        match event {
            Event::Line { stream, ms, text } => {
                if self.passed[stream as usize] > self.current {
                    self.held.push(Event::Line { stream, ms, text });
                    return;
                }
                if self.replaying_step() || self.already_logged(ms) {
                    return;
                }
                self.log.line_at(ms, stream.log_stream(), &text);
            }
            Event::End {
                stream,
                ms,
                step,
                code,
            } => {
                if step > self.steps.len() {
                    return; // no such step: not the driver's marker
                }
                if step > self.current + 1 {
                    // A later step's marker, on a stream already past the
                    // current step: it waits until this one ends on both.
                    self.held.push(Event::End {
                        stream,
                        ms,
                        step,
                        code,
                    });
                    return;
                }
                if step != self.current + 1 || self.passed[stream as usize] >= step {
                    return;
                }
                self.passed[stream as usize] = step;
                self.code.get_or_insert(code);
                if self.passed.iter().all(|p| *p >= step) {
                    self.step_ended(ms, each);
                }
            }
        }
    }

    /// During the step in progress at an adoption: output the log has.
    fn already_logged(&mut self, ms: u64) -> bool {
        let Some(r) = self.resume.as_mut() else {
            return false;
        };
        if self.current != r.steps_done {
            return false;
        }
        if ms < r.last_ms {
            return true;
        }
        if ms == r.last_ms && r.lines_at_last_ms > 0 {
            r.lines_at_last_ms -= 1;
            return true;
        }
        false
    }

    fn step_ended(&mut self, ms: u64, each: &mut dyn FnMut(&StepRun)) {
        let index = self.current;
        let code = self.code.take().unwrap_or(-1);
        if !self.replaying_step() {
            let run = self.run_so_far(StepEnd::Exited(code), ms);
            if code == 0 {
                self.log.line(
                    LogStream::Engine,
                    &format!(
                        "step `{}` passed in {:.2} s",
                        run.name,
                        run.duration.as_secs_f64()
                    ),
                );
            }
            each(&run);
        }
        if code != 0 {
            self.failed = Some((index, code));
            return;
        }
        self.current += 1;
        self.step_started_ms = ms;
        if self.current < self.steps.len() && !self.replaying_step() {
            header(self.log, self.current, self.steps);
        }
        self.step_log_start = match &self.resume {
            Some(r) if self.current == r.steps_done => r.from,
            _ => self.log.size(),
        };
        for held in std::mem::take(&mut self.held) {
            self.handle(held, each);
        }
    }

    /// The current step from its start until `ms`, ended `end`.
    fn run_so_far(&self, end: StepEnd, ms: u64) -> StepRun {
        let step = &self.steps[self.current];
        StepRun {
            name: step.name.clone(),
            command: step.command.clone(),
            end,
            duration: Duration::from_millis(ms.saturating_sub(self.step_started_ms)),
            log_start: self.step_log_start,
            log_end: self.log.size(),
        }
    }

    /// Steps are left and no step failed.
    fn unfinished(&self) -> bool {
        self.failed.is_none() && self.current < self.steps.len()
    }

    /// The output stopped (the container's exit code, when it exited): how
    /// the steps ended.
    fn finish(
        &mut self,
        error: Option<String>,
        exit_code: Option<i64>,
        each: &mut dyn FnMut(&StepRun),
    ) -> Followed {
        for held in std::mem::take(&mut self.held) {
            self.handle(held, each);
        }
        if self.unfinished()
            && error.is_none()
            && let Some(code) = self.code
        {
            // The driver printed one marker and no other (killed between).
            self.passed = [self.current + 1; 2];
            self.code = Some(code);
            self.step_ended(crate::job::now_ms(), each);
        }
        if self.unfinished() && error.is_none() && exit_code == Some(0) {
            // Docker can cut a fast-growing output short (its log file
            // rotated under the reader), markers and all; the driver exits
            // 0 only when every step passed. Only the current step's time
            // and output range are known.
            self.log.line(
                LogStream::Engine,
                &format!(
                    "the container's output was cut short during step `{}` (Docker rotated its log faster than it was read); the container exited 0: every step passed",
                    self.steps[self.current].name
                ),
            );
            let now = crate::job::now_ms();
            each(&self.run_so_far(StepEnd::Exited(0), now));
            for step in &self.steps[self.current + 1..] {
                let at = self.log.size();
                each(&StepRun {
                    name: step.name.clone(),
                    command: step.command.clone(),
                    end: StepEnd::Exited(0),
                    duration: Duration::ZERO,
                    log_start: at,
                    log_end: at,
                });
            }
            self.current = self.steps.len();
        }
        match self.failed {
            Some((step, code)) => Followed::Failed { step, code },
            None if self.current >= self.steps.len() => Followed::Passed,
            None => Followed::Ended {
                step: self.current,
                error,
                partial: self.run_so_far(StepEnd::Cancelled, crate::job::now_ms()),
            },
        }
    }
}

/// The `step i/n` line before a step's output.
pub fn header(log: &JobLog, index: usize, steps: &[Step]) {
    let step = &steps[index];
    log.line(
        LogStream::Engine,
        &format!(
            "step {}/{} `{}`: {}",
            index + 1,
            steps.len(),
            step.name,
            step.command
        ),
    );
}

/// Follow the container's output from its start until it stops: lines go
/// to `log` with Docker's timestamps, each finished step to `each`.
/// `started_ms` is when the first step began (its duration's start).
pub async fn follow(
    runtime: &Runtime,
    container: &str,
    script: &Script,
    log: &JobLog,
    (started_ms, resume): (u64, Option<Resume>),
    each: &mut (dyn FnMut(&StepRun) + Send),
) -> Followed {
    let (nonce, steps) = (&script.nonce, &script.steps);
    let options = LogsOptions {
        follow: true,
        timestamps: true,
        since_s: 0,
    };
    let mut output = runtime.logs(container, options);
    let mut demux = Demux::new(nonce);
    let mut tracker = Tracker::new(steps, log, started_ms, resume);
    let mut events = Vec::new();
    let mut error = None;
    while let Some(item) = output.next().await {
        match item {
            Ok(Output {
                stream: OutputStream::Stdout,
                bytes,
            }) => demux.frame(Stream::Out, &bytes, &mut events),
            Ok(Output {
                stream: OutputStream::Stderr,
                bytes,
            }) => demux.frame(Stream::Err, &bytes, &mut events),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
        for event in events.drain(..) {
            tracker.handle(event, each);
        }
        if tracker.failed.is_some() {
            break;
        }
    }
    demux.flush(&mut events);
    for event in events.drain(..) {
        tracker.handle(event, each);
    }
    // Output that ended early is settled by how the container exited.
    let mut exit_code = None;
    if tracker.unfinished() && error.is_none() {
        let exited = crate::runner::container::wait_exit(runtime, container);
        exit_code = tokio::time::timeout(Duration::from_secs(5), exited)
            .await
            .ok()
            .flatten();
    }
    tracker.finish(error, exit_code, each)
}

/// Stop the steps: SIGTERM to every process of the job user (all of the
/// container but its init), `grace` to exit, then the container is killed.
pub async fn stop(runtime: &Runtime, container: &str, user: &str, grace: Duration) {
    let argv = ["sh".to_owned(), "-c".to_owned(), "kill -TERM -1".to_owned()];
    if let Err(e) = crate::runner::exec::capture(
        runtime,
        container,
        &argv,
        Some(user),
        Duration::from_secs(5),
        1024,
    )
    .await
    {
        tracing::debug!(container, error = %e, "could not signal the steps (already stopped?)");
    }
    let _ = tokio::time::timeout(
        grace,
        crate::runner::container::wait_exit(runtime, container),
    )
    .await;
    let _ = runtime.kill_container(container, "KILL").await;
}

/// Watches Docker's `oom` events of one container. The daemon's container
/// state says `OOMKilled` only when the container's main process was the
/// one killed; a step is a child of it, so its events are what tell.
pub struct OomWatch {
    seen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl OomWatch {
    /// Watch `container` (a name or id) from `since_ms` (ms since the
    /// epoch; earlier events the daemon still has are replayed) on.
    pub fn start(runtime: &Runtime, container: &str, since_ms: u64) -> OomWatch {
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let filter = EventFilter {
            containers: vec![container.to_owned()],
            kinds: vec![EventKind::OomKilled],
            since_ms: Some(since_ms),
            ..Default::default()
        };
        let (runtime, flag) = (runtime.clone(), seen.clone());
        let task = tokio::spawn(async move {
            let mut events = runtime.events(filter);
            while let Some(event) = events.next().await {
                if event.is_ok() {
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
            }
        });
        OomWatch { seen, task }
    }

    /// Whether the kernel killed a process of the container for memory.
    /// Its event may trail the container's exit a little: waits up to
    /// 500 ms for it.
    pub async fn killed(&self) -> bool {
        for _ in 0..50 {
            if self.seen.load(std::sync::atomic::Ordering::Relaxed) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

impl Drop for OomWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str) -> Step {
        Step {
            name: name.into(),
            command: format!("run {name}"),
            report: None,
        }
    }

    #[test]
    fn docker_timestamps_are_read_to_the_millisecond() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            rfc3339_ms("2026-11-24T17:31:50.123456789Z"),
            Some(1_795_541_510_123)
        );
        assert_eq!(
            rfc3339_ms("2026-11-24T18:31:50.123+01:00"),
            Some(1_795_541_510_123)
        );
        assert_eq!(rfc3339_ms("2026-11-24 17:31:50Z"), None);
        let (ms, rest) = split_timestamp(b"2026-11-24T17:31:50.000000001Z hello\n");
        assert_eq!((ms, rest), (1_795_541_510_000, &b"hello\n"[..]));
    }

    #[test]
    fn the_command_and_label_round_trip() {
        let steps = vec![step("setup-1"), step("fast-1")];
        let argv = command("abc", &steps);
        let (nonce, commands) = parse_command(&argv).unwrap();
        assert_eq!(nonce, "abc");
        let back = steps_of(&steps_label(&steps), commands).unwrap();
        assert_eq!(format!("{back:?}"), format!("{steps:?}"));
        assert_eq!(
            parse_command(&["sh".into(), "-c".into(), "read".into()]),
            None
        );
    }

    fn events(frames: &[(Stream, &str)]) -> Vec<Event> {
        let mut demux = Demux::new("n1");
        let mut out = Vec::new();
        for (stream, text) in frames {
            demux.frame(*stream, text.as_bytes(), &mut out);
        }
        demux.flush(&mut out);
        out
    }

    #[test]
    fn markers_are_found_even_after_output_without_a_newline() {
        let got = events(&[
            (Stream::Out, "1970-01-01T00:00:01Z hel"),
            (Stream::Out, "1970-01-01T00:00:02Z lo\n"),
            (
                Stream::Out,
                "1970-01-01T00:00:03Z tail##slipway:n1:end 1 0\n",
            ),
            (Stream::Err, "1970-01-01T00:00:03Z ##slipway:n2:end 1 0\n"),
            (
                Stream::Err,
                "1970-01-01T00:00:04Z ##slipway:n1:end 1 3 extra\n",
            ),
        ]);
        let texts: Vec<String> = got
            .iter()
            .map(|e| match e {
                Event::Line { text, .. } => format!("line {text}"),
                Event::End { step, code, .. } => format!("end {step} {code}"),
            })
            .collect();
        assert_eq!(
            texts,
            [
                "line hello",
                "line tail",
                "end 1 0",
                "line ##slipway:n2:end 1 0",
                "line ##slipway:n1:end 1 3 extra"
            ]
        );
    }

    fn track(
        frames: &[(Stream, &str)],
        resume: Option<Resume>,
        exit_code: Option<i64>,
        log: &JobLog,
    ) -> (Followed, Vec<StepRun>) {
        let steps = vec![step("a"), step("b"), step("c")];
        let mut runs = Vec::new();
        let mut tracker = Tracker::new(&steps, log, 0, resume);
        for e in events(frames) {
            tracker.handle(e, &mut |r| runs.push(r.clone()));
        }
        let end = tracker.finish(None, exit_code, &mut |r| runs.push(r.clone()));
        (end, runs)
    }

    fn output_lines(log: &JobLog) -> Vec<String> {
        std::fs::read_to_string(log.path())
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains(" slipway "))
            .map(|l| l.split_once(' ').unwrap().1.to_owned())
            .collect()
    }

    #[test]
    fn steps_end_when_both_streams_say_so_and_later_output_waits() {
        let dir = tempfile::tempdir().unwrap();
        let log = JobLog::at(dir.path().join("1.log"));
        let (end, runs) = track(
            &[
                (Stream::Out, "1970-01-01T00:00:01Z a out\n"),
                (Stream::Out, "1970-01-01T00:00:02Z ##slipway:n1:end 1 0\n"),
                // Step b's stdout arrives before step a's stderr marker.
                (Stream::Out, "1970-01-01T00:00:03Z b out\n"),
                (Stream::Err, "1970-01-01T00:00:01Z a err\n"),
                (Stream::Err, "1970-01-01T00:00:02Z ##slipway:n1:end 1 0\n"),
                (Stream::Out, "1970-01-01T00:00:05Z ##slipway:n1:end 2 4\n"),
                (Stream::Err, "1970-01-01T00:00:05Z ##slipway:n1:end 2 4\n"),
            ],
            None,
            Some(4),
            &log,
        );
        assert_eq!(end, Followed::Failed { step: 1, code: 4 });
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].end, StepEnd::Exited(0));
        assert_eq!(runs[0].duration, Duration::from_secs(2));
        assert_eq!(runs[1].end, StepEnd::Exited(4));
        assert_eq!(runs[1].duration, Duration::from_secs(3));
        let text = std::fs::read_to_string(log.path()).unwrap();
        let b_part = &text[runs[1].log_start as usize..runs[1].log_end as usize];
        assert!(b_part.contains("b out") && !b_part.contains("a "), "{text}");
        assert!(text.contains("step 2/3 `b`"), "{text}");
        assert_eq!(
            output_lines(&log),
            ["stdout a out", "stderr a err", "stdout b out"]
        );
    }

    #[test]
    fn a_stream_that_ends_without_a_marker_is_an_ended_step() {
        let dir = tempfile::tempdir().unwrap();
        let log = JobLog::at(dir.path().join("1.log"));
        let (end, runs) = track(
            &[(Stream::Out, "1970-01-01T00:00:01Z working\n")],
            None,
            Some(137),
            &log,
        );
        assert!(
            matches!(
                end,
                Followed::Ended {
                    step: 0,
                    error: None,
                    ..
                }
            ),
            "{end:?}"
        );
        assert!(runs.is_empty());
    }

    #[test]
    fn output_cut_short_is_settled_by_an_exit_code_of_zero() {
        let dir = tempfile::tempdir().unwrap();
        let log = JobLog::at(dir.path().join("1.log"));
        // Step a ended; b's and c's markers were lost with a rotated log.
        let (end, runs) = track(
            &[
                (Stream::Out, "1970-01-01T00:00:01Z ##slipway:n1:end 1 0\n"),
                (Stream::Err, "1970-01-01T00:00:01Z ##slipway:n1:end 1 0\n"),
                (Stream::Out, "1970-01-01T00:00:02Z b out\n"),
            ],
            None,
            Some(0),
            &log,
        );
        assert_eq!(end, Followed::Passed);
        assert_eq!(
            runs.iter()
                .map(|r| (r.name.as_str(), r.end))
                .collect::<Vec<_>>(),
            [
                ("a", StepEnd::Exited(0)),
                ("b", StepEnd::Exited(0)),
                ("c", StepEnd::Exited(0))
            ]
        );
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(
            text.contains("the container exited 0: every step passed"),
            "{text}"
        );
    }

    #[test]
    fn an_adoption_logs_only_what_the_log_does_not_have() {
        let dir = tempfile::tempdir().unwrap();
        let log = JobLog::at(dir.path().join("1.log"));
        // Before the restart: step a, and step b up to "b1" (two lines at 3 s).
        log.line_at(1000, LogStream::Stdout, "a out");
        let b_start = log.size();
        log.line_at(3000, LogStream::Stdout, "b0");
        log.line_at(3000, LogStream::Stdout, "b1");
        let resume = Resume::from_log(log.path(), b_start, 1);
        assert_eq!(
            resume,
            Resume {
                from: b_start,
                steps_done: 1,
                last_ms: 3000,
                lines_at_last_ms: 2
            }
        );
        let (end, runs) = track(
            &[
                (Stream::Out, "1970-01-01T00:00:01Z a out\n"),
                (Stream::Out, "1970-01-01T00:00:02Z ##slipway:n1:end 1 0\n"),
                (Stream::Err, "1970-01-01T00:00:02Z ##slipway:n1:end 1 0\n"),
                (Stream::Out, "1970-01-01T00:00:03Z b0\n"),
                (Stream::Out, "1970-01-01T00:00:03Z b1\n"),
                (Stream::Out, "1970-01-01T00:00:03Z b2\n"),
                (Stream::Out, "1970-01-01T00:00:04Z b3\n"),
                (Stream::Out, "1970-01-01T00:00:05Z ##slipway:n1:end 2 0\n"),
                (Stream::Err, "1970-01-01T00:00:05Z ##slipway:n1:end 2 0\n"),
                (Stream::Out, "1970-01-01T00:00:06Z ##slipway:n1:end 3 0\n"),
                (Stream::Err, "1970-01-01T00:00:06Z ##slipway:n1:end 3 0\n"),
            ],
            Some(resume),
            Some(0),
            &log,
        );
        assert_eq!(end, Followed::Passed);
        assert_eq!(
            runs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["b", "c"],
            "step a was recorded before the restart"
        );
        assert_eq!(
            runs[0].log_start, b_start,
            "step b began before the restart"
        );
        assert_eq!(
            output_lines(&log),
            [
                "stdout a out",
                "stdout b0",
                "stdout b1",
                "stdout b2",
                "stdout b3"
            ]
        );
    }
}
