//! The Python line: pins (mise.toml, .tool-versions, .python-version,
//! runtime.txt) beat ranges (requires-python, poetry's python dependency,
//! Pipfile's python_version) beat the default; within a kind, the first
//! file wins (the order hints are collected in here).

use slipway_plugin_sdk::ecosystem::{ConstraintKind, PluginError, Toolchain, VersionHint};
use slipway_plugin_sdk::toolchain::{resolve, version_file_pin, version_manager_pins};
use slipway_plugin_sdk::version::Constraint;
use slipway_plugin_sdk::{Repo, TextFile, malformed};

use crate::manifest::{Manifests, Pyproject, key_line};
use crate::{PREFIXES, PYTHON};

/// The Python toolchain for the repository: every hint collected, resolved
/// against the known lines; the losing hints are reported in the notes.
pub(crate) fn python_toolchain(
    repo: &Repo,
    manifests: &Manifests,
    notes: &mut Vec<String>,
) -> Result<Toolchain, PluginError> {
    let mut hints = pin_hints(repo, notes)?;
    if let Some(py) = &manifests.pyproject {
        hints.extend(pyproject_ranges(py, notes)?);
    }
    if let Some((file, table)) = &manifests.pipfile {
        hints.extend(pipfile_range(file, table, notes)?);
    }
    let toolchain = resolve(&PYTHON, hints)?;
    notes.extend(toolchain.notes());
    Ok(toolchain)
}

/// Keep a hint only if its constraint parses; otherwise say so in the notes.
fn usable(hint: VersionHint, notes: &mut Vec<String>) -> Option<VersionHint> {
    match Constraint::parse(&hint.constraint) {
        Ok(_) => Some(hint),
        Err(e) => {
            let place = hint.source.as_ref().map(|s| match s.line {
                Some(l) => format!("{}:{l}", s.file),
                None => s.file.clone(),
            });
            notes.push(format!(
                "{}: `{}` ignored: {e} (interpreter names such as `system`, `pypy3.10` or virtualenv names are not Python versions)",
                place.unwrap_or_default(),
                hint.written_form
            ));
            None
        }
    }
}

/// Pins, in precedence order: mise.toml, .tool-versions, .python-version,
/// runtime.txt. Unreadable or non-Python version files are noted, not fatal.
fn pin_hints(repo: &Repo, notes: &mut Vec<String>) -> Result<Vec<VersionHint>, PluginError> {
    let mut hints = Vec::new();
    for h in version_manager_pins(repo, &["python"], PREFIXES)? {
        hints.extend(usable(h, notes));
    }
    hints.extend(python_version_file(repo, notes)?);
    hints.extend(runtime_txt(repo, notes));
    Ok(hints)
}

/// `.python-version`: its first version; further lines are noted and ignored.
fn python_version_file(
    repo: &Repo,
    notes: &mut Vec<String>,
) -> Result<Option<VersionHint>, PluginError> {
    match version_file_pin(repo, ".python-version", PREFIXES) {
        Ok(Some(h)) => {
            if let Some(text) = repo.read_text(".python-version")? {
                let extra = text
                    .numbered_lines()
                    .filter(|(_, l)| !l.trim().is_empty() && !l.trim().starts_with('#'))
                    .count();
                if extra > 1 {
                    notes.push(format!(
                        ".python-version lists {extra} versions; the first (`{}`) is used",
                        h.written_form
                    ));
                }
            }
            Ok(usable(h, notes))
        }
        Ok(None) => Ok(None),
        Err(e) => {
            notes.push(format!(".python-version ignored: {}", e.describe()));
            Ok(None)
        }
    }
}

/// `runtime.txt`, when it names a Python runtime (Heroku's `python-3.11.6`).
fn runtime_txt(repo: &Repo, notes: &mut Vec<String>) -> Option<VersionHint> {
    match version_file_pin(repo, "runtime.txt", PREFIXES) {
        Ok(Some(h)) if h.written_form.to_ascii_lowercase().starts_with("python") => {
            usable(h, notes)
        }
        Ok(Some(h)) => {
            notes.push(format!(
                "runtime.txt ignored: `{}` is not a Python runtime (expected e.g. `python-3.11.6`)",
                h.written_form
            ));
            None
        }
        Ok(None) => None,
        Err(e) => {
            notes.push(format!("runtime.txt ignored: {}", e.describe()));
            None
        }
    }
}

/// Ranges from `pyproject.toml`: `[project] requires-python` (must be a
/// string), then `[tool.poetry.dependencies] python` (a table form is noted
/// and ignored).
fn pyproject_ranges(
    py: &Pyproject,
    notes: &mut Vec<String>,
) -> Result<Vec<VersionHint>, PluginError> {
    let mut hints = Vec::new();
    match py.get(&["project", "requires-python"]) {
        Some(toml::Value::String(s)) => {
            let line = key_line(&py.file, "project", "requires-python");
            hints.extend(usable(
                VersionHint::from_file(ConstraintKind::Range, "pyproject.toml", line, s, PREFIXES),
                notes,
            ));
        }
        Some(_) => {
            return Err(malformed(
                "pyproject.toml",
                key_line(&py.file, "project", "requires-python"),
                "[project] requires-python is not a string",
                Some("write e.g. requires-python = \">=3.10\""),
            ));
        }
        None => {}
    }
    match py.get(&["tool", "poetry", "dependencies", "python"]) {
        Some(toml::Value::String(s)) => {
            let line = key_line(&py.file, "tool.poetry.dependencies", "python");
            hints.extend(usable(
                VersionHint::from_file(ConstraintKind::Range, "pyproject.toml", line, s, PREFIXES),
                notes,
            ));
        }
        Some(_) => notes.push(
            "pyproject.toml [tool.poetry.dependencies] python ignored: not a plain version string"
                .into(),
        ),
        None => {}
    }
    Ok(hints)
}

/// The range from `Pipfile [requires]`: `python_version`, else
/// `python_full_version`; a non-string value is an error.
fn pipfile_range(
    file: &TextFile,
    table: &toml::Table,
    notes: &mut Vec<String>,
) -> Result<Option<VersionHint>, PluginError> {
    let requires = table.get("requires").and_then(|r| r.as_table());
    for key in ["python_version", "python_full_version"] {
        if let Some(v) = requires.and_then(|r| r.get(key)) {
            let Some(s) = v.as_str() else {
                return Err(malformed(
                    "Pipfile",
                    key_line(file, "requires", key),
                    format!("[requires] {key} is not a string"),
                    None,
                ));
            };
            let line = key_line(file, "requires", key);
            return Ok(usable(
                VersionHint::from_file(ConstraintKind::Range, "Pipfile", line, s, PREFIXES),
                notes,
            ));
        }
    }
    Ok(None)
}
