//! `go-test-json`: the event stream of `go test -json ./...` into findings, one
//! per failed test, or one per compiler error of a package that failed to build.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use slipway_plugin_sdk::validator::*;
use slipway_plugin_sdk::{export_validator, malformed, unsupported};

use slipway_plugin_sdk::report::{self, cap, repo_path, truncate};

const FORMAT: &str = "go-test-json";
const REPORT: &str = "<report>";
/// Output lines kept in a test's message (the `--- FAIL` line comes first).
const MAX_MESSAGE_LINES: usize = 6;
/// Longest single output line kept in a message, in bytes.
const MAX_LINE_BYTES: usize = 300;

pub struct GoTestJson;

impl Validator for GoTestJson {
    fn formats() -> Vec<String> {
        vec![FORMAT.into()]
    }

    fn parse(format: &str, report: &str) -> Result<Vec<Finding>, PluginError> {
        if format != FORMAT {
            return Err(unsupported(
                None,
                format!("unknown format `{format}` (known: {FORMAT})"),
                None,
            ));
        }
        let events = Events::read(report)?;
        Ok(cap(events.findings()))
    }
}

export_validator!(GoTestJson);

/// A test (`Some(name)`) or a whole package (`None`) in a package.
type Key = (String, Option<String>);

#[derive(Default)]
struct Events {
    /// Output of each test and of each package (outside tests), concatenated.
    output: HashMap<Key, String>,
    /// What failed, in the order of the `fail` events.
    failed: Vec<Key>,
    /// `build-output` of each import path (Go 1.24+), concatenated.
    build_output: HashMap<String, String>,
    /// The import path whose build failed, per package (`FailedBuild`).
    failed_build: HashMap<String, String>,
    /// Lines that are not JSON (the go command's stderr mixed in), grouped
    /// under the `# import/path` header they follow.
    loose: HashMap<String, Vec<String>>,
}

impl Events {
    fn read(report: &str) -> Result<Events, PluginError> {
        let mut events = Events::default();
        let mut json_lines = 0usize;
        let mut first_plain: Option<&str> = None;
        let mut header = String::new();
        for (index, raw) in report.lines().enumerate() {
            let line = raw.trim_end();
            if !line.trim_start().starts_with(['{', '[']) {
                if line.trim().is_empty() {
                    continue;
                }
                first_plain.get_or_insert(line);
                if let Some(h) = line.strip_prefix("# ") {
                    header = import_path(h).to_owned();
                } else {
                    events
                        .loose
                        .entry(header.clone())
                        .or_default()
                        .push(line.to_owned());
                }
                continue;
            }
            let value: Value = serde_json::from_str(line).map_err(|e| {
                malformed(
                    REPORT,
                    Some(index as u32 + 1),
                    format!("is not valid JSON: {e}"),
                    Some("the report looks cut short; keep the whole stdout of `go test -json ./...`"),
                )
            })?;
            json_lines += 1;
            events.add(&value);
        }
        if json_lines == 0
            && let Some(first) = first_plain
        {
            return Err(malformed(
                REPORT,
                None,
                format!(
                    "has no JSON lines: it is not `go test -json` output (it starts `{}`)",
                    truncate(first.trim(), 200)
                ),
                Some(
                    "run `go test -json ./...`; go's own errors (`go: …`) mean it could not start the tests",
                ),
            ));
        }
        Ok(events)
    }

    /// One event; events of the wrong shape are skipped.
    fn add(&mut self, event: &Value) {
        let text = |key: &str| event.get(key).and_then(Value::as_str);
        let Some(action) = text("Action") else { return };
        if let Some(path) = text("ImportPath") {
            if action == "build-output" {
                let output = self.build_output.entry(path.to_owned()).or_default();
                output.push_str(text("Output").unwrap_or(""));
            }
            return;
        }
        let Some(package) = text("Package") else {
            return;
        };
        let key = (
            package.to_owned(),
            text("Test").filter(|t| !t.is_empty()).map(str::to_owned),
        );
        match action {
            "output" => self
                .output
                .entry(key)
                .or_default()
                .push_str(text("Output").unwrap_or("")),
            "fail" => {
                if let Some(build) = text("FailedBuild") {
                    self.failed_build
                        .insert(package.to_owned(), build.to_owned());
                }
                if !self.failed.contains(&key) {
                    self.failed.push(key);
                }
            }
            _ => {}
        }
    }

