//! `junit-xml`: JUnit XML test reports (pytest `--junitxml`, jest-junit,
//! rspec_junit_formatter, Maven Surefire, go-junit-report) into findings, one
//! per failed or errored test case.

use roxmltree::{Document, Node};
use slipway_plugin_sdk::validator::*;
use slipway_plugin_sdk::{export_validator, malformed, unsupported};

use slipway_plugin_sdk::report::{self, cap, one_line, repo_path};

const FORMAT: &str = "junit-xml";
const REPORT: &str = "<report>";

pub struct JunitXml;

impl Validator for JunitXml {
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
        parse_junit(report).map(cap)
    }
}

export_validator!(JunitXml);

fn parse_junit(report: &str) -> Result<Vec<Finding>, PluginError> {
    if report.trim().is_empty() {
        return Err(malformed(
            REPORT,
            None,
            "is empty: no JUnit XML was written",
            Some(
                "a test runner writes at least `<testsuites/>`; it probably crashed before writing the report (see the step's log)",
            ),
        ));
    }
    // No DTDs (roxmltree's default): JUnit reports have none, and entities could blow up.
    let doc = Document::parse(report).map_err(|e| {
        malformed(
            REPORT,
            Some(e.pos().row),
            format!("is not well-formed XML: {e}"),
            Some("the report may have been cut short (test run killed or out of disk?); check the step's log"),
        )
    })?;
    let root = doc.root_element();
    let root_name = root.tag_name().name();
    if root_name != "testsuites" && root_name != "testsuite" {
        return Err(malformed(
            REPORT,
            Some(line_of(&doc, root)),
            format!("has root element <{root_name}>, not <testsuites> or <testsuite>"),
            Some(
                "point the step's report at the JUnit XML file (e.g. `pytest --junitxml=.slipway/junit.xml`)",
            ),
        ));
    }

    let mut findings = Vec::new();
    for node in root.descendants().filter(|n| n.is_element()) {
        match node.tag_name().name() {
            "testcase" => {
                if let Some(outcome) = first_child(node, &["failure", "error"]) {
                    findings.push(testcase_finding(node, outcome));
                }
            }
            // A failure of the whole suite (e.g. a class that could not load).
            "failure" | "error" if is_tag(node.parent(), "testsuite") => {
                findings.push(suite_finding(node));
            }
            _ => {}
        }
    }
    Ok(findings)
}

fn testcase_finding(case: Node, outcome: Node) -> Finding {
    let classname = case.attribute("classname").unwrap_or("").trim();
    let name = case.attribute("name").unwrap_or("").trim();
    let rule = match (classname, name) {
        ("", "") => None,
        ("", n) => Some(n.to_owned()),
        (c, "") => Some(c.to_owned()),
        // jest-junit writes the same text in both by default.
        (c, n) if c == n => Some(n.to_owned()),
        (c, n) => Some(format!("{c}::{n}")),
    };
    let pytest = is_pytest(case);
    let text = all_text(outcome);
    let message = outcome_message(outcome, &text);

    let (file, line, column) = match case
        .attribute("file")
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        Some(file) => {
            let mut line = case
                .attribute("line")
                .and_then(|l| l.trim().parse::<u32>().ok());
            if pytest {
                // pytest writes its 0-based item line (junit_family=xunit1).
                line = line.map(|l| l + 1);
            }
            let mut column = None;
            if line.is_none() {
                // The frame in this file (rspec gives the file but not the line).
                let wanted = repo_path(file);
                if let Some(t) = traceback_location(&text, pytest, |p| wanted.as_deref() == Some(p))
                {
                    line = Some(t.line);
                    column = t.column;
                }
            }
            (Some(file.to_owned()), line, column)
        }
        None => match traceback_location(&text, pytest, |_| true) {
            Some(t) => (Some(t.file), Some(t.line), t.column),
            None if pytest => (pytest_module_path(classname), None, None),
            None => (None, None, None),
        },
    };
    report::finding(
        file.as_deref(),
        line.map(u64::from),
        column.map(u64::from),
        Severity::Error,
        rule.as_deref(),
        &message,
    )
}

fn suite_finding(outcome: Node) -> Finding {
    let suite = outcome.parent();
    let name = suite
        .and_then(|s| s.attribute("name"))
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let text = all_text(outcome);
    let message = outcome_message(outcome, &text);
    let pytest = suite.is_some_and(is_pytest);
    let (file, line, column) = match traceback_location(&text, pytest, |_| true) {
        Some(t) => (Some(t.file), Some(t.line), t.column),
        None => (None, None, None),
    };
    report::finding(
        file.as_deref(),
        line.map(u64::from),
        column.map(u64::from),
        Severity::Error,
        name,
        &message,
    )
}

/// The failure's message: its `message` attribute, else the first line of its
/// text; prefixed by the exception type when that adds something.
fn outcome_message(outcome: Node, text: &str) -> String {
    let attr = outcome.attribute("message").map(str::trim).unwrap_or("");
    let first_text_line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    // go-junit-report writes `message="Failed"`: the text says more.
    let generic = attr.is_empty() || attr.eq_ignore_ascii_case("failed");
    let mut message = if generic && !first_text_line.is_empty() {
        first_text_line
    } else {
        attr
    }
    .to_owned();
    let kind = outcome.attribute("type").map(str::trim).unwrap_or("");
    let short_kind = kind.rsplit(['.', ':']).next().unwrap_or("");
    if !short_kind.is_empty() && !message.contains(short_kind) {
        message = if message.is_empty() {
            kind.to_owned()
        } else {
            format!("{short_kind}: {message}")
        };
    }
    if message.trim().is_empty() {
        let what = outcome.tag_name().name();
        message = format!(
            "test {}",
            if what == "error" { "errored" } else { "failed" }
        );
    }
    one_line(&message)
}

