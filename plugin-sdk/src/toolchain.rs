//! Choosing a toolchain version from the hints a repository carries, with the
//! same precedence in every ecosystem: an explicit **pin** (a version-manager
//! file: `mise.toml`, `.tool-versions`, `.nvmrc`, ...) beats a compatibility
//! **range** (a manifest field: `engines.node`, `requires-python`, ...), which
//! beats the plugin's **default**. Among hints of the same kind, the first in
//! the order the plugin lists them wins. The winner resolves to the newest
//! release line of the plugin's table that satisfies it; every other hint is
//! reported as overruled, with the reason.

use crate::ecosystem::{
    ConstraintKind, Evidence, OverruledHint, PluginError, Toolchain, VersionHint,
};
use crate::version::{Constraint, normalize};
use crate::{Repo, malformed, unsupported};

/// The versions a plugin knows about for one tool.
#[derive(Debug, Clone, Copy)]
pub struct ReleaseTable {
    /// The tool, e.g. `node`.
    pub tool: &'static str,
    /// Release lines, oldest first, e.g. `["18", "20", "22"]` or `["3.10", "3.11"]`.
    pub lines: &'static [&'static str],
    /// Lines with long-term support (for `lts/*`); empty when the tool has none.
    pub lts: &'static [&'static str],
    /// The default when the repository says nothing.
    pub default: &'static str,
    /// Prefixes people write before a version (`v` is always stripped).
    pub prefixes: &'static [&'static str],
}

impl VersionHint {
    /// A hint read from `file` (line `line`), as written; normalised here.
    pub fn from_file(
        kind: ConstraintKind,
        file: &str,
        line: Option<u32>,
        written: &str,
        prefixes: &[&str],
    ) -> VersionHint {
        VersionHint {
            constraint: normalize(written, prefixes),
            written_form: written.trim().to_owned(),
            kind,
            source: Some(Evidence::new(file, line, written.trim())),
        }
    }
}

fn kind_rank(kind: ConstraintKind) -> u8 {
    match kind {
        ConstraintKind::Pin => 0,
        ConstraintKind::Range => 1,
        ConstraintKind::Default => 2,
    }
}

fn kind_name(kind: ConstraintKind) -> &'static str {
    match kind {
        ConstraintKind::Pin => "pin",
        ConstraintKind::Range => "range",
        ConstraintKind::Default => "default",
    }
}

fn parse(hint: &VersionHint) -> Result<Constraint, PluginError> {
    Constraint::parse(&hint.constraint).map_err(|e| {
        let (file, line) = hint
            .source
            .as_ref()
            .map(|s| (s.file.as_str(), s.line))
            .unwrap_or(("(default)", None));
        malformed(file, line, e.to_string(), None)
    })
}

/// Resolve `hints` (in the plugin's order of authority within each kind).
pub fn resolve(table: &ReleaseTable, hints: Vec<VersionHint>) -> Result<Toolchain, PluginError> {
    let default = VersionHint {
        constraint: table.default.to_owned(),
        written_form: table.default.to_owned(),
        kind: ConstraintKind::Default,
        source: None,
    };
    let mut ordered: Vec<VersionHint> = hints;
    ordered.push(default);
    // Stable: keeps the plugin's order within a kind.
    ordered.sort_by_key(|h| kind_rank(h.kind));
    let winner = ordered.remove(0);
    let constraint = parse(&winner)?;
    let resolved = constraint
        .newest_line(table.lines, table.lts)
        .ok_or_else(|| {
            let file = winner.source.as_ref().map(|s| s.file.as_str());
            unsupported(
                file,
                format!(
                    "no {} release line satisfies `{}` (known: {})",
                    table.tool,
                    winner.written_form,
                    table.lines.join(", ")
                ),
                Some("pin a supported version, or use a repository Dockerfile"),
            )
        })?;
    let winner_place = winner
        .source
        .as_ref()
        .map(|s| s.file.clone())
        .unwrap_or_else(|| "the default".into());
    let mut overruled = Vec::new();
    for hint in ordered
        .into_iter()
        .filter(|h| h.kind != ConstraintKind::Default)
    {
        let agrees = parse(&hint)
            .map(|c| c.allows_line(resolved))
            .unwrap_or(false);
        let reason = if hint.kind == winner.kind {
            format!("an earlier {} ({winner_place}) wins", kind_name(hint.kind))
        } else {
            format!(
                "a {} ({winner_place}) beats a {}",
                kind_name(winner.kind),
                kind_name(hint.kind)
            )
        };
        let reason = if agrees {
            reason
        } else {
            format!(
                "{reason}; conflicts: {resolved} does not satisfy `{}`",
                hint.written_form
            )
        };
        overruled.push(OverruledHint { hint, reason });
    }
    Ok(Toolchain {
        tool: table.tool.to_owned(),
        hint: winner,
        resolved: resolved.to_owned(),
        overruled,
    })
}

impl Toolchain {
    /// Notes for people: each hint that lost and why, and a default that
    /// was used because the repository says nothing.
    pub fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self
            .overruled
            .iter()
            .map(|o| {
                let place = o
                    .hint
                    .source
                    .as_ref()
                    .map(|s| s.file.as_str())
                    .unwrap_or("(default)");
                format!(
                    "{} `{}` from {place} ignored: {}",
                    self.tool, o.hint.written_form, o.reason
                )
            })
            .collect();
        if self.hint.kind == ConstraintKind::Default {
            notes.push(format!(
                "no {} version in the repository; using the default {}",
                self.tool, self.resolved
            ));
        }
        notes
    }
}

