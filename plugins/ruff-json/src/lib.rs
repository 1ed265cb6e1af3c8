//! `ruff-json`: findings from the JSON report of `ruff check --output-format json`.
//!
//! The report is a JSON array of diagnostics
//! `{code, message, filename, location: {row, column}, end_location, fix, noqa_row, url, cell}`.
//! Every diagnostic becomes one finding: syntax errors (`code` null,
//! `invalid-syntax`, or an `E9xx` code such as `E999`/`E902`) are errors,
//! everything else is a warning.

use slipway_plugin_sdk::report;

use serde::Deserialize;
use slipway_plugin_sdk::export_validator;
use slipway_plugin_sdk::validator::*;

use report::Findings;

const FORMAT: &str = "ruff-json";
const HINT: &str = "expected the output of `ruff check --output-format json` (a JSON array of diagnostics; the default text output cannot be parsed)";

pub struct RuffJson;

/// One diagnostic; unknown fields (`fix`, `url`, `noqa_row`, ...) are ignored.
#[derive(Deserialize)]
struct Diagnostic {
    code: Option<String>,
    message: String,
    filename: Option<String>,
    location: Option<Location>,
    /// Jupyter notebooks: the 1-based cell `location` is in.
    cell: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Location {
    row: Option<u64>,
    column: Option<u64>,
}

impl Validator for RuffJson {
    fn formats() -> Vec<String> {
        vec![FORMAT.into()]
    }

    fn parse(format: &str, report: &str) -> Result<Vec<Finding>, PluginError> {
        report::check_format(format, FORMAT)?;
        // An empty report: ruff printed nothing, so there is nothing to report.
        let diagnostics: Vec<Diagnostic> =
            report::read_json(report, '[', HINT)?.unwrap_or_default();
        let mut findings = Findings::default();
        for d in &diagnostics {
            findings.push(finding(d));
        }
        Ok(findings.finish())
    }
}

fn finding(d: &Diagnostic) -> Finding {
    let code = d.code.as_deref().map(str::trim).filter(|c| !c.is_empty());
    let syntax = match code {
        None => true,
        Some(c) => c.starts_with("E9") || c == "invalid-syntax",
    } || d.message.starts_with("SyntaxError");
    let severity = if syntax {
        Severity::Error
    } else {
        Severity::Warning
    };
    let message = match d.cell.as_ref().filter(|c| !c.is_null()) {
        Some(cell) => format!("{} (notebook cell {cell})", d.message),
        None => d.message.clone(),
    };
    let (row, column) = d
        .location
        .as_ref()
        .map_or((None, None), |l| (l.row, l.column));
    report::finding(d.filename.as_deref(), row, column, severity, code, &message)
}

export_validator!(RuffJson);

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_plugin_sdk::testing::parse_report;

    fn fixture(name: &str) -> Result<Vec<Finding>, PluginError> {
        parse_report::<RuffJson>(FORMAT, format!("tests/fixtures/{name}"))
    }

    fn problem(err: PluginError) -> Problem {
        match err {
            PluginError::MalformedInput(p) => p,
            other => panic!("expected malformed input, got {}", other.describe()),
        }
    }

    #[test]
    fn formats_and_unknown_format() {
        assert_eq!(RuffJson::formats(), vec!["ruff-json".to_string()]);
        let err = RuffJson::parse("eslint-json", "[]").unwrap_err();
        assert!(
            matches!(err, PluginError::Unsupported(_)),
            "{}",
            err.describe()
        );
        assert!(
            err.describe()
                .contains("unknown format `eslint-json` (known: ruff-json)")
        );
    }

    #[test]
    fn clean_and_empty_reports_have_no_findings() {
        assert!(fixture("clean.json").unwrap().is_empty());
        assert!(fixture("empty.json").unwrap().is_empty());
        assert!(RuffJson::parse(FORMAT, "  \n").unwrap().is_empty());
    }

