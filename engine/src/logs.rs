//! Job logs: one append-only file per job under `<state>/logs/`, lines
//! prefixed with a timestamp and the stream. Readers read by byte offset, so
//! a client that reconnects resumes where it stopped.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::job::JobId;

/// The log directory.
#[derive(Debug, Clone)]
pub struct JobLogs {
    dir: PathBuf,
}

/// One job's log, for writing.
#[derive(Debug, Clone)]
pub struct JobLog {
    path: PathBuf,
    file: Arc<Mutex<Option<std::fs::File>>>,
}

impl JobLogs {
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<JobLogs> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(JobLogs { dir })
    }

    pub fn path(&self, id: JobId) -> PathBuf {
        self.dir.join(format!("{id}.log"))
    }

    pub fn writer(&self, id: JobId) -> JobLog {
        JobLog {
            path: self.path(id),
            file: Arc::new(Mutex::new(None)),
        }
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
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A log at `path` (e.g. a managed service's event log).
    pub fn at(path: impl Into<PathBuf>) -> JobLog {
        JobLog {
            path: path.into(),
            file: Arc::new(Mutex::new(None)),
        }
    }

    /// Append one line (`stream` is e.g. `stdout`, `stderr`, `slipway`).
    pub fn line(&self, stream: &str, text: &str) {
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
        let stamp = crate::job::now_ms();
        if let Some(file) = guard.as_mut() {
            for line in text.lines() {
                if let Err(e) = writeln!(file, "{stamp} {stream} {line}") {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot write job log");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_whole_lines_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let logs = JobLogs::new(dir.path()).unwrap();
        let log = logs.writer(7);
        log.line("stdout", "one\ntwo");
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
