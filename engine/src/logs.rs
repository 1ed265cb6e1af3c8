//! Job logs: one append-only file per job under `<state>/logs/`, lines
//! prefixed with a timestamp and the stream. Readers read by byte offset, so
//! a client that reconnects resumes where it stopped. Secret values are
//! redacted before a line is written, and a log stops growing at its cap
//! (a marker says so; Slipway's own lines are still kept).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::secrets::Redactor;

/// Default cap of one job's log.
pub const DEFAULT_LOG_CAP: u64 = 64 << 20;

use crate::job::JobId;

/// Who wrote a line of a job's log; its name is the log's second field
/// (`<ms> <stream> <text>`), which clients read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream<'a> {
    /// The engine itself (`slipway`): phases, decisions, errors. Never
    /// cut by the log cap.
    Engine,
    /// A step's standard output.
    Stdout,
    /// A step's standard error.
    Stderr,
    /// An image build's output.
    Build,
    /// A service's output (`service/<name>`).
    Service(&'a str),
}

impl std::fmt::Display for LogStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogStream::Engine => f.write_str("slipway"),
            LogStream::Stdout => f.write_str("stdout"),
            LogStream::Stderr => f.write_str("stderr"),
            LogStream::Build => f.write_str("build"),
            LogStream::Service(name) => write!(f, "service/{name}"),
        }
    }
}

/// The log directory.
#[derive(Debug, Clone)]
pub struct JobLogs {
    dir: PathBuf,
    cap: u64,
}

/// One job's log, for writing. Clones share the file, the redactor and
/// the byte count.
#[derive(Debug, Clone)]
pub struct JobLog {
    path: PathBuf,
    file: Arc<Mutex<Option<std::fs::File>>>,
    redactor: Arc<RwLock<Redactor>>,
    written: Arc<AtomicU64>,
    truncated: Arc<AtomicBool>,
    cap: u64,
}

impl JobLogs {
    /// Logs under `dir` (created if missing), each capped at [`DEFAULT_LOG_CAP`] (64 MiB).
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<JobLogs> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(JobLogs {
            dir,
            cap: DEFAULT_LOG_CAP,
        })
    }

    /// Logs that stop growing at `cap` bytes each.
    pub fn with_cap(mut self, cap: u64) -> JobLogs {
        self.cap = cap;
        self
    }

    /// Path of job `id`'s log file (`<dir>/<id>.log`); it may not exist yet.
    pub fn path(&self, id: JobId) -> PathBuf {
        self.dir.join(format!("{id}.log"))
    }

    /// A writer appending to job `id`'s log; earlier attempts' lines stay and count
    /// against the cap.
    pub fn writer(&self, id: JobId) -> JobLog {
        JobLog::with_cap(self.path(id), self.cap)
    }

    /// Bytes from `offset` (at most `max`), and the offset after them.
    pub fn read(&self, id: JobId, offset: u64, max: usize) -> std::io::Result<(Vec<u8>, u64)> {
        read_from(&self.path(id), offset, max)
    }
}

fn read_from(path: &Path, offset: u64, max: usize) -> std::io::Result<(Vec<u8>, u64)> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    file.take(max as u64).read_to_end(&mut buf)?;
    // End on a line boundary, so a reader never sees half a line (unless
    // one line is longer than `max`: then it comes in pieces).
    if let Some(last) = buf.iter().rposition(|b| *b == b'\n') {
        buf.truncate(last + 1);
    } else if buf.len() < max {
        buf.clear();
    }
    let next = offset + buf.len() as u64;
    Ok((buf, next))
}

impl JobLog {
    /// The file this log appends to; created at the first line written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A log at `path` (e.g. a managed service's event log).
    pub fn at(path: impl Into<PathBuf>) -> JobLog {
        JobLog::with_cap(path, DEFAULT_LOG_CAP)
    }

    /// A log at `path` that stops growing at `cap` bytes, counting what the file
    /// already holds; the file is opened at the first write.
    pub fn with_cap(path: impl Into<PathBuf>, cap: u64) -> JobLog {
        let path = path.into();
        // An earlier attempt's lines count against the cap too.
        let written = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        JobLog {
            path,
            file: Arc::new(Mutex::new(None)),
            redactor: Arc::new(RwLock::new(Redactor::default())),
            written: Arc::new(AtomicU64::new(written)),
            truncated: Arc::new(AtomicBool::new(false)),
            cap,
        }
    }