/// Pins from `mise.toml` (`[tools] node = "20"`) and `.tool-versions`
/// (`nodejs 20.11.0`) for a tool known under any of `names`, in that order.
pub fn version_manager_pins(
    repo: &Repo,
    names: &[&str],
    prefixes: &[&str],
) -> Result<Vec<VersionHint>, PluginError> {
    let mut hints = Vec::new();
    if let Some((file, table)) = repo.read_toml("mise.toml")?
        && let Some(tools) = table.get("tools").and_then(|t| t.as_table())
    {
        for name in names {
            let written = match tools.get(*name) {
                Some(toml::Value::String(s)) => Some(s.clone()),
                Some(toml::Value::Array(a)) => {
                    a.first().and_then(|v| v.as_str()).map(str::to_owned)
                }
                Some(toml::Value::Table(t)) => {
                    t.get("version").and_then(|v| v.as_str()).map(str::to_owned)
                }
                _ => None,
            };
            if let Some(written) = written {
                let line = file
                    .numbered_lines()
                    .find(|(_, l)| l.trim_start().starts_with(name))
                    .map(|(n, _)| n);
                hints.push(VersionHint::from_file(
                    ConstraintKind::Pin,
                    "mise.toml",
                    line,
                    &written,
                    prefixes,
                ));
                break;
            }
        }
    }
    if let Some(file) = repo.read_text(".tool-versions")? {
        'names: for name in names {
            for (n, line) in file.numbered_lines() {
                let line = line.split('#').next().unwrap_or("").trim();
                let mut words = line.split_whitespace();
                if words.next() == Some(*name)
                    && let Some(version) = words.next()
                {
                    hints.push(VersionHint::from_file(
                        ConstraintKind::Pin,
                        ".tool-versions",
                        Some(n),
                        version,
                        prefixes,
                    ));
                    break 'names;
                }
            }
        }
    }
    Ok(hints)
}

/// A pin from a one-line version file (`.nvmrc`, `.python-version`, ...):
/// the first line that is not blank or a comment.
pub fn version_file_pin(
    repo: &Repo,
    file: &str,
    prefixes: &[&str],
) -> Result<Option<VersionHint>, PluginError> {
    let Some(text) = repo.read_text(file)? else {
        return Ok(None);
    };
    let Some((line, written)) = text.first_meaningful_line() else {
        return Err(malformed(
            file,
            None,
            "is empty",
            Some("write the version on the first line, e.g. `20`"),
        ));
    };
    Ok(Some(VersionHint::from_file(
        ConstraintKind::Pin,
        file,
        Some(line),
        written,
        prefixes,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: ReleaseTable = ReleaseTable {
        tool: "node",
        lines: &["18", "20", "22", "24"],
        lts: &["18", "20", "22", "24"],
        default: "lts/*",
        prefixes: &[],
    };

    fn hint(kind: ConstraintKind, file: &str, written: &str) -> VersionHint {
        VersionHint::from_file(kind, file, Some(1), written, &[])
    }

    #[test]
    fn pin_beats_range_beats_default() {
        let t = resolve(
            &NODE,
            vec![
                hint(ConstraintKind::Range, "package.json", ">=20"),
                hint(ConstraintKind::Pin, ".nvmrc", "v18.17.0"),
            ],
        )
        .unwrap();
        assert_eq!(
            (t.resolved.as_str(), t.hint.written_form.as_str()),
            ("18", "v18.17.0")
        );
        assert_eq!(t.hint.constraint, "18.17.0");
        assert_eq!(t.overruled.len(), 1);
        assert_eq!(
            t.overruled[0].reason,
            "a pin (.nvmrc) beats a range; conflicts: 18 does not satisfy `>=20`"
        );
        let t = resolve(
            &NODE,
            vec![hint(ConstraintKind::Range, "package.json", ">=18 <21")],
        )
        .unwrap();
        assert_eq!(t.resolved, "20");
        let t = resolve(&NODE, vec![]).unwrap();
        assert_eq!(
            (t.resolved.as_str(), t.hint.kind),
            ("24", ConstraintKind::Default)
        );
    }

    #[test]
    fn unsatisfiable_and_malformed_hints_name_the_file() {
        let e = resolve(&NODE, vec![hint(ConstraintKind::Pin, ".nvmrc", "99")])
            .unwrap_err()
            .describe();
        assert!(
            e.contains(".nvmrc: no node release line satisfies `99` (known: 18, 20, 22, 24)"),
            "{e}"
        );
        let e = resolve(&NODE, vec![hint(ConstraintKind::Pin, ".nvmrc", "banana")])
            .unwrap_err()
            .describe();
        assert!(
            e.starts_with("malformed input: .nvmrc:1: cannot read version constraint `banana`"),
            "{e}"
        );
    }

    #[test]
    fn reads_mise_and_tool_versions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mise.toml"), "[tools]\nnode = \"20\"\n").unwrap();
        std::fs::write(
            dir.path().join(".tool-versions"),
            "# tools\nnodejs 18.17.0\n",
        )
        .unwrap();
        let hints = version_manager_pins(&Repo::at(dir.path()), &["node", "nodejs"], &[]).unwrap();
        let got: Vec<(String, Option<u32>)> = hints
            .iter()
            .map(|h| (h.constraint.clone(), h.source.as_ref().unwrap().line))
            .collect();
        assert_eq!(
            got,
            vec![("20".to_owned(), Some(2)), ("18.17.0".to_owned(), Some(2))]
        );
    }
}
