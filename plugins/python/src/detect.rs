//! Detection: is this a Python repository, and how sure are we?
//!
//! A manifest and a lockfile: 90; either alone: 80; only a version hint: 50.

use slipway_plugin_sdk::Repo;
use slipway_plugin_sdk::ecosystem::{Detection, Evidence, PluginError};
use slipway_plugin_sdk::toolchain::{version_file_pin, version_manager_pins};

use crate::manifest::{header_line, read_pyproject};
use crate::{LOCKFILES, PREFIXES};

/// Manifests other than `pyproject.toml` (which counts only with a
/// `[project]` or `[tool.poetry]` table).
const MANIFESTS: &[&str] = &["setup.py", "setup.cfg", "requirements.txt", "Pipfile"];

pub(crate) fn detect(repo: &Repo) -> Result<Option<Detection>, PluginError> {
    let mut evidence = Vec::new();
    let manifest = manifest_evidence(repo, &mut evidence)?;
    let lockfile = lockfile_evidence(repo, &mut evidence);
    if manifest || lockfile {
        let confidence = if manifest && lockfile { 90 } else { 80 };
        return Ok(Some(Detection {
            confidence,
            evidence,
        }));
    }
    Ok(version_hint_evidence(repo).map(|src| Detection {
        confidence: 50,
        evidence: vec![src],
    }))
}

/// Collects the manifests present; is there at least one? A `Pipfile` is
/// parsed, so that a broken one is reported with its line.
fn manifest_evidence(repo: &Repo, evidence: &mut Vec<Evidence>) -> Result<bool, PluginError> {
    let mut manifest = false;
    if let Some(py) = read_pyproject(repo)? {
        if py.has_project() {
            manifest = true;
            evidence.push(Evidence::new(
                "pyproject.toml",
                header_line(&py.file, "project"),
                "[project] table",
            ));
        } else if py.has_poetry() {
            manifest = true;
            evidence.push(Evidence::new(
                "pyproject.toml",
                header_line(&py.file, "tool.poetry"),
                "[tool.poetry] table",
            ));
        }
    }
    for name in MANIFESTS {
        if *name == "Pipfile" {
            if repo.read_toml(name)?.is_some() {
                manifest = true;
                evidence.push(Evidence::new(name, None, "Pipfile"));
            }
        } else if repo.exists(name) {
            manifest = true;
            evidence.push(Evidence::new(name, None, format!("{name} present")));
        }
    }
    Ok(manifest)
}

/// Collects the lockfiles present; is there at least one?
fn lockfile_evidence(repo: &Repo, evidence: &mut Vec<Evidence>) -> bool {
    let mut lockfile = false;
    for name in LOCKFILES {
        if repo.exists(name) {
            lockfile = true;
            evidence.push(Evidence::new(name, None, "lockfile"));
        }
    }
    lockfile
}

/// The first Python version hint (`.python-version`, a Python `runtime.txt`,
/// a version manager's `python` entry): a weak signal on its own.
/// Unreadable hint files are left for `plan` to report; detection stays
/// quiet about them.
fn version_hint_evidence(repo: &Repo) -> Option<Evidence> {
    if let Ok(Some(pin)) = version_file_pin(repo, ".python-version", PREFIXES)
        && let Some(src) = pin.source
    {
        return Some(src);
    }
    if let Ok(Some(pin)) = version_file_pin(repo, "runtime.txt", PREFIXES)
        && pin.written_form.to_ascii_lowercase().starts_with("python")
        && let Some(src) = pin.source
    {
        return Some(src);
    }
    if let Ok(pins) = version_manager_pins(repo, &["python"], PREFIXES)
        && let Some(src) = pins.into_iter().next().and_then(|p| p.source)
    {
        return Some(src);
    }
    None
}
