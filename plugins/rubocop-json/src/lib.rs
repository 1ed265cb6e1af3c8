//! `rubocop-json`: findings from the JSON report of `rubocop --format json`.
//!
//! The report is one JSON object `{metadata, files: [{path, offenses: [...]}], summary}`.
//! Every offense becomes one finding: severity `error`/`fatal` is an error,
//! `warning` a warning, `refactor`/`convention`/`info` an info.

use slipway_plugin_sdk::report;

use serde::Deserialize;
use slipway_plugin_sdk::export_validator;
use slipway_plugin_sdk::malformed;
use slipway_plugin_sdk::validator::*;

use report::{Findings, REPORT};

const FORMAT: &str = "rubocop-json";
const HINT: &str = "expected the output of `rubocop --format json` (a JSON object with `files`)";

pub struct RubocopJson;

/// The report; `metadata` and `summary` are ignored.
#[derive(Deserialize)]
struct Report {
    files: Vec<File>,
}

#[derive(Deserialize)]
struct File {
    path: String,
    offenses: Vec<Offense>,
}

/// One offense; unknown fields (`correctable`, ...) are ignored.
#[derive(Deserialize)]
struct Offense {
    severity: Option<String>,
    message: String,
    cop_name: Option<String>,
    corrected: Option<bool>,
    location: Option<Location>,
}

/// `start_line`/`start_column` since RuboCop 0.50; `line`/`column` before (and still, as aliases).
#[derive(Deserialize)]
struct Location {
    start_line: Option<u64>,
    start_column: Option<u64>,
    line: Option<u64>,
    column: Option<u64>,
}

impl Validator for RubocopJson {
    fn formats() -> Vec<String> {
        vec![FORMAT.into()]
    }

    fn parse(format: &str, report: &str) -> Result<Vec<Finding>, PluginError> {
        report::check_format(format, FORMAT)?;
        let Some(parsed) = report::read_json::<Report>(report, '{', HINT)? else {
            // `rubocop --format json` prints an object even when there is nothing
            // to say: no output at all means RuboCop did not run to the end.
            return Err(malformed(
                REPORT,
                None,
                "the report is empty: RuboCop printed no JSON",
                Some(
                    "`rubocop --format json` prints a JSON object even when there are no offenses; check the step's log for a crash or a configuration error",
                ),
            ));
        };
        let mut findings = Findings::default();
        for file in &parsed.files {
            for offense in &file.offenses {
                findings.push(finding(&file.path, offense));
            }
        }
        Ok(findings.finish())
    }
}

fn finding(path: &str, o: &Offense) -> Finding {
    let cop = o
        .cop_name
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let mut severity = match o.severity.as_deref().map(str::trim) {
        Some("error" | "fatal") => Severity::Error,
        Some("refactor" | "convention" | "info") => Severity::Info,
        // `warning`, and anything a future RuboCop may add.
        _ => Severity::Warning,
    };
    // RuboCop puts `Cop/Name: ` in front of the message (DisplayCopNames, on by default).
    let text = cop
        .and_then(|c| o.message.strip_prefix(c))
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(&o.message);
    let message = if o.corrected == Some(true) {
        // Fixed by `rubocop -a`/`-A` in this run: no longer a problem in the files.
        severity = Severity::Info;
        format!("[Corrected] {text}")
    } else {
        text.to_owned()
    };
    let (line, column) = o.location.as_ref().map_or((None, None), |l| {
        (l.start_line.or(l.line), l.start_column.or(l.column))
    });
    report::finding(Some(path), line, column, severity, cop, &message)
}

