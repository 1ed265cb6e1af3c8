//! `eslint-json`: findings from the JSON report of `eslint -f json`.
//!
//! The report is a JSON array with one result per linted file,
//! `{filePath, messages: [{ruleId, severity, message, line, column, fatal, ...}], errorCount, ...}`.
//! Every message becomes one finding: severity 2 is an error, 1 a warning,
//! and a fatal message (a parse error) an error without a rule.

use slipway_plugin_sdk::report;

use serde::Deserialize;
use slipway_plugin_sdk::export_validator;
use slipway_plugin_sdk::malformed;
use slipway_plugin_sdk::validator::*;

use report::{Findings, REPORT};

const FORMAT: &str = "eslint-json";
const HINT: &str = "expected the output of `eslint -f json` (a JSON array of file results)";

pub struct EslintJson;

/// The result for one file; unknown fields (`errorCount`, `source`, ...) are ignored.
#[derive(Deserialize)]
struct FileResult {
    #[serde(rename = "filePath")]
    file_path: String,
    messages: Vec<Message>,
}

/// One problem in a file; unknown fields (`nodeType`, `fix`, ...) are ignored.
#[derive(Deserialize)]
struct Message {
    #[serde(rename = "ruleId")]
    rule_id: Option<String>,
    severity: Option<u64>,
    message: String,
    line: Option<u64>,
    column: Option<u64>,
    fatal: Option<bool>,
}

impl Validator for EslintJson {
    fn formats() -> Vec<String> {
        vec![FORMAT.into()]
    }

    fn parse(format: &str, report: &str) -> Result<Vec<Finding>, PluginError> {
        report::check_format(format, FORMAT)?;
        let Some(results) = report::read_json::<Vec<FileResult>>(report, '[', HINT)? else {
            // `eslint -f json` prints `[]` even when there is nothing to say:
            // no output at all means ESLint did not run to the end.
            return Err(malformed(
                REPORT,
                None,
                "the report is empty: ESLint printed no JSON",
                Some(
                    "`eslint -f json` prints a JSON array even when there are no problems; check the step's log for a crash, a configuration error or `No files matching the pattern`",
                ),
            ));
        };
        let mut findings = Findings::default();
        for file in &results {
            for m in &file.messages {
                findings.push(finding(&file.file_path, m));
            }
        }
        Ok(findings.finish())
    }
}

fn finding(path: &str, m: &Message) -> Finding {
    let fatal = m.fatal == Some(true);
    let severity = match m.severity {
        _ if fatal => Severity::Error,
        Some(2..) => Severity::Error,
        Some(1) => Severity::Warning,
        // 0 ("off") is never reported; be lenient if it is.
        _ => Severity::Info,
    };
    let rule = if fatal { None } else { m.rule_id.as_deref() };
    // `<text>` is what ESLint calls code read from stdin: not a file.
    let (path, message) = if path.starts_with('<') && path.ends_with('>') {
        (None, format!("{path}: {}", m.message))
    } else {
        (Some(path), m.message.clone())
    };
    report::finding(path, m.line, m.column, severity, rule, &message)
}

