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

/// What is wrong with a plugin's answer, in words for its author.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidOutput(pub String);

impl From<String> for InvalidOutput {
    fn from(problem: String) -> InvalidOutput {
        InvalidOutput(problem)
    }
}

impl From<&str> for InvalidOutput {
    fn from(problem: &str) -> InvalidOutput {
        InvalidOutput(problem.to_owned())
    }
}

fn relative_path(what: &str, path: &str) -> Result<(), InvalidOutput> {
    if path.is_empty()
        || path.len() > 4096
        || path.starts_with('/')
        || path.split('/').any(|c| c == "..")
        || path.chars().any(char::is_control)
    {
        return Err(format!(
            "{what} `{}` is not a path relative to the repository root",
            path.escape_debug()
        )
        .into());
    }
    Ok(())
}

fn evidence(items: &[Evidence]) -> Result<(), InvalidOutput> {
    items.iter().try_for_each(|e| {
        relative_path("evidence file", &e.file)?;
        clean_text("an evidence note", &e.note, false)
    })
}

pub fn detection(d: &Detection) -> Result<(), InvalidOutput> {
    if d.confidence > 100 {
        return Err(format!("confidence {} is out of range 0..=100", d.confidence).into());
    }
    evidence(&d.evidence)
}

/// Text that reaches a Dockerfile, a container or a terminal: no NUL and no
/// control character, beyond newline and tab where it may span lines.
fn clean_text(what: &str, text: &str, multi_line: bool) -> Result<(), InvalidOutput> {
    match text
        .chars()
        .find(|&c| c.is_control() && !(multi_line && (c == '\n' || c == '\t')))
    {
        Some(c) => Err(format!("{what} contains the control character {:?}", c).into()),
        None => Ok(()),
    }
}

