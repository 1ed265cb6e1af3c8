//! The project itself: built in the job (`setup`) from the checkout, with
//! its build backend preinstalled in the image so that no network is needed.

use slipway_plugin_sdk::Repo;
use slipway_plugin_sdk::ecosystem::Step;

use super::manager::Manager;
use crate::manifest::{Manifests, requirement_name, string_array};

/// Build backends that take the version from VCS metadata, which the
/// checkout may lack: they get `SETUPTOOLS_SCM_PRETEND_VERSION`.
const VCS_VERSIONED: &[&str] = &[
    "setuptools-scm",
    "hatch-vcs",
    "versioningit",
    "poetry-dynamic-versioning",
    "setuptools-git-versioning",
    "dunamai",
];

/// Is the project a package at all? `tool.poetry.package-mode = false` or
/// `tool.uv.package = false` say it is not.
fn package_mode(manifests: &Manifests) -> bool {
    let is_false = |path: &[&str]| manifests.get(path).and_then(|v| v.as_bool()) == Some(false);
    !is_false(&["tool", "poetry", "package-mode"]) && !is_false(&["tool", "uv", "package"])
}

/// The build requirements to preinstall: `[build-system] requires` when
/// declared (an empty list is noted: the project is then not installed), or
/// pip's legacy setuptools backend for a `[project]`/`setup.py` package
/// under pip or pipenv. Empty when the project is not installed.
pub(crate) fn build_requires(
    repo: &Repo,
    manifests: &Manifests,
    manager: Manager,
    notes: &mut Vec<String>,
) -> Vec<String> {
    let package_mode = package_mode(manifests);
    let mut requires = Vec::new();
    if package_mode && manifests.get(&["build-system"]).is_some() {
        requires = string_array(manifests.get(&["build-system", "requires"]));
        if requires.is_empty() {
            notes.push("pyproject.toml [build-system] has no requires: the project itself is not installed; tests import it from the checkout".into());
        }
    } else if package_mode
        && !matches!(manager, Manager::Uv | Manager::Poetry)
        && (manifests.has_project() || repo.exists("setup.py"))
    {
        // pip's legacy default backend.
        requires = vec!["setuptools>=61".into(), "wheel".into()];
    }
    requires.retain(|r| !r.contains(['\n', '\r']));
    requires
}

/// The `setup` steps: an offline editable install of the checkout when there
/// are build requirements. A failure is reported, not fatal: tests then
/// import the code from `/workspace`.
pub(crate) fn setup_steps(build_requires: &[String]) -> Vec<Step> {
    if build_requires.is_empty() {
        return Vec::new();
    }
    let scm = build_requires
        .iter()
        .filter_map(|r| requirement_name(r))
        .any(|n| VCS_VERSIONED.contains(&n.as_str()));
    let prefix = if scm {
        "SETUPTOOLS_SCM_PRETEND_VERSION=0.0.0 "
    } else {
        ""
    };
    vec![Step::new(
        "install-project",
        &format!(
            "{prefix}pip install --no-index --no-deps --no-build-isolation --quiet -e . || echo 'slipway: the project could not be installed in editable mode; tests import it from the checkout' >&2"
        ),
    )]
}