export_validator!(EslintJson);

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_plugin_sdk::testing::parse_report;

    fn fixture(name: &str) -> Result<Vec<Finding>, PluginError> {
        parse_report::<EslintJson>(FORMAT, format!("tests/fixtures/{name}"))
    }

    fn problem(err: PluginError) -> Problem {
        match err {
            PluginError::MalformedInput(p) => p,
            other => panic!("expected malformed input, got {}", other.describe()),
        }
    }

    #[test]
    fn formats_and_unknown_format() {
        assert_eq!(EslintJson::formats(), vec!["eslint-json".to_string()]);
        let err = EslintJson::parse("ruff-json", "[]").unwrap_err();
        assert!(
            matches!(err, PluginError::Unsupported(_)),
            "{}",
            err.describe()
        );
        assert!(
            err.describe()
                .contains("unknown format `ruff-json` (known: eslint-json)")
        );
    }

    #[test]
    fn clean_report_has_no_findings() {
        assert!(fixture("clean.json").unwrap().is_empty());
        assert!(EslintJson::parse(FORMAT, "[]\n").unwrap().is_empty());
    }

    #[test]
    fn empty_report_is_malformed() {
        let p = problem(fixture("empty.json").unwrap_err());
        assert!(p.message.contains("empty"), "{}", p.message);
    }

    #[test]
    fn problems() {
        let f = fixture("problems.json").unwrap();
        assert_eq!(f.len(), 8);

        let unused = &f[0];
        assert_eq!(unused.file.as_deref(), Some("src/index.js"));
        assert_eq!((unused.line, unused.column), (Some(3), Some(7)));
        assert_eq!(unused.rule.as_deref(), Some("no-unused-vars"));
        assert_eq!(unused.severity, Severity::Error);
        assert_eq!(
            unused.message,
            "'helper' is assigned a value but never used."
        );

        let console = &f[1];
        assert_eq!(console.severity, Severity::Warning);
        assert_eq!(console.rule.as_deref(), Some("no-console"));

        let ts = &f[2];
        assert_eq!(
            ts.file.as_deref(),
            Some("src/components/Ünïcode Button.tsx")
        );
        assert_eq!(
            ts.rule.as_deref(),
            Some("@typescript-eslint/no-explicit-any")
        );
        assert_eq!(ts.message, "Unexpected any. Specify a different type.");

        let quotes = &f[3];
        assert_eq!(quotes.message, "Strings must use singlequote. — «héllo»");

        let fatal = &f[4];
        assert_eq!(fatal.file.as_deref(), Some("src/broken.js"));
        assert_eq!(fatal.severity, Severity::Error);
        assert_eq!(fatal.rule, None);
        assert_eq!((fatal.line, fatal.column), (Some(5), Some(12)));
        assert_eq!(fatal.message, "Parsing error: Unexpected token )");

        let ignored = &f[5];
        assert_eq!(ignored.file.as_deref(), Some("dist/bundle.js"));
        assert_eq!(
            (ignored.line, ignored.column, ignored.rule.as_deref()),
            (None, None, None)
        );
        assert_eq!(ignored.severity, Severity::Warning);

        let outside = &f[6];
        assert_eq!(outside.file, None);
        assert!(
            outside
                .message
                .starts_with("/home/ci/shared/eslint-rules.js:1:1: "),
            "{}",
            outside.message
        );

        let stdin = &f[7];
        assert_eq!(stdin.file, None);
        assert_eq!(stdin.message, "<text>: Missing semicolon.");
    }

    #[test]
    fn npm_banner_is_skipped() {
        let f = fixture("npm-run.txt").unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].file.as_deref(), Some("src/app.js"));
        assert_eq!(f[0].rule.as_deref(), Some("eqeqeq"));
        assert_eq!(f[1].rule.as_deref(), Some("prefer-const"));
    }

    #[test]
    fn truncated_report_is_malformed() {
        let p = problem(fixture("truncated.json").unwrap_err());
        assert_eq!(p.file.as_deref(), Some("<report>"));
        assert!(p.message.contains("truncated"), "{}", p.message);
        assert_eq!(p.line, Some(1));
    }

    #[test]
    fn stylish_output_is_malformed() {
        let p = problem(fixture("stylish.txt").unwrap_err());
        assert!(p.message.contains("no JSON array"), "{}", p.message);
        assert!(p.hint.unwrap().contains("eslint -f json"));
    }

    #[test]
    fn wrong_shapes_are_malformed() {
        let ruff = r#"[{"code":"F401","message":"m","filename":"/workspace/a.py"}]"#;
        let p = problem(EslintJson::parse(FORMAT, ruff).unwrap_err());
        assert!(
            p.message.contains("missing field `filePath`"),
            "{}",
            p.message
        );
        let p = problem(
            EslintJson::parse(FORMAT, "[{\"filePath\":\"a.js\",\n\"messages\":{}}]").unwrap_err(),
        );
        assert_eq!(p.line, Some(2));
    }

    #[test]
    fn many_findings_are_capped() {
        let m =
            r#"{"ruleId":"semi","severity":2,"message":"Missing semicolon.","line":1,"column":2}"#;
        let report = format!(
            r#"[{{"filePath":"/workspace/a.js","messages":[{}]}}]"#,
            vec![m; 5003].join(",")
        );
        let f = EslintJson::parse(FORMAT, &report).unwrap();
        assert_eq!(f.len(), 5001);
        assert!(f[5000].message.starts_with("3 more findings were dropped"));
    }
}