    /// Redact these values (and their encodings) from every line from now on.
    pub fn redact<'a>(&self, values: impl IntoIterator<Item = &'a str>) {
        *self.redactor.write().unwrap_or_else(|p| p.into_inner()) = Redactor::new(values);
    }

    /// `text` as this log would write it: the redacted values replaced.
    pub fn redacted(&self, text: &str) -> String {
        let redactor = self.redactor.read().unwrap_or_else(|p| p.into_inner());
        if redactor.is_empty() {
            text.to_owned()
        } else {
            redactor.redact(text)
        }
    }

    /// Bytes in the log file now: where the next line will start (steps'
    /// log ranges are measured with it).
    pub fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// Append one line of `stream`.
    pub fn line(&self, stream: LogStream<'_>, text: &str) {
        self.line_at(crate::job::now_ms(), stream, text);
    }

    /// Append one line stamped `stamp` (ms since the epoch): a container's
    /// output keeps the time Docker gave it, so a restarted engine can tell
    /// which of it is already here.
    pub fn line_at(&self, stamp: u64, stream: LogStream<'_>, text: &str) {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
            {
                Ok(f) => *guard = Some(f),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot open job log");
                    return;
                }
            }
        }
        let text = self.redacted(text);
        if let Some(file) = guard.as_mut() {
            for line in text.lines() {
                let entry = format!("{stamp} {stream} {line}\n");
                let so_far = self.written.load(Ordering::Relaxed);
                if so_far + entry.len() as u64 > self.cap && stream != LogStream::Engine {
                    if !self.truncated.swap(true, Ordering::Relaxed) {
                        let marker = format!(
                            "{stamp} slipway [log truncated: it reached its cap of {} bytes; further output is not kept]\n",
                            self.cap
                        );
                        let _ = file.write_all(marker.as_bytes());
                        self.written
                            .fetch_add(marker.len() as u64, Ordering::Relaxed);
                    }
                    continue;
                }
                if let Err(e) = file.write_all(entry.as_bytes()) {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot write job log");
                    return;
                }
                self.written
                    .fetch_add(entry.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

/// `ms` as a person reads a duration: `850ms`, `4.2s`, `1m05s`, `1h02m`
/// (the CLI's summaries and the dashboard).
pub fn human_duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1_000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1_000),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_the_cap_holds() {
        let dir = tempfile::tempdir().unwrap();
        let logs = JobLogs::new(dir.path()).unwrap().with_cap(200);
        let log = logs.writer(1);
        log.redact(["hunter22"]);
        log.line(LogStream::Stdout, "password=hunter22");
        for i in 0..20 {
            log.line(LogStream::Stdout, &format!("noise line {i}"));
        }
        log.line(LogStream::Engine, "attempt ended: succeeded");
        let text = String::from_utf8(logs.read(1, 0, 1 << 20).unwrap().0).unwrap();
        assert!(
            text.contains("password=[redacted]") && !text.contains("hunter22"),
            "{text}"
        );
        assert_eq!(text.matches("log truncated").count(), 1, "{text}");
        assert!(!text.contains("noise line 19"), "{text}");
        assert!(
            text.ends_with("slipway attempt ended: succeeded\n"),
            "Slipway's own lines are kept: {text}"
        );
    }

    #[test]
    fn reads_whole_lines_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let logs = JobLogs::new(dir.path()).unwrap();
        let log = logs.writer(7);
        log.line(LogStream::Stdout, "one\ntwo");
        let (all, end) = logs.read(7, 0, 1 << 20).unwrap();
        let text = String::from_utf8(all).unwrap();
        assert!(
            text.ends_with("stdout two\n") && text.lines().count() == 2,
            "{text}"
        );
        let (rest, same) = logs.read(7, end, 1 << 20).unwrap();
        assert!(rest.is_empty() && same == end);
        let first_line = text.lines().next().unwrap().len() + 1;
        let (partial, next) = logs.read(7, 0, first_line + 3).unwrap();
        assert_eq!(
            (partial.len(), next),
            (first_line, first_line as u64),
            "stops at the last whole line"
        );
        assert_eq!(logs.read(99, 0, 10).unwrap(), (Vec::new(), 0));
    }
}