    fn findings(&self) -> Vec<Finding> {
        let failed_tests: HashSet<&Key> = self.failed.iter().filter(|k| k.1.is_some()).collect();
        let mut findings = Vec::new();
        for key in &self.failed {
            let (package, test) = key;
            match test {
                Some(test) => {
                    // A parent fails because a subtest failed: the subtest says why.
                    let prefix = format!("{test}/");
                    let has_failed_subtest = failed_tests.iter().any(|(p, t)| {
                        p == package && t.as_deref().is_some_and(|t| t.starts_with(&prefix))
                    });
                    if !has_failed_subtest {
                        findings.push(self.test_finding(package, test));
                    }
                }
                None => {
                    if !failed_tests.iter().any(|(p, _)| p == package) {
                        findings.extend(self.package_findings(package));
                    }
                }
            }
        }
        findings
    }

    fn test_finding(&self, package: &str, test: &str) -> Finding {
        let output = self
            .output
            .get(&(package.to_owned(), Some(test.to_owned())));
        let lines: Vec<&str> = output.map(|o| o.lines().collect()).unwrap_or_default();
        let rule = Some(format!("{package}.{test}"));

        // A panic's stack names the file with its full path: the first frame in the repository.
        let frame = lines.iter().find_map(|l| stack_frame(l));
        // `    add_test.go:9: 2 + 3 != 5`: go prints the path relative to the package.
        let logged = lines.iter().find_map(|l| log_location(l));
        let (file, line, bare) = match (frame, logged) {
            (Some((file, line)), _) => (Some(file), Some(line), false),
            (None, Some((file, line))) => {
                let bare = !file.contains('/');
                (Some(file), Some(line), bare)
            }
            (None, None) => (None, None, false),
        };
        let mut message = test_message(&lines, test);
        if bare {
            message.push_str(&format!(" (in package {package})"));
        }
        report::finding(
            file.as_deref(),
            line.map(u64::from),
            None,
            Severity::Error,
            rule.as_deref(),
            &message,
        )
    }

    /// A package failed with no failed test: its compiler errors, else one
    /// finding with what it printed.
    fn package_findings(&self, package: &str) -> Vec<Finding> {
        let rule = Some(package.to_owned());
        let mut sources: Vec<&str> = Vec::new();
        if let Some(path) = self.failed_build.get(package)
            && let Some(out) = self.build_output.get(path)
        {
            sources.push(out);
        }
        for (path, out) in &self.build_output {
            if import_path(path) == package && self.failed_build.get(package) != Some(path) {
                sources.push(out);
            }
        }
        let own = self.output.get(&(package.to_owned(), None));
        let loose = self.loose.get(package).map(|l| l.join("\n"));
        sources.extend(own.map(String::as_str));
        sources.extend(loose.as_deref());

        let mut seen = HashSet::new();
        let mut findings = Vec::new();
        for line in sources.iter().flat_map(|s| s.lines()) {
            if let Some((file, line_no, column, text)) = compiler_line(line)
                && seen.insert((file.clone(), line_no, column, text.clone()))
            {
                findings.push(report::finding(
                    Some(&file),
                    Some(u64::from(line_no)),
                    column.map(u64::from),
                    Severity::Error,
                    rule.as_deref(),
                    &text,
                ));
            }
        }
        if findings.is_empty() {
            let lines: Vec<&str> = own.map(|o| o.lines().collect()).unwrap_or_default();
            findings.push(report::finding(
                None,
                None,
                None,
                Severity::Error,
                rule.as_deref(),
                &package_message(&lines, package),
            ));
        }
        findings
    }
}

/// `example.com/calc [example.com/calc.test]` → `example.com/calc`.
fn import_path(path: &str) -> &str {
    path.split(" [").next().unwrap_or(path).trim()
}

