//! Version constraints as people write them, resolved against release lines.
//!
//! One grammar covers what the version hints of the common ecosystems use:
//! exact and partial versions (`18`, `3.11`, `v18.17.0`), comparators
//! (`>=`, `>`, `<=`, `<`, `=`, `==`, `!=`), npm's `^`/`~`, Ruby's `~>`,
//! PEP 440's `~=`, wildcards (`18.x`, `3.*`, `*`), hyphen ranges
//! (`1.2 - 2.3`), conjunctions separated by spaces or commas, and
//! alternatives joined by `||`. Node's aliases (`lts/*`, `lts/hydrogen`,
//! `node`, `latest`, `stable`) are understood as well.
//!
//! A constraint resolves to the newest *release line* (`"20"`, `"3.12"`) of a
//! table the plugin carries that has at least one version satisfying it.

use std::fmt;

/// A version triple; missing parts of a written version are filled in by
/// the comparator's meaning, never silently set to zero.
type Triple = (u64, u64, u64);
const INFINITY: Triple = (u64::MAX, u64::MAX, u64::MAX);

/// A half-open interval `[lo, hi)` of versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    lo: Triple,
    hi: Triple,
}

/// A parsed constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    /// Any version in these intervals.
    Versions(Vec<SpanSet>),
    /// The newest release (`node`, `latest`, `stable`, `current`).
    Latest,
    /// The newest long-term-support release (`lts/*`, `lts`).
    LatestLts,
}

/// A union of intervals (one alternative of `a || b`, already intersected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanSet(Vec<Span>);

/// Why a constraint could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub input: String,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot read version constraint `{}`: {}",
            self.input, self.reason
        )
    }
}

impl std::error::Error for ParseError {}

/// A version as written, parts possibly missing (`18`, `3.11`, `1.22.3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Partial {
    major: u64,
    minor: Option<u64>,
    patch: Option<u64>,
}

impl Partial {
    /// The first version the partial covers.
    fn lo(self) -> Triple {
        (self.major, self.minor.unwrap_or(0), self.patch.unwrap_or(0))
    }

    /// The first version after everything the partial covers.
    fn hi(self) -> Triple {
        match (self.minor, self.patch) {
            (None, _) => (self.major + 1, 0, 0),
            (Some(mi), None) => (self.major, mi + 1, 0),
            (Some(mi), Some(p)) => (self.major, mi, p + 1),
        }
    }
}

/// Strip what people put around a version: a BOM, whitespace, quotes, a
/// leading `v`, and any of `prefixes` (e.g. `ruby-`, `python-`, `go`).
pub fn normalize(written: &str, prefixes: &[&str]) -> String {
    let mut s = written
        .trim_start_matches('\u{feff}')
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .trim();
    for p in prefixes {
        if let Some(rest) = s.strip_prefix(p) {
            s = rest;
            break;
        }
    }
    if let Some(rest) = s.strip_prefix(['v', 'V'])
        && rest.starts_with(|c: char| c.is_ascii_digit())
    {
        s = rest;
    }
    s.to_owned()
}

/// Node.js LTS codenames and their major versions.
const NODE_LTS_CODENAMES: &[(&str, u64)] = &[
    ("argon", 4),
    ("boron", 6),
    ("carbon", 8),
    ("dubnium", 10),
    ("erbium", 12),
    ("fermium", 14),
    ("gallium", 16),
    ("hydrogen", 18),
    ("iron", 20),
    ("jod", 22),
    ("krypton", 24),
];

