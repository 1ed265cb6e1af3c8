use super::*;
use slipway_plugin_sdk::testing::parse_report;

fn parse(fixture: &str) -> Result<Vec<Finding>, PluginError> {
    parse_report::<CargoJson>(FORMAT, format!("tests/fixtures/{fixture}"))
}

fn ok(fixture: &str) -> Vec<Finding> {
    parse(fixture).unwrap_or_else(|e| panic!("{fixture}: {}", e.describe()))
}

fn problem(e: PluginError) -> Problem {
    match e {
        PluginError::MalformedInput(p) => p,
        other => panic!("expected malformed input, got {}", other.describe()),
    }
}

fn loc(f: &Finding) -> (Option<&str>, Option<u32>, Option<u32>) {
    (f.file.as_deref(), f.line, f.column)
}

#[test]
fn clippy_and_rustc_diagnostics() {
    let f = ok("clippy.jsonl");
    assert_eq!(f.len(), 6, "{f:#?}");

    assert!(matches!(f[0].severity, Severity::Warning));
    assert_eq!(f[0].rule.as_deref(), Some("clippy::needless_return"));
    assert_eq!(f[0].message, "unneeded `return` statement");
    assert_eq!(loc(&f[0]), (Some("src/lib.rs"), Some(3), Some(5)));

    assert_eq!(f[1].rule.as_deref(), Some("unused_variables"));
    assert_eq!(f[1].message, "unused variable: `résultat`");
    assert_eq!(loc(&f[1]), (Some("src/données/mod.rs"), Some(7), Some(9)));

    // The primary span, not the first one.
    assert!(matches!(f[2].severity, Severity::Error));
    assert_eq!(f[2].rule.as_deref(), Some("E0308"));
    assert_eq!(loc(&f[2]), (Some("src/main.rs"), Some(5), Some(5)));

    // Inside a dependency's macro: the call site in the repository.
    assert_eq!(f[3].rule, None);
    assert_eq!(f[3].message, "no rules expected the token `,`");
    assert_eq!(
        loc(&f[3]),
        (Some("crates/api/src/handlers.rs"), Some(21), Some(15))
    );

    // A file outside the repository goes into the message.
    assert_eq!(loc(&f[4]), (None, None, None));
    assert_eq!(
        f[4].message,
        "/home/dev/shared/src/util.rs:1:5: unused import: `std::fmt`"
    );

    // No spans, but not a summary: kept, with its note.
    assert!(matches!(f[5].severity, Severity::Error));
    assert_eq!(loc(&f[5]), (None, None, None));
    assert_eq!(
        f[5].message,
        "linking with `cc` failed: exit status: 1: /usr/bin/ld: cannot find -lssl: No such file or directory"
    );
}

#[test]
fn cargo_stderr_and_wrong_shapes_are_skipped() {
    let f = ok("mixed-stderr.jsonl");
    assert_eq!(f.len(), 2, "{f:#?}");
    assert_eq!(f[0].rule.as_deref(), Some("clippy::needless_return"));
    assert_eq!(f[1].rule.as_deref(), Some("unused_variables"));
}

#[test]
fn clean_build_and_empty_report() {
    assert!(ok("clean.jsonl").is_empty());
    assert!(ok("empty.jsonl").is_empty());
    assert!(CargoJson::parse(FORMAT, "\n  \n").unwrap().is_empty());
}

#[test]
fn duplicates_from_two_targets_are_reported_once() {
    let text = std::fs::read_to_string("tests/fixtures/clippy.jsonl").unwrap();
    let first = text.lines().nth(1).unwrap();
    let twice = format!(
        "{first}\n{}\n",
        first.replace("\"kind\":[\"lib\"]", "\"kind\":[\"test\"]")
    );
    assert_eq!(CargoJson::parse(FORMAT, &twice).unwrap().len(), 1);
}

#[test]
fn truncated_line_is_malformed() {
    let p = problem(parse("truncated.jsonl").unwrap_err());
    assert_eq!(p.file.as_deref(), Some(REPORT));
    assert_eq!(p.line, Some(3));
    assert!(p.message.contains("not valid JSON"), "{}", p.message);
}

#[test]
fn human_output_is_malformed() {
    let p = problem(parse("human.txt").unwrap_err());
    assert!(p.message.contains("no JSON lines"));
    assert!(p.hint.unwrap().contains("--message-format=json"));
}

#[test]
fn unknown_format_is_unsupported() {
    assert!(matches!(
        CargoJson::parse("cargo", ""),
        Err(PluginError::Unsupported(_))
    ));
    assert_eq!(CargoJson::formats(), vec![FORMAT.to_owned()]);
}

#[test]
fn summaries() {
    assert!(is_summary("aborting due to 3 previous errors"));
    assert!(is_summary(
        "aborting due to 1 previous error; 1 warning emitted"
    ));
    assert!(is_summary("2 warnings emitted"));
    assert!(!is_summary("linking with `cc` failed: exit status: 1"));
    assert!(!is_summary("value emitted"));
}

#[test]
fn many_findings_are_capped() {
    let mut report = String::new();
    for i in 0..5_010 {
        report.push_str(&format!(
            r#"{{"reason":"compiler-message","message":{{"level":"warning","message":"w{i}","code":{{"code":"dead_code"}},"spans":[{{"is_primary":true,"file_name":"src/lib.rs","line_start":{},"column_start":1}}]}}}}"#,
            i + 1
        ));
        report.push('\n');
    }
    let f = CargoJson::parse(FORMAT, &report).unwrap();
    assert_eq!(f.len(), slipway_plugin_sdk::report::MAX_FINDINGS + 1);
    assert!(f.last().unwrap().message.starts_with("10 more findings"));
}
