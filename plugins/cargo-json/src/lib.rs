//! `cargo-json`: the JSON lines of `cargo build|check|clippy|test
//! --message-format=json` into findings, one per compiler error or warning.

use std::collections::HashSet;

use serde_json::Value;
use slipway_plugin_sdk::validator::*;
use slipway_plugin_sdk::{export_validator, malformed, unsupported};

use slipway_plugin_sdk::report::{self, cap, repo_path};

const FORMAT: &str = "cargo-json";
const REPORT: &str = "<report>";

pub struct CargoJson;

impl Validator for CargoJson {
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
        parse_lines(report).map(cap)
    }
}

export_validator!(CargoJson);

fn parse_lines(report: &str) -> Result<Vec<Finding>, PluginError> {
    let mut findings = Vec::new();
    // `--all-targets` compiles a crate twice (lib and lib test): same diagnostics.
    let mut seen = HashSet::new();
    let mut json_lines = 0usize;
    for (index, raw) in report.lines().enumerate() {
        let line = raw.trim();
        // cargo's own progress and summary lines (`Compiling …`, `error: could not compile …`).
        if !line.starts_with(['{', '[']) {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| {
            malformed(
                REPORT,
                Some(index as u32 + 1),
                format!("is not valid JSON: {e}"),
                Some("the report looks cut short; run cargo with `--message-format=json` and keep its whole stdout"),
            )
        })?;
        json_lines += 1;
        if value.get("reason").and_then(Value::as_str) != Some("compiler-message") {
            continue;
        }
        let Some(f) = value.get("message").and_then(diagnostic) else {
            continue;
        };
        let key = (
            f.file.clone(),
            f.line,
            f.column,
            f.rule.clone(),
            f.message.clone(),
            matches!(f.severity, Severity::Error),
        );
        if seen.insert(key) {
            findings.push(f);
        }
    }
    if json_lines == 0 && !report.trim().is_empty() {
        return Err(malformed(
            REPORT,
            None,
            "has no JSON lines: it is not cargo's `--message-format=json` output",
            Some("run e.g. `cargo clippy --message-format=json > .slipway/cargo.json`"),
        ));
    }
    Ok(findings)
}

/// A rustc diagnostic (`message` of a `compiler-message`) as a finding; `None`
/// for notes, help, failure notes, summaries, and objects of the wrong shape.
fn diagnostic(message: &Value) -> Option<Finding> {
    let level = message.get("level")?.as_str()?;
    // `error: internal compiler error` is an error too.
    let severity = if level.starts_with("error") {
        Severity::Error
    } else if level == "warning" {
        Severity::Warning
    } else {
        return None;
    };
    let text = message.get("message")?.as_str()?;
    let spans = message
        .get("spans")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if spans.is_empty() && is_summary(text) {
        return None;
    }
    let rule = message
        .get("code")
        .and_then(|c| c.get("code"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let primary = spans
        .iter()
        .find(|s| s.get("is_primary").and_then(Value::as_bool) == Some(true))
        .or(spans.first());
    let mut text = text.to_owned();
    if primary.is_none() {
        // No location (linker errors): the first note usually says why.
        if let Some(note) = first_child_note(message) {
            text = format!("{text}: {note}");
        }
    }
    let location = match primary {
        Some(span) => Some(span_location(span)?),
        None => None,
    };
    let (file, line, column) = match &location {
        Some((file, line, column)) => (Some(file.as_str()), *line, *column),
        None => (None, None, None),
    };
    Some(report::finding(
        file,
        line.map(u64::from),
        column.map(u64::from),
        severity,
        rule.as_deref(),
        &text,
    ))
}

/// `file_name`, `line_start`, `column_start` of a span; when the span is in a
/// file outside the repository (a macro from a dependency), the outermost
/// macro call site inside the repository instead. `None` when malformed.
fn span_location(span: &Value) -> Option<(String, Option<u32>, Option<u32>)> {
    let own = span_fields(span)?;
    if repo_path(&own.0).is_some() {
        return Some(own);
    }
    let mut current = span;
    let mut depth = 0;
    while let Some(site) = current.get("expansion").and_then(|e| e.get("span")) {
        depth += 1;
        if depth > 64 {
            break;
        }
        if let Some(loc) = span_fields(site).filter(|l| repo_path(&l.0).is_some()) {
            return Some(loc);
        }
        current = site;
    }
    Some(own)
}

fn span_fields(span: &Value) -> Option<(String, Option<u32>, Option<u32>)> {
    let file = span.get("file_name")?.as_str()?.to_owned();
    let number = |key: &str| -> Option<Option<u32>> {
        match span.get(key) {
            None | Some(Value::Null) => Some(None),
            Some(v) => Some(Some(u32::try_from(v.as_u64()?).ok()?)),
        }
    };
    Some((file, number("line_start")?, number("column_start")?))
}

fn first_child_note(message: &Value) -> Option<&str> {
    message
        .get("children")?
        .as_array()?
        .iter()
        .filter(|c| c.get("level").and_then(Value::as_str) == Some("note"))
        .find_map(|c| c.get("message").and_then(Value::as_str))
}

/// rustc's closing lines: `aborting due to 3 previous errors`,
/// `2 warnings emitted`, `aborting due to 1 previous error; 1 warning emitted`.
fn is_summary(text: &str) -> bool {
    text.starts_with("aborting due to")
        || (text.ends_with(" emitted")
            && text
                .split_whitespace()
                .next()
                .is_some_and(|n| n.parse::<u64>().is_ok()))
}

#[cfg(test)]
mod tests;