impl Constraint {
    /// Parse a constraint (after [`normalize`]).
    pub fn parse(input: &str) -> Result<Constraint, ParseError> {
        let err = |reason: &str| ParseError {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        let lower = s.to_ascii_lowercase();
        match lower.as_str() {
            "node" | "latest" | "stable" | "current" => return Ok(Constraint::Latest),
            "lts" | "lts/*" | "lts/latest" => return Ok(Constraint::LatestLts),
            _ => {}
        }
        if let Some(code) = lower.strip_prefix("lts/") {
            let Some((_, major)) = NODE_LTS_CODENAMES.iter().find(|(n, _)| *n == code) else {
                let known: Vec<&str> = NODE_LTS_CODENAMES.iter().map(|(n, _)| *n).collect();
                return Err(err(&format!(
                    "unknown LTS codename `{code}` (known: {})",
                    known.join(", ")
                )));
            };
            let p = Partial {
                major: *major,
                minor: None,
                patch: None,
            };
            return Ok(Constraint::Versions(vec![SpanSet(vec![Span {
                lo: p.lo(),
                hi: p.hi(),
            }])]));
        }
        let mut alternatives = Vec::new();
        for alt in s.split("||") {
            alternatives.push(parse_conjunction(alt).map_err(|r| err(&r))?);
        }
        Ok(Constraint::Versions(alternatives))
    }

    /// Is there a version in `line` (`"18"`, `"3.11"`) that satisfies this?
    pub fn allows_line(&self, line: &str) -> bool {
        let Ok(p) = parse_partial(line) else {
            return false;
        };
        let line_span = Span {
            lo: p.lo(),
            hi: p.hi(),
        };
        match self {
            Constraint::Latest | Constraint::LatestLts => true,
            Constraint::Versions(alts) => alts
                .iter()
                .any(|set| set.0.iter().any(|s| intersect(*s, line_span).is_some())),
        }
    }

    /// The newest release line of `lines` this allows. `lts_lines` are the
    /// lines that count for [`Constraint::LatestLts`].
    pub fn newest_line<'a>(&self, lines: &[&'a str], lts_lines: &[&'a str]) -> Option<&'a str> {
        let pool = if *self == Constraint::LatestLts {
            lts_lines
        } else {
            lines
        };
        pool.iter()
            .filter(|l| self.allows_line(l))
            .max_by_key(|l| parse_partial(l).map(|p| p.lo()).unwrap_or((0, 0, 0)))
            .copied()
    }
}

fn parse_partial(s: &str) -> Result<Partial, String> {
    let s = s.trim();
    let core = s.split(['-', '+']).next().unwrap_or(s); // pre-release / build metadata
    let mut parts = core.split('.');
    let mut next = |what: &str| -> Result<Option<u64>, String> {
        match parts.next() {
            None | Some("x" | "X" | "*") => Ok(None),
            Some(p) => p
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("`{p}` is not a number in `{s}` ({what})")),
        }
    };
    let major = next("major")?.ok_or_else(|| format!("`{s}` has no major version"))?;
    let minor = next("minor")?;
    let patch = if minor.is_some() {
        next("patch")?
    } else {
        None
    };
    Ok(Partial {
        major,
        minor,
        patch,
    })
}

/// Parse one alternative: comparators joined by spaces or commas.
fn parse_conjunction(s: &str) -> Result<SpanSet, String> {
    let s = s.trim();
    if s.is_empty() || s == "*" || s.eq_ignore_ascii_case("x") {
        return Ok(SpanSet(vec![Span {
            lo: (0, 0, 0),
            hi: INFINITY,
        }]));
    }
    if let Some((a, b)) = s.split_once(" - ") {
        let (a, b) = (parse_partial(a)?, parse_partial(b)?);
        return Ok(SpanSet(vec![Span {
            lo: a.lo(),
            hi: b.hi(),
        }]));
    }
    // Glue operators to their versions: ">= 18" -> ">=18".
    let mut comparators: Vec<String> = Vec::new();
    let mut pending_op = String::new();
    for token in s.split([' ', ',']).filter(|t| !t.is_empty()) {
        if token.chars().all(|c| "<>=!~^".contains(c)) {
            pending_op.push_str(token);
        } else {
            comparators.push(format!("{pending_op}{token}"));
            pending_op.clear();
        }
    }
    if !pending_op.is_empty() {
        return Err(format!("operator `{pending_op}` has no version after it"));
    }
    let mut set = vec![Span {
        lo: (0, 0, 0),
        hi: INFINITY,
    }];
    for c in &comparators {
        let spans = comparator_spans(c)?;
        set = set
            .iter()
            .flat_map(|a| spans.iter().filter_map(move |b| intersect(*a, *b)))
            .collect();
    }
    Ok(SpanSet(set))
}

