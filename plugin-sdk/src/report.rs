//! Helpers for validator plugins that read a tool's JSON report: finding the
//! JSON document in a report (tools and package managers print banners
//! around it), turning `serde_json` errors into
//! `malformed` problems with line numbers, repository-relative paths, one-line
//! messages and the caps on the number and size of findings.

use crate::validator::{Finding, PluginError, Severity};
use crate::{malformed, unsupported};
use serde::de::DeserializeOwned;
use serde_json::error::Category;

/// How problems with the report itself name it (the plugin is not told the path).
pub const REPORT: &str = "<report>";
/// At most this many findings per report; the rest are counted in one `info` finding.
pub const MAX_FINDINGS: usize = 5_000;
/// At most this many bytes per message (longer ones end in `…`).
pub const MAX_MESSAGE_BYTES: usize = 2_048;
/// Budget for the serialized findings, below the engine's 1 MiB cap on a plugin's output.
pub const MAX_OUTPUT_BYTES: usize = 900 * 1024;
/// The prefix of paths inside the job container (the checkout is mounted there).
const WORKSPACE: &str = "/workspace/";

/// `Err(unsupported)` unless `format` is `known`.
pub fn check_format(format: &str, known: &str) -> Result<(), PluginError> {
    if format == known {
        Ok(())
    } else {
        Err(unsupported(
            None,
            format!("unknown format `{format}` (known: {known})"),
            None,
        ))
    }
}

/// Read the JSON document, starting with `open` (`[` or `{`), from `report`:
/// `Ok(None)` when the report is empty or only whitespace.
///
/// The document is the report itself when its first non-blank character is
/// `open`; else the first line that starts with `open` and looks like JSON
/// (tools run through `npm run`, `bundle exec`, ... can print banner lines
/// first). Text after the document is tolerated on later lines (`npm` printing
/// its own lines after the tool's), unless it is on the same line as the
/// document's end or is a second document. `hint` says which command writes
/// the format.
pub fn read_json<T: DeserializeOwned>(
    report: &str,
    open: char,
    hint: &str,
) -> Result<Option<T>, PluginError> {
    let body = report.trim_start_matches('\u{feff}');
    let trimmed = body.trim_start();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.starts_with(open) {
        let offset = report.len() - trimmed.len();
        return parse_at(report, offset, open, hint)
            .map(Some)
            .map_err(|(e, _)| e);
    }
    let mut candidates = Vec::new();
    let mut offset = report.len() - body.len();
    for line in body.split_inclusive('\n') {
        if looks_like_json(line, open) {
            candidates.push(offset);
        }
        offset += line.len();
    }
    let last = candidates.len().saturating_sub(1);
    for (i, &offset) in candidates.iter().enumerate() {
        match parse_at(report, offset, open, hint) {
            Ok(value) => return Ok(Some(value)),
            // Not JSON after all (e.g. `[1/4] Resolving packages...`): try the next line.
            Err((_, true)) if i < last => continue,
            Err((e, _)) => return Err(e),
        }
    }
    let what = if open == '[' { "array" } else { "object" };
    Err(malformed(
        REPORT,
        Some(1),
        format!(
            "no JSON {what} in the report; it starts with `{}`",
            first_line(report)
        ),
        Some(hint),
    ))
}