    #[test]
    fn violations() {
        let f = fixture("violations.json").unwrap();
        assert_eq!(f.len(), 7);

        let unused = &f[0];
        assert_eq!(unused.file.as_deref(), Some("src/app.py"));
        assert_eq!((unused.line, unused.column), (Some(1), Some(8)));
        assert_eq!(unused.rule.as_deref(), Some("F401"));
        assert_eq!(unused.severity, Severity::Warning);
        assert_eq!(unused.message, "`os` imported but unused");

        let long = &f[1];
        assert_eq!(long.rule.as_deref(), Some("E501"));
        assert_eq!((long.line, long.column), (Some(21), Some(89)));

        let syntax = &f[2];
        assert_eq!(syntax.rule, None);
        assert_eq!(syntax.severity, Severity::Error);
        assert_eq!(syntax.file.as_deref(), Some("src/broken.py"));
        assert_eq!(syntax.message, "SyntaxError: Expected ':', found newline");

        let unicode = &f[3];
        assert_eq!(unicode.file.as_deref(), Some("src/über pkg/naïve.py"));
        assert_eq!(unicode.rule.as_deref(), Some("RUF001"));
        assert!(unicode.message.contains("`а` (CYRILLIC SMALL LETTER A)"));

        let notebook = &f[4];
        assert_eq!(notebook.file.as_deref(), Some("notebooks/explore.ipynb"));
        assert_eq!(notebook.message, "Undefined name `pd` (notebook cell 3)");
        assert_eq!(notebook.rule.as_deref(), Some("F821"));

        let outside = &f[5];
        assert_eq!(outside.file, None);
        assert_eq!(
            outside.message,
            "/tmp/build/generated.py:4:5: Ambiguous variable name: `l`"
        );
        assert_eq!(outside.line, None, "the position moved into the message");

        let io = &f[6];
        assert_eq!(io.rule.as_deref(), Some("E902"));
        assert_eq!(io.severity, Severity::Error);
        assert_eq!(io.file.as_deref(), Some("src/missing.py"));
    }

    #[test]
    fn older_ruff_shape() {
        let f = fixture("old-ruff.json").unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].rule.as_deref(), Some("F841"));
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!((f[0].line, f[0].column), (Some(12), Some(5)));
        assert_eq!(f[1].rule.as_deref(), Some("E999"));
        assert_eq!(f[1].severity, Severity::Error);
        assert_eq!(f[1].file.as_deref(), Some("pkg/broken.py"));
    }

    #[test]
    fn newer_syntax_error_code() {
        let report = r#"[{"code":"invalid-syntax","message":"Expected an expression","filename":"/workspace/a.py","location":{"row":2,"column":4}}]"#;
        let f = RuffJson::parse(FORMAT, report).unwrap();
        assert_eq!(f[0].severity, Severity::Error);
        assert_eq!(f[0].rule.as_deref(), Some("invalid-syntax"));
    }

    #[test]
    fn truncated_report_is_malformed() {
        let p = problem(fixture("truncated.json").unwrap_err());
        assert_eq!(p.file.as_deref(), Some("<report>"));
        assert!(p.message.contains("truncated"), "{}", p.message);
        assert_eq!(p.line, Some(37));
    }

    #[test]
    fn text_output_is_malformed() {
        let p = problem(fixture("text-output.txt").unwrap_err());
        assert!(p.message.contains("src/app.py:1:8: F401"), "{}", p.message);
        assert!(p.hint.unwrap().contains("--output-format json"));
        assert_eq!(p.line, Some(1));
    }

    #[test]
    fn wrong_shapes_are_malformed() {
        let p = problem(RuffJson::parse(FORMAT, "[{\"code\": \"F401\"}]").unwrap_err());
        assert!(
            p.message.contains("missing field `message`"),
            "{}",
            p.message
        );
        let p = problem(RuffJson::parse(FORMAT, "[\n{\"message\": 3}]").unwrap_err());
        assert_eq!(p.line, Some(2));
        let p = problem(RuffJson::parse(FORMAT, "{\"files\": []}").unwrap_err());
        assert!(p.message.contains("no JSON array"), "{}", p.message);
    }

    #[test]
    fn missing_location_and_zero_positions() {
        let report = r#"[{"code":"F401","message":"m","filename":"./a.py","location":{"row":0,"column":0}},{"code":"F401","message":"m\nsecond line","filename":null,"location":null}]"#;
        let f = RuffJson::parse(FORMAT, report).unwrap();
        assert_eq!(f[0].file.as_deref(), Some("a.py"));
        assert_eq!((f[0].line, f[0].column), (None, None));
        assert_eq!((f[1].file.as_deref(), f[1].line), (None, None));
        assert_eq!(f[1].message, "m | second line");
    }

    #[test]
    fn many_findings_are_capped() {
        let one = r#"{"code":"E501","message":"Line too long","filename":"/workspace/a.py","location":{"row":1,"column":89}}"#;
        let report = format!("[{}]", vec![one; 6000].join(","));
        let f = RuffJson::parse(FORMAT, &report).unwrap();
        assert_eq!(f.len(), 5001);
        assert_eq!(f[5000].severity, Severity::Info);
        assert!(
            f[5000]
                .message
                .starts_with("1000 more findings were dropped")
        );
    }
}
