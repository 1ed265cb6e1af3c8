//! `python`: the first-party ecosystem plugin for Python repositories.
//!
//! Detects pyproject/setup/requirements/Pipfile/lockfile repositories, picks
//! the Python line from pins (mise.toml, .tool-versions, .python-version,
//! runtime.txt) over ranges (requires-python, poetry's python dependency,
//! Pipfile's python_version) over the default, and plans an image with a
//! virtual environment at `/opt/venv` filled by the repository's package
//! manager (uv, poetry, pipenv or pip) in frozen mode. See README.md.
//!
//! Modules: `detect`; `manifest` and `requirements` (reading the project's
//! files); `version` (the Python line); `plan` (package manager,
//! dependencies, the project itself, validation steps, Dockerfile).

mod detect;
mod manifest;
mod plan;
mod requirements;
mod version;

use slipway_plugin_sdk::ecosystem::*;
use slipway_plugin_sdk::toolchain::ReleaseTable;
use slipway_plugin_sdk::{Repo, export_ecosystem};

pub struct Python;

const PREFIXES: &[&str] = &["python-", "python"];

pub const PYTHON: ReleaseTable = ReleaseTable {
    tool: "python",
    lines: &["3.9", "3.10", "3.11", "3.12", "3.13"],
    lts: &[],
    default: "3.12",
    prefixes: PREFIXES,
};

const VENV: &str = "/opt/venv";
const HOME: &str = "/home/app";
/// Where manifests and lockfiles are copied in the image (never /workspace).
const DEPS_DIR: &str = "/opt/deps";

/// Lockfiles, in the order detection lists them and notes the ignored ones.
const LOCKFILES: &[&str] = &["poetry.lock", "uv.lock", "Pipfile.lock"];

impl Ecosystem for Python {
    fn detect(repo: &Repo) -> Result<Option<Detection>, PluginError> {
        detect::detect(repo)
    }

    fn plan(repo: &Repo) -> Result<Plan, PluginError> {
        plan::plan(repo)
    }
}

export_ecosystem!(Python);

#[cfg(test)]
mod tests;