fn comparator_spans(c: &str) -> Result<Vec<Span>, String> {
    let op_len = c
        .find(|ch: char| ch.is_ascii_digit() || ch == '*' || ch == 'x' || ch == 'X')
        .unwrap_or(c.len());
    let (op, version) = c.split_at(op_len);
    if !op.chars().all(|ch| "<>=!~^".contains(ch)) {
        return Err(format!(
            "`{c}` is not a version (expected e.g. `18`, `3.11`, `>=3.10`, `^1.2`)"
        ));
    }
    if version.is_empty() {
        return Err(format!("`{c}` has no version"));
    }
    let p = parse_partial(version)?;
    let span = |lo, hi| Ok(vec![Span { lo, hi }]);
    match op {
        "" | "=" | "==" | "===" => span(p.lo(), p.hi()),
        ">=" => span(p.lo(), INFINITY),
        ">" => span(p.hi(), INFINITY),
        "<=" => span((0, 0, 0), p.hi()),
        "<" => span((0, 0, 0), p.lo()),
        "!=" => Ok(vec![
            Span {
                lo: (0, 0, 0),
                hi: p.lo(),
            },
            Span {
                lo: p.hi(),
                hi: INFINITY,
            },
        ]),
        "^" => {
            let hi = match (p.major, p.minor) {
                (0, Some(mi)) if mi > 0 || p.patch.is_none() => (0, mi + 1, 0),
                (0, Some(0)) => p.hi(),
                _ => (p.major + 1, 0, 0),
            };
            span(p.lo(), hi)
        }
        "~" => match p.minor {
            Some(mi) => span(p.lo(), (p.major, mi + 1, 0)),
            None => span(p.lo(), (p.major + 1, 0, 0)),
        },
        // Ruby `~> 3.2` and PEP 440 `~= 3.2`: the last written part may grow.
        "~>" | "~=" => match (p.minor, p.patch) {
            (Some(mi), Some(_)) => span(p.lo(), (p.major, mi + 1, 0)),
            (Some(_), None) | (None, _) => span(p.lo(), (p.major + 1, 0, 0)),
        },
        other => Err(format!("unknown operator `{other}` in `{c}`")),
    }
}

fn intersect(a: Span, b: Span) -> Option<Span> {
    let lo = a.lo.max(b.lo);
    let hi = a.hi.min(b.hi);
    (lo < hi).then_some(Span { lo, hi })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &[&str] = &["16", "18", "20", "22", "23", "24"];
    const NODE_LTS: &[&str] = &["16", "18", "20", "22", "24"];
    const PY: &[&str] = &["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"];

    fn newest(c: &str, lines: &[&'static str]) -> Option<&'static str> {
        Constraint::parse(c).unwrap().newest_line(lines, NODE_LTS)
    }

    #[test]
    fn normalizes_what_people_write() {
        assert_eq!(normalize("\u{feff} v18.17.0 \r\n", &[]), "18.17.0");
        assert_eq!(normalize("ruby-3.3.0", &["ruby-"]), "3.3.0");
        assert_eq!(normalize("python-3.9.18", &["python-"]), "3.9.18");
        assert_eq!(normalize("\"3.11\"", &[]), "3.11");
        assert_eq!(normalize("vintage", &[]), "vintage");
    }

    #[test]
    fn npm_ranges() {
        assert_eq!(newest(">=18", NODE), Some("24"));
        assert_eq!(newest(">=18 <21", NODE), Some("20"));
        assert_eq!(newest("^18.17.0 || ^20", NODE), Some("20"));
        assert_eq!(newest("~18.17", NODE), Some("18"));
        assert_eq!(newest("18.x", NODE), Some("18"));
        assert_eq!(newest("16 - 18", NODE), Some("18"));
        assert_eq!(newest(">20 <23", NODE), Some("22"));
        assert_eq!(newest("<16", NODE), None);
    }

    #[test]
    fn node_aliases() {
        assert_eq!(newest("lts/hydrogen", NODE), Some("18"));
        assert_eq!(newest("lts/*", NODE), Some("24"));
        assert_eq!(newest("node", NODE), Some("24"));
        let err = Constraint::parse("lts/nonsense").unwrap_err().to_string();
        assert!(
            err.contains("unknown LTS codename `nonsense` (known: argon"),
            "{err}"
        );
    }

    #[test]
    fn python_and_ruby_operators() {
        assert_eq!(newest(">=3.10,<3.13", PY), Some("3.12"));
        assert_eq!(newest("~=3.10", PY), Some("3.13"));
        assert_eq!(newest("~=3.10.2", PY), Some("3.10"));
        assert_eq!(newest("==3.11.*", PY), Some("3.11"));
        assert_eq!(newest(">=3.9, !=3.13.*", PY), Some("3.12"));
        assert_eq!(newest("~> 3.10.0", PY), Some("3.10"));
        assert_eq!(newest("3.9.18", PY), Some("3.9"));
    }

    #[test]
    fn bad_input_is_an_error_that_says_why() {
        assert!(Constraint::parse("").is_err());
        let e = Constraint::parse(">= ").unwrap_err().to_string();
        assert!(e.contains("has no version after it"), "{e}");
        let e = Constraint::parse("abc").unwrap_err().to_string();
        assert!(e.contains("`abc` is not a version"), "{e}");
        let e = Constraint::parse("18.y").unwrap_err().to_string();
        assert!(e.contains("`y` is not a number in `18.y`"), "{e}");
    }
}