export_validator!(RubocopJson);

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_plugin_sdk::testing::parse_report;

    fn fixture(name: &str) -> Result<Vec<Finding>, PluginError> {
        parse_report::<RubocopJson>(FORMAT, format!("tests/fixtures/{name}"))
    }

    fn problem(err: PluginError) -> Problem {
        match err {
            PluginError::MalformedInput(p) => p,
            other => panic!("expected malformed input, got {}", other.describe()),
        }
    }

    #[test]
    fn formats_and_unknown_format() {
        assert_eq!(RubocopJson::formats(), vec!["rubocop-json".to_string()]);
        let err = RubocopJson::parse("rubocop", "{}").unwrap_err();
        assert!(
            matches!(err, PluginError::Unsupported(_)),
            "{}",
            err.describe()
        );
        assert!(
            err.describe()
                .contains("unknown format `rubocop` (known: rubocop-json)")
        );
    }

    #[test]
    fn clean_report_has_no_findings() {
        assert!(fixture("clean.json").unwrap().is_empty());
        assert!(
            RubocopJson::parse(FORMAT, r#"{"files":[]}"#)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn empty_report_is_malformed() {
        let p = problem(fixture("empty.json").unwrap_err());
        assert!(p.message.contains("empty"), "{}", p.message);
    }

    #[test]
    fn offenses() {
        let f = fixture("offenses.json").unwrap();
        assert_eq!(f.len(), 9);

        let frozen = &f[0];
        assert_eq!(frozen.file.as_deref(), Some("app/models/user.rb"));
        assert_eq!((frozen.line, frozen.column), (Some(1), Some(1)));
        assert_eq!(
            frozen.rule.as_deref(),
            Some("Style/FrozenStringLiteralComment")
        );
        assert_eq!(frozen.severity, Severity::Info);
        assert_eq!(frozen.message, "Missing frozen string literal comment.");

        let useless = &f[1];
        assert_eq!(useless.severity, Severity::Warning);
        assert_eq!(
            useless.message,
            "Useless assignment to variable - `result`. Did you mean `results`?"
        );
        assert_eq!((useless.line, useless.column), (Some(14), Some(5)));

        assert_eq!(f[2].severity, Severity::Info);
        assert_eq!(f[2].rule.as_deref(), Some("Metrics/MethodLength"));
        assert_eq!(f[3].severity, Severity::Error);
        assert_eq!(f[3].message, "Line is too long. [131/120]");

        let unicode = &f[4];
        assert_eq!(unicode.file.as_deref(), Some("lib/tasks/ünïcode task.rake"));
        assert_eq!(
            unicode.message,
            "Use only ascii symbols in comments. — «café»"
        );

        let corrected = &f[5];
        assert_eq!(corrected.severity, Severity::Info);
        assert!(
            corrected
                .message
                .starts_with("[Corrected] Prefer single-quoted"),
            "{}",
            corrected.message
        );

        let syntax = &f[6];
        assert_eq!(syntax.severity, Severity::Error);
        assert_eq!(syntax.rule.as_deref(), Some("Lint/Syntax"));
        assert_eq!(
            syntax.message,
            "unexpected token kEND | (Using Ruby 3.3 parser; configure using `TargetRubyVersion` parameter, under `AllCops`)"
        );

        assert_eq!(f[7].file.as_deref(), Some("config/routes.rb"));

        let outside = &f[8];
        assert_eq!(outside.file, None);
        assert_eq!(
            outside.message,
            "../shared/rubocop_helper.rb:4:18: Unused method argument - `opts`."
        );
        assert_eq!(outside.rule.as_deref(), Some("Lint/UnusedMethodArgument"));
    }

    #[test]
    fn older_rubocop_shape() {
        let f = fixture("old-rubocop.json").unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].line, f[0].column), (Some(3), Some(11)));
        assert_eq!(f[0].rule.as_deref(), Some("Style/StringLiterals"));
        assert!(f[0].message.starts_with("Prefer single-quoted strings"));
    }

    #[test]
    fn leading_warnings_are_skipped() {
        let f = fixture("bundle-exec.txt").unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].file.as_deref(), Some("spec/user_spec.rb"));
        assert_eq!(f[0].rule.as_deref(), Some("RSpec/ExampleLength"));
    }

    #[test]
    fn truncated_report_is_malformed() {
        let p = problem(fixture("truncated.json").unwrap_err());
        assert_eq!(p.file.as_deref(), Some("<report>"));
        assert!(p.message.contains("truncated"), "{}", p.message);
        assert_eq!(p.line, Some(1));
    }

    #[test]
    fn progress_output_is_malformed() {
        let p = problem(fixture("progress.txt").unwrap_err());
        assert!(p.message.contains("no JSON object"), "{}", p.message);
        assert!(p.hint.unwrap().contains("rubocop --format json"));
    }

    #[test]
    fn wrong_shapes_are_malformed() {
        let p = problem(RubocopJson::parse(FORMAT, "{\"metadata\": {}}").unwrap_err());
        assert!(p.message.contains("missing field `files`"), "{}", p.message);
        let p = problem(
            RubocopJson::parse(
                FORMAT,
                "{\"files\": [\n{\"path\": \"a.rb\", \"offenses\": [{\"severity\": 1}]}]}",
            )
            .unwrap_err(),
        );
        assert_eq!(p.line, Some(2));
    }

    #[test]
    fn unknown_severity_and_missing_location() {
        let report = r#"{"files":[{"path":"./a.rb","offenses":[{"severity":"hint","message":"m","cop_name":"X/Y","location":null}]}]}"#;
        let f = RubocopJson::parse(FORMAT, report).unwrap();
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(f[0].file.as_deref(), Some("a.rb"));
        assert_eq!((f[0].line, f[0].column), (None, None));
    }

    #[test]
    fn many_findings_are_capped() {
        let o = r#"{"severity":"convention","message":"Layout/X: m","cop_name":"Layout/X","location":{"start_line":1,"start_column":1}}"#;
        let report = format!(
            r#"{{"files":[{{"path":"a.rb","offenses":[{}]}}]}}"#,
            vec![o; 5010].join(",")
        );
        let f = RubocopJson::parse(FORMAT, &report).unwrap();
        assert_eq!(f.len(), 5001);
        assert!(f[5000].message.starts_with("10 more findings were dropped"));
    }
}