/// Whether `line` starts a JSON document opening with `open`.
fn looks_like_json(line: &str, open: char) -> bool {
    let Some(rest) = line.strip_prefix(open) else {
        return false;
    };
    match rest.trim_start_matches([' ', '\t']).chars().next() {
        None | Some('\n' | '\r') => true,
        Some(c) if open == '[' => matches!(c, '{' | '[' | '"' | ']' | '-' | '0'..='9'),
        Some(c) => matches!(c, '"' | '}'),
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> u32 {
    let newlines = text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    u32::try_from(newlines)
        .unwrap_or(u32::MAX - 1)
        .saturating_add(1)
}

/// The first non-blank line of `report`, shortened, to quote in errors.
fn first_line(report: &str) -> String {
    let line = report
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    clip(line, 80)
}

/// Deserialize the JSON document at `report[offset..]`. The error says
/// whether it is a syntax error on the document's first line.
fn parse_at<T: DeserializeOwned>(
    report: &str,
    offset: usize,
    open: char,
    hint: &str,
) -> Result<T, (PluginError, bool)> {
    let text = &report[offset..];
    let first = line_of(report, offset);
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<T>();
    let value = match stream.next() {
        Some(Ok(value)) => value,
        Some(Err(e)) => {
            let first_line_syntax = e.classify() == Category::Syntax && e.line() == 1;
            return Err((json_error(&e, first, hint), first_line_syntax));
        }
        None => {
            let e = malformed(REPORT, Some(first), "no JSON document found", Some(hint));
            return Err((e, true));
        }
    };
    let end = offset + stream.byte_offset();
    let rest = &report[end..];
    let (same_line, later) = rest.split_once('\n').unwrap_or((rest, ""));
    if !same_line.trim().is_empty() {
        let e = malformed(
            REPORT,
            Some(line_of(report, end)),
            format!(
                "unexpected text after the JSON document: `{}`",
                clip(same_line.trim(), 80)
            ),
            Some(hint),
        );
        return Err((e, false));
    }
    let mut at = end + same_line.len() + 1;
    for line in later.split_inclusive('\n') {
        if looks_like_json(line, open) {
            let e = malformed(
                REPORT,
                Some(line_of(report, at)),
                "a second JSON document follows the first (reports of two runs in one file?)",
                Some(
                    "write one report per run: overwrite the file with `>` rather than append with `>>`",
                ),
            );
            return Err((e, false));
        }
        at += line.len();
    }
    Ok(value)
}

/// A `malformed` problem for a `serde_json` error in a document that starts on line `first`.
fn json_error(e: &serde_json::Error, first: u32, hint: &str) -> PluginError {
    let line = u32::try_from(e.line())
        .ok()
        .filter(|&l| l > 0)
        .map(|l| first.saturating_add(l - 1));
    let text = e.to_string();
    let what = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(what, _)| what);
    match e.classify() {
        Category::Eof => malformed(
            REPORT,
            line,
            "the report ends in the middle of the JSON document (truncated?)",
            Some("the tool was probably killed or its output cut short; check the step's log"),
        ),
        Category::Syntax => malformed(
            REPORT,
            line,
            format!("not valid JSON: {what} (column {})", e.column()),
            Some(hint),
        ),
        Category::Data | Category::Io => malformed(
            REPORT,
            line,
            format!("unexpected JSON shape: {what}"),
            Some(hint),
        ),
    }
}

/// `raw` as a `/`-separated path relative to the repository root, or `None`
/// when it cannot be one (absolute outside `/workspace/`, contains `..`, empty).
pub fn repo_path(raw: &str) -> Option<String> {
    let path = raw.trim();
    let path = path.strip_prefix(WORKSPACE).unwrap_or(path);
    let bytes = path.as_bytes();
    let windows_absolute = bytes.len() >= 3
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && matches!(bytes[2], b'/' | b'\\');
    if path.starts_with(['/', '\\']) || windows_absolute {
        return None;
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            part => parts.push(part),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// A 1-based line or column, `None` for 0, absent or out of range.
pub fn position(n: Option<u64>) -> Option<u32> {
    n.filter(|&n| n > 0).and_then(|n| u32::try_from(n).ok())
}

/// `text` on one line: its non-empty lines trimmed and joined with ` | `,
/// ANSI colour codes removed, other control characters made spaces, at most
/// [`MAX_MESSAGE_BYTES`] long.
pub fn one_line(text: &str) -> String {
    let joined = strip_ansi(text)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    let clean: String = joined
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(clean.trim(), MAX_MESSAGE_BYTES)
}

/// `text` without ANSI escape sequences (`ESC [ … letter`), which test
/// runners and compilers print when they think they write to a terminal.
pub fn strip_ansi(text: &str) -> String {
    if !text.contains('\u{1b}') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        }
    }
    out
}

/// `text` cut to at most `max` bytes (on a character boundary), ending in `…` if cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// `text` shortened to about `max` bytes for quoting in an error message.
fn clip(text: &str, max: usize) -> String {
    truncate(&text.replace(|c: char| c.is_control(), " "), max)
}

/// Build a finding: the path goes into `file` when it is repository-relative,
/// else in front of the message; the message and rule are made one line.
pub fn finding(
    path: Option<&str>,
    line: Option<u64>,
    column: Option<u64>,
    severity: Severity,
    rule: Option<&str>,
    message: &str,
) -> Finding {
    let path = path.map(str::trim).filter(|p| !p.is_empty());
    let file = path.and_then(repo_path);
    let (line, column) = (position(line), position(column));
    // A path that cannot be repository-relative goes into the message with
    // its position; a line without its file would point nowhere.
    let (message, line, column) = match (path, &file) {
        (Some(raw), None) => {
            let at = match (line, column) {
                (Some(l), Some(c)) => format!("{raw}:{l}:{c}"),
                (Some(l), None) => format!("{raw}:{l}"),
                _ => raw.to_owned(),
            };
            (one_line(&format!("{at}: {message}")), None, None)
        }
        _ => (one_line(message), line, column),
    };
    let rule = rule
        .map(|r| truncate(&one_line(r), 200))
        .filter(|r| !r.is_empty());
    Finding {
        file,
        line,
        column,
        severity,
        rule,
        message,
    }
}

/// `findings` within the caps of [`Findings`].
pub fn cap(findings: Vec<Finding>) -> Vec<Finding> {
    let mut capped = Findings::default();
    for f in findings {
        capped.push(f);
    }
    capped.finish()
}

/// Collects findings up to [`MAX_FINDINGS`] and [`MAX_OUTPUT_BYTES`].
#[derive(Default)]
pub struct Findings {
    list: Vec<Finding>,
    dropped: usize,
    bytes: usize,
}

impl Findings {
    pub fn push(&mut self, f: Finding) {
        let text = |s: &str| s.len() + s.bytes().filter(|b| matches!(b, b'"' | b'\\')).count();
        let size = 96
            + text(&f.message)
            + f.file.as_deref().map_or(0, text)
            + f.rule.as_deref().map_or(0, text);
        if self.list.len() >= MAX_FINDINGS || self.bytes + size > MAX_OUTPUT_BYTES {
            self.dropped += 1;
        } else {
            self.bytes += size;
            self.list.push(f);
        }
    }

    /// The findings, plus one `info` finding counting the dropped ones.
    pub fn finish(mut self) -> Vec<Finding> {
        if self.dropped > 0 {
            self.list.push(Finding {
                file: None,
                line: None,
                column: None,
                severity: Severity::Info,
                rule: None,
                message: format!(
                    "{} more findings were dropped: at most {MAX_FINDINGS} findings (about {} KiB) are kept per report",
                    self.dropped,
                    MAX_OUTPUT_BYTES / 1024
                ),
            });
        }
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validator::Problem;

    #[test]
    fn paths() {
        assert_eq!(
            repo_path("/workspace/src/app.py").as_deref(),
            Some("src/app.py")
        );
        assert_eq!(repo_path("./src/x.js").as_deref(), Some("src/x.js"));
        assert_eq!(repo_path("././a//b/./c.rb").as_deref(), Some("a/b/c.rb"));
        assert_eq!(
            repo_path("src/my app/ünï.py").as_deref(),
            Some("src/my app/ünï.py")
        );
        assert_eq!(repo_path("/home/runner/app.py"), None);
        assert_eq!(repo_path("/workspace/../etc/passwd"), None);
        assert_eq!(repo_path("src/../../x"), None);
        assert_eq!(repo_path("C:\\src\\a.js"), None);
        assert_eq!(repo_path("/workspace/"), None);
        assert_eq!(repo_path(""), None);
        assert_eq!(repo_path("/workspace2/a.py"), None);
    }

    #[test]
    fn messages() {
        assert_eq!(one_line("  a\r\n\n  b\tc "), "a | b c");
        assert_eq!(one_line("\u{1b}[31mred\u{1b}[0m"), "red");
        let long = "é".repeat(3000);
        let cut = one_line(&long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES && cut.ends_with('…'));
        assert_eq!(truncate("abc", 3), "abc");
    }

    #[test]
    fn positions() {
        assert_eq!(position(Some(0)), None);
        assert_eq!(position(Some(7)), Some(7));
        assert_eq!(position(Some(u64::MAX)), None);
        assert_eq!(position(None), None);
    }

    fn err<T: std::fmt::Debug>(r: Result<T, PluginError>) -> Problem {
        match r {
            Err(PluginError::MalformedInput(p)) => p,
            other => panic!("expected malformed input, got {other:?}"),
        }
    }

    #[test]
    fn finds_json() {
        let read = |r: &str| read_json::<Vec<u32>>(r, '[', "h");
        assert_eq!(read("").unwrap(), None);
        assert_eq!(read(" \n\t\n").unwrap(), None);
        assert_eq!(read("  [1]").unwrap(), Some(vec![1]));
        assert_eq!(read("\u{feff}[2]\n").unwrap(), Some(vec![2]));
        assert_eq!(read("\n> x\n> y\n\n[3]\n").unwrap(), Some(vec![3]));
        assert_eq!(
            read("> lint\n[1/4] Resolving\n[*] fixable\n[4,\n5]\n").unwrap(),
            Some(vec![4, 5])
        );
        let p = err(read("> x\n  [\n"));
        assert!(
            p.message
                .starts_with("no JSON array in the report; it starts with `> x`"),
            "{}",
            p.message
        );
        assert_eq!(p.hint.as_deref(), Some("h"));
        let p = err(read("[*] 1 fixable"));
        assert!(p.message.starts_with("not valid JSON"), "{}", p.message);
    }

    #[test]
    fn json_errors_name_lines() {
        let p = err(read_json::<Vec<u32>>("banner\n[\n  1,\n  2,\n", '[', "h"));
        assert!(p.message.contains("truncated"), "{}", p.message);
        assert_eq!(p.line, Some(5));
        assert_eq!(p.file.as_deref(), Some(REPORT));

        let p = err(read_json::<Vec<u32>>("[1,\n 2 x]", '[', "h"));
        assert_eq!(p.line, Some(2));
        assert!(p.message.starts_with("not valid JSON"), "{}", p.message);

        let p = err(read_json::<Vec<u32>>("[1,\n \"a\"]", '[', "h"));
        assert_eq!(p.line, Some(2));
        assert!(
            p.message.starts_with("unexpected JSON shape: invalid type"),
            "{}",
            p.message
        );

        let p = err(read_json::<Vec<u32>>("[1]\n\n[2]\n", '[', "h"));
        assert_eq!(p.line, Some(3));
        assert!(p.message.contains("second JSON document"));

        let p = err(read_json::<Vec<u32>>("[1] junk\n", '[', "h"));
        assert_eq!(p.line, Some(1));

        let ok = read_json::<Vec<u32>>("[1]\nnpm ERR! lint failed\n", '[', "h").unwrap();
        assert_eq!(ok, Some(vec![1]));
    }

    #[test]
    fn caps() {
        let mut all = Findings::default();
        for i in 0..MAX_FINDINGS + 7 {
            all.push(finding(
                Some("a.py"),
                Some(1),
                None,
                Severity::Warning,
                None,
                &i.to_string(),
            ));
        }
        let list = all.finish();
        assert_eq!(list.len(), MAX_FINDINGS + 1);
        assert!(list[MAX_FINDINGS].message.starts_with("7 more findings"));

        let mut big = Findings::default();
        let message = "x".repeat(5000);
        for _ in 0..1000 {
            big.push(finding(None, None, None, Severity::Error, None, &message));
        }
        let list = big.finish();
        let bytes: usize = list.iter().map(|f| f.message.len() + 96).sum();
        assert!(bytes < 1024 * 1024 && list.len() < 1000, "{bytes}");
    }

    #[test]
    fn outside_paths_go_into_the_message() {
        let f = finding(
            Some("/etc/x.py"),
            Some(3),
            Some(0),
            Severity::Warning,
            Some(""),
            "bad",
        );
        assert_eq!(f.file, None);
        assert_eq!(f.message, "/etc/x.py:3: bad");
        assert_eq!((f.line, f.column, f.rule), (None, None, None));
    }
}
