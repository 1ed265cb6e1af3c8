use super::*;
use slipway_plugin_sdk::testing::parse_report;

fn parse(fixture: &str) -> Result<Vec<Finding>, PluginError> {
    parse_report::<JunitXml>(FORMAT, format!("tests/fixtures/{fixture}"))
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
fn pytest_failures_errors_and_xpass() {
    let f = ok("pytest.xml");
    assert_eq!(f.len(), 4, "{f:#?}");
    assert!(f.iter().all(|f| matches!(f.severity, Severity::Error)));

    assert_eq!(f[0].rule.as_deref(), Some("tests.test_add::test_add_wrong"));
    assert_eq!(f[0].message, "assert 5 == 6 | +  where 5 = add(2, 3)");
    assert_eq!(loc(&f[0]), (Some("tests/test_add.py"), Some(9), None));

    // The last frame in the repository: the helper that raised.
    assert_eq!(
        f[1].rule.as_deref(),
        Some("tests.test_ünïcode.TestGreeting::test_grüße[ß-SS]")
    );
    assert_eq!(f[1].message, "ValueError: cannot shout 'ß' — no uppercase");
    assert_eq!(loc(&f[1]), (Some("src/greet/shout.py"), Some(3), None));

    // Setup error: frames in the interpreter are skipped, /workspace/ is stripped.
    assert_eq!(f[2].rule.as_deref(), Some("tests.test_db::test_query"));
    assert!(
        f[2].message
            .starts_with("failed on setup with \"ConnectionRefusedError")
    );
    assert_eq!(loc(&f[2]), (Some("tests/conftest.py"), Some(12), None));

    // No traceback: the module comes from the classname, the class is dropped.
    assert_eq!(f[3].message, "[XPASS(strict)] overflow is not handled");
    assert_eq!(loc(&f[3]), (Some("tests/test_add.py"), None, None));
}

#[test]
fn pytest_xunit1_line_is_zero_based() {
    let f = ok("pytest-xunit1.xml");
    assert_eq!(f.len(), 1);
    assert_eq!(loc(&f[0]), (Some("tests/test_add.py"), Some(8), None));
}

#[test]
fn jest_junit_stack_frames() {
    let f = ok("jest-junit.xml");
    assert_eq!(f.len(), 2, "{f:#?}");
    assert_eq!(f[0].rule.as_deref(), Some("sum adds 2 + 2 to equal 5"));
    assert_eq!(
        f[0].message,
        "Error: expect(received).toBe(expected) // Object.is equality"
    );
    assert_eq!(loc(&f[0]), (Some("src/sum.test.js"), Some(8), Some(21)));

    assert_eq!(f[1].rule.as_deref(), Some("café «menu» prices in €"));
    assert_eq!(
        f[1].message,
        "TypeError: Cannot read properties of undefined (reading 'prix')"
    );
    // A path with a space is still one frame (split at the parenthesis).
    assert_eq!(loc(&f[1]), (Some("src/my app/menu.ts"), Some(14), Some(17)));
}

#[test]
fn rspec_file_attribute_and_backtrace_line() {
    let f = ok("rspec.xml");
    assert_eq!(f.len(), 2, "{f:#?}");
    assert_eq!(
        f[0].rule.as_deref(),
        Some("spec.calculator_spec::Calculator#add carries")
    );
    assert_eq!(
        f[0].message,
        "ExpectationNotMetError: expected: 6 | got: 5 | (compared using ==)"
    );
    assert_eq!(
        loc(&f[0]),
        (Some("spec/calculator_spec.rb"), Some(12), None)
    );

    // The first frame is in app code: the line comes from the spec file's frame.
    assert_eq!(
        f[1].message,
        "NoMethodError: undefined method `valid_email?' for an instance of User"
    );
    assert_eq!(
        loc(&f[1]),
        (Some("spec/models/user_spec.rb"), Some(7), None)
    );
}

#[test]
fn surefire_type_and_cdata() {
    let f = ok("TEST-com.example.AppTest.xml");
    assert_eq!(f.len(), 2, "{f:#?}");
    assert_eq!(
        f[0].rule.as_deref(),
        Some("com.example.AppTest::addsNegatives")
    );
    assert_eq!(
        f[0].message,
        "AssertionFailedError: expected: <-2> but was: <0>"
    );
    // JVM frames carry no directory: no location rather than a wrong one.
    assert_eq!(loc(&f[0]), (None, None, None));
    assert_eq!(f[1].message, "java.lang.ArithmeticException: / by zero");
}

#[test]
fn go_junit_report() {
    let f = ok("go-junit-report.xml");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].rule.as_deref(), Some("example.com/calc::TestAdd"));
    assert_eq!(f[0].message, "add_test.go:9: 2 + 3 != 5");
    assert_eq!(loc(&f[0]), (Some("add_test.go"), Some(9), None));
}

#[test]
fn passing_run_has_no_findings() {
    assert!(ok("no-tests.xml").is_empty());
}

#[test]
fn truncated_report_is_malformed_with_line() {
    let p = problem(parse("truncated.xml").unwrap_err());
    assert_eq!(p.file.as_deref(), Some(REPORT));
    assert!(p.line.is_some());
    assert!(p.message.contains("not well-formed XML"), "{}", p.message);
}

#[test]
fn other_xml_and_empty_are_malformed() {
    let p = problem(parse("not-junit.xml").unwrap_err());
    assert_eq!(p.line, Some(2));
    assert!(p.message.contains("<html>"));
    let p = problem(parse("empty.xml").unwrap_err());
    assert!(p.message.contains("empty"));
    problem(JunitXml::parse(FORMAT, "not xml at all").unwrap_err());
    let dtd = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\">]><testsuite/>";
    problem(JunitXml::parse(FORMAT, dtd).unwrap_err());
}

#[test]
fn unknown_format_is_unsupported() {
    assert!(matches!(
        JunitXml::parse("junit", "<testsuites/>"),
        Err(PluginError::Unsupported(_))
    ));
    assert_eq!(JunitXml::formats(), vec![FORMAT.to_owned()]);
}

#[test]
fn outside_paths_and_caps() {
    let mut xml = String::from("<testsuite name=\"x\">");
    xml.push_str("<testcase classname=\"a\" name=\"abs\" file=\"/home/me/a.py\" line=\"3\"><failure message=\"m\"/></testcase>");
    xml.push_str(
        "<testcase classname=\"a\" name=\"up\" file=\"../a.py\"><failure message=\"\"/></testcase>",
    );
    for i in 0..5_003 {
        xml.push_str(&format!(
            "<testcase name=\"t{i}\"><failure message=\"{}\"/></testcase>",
            "x".repeat(3_000)
        ));
    }
    xml.push_str("</testsuite>");
    let f = JunitXml::parse(FORMAT, &xml).unwrap();
    assert_eq!(loc(&f[0]), (None, None, None));
    assert_eq!(f[0].message, "/home/me/a.py:3: m");
    assert_eq!(f[1].message, "../a.py: test failed");
    assert_eq!(f[2].rule.as_deref(), Some("t0"));
    assert!(
        f[2].message.len() <= slipway_plugin_sdk::report::MAX_MESSAGE_BYTES
            && f[2].message.ends_with('…')
    );
    // 5,005 failures of 2 KiB each: capped by count and by total size, with
    // one closing `info` finding that says how many were dropped.
    assert!(f.len() <= slipway_plugin_sdk::report::MAX_FINDINGS + 1);
    let last = f.last().unwrap();
    assert!(matches!(last.severity, Severity::Info));
    assert!(last.message.contains("more findings"), "{}", last.message);
}
