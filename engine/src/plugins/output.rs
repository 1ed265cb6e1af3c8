//! Checks on what a plugin returns, before anything else sees it: total size
//! first (a plugin must not make the host hold megabytes), then meaning
//! (confidence within 0..=100, relative paths, non-empty commands, ...).

use std::io::Write;

use serde::Serialize;

use super::bindings::{Detection, Evidence, Finding, ImageSource, Plan, Probe, ProbeAction, Step};

/// The serialized size of `value` in bytes, or `Err(limit)` once past `limit`
/// (measuring stops there).
pub fn size_within<T: Serialize>(value: &T, limit: usize) -> Result<usize, usize> {
    struct Counter {
        n: usize,
        limit: usize,
    }
    impl Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.n += buf.len();
            if self.n > self.limit {
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { n: 0, limit };
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => Ok(counter.n),
        Err(_) => Err(limit),
    }
}

fn relative_path(what: &str, path: &str) -> Result<(), String> {
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(format!(
            "{what} `{path}` is not a path relative to the repository root"
        ));
    }
    Ok(())
}

fn evidence(items: &[Evidence]) -> Result<(), String> {
    items
        .iter()
        .try_for_each(|e| relative_path("evidence file", &e.file))
}

pub fn detection(d: &Detection) -> Result<(), String> {
    if d.confidence > 100 {
        return Err(format!(
            "confidence {} is out of range 0..=100",
            d.confidence
        ));
    }
    evidence(&d.evidence)
}

fn steps(tier: &str, steps: &[Step]) -> Result<(), String> {
    for (i, s) in steps.iter().enumerate() {
        if s.name.trim().is_empty() || s.command.trim().is_empty() {
            return Err(format!("{tier} step {i} has an empty name or command"));
        }
        if let Some(path) = s.report.as_ref().and_then(|r| r.path.as_deref()) {
            relative_path("report path", path)?;
        }
    }
    Ok(())
}

pub fn plan(p: &Plan) -> Result<(), String> {
    if p.base_image.trim().is_empty() {
        return Err("base-image is empty".into());
    }
    match &p.image {
        ImageSource::Generated(text)
            if !text.trim_start().to_ascii_uppercase().starts_with("FROM")
                && !text.contains("\nFROM") =>
        {
            return Err("generated Dockerfile has no FROM line".into());
        }
        ImageSource::Repository(path) => relative_path("Dockerfile path", path)?,
        ImageSource::Generated(_) => {}
    }
    for t in &p.toolchains {
        if t.tool.trim().is_empty() || t.resolved.trim().is_empty() {
            return Err("a toolchain has an empty tool or resolved version".into());
        }
        if let Some(src) = &t.hint.source {
            relative_path("toolchain source", &src.file)?;
        }
    }
    steps("setup", &p.setup)?;
    steps("fast", &p.fast)?;
    steps("full", &p.full)?;
    for c in &p.cache {
        let id_ok = !c.id.is_empty()
            && c.id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
        if !id_ok || !c.path.starts_with('/') {
            return Err(format!(
                "cache mount `{}` at `{}` needs an id of [A-Za-z0-9-_.] and an absolute path",
                c.id, c.path
            ));
        }
    }
    Ok(())
}

pub fn findings(list: &[Finding]) -> Result<(), String> {
    for f in list {
        if let Some(file) = &f.file {
            relative_path("finding file", file)?;
        }
    }
    Ok(())
}

pub fn probe(p: &Probe) -> Result<(), String> {
    if p.period_ms == 0 || p.timeout_ms == 0 || p.success_threshold == 0 || p.failure_threshold == 0
    {
        return Err("probe period, timeout and thresholds must be at least 1".into());
    }
    match &p.action {
        ProbeAction::Exec(argv) if argv.is_empty() => Err("exec probe has an empty argv".into()),
        ProbeAction::Tcp(0) => Err("tcp probe on port 0".into()),
        ProbeAction::Http(h) if h.port == 0 || !h.path.starts_with('/') => Err(format!(
            "http probe needs a port and a path starting with `/` (got {}:{})",
            h.port, h.path
        )),
        ProbeAction::LogLine(re) if re.is_empty() => {
            Err("log-line probe has an empty pattern".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_stops_at_the_limit() {
        assert_eq!(size_within(&"abc", 100), Ok(5));
        assert_eq!(size_within(&"x".repeat(1000), 100), Err(100));
    }

    #[test]
    fn detection_checks() {
        let ok = Detection {
            confidence: 100,
            evidence: vec![Evidence {
                file: "a".into(),
                line: None,
                note: String::new(),
            }],
        };
        assert!(detection(&ok).is_ok());
        let bad = Detection {
            confidence: 101,
            evidence: vec![],
        };
        assert_eq!(
            detection(&bad).unwrap_err(),
            "confidence 101 is out of range 0..=100"
        );
        let escape = Detection {
            confidence: 1,
            evidence: vec![Evidence {
                file: "../x".into(),
                line: None,
                note: String::new(),
            }],
        };
        assert!(
            detection(&escape)
                .unwrap_err()
                .contains("not a path relative")
        );
    }
}