struct Traced {
    file: String,
    line: u32,
    column: Option<u32>,
}

/// Source extensions whose stack frames carry a usable path (JVM frames such
/// as `at a.B.c(B.java:12)` name only the file, so they are left out).
const SOURCE_EXTENSIONS: &[&str] = &[
    "py", "rb", "js", "jsx", "mjs", "cjs", "ts", "tsx", "mts", "cts", "vue", "svelte", "go", "rs",
    "php", "ex", "exs", "c", "cc", "cpp", "h", "hpp", "cs", "swift", "dart", "lua", "sh",
];

/// Paths of dependencies, not of the repository's code.
fn is_dependency(path: &str) -> bool {
    [
        "node_modules/",
        "site-packages/",
        "dist-packages/",
        "/gems/",
        "vendor/bundle/",
    ]
    .iter()
    .any(|d| path.contains(d))
        || path.starts_with("node:")
        || path.starts_with("internal/")
}

/// Where a failure's traceback points into the repository: for pytest the last
/// frame (`tests/test_add.py:5: AssertionError`), else the first frame
/// (`# ./spec/calc_spec.rb:5:in ...`, `at Object.<anonymous> (/workspace/sum.test.js:4:21)`).
/// Only frames whose repository path passes `keep` count.
fn traceback_location(text: &str, pytest: bool, keep: impl Fn(&str) -> bool) -> Option<Traced> {
    let mut frames = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        // Python's own traceback: `File "/workspace/tests/t.py", line 5, in test`.
        if let Some(rest) = line.strip_prefix("File \"") {
            if let Some((path, after)) = rest.split_once('"') {
                let number = after
                    .trim_start_matches(',')
                    .trim()
                    .strip_prefix("line ")
                    .map(|n| {
                        n.chars()
                            .take_while(char::is_ascii_digit)
                            .collect::<String>()
                    });
                if let Some(n) = number.and_then(|n| n.parse().ok()) {
                    frames.push(Traced {
                        file: path.to_owned(),
                        line: n,
                        column: None,
                    });
                }
            }
            continue;
        }
        // A JavaScript frame: `at fn (/workspace/src/my app/x.ts:14:17)`, spaces allowed.
        if let Some(inner) = line.strip_prefix("at ").and_then(|l| l.strip_suffix(')'))
            && let Some(frame) = inner
                .rsplit_once('(')
                .and_then(|(_, t)| parse_location_token(t))
        {
            frames.push(frame);
            continue;
        }
        for token in line.split(|c: char| {
            c.is_whitespace() || matches!(c, '(' | ')' | '"' | '\'' | '`' | '<' | '>')
        }) {
            if let Some(frame) = parse_location_token(token) {
                frames.push(frame);
                break;
            }
        }
    }
    let usable = |t: &Traced| repo_path(&t.file).is_some_and(|p| !is_dependency(&p) && keep(&p));
    let python = pytest || frames.first().is_some_and(|f| f.file.ends_with(".py"));
    if python {
        frames
            .into_iter()
            .rev()
            .find(|t| t.file.ends_with(".py") && usable(t))
    } else {
        frames.into_iter().find(usable)
    }
}

/// `path:line[:column][:...]` where `path` ends in a source extension.
fn parse_location_token(token: &str) -> Option<Traced> {
    let mut parts = token.split(':');
    let path = parts.next()?;
    let line: u32 = parts.next()?.parse().ok()?;
    let column = parts.next().and_then(|c| c.parse::<u32>().ok());
    let ext = path.rsplit_once('.')?.1;
    if line == 0 || !SOURCE_EXTENSIONS.contains(&ext) {
        return None;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.len() <= ext.len() + 1 {
        return None;
    }
    Some(Traced {
        file: path.to_owned(),
        line,
        column,
    })
}

/// pytest's classname is the module path with `.` for `/`, then any classes:
/// `tests.unit.test_add.TestAdd` → `tests/unit/test_add.py`.
fn pytest_module_path(classname: &str) -> Option<String> {
    let mut parts: Vec<&str> = classname.split('.').collect();
    while parts
        .last()
        .is_some_and(|p| p.starts_with(|c: char| c.is_ascii_uppercase()))
    {
        parts.pop();
    }
    if parts.is_empty() || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    Some(format!("{}.py", parts.join("/")))
}

/// Inside a `<testsuite name="pytest">` (pytest's default suite name).
fn is_pytest(node: Node) -> bool {
    node.ancestors()
        .find(|n| n.has_tag_name("testsuite"))
        .and_then(|s| s.attribute("name"))
        .is_some_and(|n| n == "pytest")
}

fn first_child<'a, 'i>(node: Node<'a, 'i>, names: &[&str]) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && names.contains(&c.tag_name().name()))
}

fn is_tag(node: Option<Node>, name: &str) -> bool {
    node.is_some_and(|n| n.has_tag_name(name))
}

/// All text (and CDATA) inside `node`.
fn all_text(node: Node) -> String {
    node.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect()
}

fn line_of(doc: &Document, node: Node) -> u32 {
    doc.text_pos_at(node.range().start).row
}

#[cfg(test)]
mod tests;
