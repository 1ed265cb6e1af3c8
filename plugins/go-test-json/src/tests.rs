use super::*;
use slipway_plugin_sdk::testing::parse_report;

fn parse(fixture: &str) -> Result<Vec<Finding>, PluginError> {
    parse_report::<GoTestJson>(FORMAT, format!("tests/fixtures/{fixture}"))
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
fn failed_tests_subtests_and_panics() {
    let f = ok("failing.jsonl");
    assert_eq!(f.len(), 4, "{f:#?}");
    assert!(f.iter().all(|f| matches!(f.severity, Severity::Error)));

    assert_eq!(f[0].rule.as_deref(), Some("example.com/calc.TestAdd"));
    assert_eq!(
        f[0].message,
        "--- FAIL: TestAdd (0.00s) | add_test.go:9: 2 + 3 != 5 (in package example.com/calc)"
    );
    assert_eq!(loc(&f[0]), (Some("add_test.go"), Some(9), None));

    // The parent TestTable is not reported: its failed subtests are.
    assert_eq!(f[1].rule.as_deref(), Some("example.com/calc.TestTable/neg"));
    assert_eq!(
        f[1].message,
        "--- FAIL: TestTable/neg (0.00s) | table_test.go:21: add(-1, -1) = 0, want -2 (in package example.com/calc)"
    );
    assert_eq!(loc(&f[1]), (Some("table_test.go"), Some(21), None));
    assert_eq!(
        f[2].rule.as_deref(),
        Some("example.com/calc.TestTable/ünï_côdé")
    );
    assert!(f[2].message.contains("ошибка"));

    // A panic: the first stack frame under /workspace, the stack left out.
    assert_eq!(
        f[3].rule.as_deref(),
        Some("example.com/calc/internal/greet.TestShout")
    );
    assert_eq!(
        loc(&f[3]),
        (Some("internal/greet/greet.go"), Some(12), None)
    );
    assert_eq!(
        f[3].message,
        "--- FAIL: TestShout (0.00s) | panic: runtime error: index out of range [0] with length 0 [recovered] | panic: runtime error: index out of range [0] with length 0"
    );
}

#[test]
fn passing_and_empty_runs() {
    assert!(ok("passing.jsonl").is_empty());
    assert!(ok("empty.jsonl").is_empty());
}

#[test]
fn build_failure_go_1_24() {
    let f = ok("build-failed.jsonl");
    assert_eq!(f.len(), 2, "{f:#?}");
    assert_eq!(f[0].rule.as_deref(), Some("example.com/calc"));
    assert_eq!(f[0].message, "undefined: x");
    assert_eq!(loc(&f[0]), (Some("add.go"), Some(5), Some(2)));
    assert_eq!(loc(&f[1]), (Some("add_test.go"), Some(14), Some(9)));
}

#[test]
fn build_failure_on_mixed_stderr() {
    let f = ok("build-failed-stderr.jsonl");
    assert_eq!(f.len(), 2, "{f:#?}");
    assert_eq!(
        f[0].rule.as_deref(),
        Some("example.com/calc/internal/greet")
    );
    assert_eq!(f[0].message, "undefined: strings.Shout");
    assert_eq!(
        loc(&f[0]),
        (Some("internal/greet/greet.go"), Some(7), Some(9))
    );
    assert_eq!(f[1].message, "missing return");
}

#[test]
fn package_failure_without_a_failed_test() {
    let f = ok("timeout.jsonl");
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].rule.as_deref(), Some("example.com/calc"));
    assert_eq!(loc(&f[0]), (None, None, None));
    assert_eq!(
        f[0].message,
        "package example.com/calc failed | panic: test timed out after 30s | running tests: | TestSlow (30s)"
    );
}

#[test]
fn build_failure_without_compiler_lines() {
    let report = r#"{"Action":"start","Package":"example.com/x"}
{"Action":"output","Package":"example.com/x","Output":"FAIL\texample.com/x [setup failed]\n"}
{"Action":"fail","Package":"example.com/x","Elapsed":0}"#;
    let f = GoTestJson::parse(FORMAT, report).unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].message, "package example.com/x: setup failed");
}

#[test]
fn truncated_report_is_malformed() {
    let p = problem(parse("truncated.jsonl").unwrap_err());
    assert_eq!(p.file.as_deref(), Some(REPORT));
    assert_eq!(p.line, Some(7));
}

#[test]
fn plain_go_test_output_is_malformed() {
    let p = problem(parse("plain.txt").unwrap_err());
    assert!(p.message.contains("no JSON lines"), "{}", p.message);
    assert!(p.message.contains("--- FAIL: TestAdd"));
}

#[test]
fn wrong_shapes_are_skipped() {
    let report = "[1]\n{\"Action\":7}\n{\"Action\":\"fail\"}\n{\"Package\":\"x\",\"Action\":\"fail\",\"Test\":\"TestA\"}\n";
    let f = GoTestJson::parse(FORMAT, report).unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].message, "--- FAIL: TestA");
}

#[test]
fn long_output_is_kept_short() {
    let mut report = String::from("{\"Action\":\"run\",\"Package\":\"p\",\"Test\":\"TestLog\"}\n");
    for i in 0..50 {
        report.push_str(&format!(
            "{{\"Action\":\"output\",\"Package\":\"p\",\"Test\":\"TestLog\",\"Output\":\"    log_test.go:{}: {}\\n\"}}\n",
            i + 1,
            "y".repeat(1_000)
        ));
    }
    report.push_str("{\"Action\":\"fail\",\"Package\":\"p\",\"Test\":\"TestLog\"}\n");
    let f = GoTestJson::parse(FORMAT, &report).unwrap();
    assert_eq!(f.len(), 1);
    assert!(
        f[0].message.len() < slipway_plugin_sdk::report::MAX_MESSAGE_BYTES,
        "{}",
        f[0].message.len()
    );
    assert!(f[0].message.contains("(45 more lines)"));
    assert_eq!(loc(&f[0]), (Some("log_test.go"), Some(1), None));
}

#[test]
fn unknown_format_is_unsupported() {
    assert!(matches!(
        GoTestJson::parse("go-test", ""),
        Err(PluginError::Unsupported(_))
    ));
    assert_eq!(GoTestJson::formats(), vec![FORMAT.to_owned()]);
}

#[test]
fn line_parsers() {
    assert_eq!(
        compiler_line("./add.go:5:2: undefined: x"),
        Some(("./add.go".into(), 5, Some(2), "undefined: x".into()))
    );
    assert_eq!(
        compiler_line("add_test.go:9: got: 1"),
        Some(("add_test.go".into(), 9, None, "got: 1".into()))
    );
    assert_eq!(
        compiler_line("\t/usr/local/go/src/testing/testing.go:1632 +0x230"),
        None
    );
    assert_eq!(
        log_location("    add_test.go:9: 2 + 3 != 5"),
        Some(("add_test.go".into(), 9))
    );
    assert_eq!(log_location("add_test.go:9: not indented"), None);
    assert_eq!(
        stack_frame("\t/workspace/a/b.go:3 +0x1d"),
        Some(("a/b.go".into(), 3))
    );
    assert_eq!(stack_frame("\t/root/go/pkg/mod/x@v1/b.go:3 +0x1d"), None);
}
