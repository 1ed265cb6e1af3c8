//! `log-line` readiness: ready once the service logs a line that matches a
//! regex (the engine watches the log and compiles the regex; this plugin only
//! checks the pattern's shape so that obvious mistakes are reported early).

use slipway_plugin_sdk::readiness::*;
use slipway_plugin_sdk::{export_readiness, malformed, unsupported};

pub struct LogLine;

/// A cheap syntax check of a regex: balanced groups and classes, no lone
/// trailing `\`, no repetition with nothing to repeat. The engine compiles the
/// pattern for real; this only catches the usual slips before the service starts.
fn pattern_problem(pattern: &str) -> Option<&'static str> {
    if pattern.is_empty() {
        return Some("the pattern is empty");
    }
    let mut groups = 0usize;
    let mut classes = 0usize; // nesting depth of `[...]`
    let mut class_fresh = false; // just after `[` or `[^`: a `]` here is literal
    let mut class_caret = false;
    let mut at_start = true; // at the start, after `(` or `|`
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if chars.next().is_none() {
                return Some("it ends with a lone `\\`");
            }
            class_fresh = false;
            at_start = false;
            continue;
        }
        if classes > 0 {
            match c {
                ']' if !class_fresh => classes -= 1,
                '^' if class_fresh && !class_caret => {
                    class_caret = true;
                    continue;
                }
                '[' => {
                    classes += 1;
                    class_caret = false;
                    class_fresh = true;
                    continue;
                }
                _ => {}
            }
            class_fresh = false;
            continue;
        }
        match c {
            '[' => {
                classes = 1;
                class_fresh = true;
                class_caret = false;
            }
            '(' => {
                groups += 1;
                // `(?i)`, `(?:...)`, `(?P<name>...)`: the `?` is not a repetition.
                if chars.peek() == Some(&'?') {
                    chars.next();
                }
                at_start = true;
                continue;
            }
            ')' => {
                if groups == 0 {
                    return Some("it has an unmatched `)`");
                }
                groups -= 1;
            }
            '|' => {
                at_start = true;
                continue;
            }
            '*' | '+' | '?' if at_start => {
                return Some("a repetition (`*`, `+`, `?`) has nothing to repeat");
            }
            _ => {}
        }
        at_start = false;
    }
    if classes > 0 {
        Some("a `[` is never closed")
    } else if groups > 0 {
        Some("a `(` is never closed")
    } else {
        None
    }
}

impl Readiness for LogLine {
    fn probe(service: &Service) -> Result<Probe, PluginError> {
        let pattern = service.option("pattern").ok_or_else(|| {
            unsupported(
                None,
                format!(
                    "service `{}` uses log-line readiness without a pattern",
                    service.name
                ),
                Some(
                    "set readiness.options.pattern to a regex for the line the service logs \
                     once it is ready, e.g. `ready to accept connections`",
                ),
            )
        })?;
        if let Some(problem) = pattern_problem(pattern) {
            return Err(malformed(
                &option_path(service, "pattern"),
                None,
                format!("`{pattern}` is not a valid regex: {problem}"),
                Some(
                    "the pattern uses Rust `regex` syntax; escape literal `( ) [ ] * + ? | \\` with `\\`",
                ),
            ));
        }
        probe_with(
            service,
            ProbeAction::LogLine(pattern.to_owned()),
            Timing {
                period_ms: 250,
                timeout_ms: 1000,
                success_threshold: 1,
                failure_threshold: 3,
                startup_deadline_ms: 60_000,
            },
        )
    }

    fn judge(service: &Service, output: &ProbeOutput) -> Verdict {
        if !output.stdout.is_empty() {
            return Verdict::Ready;
        }
        Verdict::NotReady(match service.option("pattern") {
            Some(p) => format!("no log line has matched `{p}` yet"),
            None => "no matching log line yet".to_owned(),
        })
    }
}

export_readiness!(LogLine);

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_plugin_sdk::testing::{judge, not_ready, probe_output as output, service};

    #[test]
    fn probes_the_pattern() {
        let s = service(
            &[],
            vec![],
            &[("pattern", r"database system is ready to accept connections")],
        );
        let p = LogLine::probe(&s).unwrap();
        assert!(
            matches!(&p.action, ProbeAction::LogLine(re) if re == "database system is ready to accept connections")
        );
        assert_eq!((p.success_threshold, p.startup_deadline_ms), (1, 60_000));
        let s = service(
            &[],
            vec![],
            &[("pattern", "x"), ("startup_deadline_ms", "5000")],
        );
        assert_eq!(LogLine::probe(&s).unwrap().startup_deadline_ms, 5000);
    }

    #[test]
    fn missing_pattern_is_unsupported() {
        let e = LogLine::probe(&service(&[], vec![], &[]))
            .unwrap_err()
            .describe();
        assert!(
            e.starts_with("unsupported:")
                && e.contains("without a pattern")
                && e.contains("readiness.options.pattern"),
            "{e}"
        );
    }

    #[test]
    fn accepts_ordinary_regexes() {
        for ok in [
            "ready",
            r"^Listening on (?:port )?\d+$",
            r"(?i)started .* in [0-9.]+s",
            r"[]a]",
            r"[^]a]",
            r"[[:alpha:]]+ ok",
            r"a|b*",
            r"\(literal\)",
            r"(?P<port>\d+)",
        ] {
            assert_eq!(pattern_problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn rejects_obvious_slips() {
        for (bad, why) in [
            ("", "empty"),
            ("(ready", "`(` is never closed"),
            ("ready)", "unmatched `)`"),
            ("[0-9", "`[` is never closed"),
            ("[[:alpha:]", "`[` is never closed"),
            ("ready\\", "lone `\\`"),
            ("*ready", "nothing to repeat"),
            ("a|+b", "nothing to repeat"),
            ("(*a)", "nothing to repeat"),
        ] {
            let e = LogLine::probe(&service(&[], vec![], &[("pattern", bad)]))
                .unwrap_err()
                .describe();
            assert!(
                e.contains("services.svc.readiness.options.pattern:") && e.contains(why),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn judges_the_matched_line() {
        let s = service(&[], vec![], &[("pattern", "ready")]);
        assert!(matches!(
            judge::<LogLine>(&s, &output(None, "LOG: ready to accept connections", "")),
            Verdict::Ready
        ));
        let m = not_ready(judge::<LogLine>(&s, &output(None, "", "")));
        assert_eq!(m, "no log line has matched `ready` yet");
        let m = not_ready(judge::<LogLine>(
            &service(&[], vec![], &[]),
            &output(None, "", ""),
        ));
        assert_eq!(m, "no matching log line yet");
    }
}