/// The test's `--- FAIL` line, then what it logged, without `=== RUN` noise or
/// goroutine stacks.
fn test_message(lines: &[&str], test: &str) -> String {
    let mut fail_line = None;
    let mut rest = Vec::new();
    let mut in_stack = false;
    for line in lines {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if trimmed.starts_with("--- FAIL") {
            fail_line.get_or_insert(trimmed);
            continue;
        }
        if trimmed.starts_with("=== ")
            || trimmed.starts_with("--- PASS")
            || trimmed.starts_with("--- SKIP")
        {
            continue;
        }
        if trimmed.starts_with("goroutine ") {
            in_stack = true;
        }
        if !in_stack {
            rest.push(trimmed);
        }
    }
    let fail_line = fail_line
        .map(str::to_owned)
        .unwrap_or_else(|| format!("--- FAIL: {test}"));
    let mut kept: Vec<String> = vec![fail_line];
    kept.extend(
        rest.iter()
            .take(MAX_MESSAGE_LINES - 1)
            .map(|l| truncate(l, MAX_LINE_BYTES)),
    );
    if rest.len() > MAX_MESSAGE_LINES - 1 {
        kept.push(format!(
            "… ({} more lines)",
            rest.len() - (MAX_MESSAGE_LINES - 1)
        ));
    }
    kept.join("\n")
}

/// What a package printed outside its tests, without the `FAIL`/`ok` summary
/// lines and goroutine stacks.
fn package_message(lines: &[&str], package: &str) -> String {
    let mut kept = Vec::new();
    let mut status = None;
    for line in lines {
        let trimmed = line.trim();
        if trimmed.starts_with("goroutine ") {
            break;
        }
        if trimmed.starts_with("FAIL") && trimmed.contains(package) {
            // `FAIL	example.com/calc [build failed]`
            status = trimmed
                .split_once(" [")
                .map(|(_, s)| s.trim_end_matches(']').to_owned());
            continue;
        }
        if trimmed.is_empty()
            || trimmed == "FAIL"
            || trimmed == "PASS"
            || trimmed.starts_with("exit status ")
        {
            continue;
        }
        kept.push(truncate(trimmed, MAX_LINE_BYTES));
        if kept.len() == MAX_MESSAGE_LINES {
            break;
        }
    }
    let head = match status {
        Some(status) => format!("package {package}: {status}"),
        None => format!("package {package} failed"),
    };
    std::iter::once(head)
        .chain(kept)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A goroutine stack frame inside the repository:
/// `<TAB>/workspace/internal/greet/greet.go:12 +0x1d` → (`internal/greet/greet.go`, 12).
fn stack_frame(line: &str) -> Option<(String, u32)> {
    if !line.starts_with('\t') {
        return None;
    }
    let location = line.trim().split(' ').next()?;
    let (path, number) = location.rsplit_once(':')?;
    if !path.ends_with(".go") || !path.starts_with('/') {
        return None;
    }
    let path = repo_path(path)?;
    Some((path, number.parse().ok().filter(|&n| n > 0)?))
}

/// What `t.Errorf` prints: `    add_test.go:9: 2 + 3 != 5` → (`add_test.go`, 9).
fn log_location(line: &str) -> Option<(String, u32)> {
    let trimmed = line.trim_start();
    if trimmed.len() == line.len() {
        return None;
    }
    let (path, rest) = trimmed.split_once(':')?;
    let (number, _) = rest.split_once(':')?;
    if !path.ends_with(".go") || path.contains(' ') {
        return None;
    }
    Some((path.to_owned(), number.parse().ok().filter(|&n| n > 0)?))
}

/// A compiler or vet error: `./add.go:5:2: undefined: x` or
/// `internal/greet/greet.go:9:1: missing return` (paths relative to where
/// `go test` ran). Returns (file, line, column, message).
fn compiler_line(line: &str) -> Option<(String, u32, Option<u32>, String)> {
    let line = line.trim();
    let go = line.find(".go:")?;
    let path = &line[..go + 3];
    if path.contains(' ') || path.is_empty() {
        return None;
    }
    let mut rest = line[go + 4..].splitn(3, ':');
    let line_no: u32 = rest.next()?.parse().ok().filter(|&n| n > 0)?;
    let second = rest.next()?;
    let (column, message) = match second.parse::<u32>() {
        Ok(column) => (
            Some(column).filter(|&c| c > 0),
            rest.next()?.trim().to_owned(),
        ),
        // `path.go:9: message` (no column; the message may hold colons).
        Err(_) => match rest.next() {
            Some(tail) => (None, format!("{second}:{tail}").trim().to_owned()),
            None => (None, second.trim().to_owned()),
        },
    };
    if message.is_empty() {
        return None;
    }
    Some((path.to_owned(), line_no, column, message))
}

#[cfg(test)]
mod tests;
