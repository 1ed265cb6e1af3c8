//! Reading the project's manifests: `pyproject.toml` and `Pipfile`, parsed
//! once, plus the small TOML and package-name helpers the planner shares.

use slipway_plugin_sdk::ecosystem::PluginError;
use slipway_plugin_sdk::{Repo, TextFile};

/// `pyproject.toml`, parsed.
pub(crate) struct Pyproject {
    pub(crate) file: TextFile,
    pub(crate) table: toml::Table,
}

impl Pyproject {
    pub(crate) fn get(&self, path: &[&str]) -> Option<&toml::Value> {
        let mut cur = self.table.get(path[0])?;
        for key in &path[1..] {
            cur = cur.as_table()?.get(*key)?;
        }
        Some(cur)
    }
    pub(crate) fn has_project(&self) -> bool {
        self.table.get("project").is_some_and(|v| v.is_table())
    }
    pub(crate) fn has_poetry(&self) -> bool {
        self.get(&["tool", "poetry"]).is_some_and(|v| v.is_table())
    }
    pub(crate) fn has_tool(&self, tool: &str) -> bool {
        self.get(&["tool", tool]).is_some()
    }
}

pub(crate) fn read_pyproject(repo: &Repo) -> Result<Option<Pyproject>, PluginError> {
    Ok(repo
        .read_toml("pyproject.toml")?
        .map(|(file, table)| Pyproject { file, table }))
}

/// The manifests `plan` reads once and consults throughout: a malformed one
/// is an error naming its file and line (`pyproject.toml` first).
pub(crate) struct Manifests {
    pub(crate) pyproject: Option<Pyproject>,
    pub(crate) pipfile: Option<(TextFile, toml::Table)>,
}

impl Manifests {
    pub(crate) fn read(repo: &Repo) -> Result<Self, PluginError> {
        let pyproject = read_pyproject(repo)?;
        let pipfile = repo.read_toml("Pipfile")?;
        Ok(Manifests { pyproject, pipfile })
    }

    /// The value at `path` in `pyproject.toml`, if there is one.
    pub(crate) fn get(&self, path: &[&str]) -> Option<&toml::Value> {
        self.pyproject.as_ref().and_then(|p| p.get(path))
    }

    /// A `[project]` table in `pyproject.toml`.
    pub(crate) fn has_project(&self) -> bool {
        self.pyproject.as_ref().is_some_and(Pyproject::has_project)
    }

    /// A `[tool.poetry]` table in `pyproject.toml`.
    pub(crate) fn has_poetry(&self) -> bool {
        self.pyproject.as_ref().is_some_and(Pyproject::has_poetry)
    }

    /// A `[tool.<tool>]` entry in `pyproject.toml`.
    pub(crate) fn has_tool(&self, tool: &str) -> bool {
        self.pyproject.as_ref().is_some_and(|p| p.has_tool(tool))
    }
}

/// The table name of a `[header]` / `[[header]]` line.
fn header_name(line: &str) -> Option<String> {
    let rest = line.trim().strip_prefix('[')?;
    let rest = rest.strip_prefix('[').unwrap_or(rest);
    let (name, _) = rest.split_once(']')?;
    Some(
        name.split('.')
            .map(|p| p.trim().trim_matches('"'))
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// 1-based line of `key = ...` inside the TOML table `[section]`.
pub(crate) fn key_line(file: &TextFile, section: &str, key: &str) -> Option<u32> {
    let mut current = String::new();
    for (n, line) in file.numbered_lines() {
        let t = line.trim();
        if t.starts_with('[') {
            if let Some(name) = header_name(t) {
                current = name;
            }
            continue;
        }
        if current != section {
            continue;
        }
        let rest = t
            .strip_prefix(key)
            .or_else(|| t.strip_prefix(&format!("\"{key}\"")));
        if rest.is_some_and(|r| r.trim_start().starts_with('=')) {
            return Some(n);
        }
    }
    None
}

/// Line of the table header `[section]`.
pub(crate) fn header_line(file: &TextFile, section: &str) -> Option<u32> {
    file.numbered_lines()
        .find(|(_, l)| header_name(l).as_deref() == Some(section))
        .map(|(n, _)| n)
}

/// Canonical package name (PEP 503).
fn canonical(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace(['_', '.'], "-")
}

/// The package name at the start of a PEP 508 requirement.
pub(crate) fn requirement_name(req: &str) -> Option<String> {
    let name: String = req
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    (!name.is_empty()).then(|| canonical(&name))
}

pub(crate) fn string_array(v: Option<&toml::Value>) -> Vec<String> {
    v.and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The canonical names of a table's keys (poetry/pipenv dependency tables).
pub(crate) fn table_keys(v: Option<&toml::Value>) -> Vec<String> {
    v.and_then(|v| v.as_table())
        .map(|t| t.keys().map(|k| canonical(k)).collect())
        .unwrap_or_default()
}
