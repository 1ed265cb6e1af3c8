//! What a person reads on the terminal: a job's log with times as elapsed
//! seconds since its first line and its streams labelled (coloured on a
//! terminal unless `NO_COLOR` is set), and a closing summary of the job.
//! The stored log keeps epoch-millisecond stamps; this only presents it.

use std::fmt::Write as _;
use std::io::IsTerminal;

use slipway::job::{JobRecord, StepRecord};

/// Whether to colour: a terminal, and `NO_COLOR` unset or empty
/// (<https://no-color.org>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Colour when stdout is a terminal and `NO_COLOR` does not say no.
    pub fn for_stdout() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: !no_color && std::io::stdout().is_terminal(),
        }
    }

    #[cfg(test)]
    fn plain() -> Style {
        Style { color: false }
    }

    #[cfg(test)]
    fn colored() -> Style {
        Style { color: true }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

pub use slipway::logs::human_duration as duration;

/// Turns stored log bytes into lines for a person, as they arrive: a line
/// split across two reads is held until its end comes.
#[derive(Debug)]
pub struct LogRenderer {
    style: Style,
    start_ms: Option<u64>,
    partial: Vec<u8>,
}

impl LogRenderer {
    /// Times count from `start_ms` (e.g. the job's creation), or from the
    /// first line when `None`.
    pub fn new(style: Style, start_ms: Option<u64>) -> LogRenderer {
        LogRenderer {
            style,
            start_ms,
            partial: Vec::new(),
        }
    }

    /// The complete lines of `bytes` (with what was held), rendered.
    pub fn feed(&mut self, bytes: &[u8]) -> String {
        self.partial.extend_from_slice(bytes);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return String::new();
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        let mut out = String::new();
        for line in String::from_utf8_lossy(&complete).lines() {
            out.push_str(&self.line(line));
            out.push('\n');
        }
        out
    }

    /// What is held without its line end (at the end of a log).
    pub fn finish(&mut self) -> String {
        if self.partial.is_empty() {
            return String::new();
        }
        let rest = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
        format!("{}\n", self.line(&rest))
    }

    /// One stored line (`<epoch ms> <stream> <text>`) for a person; a line
    /// of another shape is shown as it is.
    pub fn line(&mut self, line: &str) -> String {
        let mut parts = line.splitn(3, ' ');
        let (Some(stamp), Some(stream)) = (parts.next(), parts.next()) else {
            return line.to_owned();
        };
        let Ok(stamp) = stamp.parse::<u64>() else {
            return line.to_owned();
        };
        let text = parts.next().unwrap_or_default();
        let start = *self.start_ms.get_or_insert(stamp);
        let elapsed = format!("+{}", duration(stamp.saturating_sub(start)));
        let (code, label) = match stream {
            "slipway" => ("36", "slipway"),
            "stdout" => ("0", ""),
            "stderr" => ("33", "stderr"),
            "build" => ("35", "build"),
            other => ("34", other.strip_prefix("service/").unwrap_or(other)),
        };
        let label = format!("{label:<8}");
        // A step's own output is unlabelled, and left uncoloured.
        let label = if code == "0" {
            label
        } else {
            self.style.paint(code, &label)
        };
        format!(
            "{} {label} {text}",
            self.style.paint("2", &format!("{elapsed:>8}")),
        )
        .trim_end()
        .to_owned()
    }
}

/// A job's running phase as one line at the bottom of a terminal, the log
/// scrolling above it; nothing at all when stdout is not a terminal.
pub struct StatusLine(Option<indicatif::ProgressBar>);

impl StatusLine {
    /// A status line when `wanted` and stdout is a terminal.
    pub fn new(wanted: bool) -> StatusLine {
        if !wanted || !std::io::stdout().is_terminal() {
            return StatusLine(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_draw_target(indicatif::ProgressDrawTarget::stdout());
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        StatusLine(Some(bar))
    }

    /// Rendered lines, printed above the status line.
    pub fn print(&self, lines: &str) {
        if lines.is_empty() {
            return;
        }
        match &self.0 {
            Some(bar) => bar.suspend(|| print!("{lines}")),
            None => print!("{lines}"),
        }
    }

    /// The job's state and phase, as the status line's text.
    pub fn show(&self, record: &JobRecord) {
        if let Some(bar) = &self.0 {
            bar.set_message(phase_text(record));
        }
    }

    /// Gone before the summary is printed.
    pub fn clear(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// `running: 3/5 image`, `queued`, ...: what the status line says.
fn phase_text(record: &JobRecord) -> String {
    match &record.progress {
        Some(p) if !record.state.is_final() => {
            format!(
                "{}: {}/{} {}",
                record.state.name(),
                p.step,
                p.steps,
                p.message
            )
        }
        _ => record.state.name().to_owned(),
    }
}

/// The closing summary of a finished job: its state and time, the image,
/// each step with its duration, and every finding as
/// `file:line:col severity message`.
pub fn summary(record: &JobRecord, style: Style) -> String {
    let mut out = String::new();
    let total = record
        .events
        .last()
        .map(|e| e.at_ms.saturating_sub(record.created_ms))
        .unwrap_or_default();
    let state = record.state.name();
    let state = match record.state {
        slipway::job::JobState::Succeeded => style.paint("32;1", state),
        _ => style.paint("31;1", state),
    };
    let _ = write!(out, "job {} {state} in {}", record.id, duration(total));
    if let Some(run) = &record.run {
        let _ = write!(out, " (attempt {})", run.attempt);
    }
    out.push('\n');
    if let Some(reason) = &record.reason
        && record.state != slipway::job::JobState::Succeeded
    {
        let _ = writeln!(out, "  reason   {reason}");
    }
    let Some(run) = &record.run else {
        return out;
    };
    if let Some(sha) = &run.sha {
        let _ = writeln!(out, "  commit   {}", &sha[..sha.len().min(12)]);
    }
    if let Some(image) = &run.image {
        let how = if image.cache_hit {
            "cache hit".to_owned()
        } else {
            format!("built in {}", duration(image.build_ms))
        };
        let _ = writeln!(out, "  image    {} ({how})", image.tag);
    }
    if !run.steps.is_empty() {
        let width = run.steps.iter().map(|s| s.name.len()).max().unwrap_or(0);
        out.push_str("  steps\n");
        for step in &run.steps {
            let _ = writeln!(out, "    {}", step_line(step, width, style));
        }
    }
    let findings: Vec<String> = run
        .steps
        .iter()
        .flat_map(|s| s.findings.iter())
        .map(|f| {
            let place = match (&f.file, f.line, f.column) {
                (Some(file), Some(line), Some(col)) => format!("{file}:{line}:{col}"),
                (Some(file), Some(line), None) => format!("{file}:{line}"),
                (Some(file), None, _) => file.clone(),
                (None, _, _) => "-".to_owned(),
            };
            let rule = f
                .rule
                .as_deref()
                .map(|r| format!(" [{r}]"))
                .unwrap_or_default();
            format!("{place} {} {}{rule}", f.severity, f.message)
        })
        .collect();
    if !findings.is_empty() {
        let _ = writeln!(out, "  findings ({})", findings.len());
        for f in findings {
            let _ = writeln!(out, "    {f}");
        }
    }
    for note in &run.notes {
        let _ = writeln!(out, "  note     {note}");
    }
    out
}

fn step_line(step: &StepRecord, width: usize, style: Style) -> String {
    let (mark, result) = match step.exit_code {
        Some(0) => (style.paint("32", "ok  "), String::new()),
        Some(code) => (style.paint("31", "FAIL"), format!("  exit {code}")),
        None => (style.paint("31", "STOP"), "  stopped".to_owned()),
    };
    format!(
        "{mark} {:<width$}  {:>7}{result}",
        step.name,
        duration(step.duration_ms)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_says_them() {
        let said: Vec<String> = [0, 850, 4_249, 65_000, 3_720_000]
            .into_iter()
            .map(duration)
            .collect();
        assert_eq!(said, ["0ms", "850ms", "4.2s", "1m05s", "1h02m"]);
    }

    #[test]
    fn log_lines_get_elapsed_time_and_labels_and_partial_lines_wait() {
        let mut r = LogRenderer::new(Style::plain(), None);
        let first = r.feed(b"1796213552311 slipway checkout: 3f1a2b\n1796213552711 service/db ready after 0.4 s\n1796213553");
        let second =
            r.feed(b"911 stdout ok 1 - adds\n1796213556411 stderr warn: slow\nnot a stored line\n");
        insta::assert_snapshot!(format!("{first}{second}"), @r"
    +0ms slipway  checkout: 3f1a2b
  +400ms db       ready after 0.4 s
   +1.6s          ok 1 - adds
   +4.1s stderr   warn: slow
not a stored line
");
        assert_eq!(r.finish(), "");
    }

    #[test]
    fn the_status_line_names_the_phase() {
        let mut record: JobRecord = serde_json::from_value(serde_json::json!({
            "id": 1, "spec": {"repository": "/srv/app", "commit": "HEAD"},
            "state": "running", "attempt": 1, "max_attempts": 1, "lease": null,
            "not_before_ms": 0, "created_ms": 0, "updated_ms": 0, "cancel_requested": false,
            "progress": {"step": 3, "steps": 5, "message": "image"},
            "reason": null, "events": [], "run": null,
        }))
        .unwrap();
        assert_eq!(phase_text(&record), "running: 3/5 image");
        record.state = slipway::job::JobState::Succeeded;
        assert_eq!(phase_text(&record), "succeeded");
    }

    #[test]
    fn colour_only_where_asked() {
        let mut coloured = LogRenderer::new(Style::colored(), Some(0));
        let line = coloured.line("1500 stderr oops");
        assert!(line.contains("\x1b[33m"), "{line:?}");
        let mut plain = LogRenderer::new(Style::plain(), Some(0));
        assert!(!plain.line("1500 stderr oops").contains('\x1b'));
    }

    #[test]
    fn the_summary_names_steps_image_and_findings() {
        let step = |name: &str, exit: i64, ms: u64, findings: serde_json::Value| {
            serde_json::json!({"name": name, "command": "x", "exit_code": exit, "duration_ms": ms,
                "log_start": 0, "log_end": 0, "findings": findings})
        };
        let steps = serde_json::json!([
            step("setup-1", 0, 2_400, serde_json::json!([])),
            step("lint", 0, 900, serde_json::json!([])),
            step(
                "test",
                1,
                8_100,
                serde_json::json!([
                    {"file": "test/add.test.js", "line": 12, "column": 5, "severity": "error",
                     "rule": "adds", "message": "expected 3, got 4"},
                    {"file": "src/util.js", "line": 3, "severity": "warning", "message": "unused"}
                ])
            ),
        ]);
        let sha = "3f1a2b4c5d6e7f8091a2b3c4d5e6f708192a3b4c";
        let run = serde_json::json!({
            "attempt": 1, "fence": 7, "sha": sha,
            "image": {"tag": "slipway-runner/app:0123456789ab", "id": "sha256:00",
                      "cache_hit": true, "build_ms": 0},
            "plugins": [], "phases_ms": {}, "steps_log_start": 0, "notes": [],
            "third_party_plugins": [], "steps": steps,
        });
        let events = serde_json::json!([
            {"at_ms": 1_000, "from": null, "to": "queued", "attempt": 0, "reason": "submitted"},
            {"at_ms": 15_200, "from": "running", "to": "failed", "attempt": 1,
             "reason": "step `test` exited with 1"},
        ]);
        let record: JobRecord = serde_json::from_value(serde_json::json!({
            "id": 42,
            "spec": {"repository": "/srv/app", "commit": sha, "tier": "full"},
            "state": "failed", "attempt": 1, "max_attempts": 3, "lease": null,
            "not_before_ms": 0, "created_ms": 1_000, "updated_ms": 15_200,
            "cancel_requested": false, "progress": null,
            "reason": "step `test` exited with 1", "events": events, "run": run,
        }))
        .unwrap();
        insta::assert_snapshot!(summary(&record, Style::plain()), @r"
job 42 failed in 14.2s (attempt 1)
  reason   step `test` exited with 1
  commit   3f1a2b4c5d6e
  image    slipway-runner/app:0123456789ab (cache hit)
  steps
    ok   setup-1     2.4s
    ok   lint       900ms
    FAIL test        8.1s  exit 1
  findings (2)
    test/add.test.js:12:5 error expected 3, got 4 [adds]
    src/util.js:3 warning unused
");
    }
}