/// Step names, cache ids: one short word a log line and a label can carry.
fn word(what: &str, s: &str) -> Result<(), InvalidOutput> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{}` must be 1 to 64 letters, digits and `-_.:`",
            s.escape_debug()
        )
        .into())
    }
}

/// Where a cache volume may be mounted: an absolute, normalised path at
/// least two levels deep (a volume over `/opt` would hide what the image
/// installed there) that hides neither the system nor the checkout.
fn cache_path(path: &str) -> Result<(), InvalidOutput> {
    const SYSTEM: &[&str] = &[
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/proc",
        "/sbin",
        "/sys",
        "/usr/bin",
        "/usr/include",
        "/usr/lib",
        "/usr/lib64",
        "/usr/libexec",
        "/usr/local",
        "/usr/sbin",
        "/usr/share",
        "/workspace",
    ];
    // Under /usr/local only these may hold a cache (e.g. the ruby image's
    // GEM_HOME at /usr/local/bundle); its bin, lib and share stay visible.
    const USR_LOCAL_OK: &[&str] = &[
        "/usr/local/bundle",
        "/usr/local/cargo",
        "/usr/local/share/.cache",
    ];
    let parts: Vec<&str> = path.strip_prefix('/').unwrap_or("").split('/').collect();
    let normal = path.starts_with('/')
        && parts.len() >= 2
        && parts
            .iter()
            .all(|c| !c.is_empty() && *c != "." && *c != "..");
    let under = |root: &str| path == root || path.starts_with(&format!("{root}/"));
    let allowed_local = USR_LOCAL_OK.iter().any(|r| under(r) && path != *r);
    let hides = SYSTEM
        .iter()
        .any(|s| under(s) && !(s == &"/usr/local" && allowed_local));
    if normal && !hides && path.len() <= 256 {
        Ok(())
    } else {
        Err(format!(
            "cache path `{}` must be an absolute, normalised path at least two levels deep, outside `/workspace` and system directories",
            path.escape_debug()
        ).into())
    }
}

/// Commands are capped so a plugin cannot make every job carry megabytes.
const MAX_COMMAND: usize = 64 * 1024;

fn steps(tier: &str, steps: &[Step]) -> Result<(), InvalidOutput> {
    for (i, s) in steps.iter().enumerate() {
        if s.name.trim().is_empty() || s.command.trim().is_empty() {
            return Err(format!("{tier} step {i} has an empty name or command").into());
        }
        word(&format!("{tier} step {i}'s name"), &s.name)?;
        clean_text(
            &format!("{tier} step `{}`'s command", s.name),
            &s.command,
            true,
        )?;
        if s.command.len() > MAX_COMMAND {
            return Err(format!(
                "{tier} step `{}`'s command is {} bytes, over {MAX_COMMAND}",
                s.name,
                s.command.len()
            )
            .into());
        }
        if let Some(path) = s.report.as_ref().and_then(|r| r.path.as_deref()) {
            relative_path("report path", path)?;
        }
    }
    Ok(())
}

pub fn plan(p: &Plan) -> Result<(), InvalidOutput> {
    if p.base_image.trim().is_empty() {
        return Err("base-image is empty".into());
    }
    clean_text("base-image", &p.base_image, false)?;
    match &p.image {
        ImageSource::Generated(text)
            if !text.trim_start().to_ascii_uppercase().starts_with("FROM")
                && !text.contains("\nFROM") =>
        {
            return Err("generated Dockerfile has no FROM line".into());
        }
        ImageSource::Repository(path) => relative_path("Dockerfile path", path)?,
        ImageSource::Generated(text) => clean_text("the generated Dockerfile", text, true)?,
    }
    for e in &p.env {
        let name_ok = !e.name.is_empty()
            && e.name.len() <= 256
            && !e.name.starts_with(|c: char| c.is_ascii_digit())
            && e.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            return Err(format!(
                "environment variable name `{}` must be letters, digits and `_`, not starting with a digit",
                e.name.escape_debug()
            ).into());
        }
        clean_text(&format!("environment variable {}", e.name), &e.value, false)?;
    }
    if let Some(pm) = &p.package_manager {
        if let Some(lock) = &pm.lockfile {
            relative_path("package manager lockfile", lock)?;
        }
        if let Some(src) = &pm.source {
            relative_path("package manager source", &src.file)?;
        }
    }
    for n in &p.notes {
        clean_text("a note", n, false)?;
    }
    for t in &p.toolchains {
        if t.tool.trim().is_empty() || t.resolved.trim().is_empty() {
            return Err("a toolchain has an empty tool or resolved version".into());
        }
        if let Some(src) = &t.hint.source {
            relative_path("toolchain source", &src.file)?;
        }
        for o in &t.overruled {
            if let Some(src) = &o.hint.source {
                relative_path("overruled hint source", &src.file)?;
            }
        }
    }
    steps("setup", &p.setup)?;
    steps("fast", &p.fast)?;
    steps("full", &p.full)?;
    for c in &p.cache {
        let id_ok = !c.id.is_empty()
            && c.id.len() <= 64
            && c.id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
        if !id_ok {
            return Err(format!(
                "cache mount id `{}` must be 1 to 64 of [A-Za-z0-9-_.]",
                c.id.escape_debug()
            )
            .into());
        }
        cache_path(&c.path)?;
    }
    Ok(())
}

/// A line past this is no line of a real file.
const MAX_LINE: u32 = 10_000_000;

pub fn findings(list: &[Finding]) -> Result<(), InvalidOutput> {
    for f in list {
        if let Some(file) = &f.file {
            relative_path("finding file", file)?;
        }
        if f.line.is_some_and(|l| l > MAX_LINE) || f.column.is_some_and(|c| c > MAX_LINE) {
            return Err(format!(
                "finding at line {:?}, column {:?}: past {MAX_LINE}",
                f.line, f.column
            )
            .into());
        }
        if let Some(rule) = &f.rule {
            clean_text("a finding's rule", rule, false)?;
        }
        clean_text("a finding's message", &f.message, true)?;
    }
    Ok(())
}

/// A `snapshot`/`reset` command: an argv run in the service's container.
pub fn state_command(argv: &[String]) -> Result<(), InvalidOutput> {
    if argv.is_empty() || argv[0].trim().is_empty() {
        return Err("the command is empty".into());
    }
    let total: usize = argv.iter().map(String::len).sum();
    if argv.len() > 256 || total > MAX_COMMAND {
        return Err(format!(
            "the command has {} arguments, {total} bytes: over 256 arguments or {MAX_COMMAND} bytes",
            argv.len()
        ).into());
    }
    argv.iter()
        .try_for_each(|a| clean_text("a command argument", a, true))
}

/// Bounds on a readiness probe's timings: a period too short is a busy
/// loop, a timeout or deadline too long holds a job for weeks.
pub const PROBE_MIN_PERIOD_MS: u32 = 50;
pub const PROBE_MAX_TIMEOUT_MS: u32 = 5 * 60 * 1000;
pub const PROBE_MAX_DEADLINE_MS: u32 = 60 * 60 * 1000;
const PROBE_MAX_THRESHOLD: u32 = 1000;

pub fn probe(p: &Probe) -> Result<(), InvalidOutput> {
    if p.period_ms == 0 || p.timeout_ms == 0 || p.success_threshold == 0 || p.failure_threshold == 0
    {
        return Err("probe period, timeout and thresholds must be at least 1".into());
    }
    if p.period_ms < PROBE_MIN_PERIOD_MS
        || p.timeout_ms > PROBE_MAX_TIMEOUT_MS
        || p.startup_deadline_ms > PROBE_MAX_DEADLINE_MS
        || p.success_threshold > PROBE_MAX_THRESHOLD
        || p.failure_threshold > PROBE_MAX_THRESHOLD
    {
        return Err(format!(
            "probe timings out of bounds: period {} ms (at least {PROBE_MIN_PERIOD_MS}), timeout {} ms (at most {PROBE_MAX_TIMEOUT_MS}), startup deadline {} ms (at most {PROBE_MAX_DEADLINE_MS}), thresholds {}/{} (at most {PROBE_MAX_THRESHOLD})",
            p.period_ms,
            p.timeout_ms,
            p.startup_deadline_ms,
            p.success_threshold,
            p.failure_threshold
        ).into());
    }
    match &p.action {
        ProbeAction::Exec(argv) if argv.is_empty() => Err("exec probe has an empty argv".into()),
        ProbeAction::Tcp(0) => Err("tcp probe on port 0".into()),
        ProbeAction::Http(h) if h.port == 0 || !h.path.starts_with('/') => Err(format!(
            "http probe needs a port and a path starting with `/` (got {}:{})",
            h.port, h.path
        )
        .into()),
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
    fn text_paths_and_names_that_reach_a_dockerfile_or_a_terminal() {
        assert!(clean_text("x", "a\nb\tc", true).is_ok());
        assert!(clean_text("x", "a\nb", false).is_err());
        assert!(
            clean_text("x", "a\0b", true)
                .unwrap_err()
                .0
                .contains("'\\0'")
        );
        assert!(clean_text("x", "\u{1b}[31mred", true).is_err());
        assert!(word("step", "pytest").is_ok());
        assert!(word("step", "a\nb").is_err());
        assert!(word("step", "").is_err());
        for bad in [
            "/",
            "/workspace",
            "/workspace/x",
            "/etc/../etc",
            "/etc",
            "relative",
            "/a//b",
            "/usr/lib/x",
        ] {
            assert!(cache_path(bad).is_err(), "{bad}");
        }
        for bad in ["/opt", "/usr/local/bin", "/usr/local/bundle"] {
            assert!(cache_path(bad).is_err(), "{bad}");
        }
        for good in [
            "/home/app/.cache/pip",
            "/opt/cargo/registry",
            "/root/.npm",
            "/usr/local/bundle/cache",
        ] {
            assert!(cache_path(good).is_ok(), "{good}");
        }
        assert!(relative_path("f", "a/b").is_ok());
        assert!(relative_path("f", "a\nb").is_err());
    }

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
            detection(&bad).unwrap_err().0,
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
                .0
                .contains("not a path relative")
        );
    }
}
