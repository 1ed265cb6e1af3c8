//! Which package manager installs the dependencies, and what that choice
//! implies for the plan: its tool, its cache, the lockfile it is frozen to.

use slipway_plugin_sdk::Repo;
use slipway_plugin_sdk::ecosystem::{CacheMount, Evidence, PackageManager};

use crate::manifest::{Manifests, header_line};
use crate::{HOME, LOCKFILES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Manager {
    Uv,
    Poetry,
    Pipenv,
    PipRequirements,
    PipProject,
    /// Nothing to install from (setup.py only, version file only).
    PipNone,
}

impl Manager {
    /// The tool installed into `/opt/tools` for this manager; pip needs none.
    pub(crate) fn tool(self) -> Option<&'static str> {
        match self {
            Manager::Uv => Some("uv"),
            Manager::Poetry => Some("poetry"),
            Manager::Pipenv => Some("pipenv"),
            _ => None,
        }
    }

    /// The name the plan reports.
    fn name(self) -> &'static str {
        self.tool().unwrap_or("pip")
    }

    /// Cache mounts: pip's always (the image's pip installs use it), plus
    /// the manager's own.
    pub(crate) fn caches(self) -> Vec<CacheMount> {
        let mut cache = vec![CacheMount {
            id: "pip".into(),
            path: format!("{HOME}/.cache/pip"),
        }];
        let own = match self {
            Manager::Uv => Some(("uv", "uv")),
            Manager::Poetry => Some(("poetry", "pypoetry")),
            Manager::Pipenv => Some(("pipenv", "pipenv")),
            _ => None,
        };
        if let Some((id, dir)) = own {
            cache.push(CacheMount {
                id: id.into(),
                path: format!("{HOME}/.cache/{dir}"),
            });
        }
        cache
    }
}

/// The chosen manager and where the choice came from.
pub(crate) struct ManagerChoice {
    pub(crate) manager: Manager,
    /// The file the dependencies are frozen to, if any.
    pub(crate) lockfile: Option<String>,
    /// The manager's version, when the lockfile names it (poetry).
    pub(crate) version: Option<String>,
    pub(crate) evidence: Option<Evidence>,
}

impl ManagerChoice {
    fn locked(manager: Manager, lockfile: &str, why: &str) -> Self {
        ManagerChoice {
            manager,
            lockfile: Some(lockfile.into()),
            version: None,
            evidence: Some(Evidence::new(lockfile, None, why)),
        }
    }

    fn unlocked(manager: Manager, evidence: Option<Evidence>) -> Self {
        ManagerChoice {
            manager,
            lockfile: None,
            version: None,
            evidence,
        }
    }

    /// What the plan reports as its package manager.
    pub(crate) fn into_package_manager(self) -> PackageManager {
        PackageManager {
            name: self.manager.name().into(),
            version: self.version,
            lockfile: self.lockfile,
            source: self.evidence,
        }
    }
}

/// The first match decides: a lockfile with its manifest (uv.lock,
/// poetry.lock, Pipfile.lock), then requirements.txt, then a manifest
/// without a lock (Pipfile, `[tool.poetry]`, `[project]`), else nothing to
/// install. Unfrozen choices are noted.
pub(crate) fn choose_manager(
    repo: &Repo,
    manifests: &Manifests,
    notes: &mut Vec<String>,
) -> ManagerChoice {
    let has_pyproject = manifests.pyproject.is_some();
    if repo.exists("uv.lock") && has_pyproject {
        ManagerChoice::locked(Manager::Uv, "uv.lock", "uv lockfile")
    } else if repo.exists("poetry.lock") && has_pyproject {
        poetry_locked(repo, notes)
    } else if repo.exists("Pipfile.lock") && manifests.pipfile.is_some() {
        ManagerChoice::locked(Manager::Pipenv, "Pipfile.lock", "pipenv lockfile")
    } else if repo.exists("requirements.txt") {
        ManagerChoice::locked(
            Manager::PipRequirements,
            "requirements.txt",
            "pip requirements",
        )
    } else if manifests.pipfile.is_some() {
        notes.push("Pipfile has no Pipfile.lock: dependencies are locked while the image is built, not frozen; commit Pipfile.lock for reproducible images".into());
        ManagerChoice::unlocked(
            Manager::Pipenv,
            Some(Evidence::new(
                "Pipfile",
                None,
                "Pipfile without Pipfile.lock",
            )),
        )
    } else if manifests.has_poetry() && !manifests.has_project() {
        notes.push("pyproject.toml uses Poetry but there is no poetry.lock: dependencies are resolved while the image is built, not frozen; commit poetry.lock".into());
        ManagerChoice::unlocked(
            Manager::Poetry,
            pyproject_evidence(
                manifests,
                "tool.poetry",
                "[tool.poetry] without poetry.lock",
            ),
        )
    } else if manifests.has_project() {
        notes.push("no lockfile (uv.lock, poetry.lock, Pipfile.lock, requirements.txt): dependencies from pyproject.toml [project] are installed with pip, not frozen".into());
        ManagerChoice::unlocked(
            Manager::PipProject,
            pyproject_evidence(manifests, "project", "[project] dependencies"),
        )
    } else {
        if repo.exists("setup.py") || repo.exists("setup.cfg") {
            notes.push("setup.py/setup.cfg dependencies are not installed in the image (they need the source to build); add a requirements.txt or a pyproject.toml [project] table".into());
        }
        ManagerChoice::unlocked(Manager::PipNone, None)
    }
}

/// Evidence pointing at the `[section]` header of `pyproject.toml`.
fn pyproject_evidence(manifests: &Manifests, section: &str, why: &str) -> Option<Evidence> {
    manifests
        .pyproject
        .as_ref()
        .map(|p| Evidence::new("pyproject.toml", header_line(&p.file, section), why))
}

/// Poetry with its lockfile, pinned to the Poetry version in the lockfile's
/// header when there is one (an unreadable lockfile is noted: the latest
/// Poetry is used).
fn poetry_locked(repo: &Repo, notes: &mut Vec<String>) -> ManagerChoice {
    let mut choice = ManagerChoice::unlocked(Manager::Poetry, None);
    choice.lockfile = Some("poetry.lock".into());
    match repo.read_text("poetry.lock") {
        Ok(Some(f)) => {
            // "# This file is automatically @generated by Poetry 1.8.3 and should not be changed by hand."
            if let Some((n, l)) = f
                .numbered_lines()
                .take(3)
                .find(|(_, l)| l.contains("generated by Poetry "))
            {
                let v: String = l
                    .split("generated by Poetry ")
                    .nth(1)
                    .unwrap_or("")
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                let v = v.trim_end_matches('.').to_owned();
                if v.split('.').count() >= 2 {
                    choice.evidence = Some(Evidence::new(
                        "poetry.lock",
                        Some(n),
                        format!("generated by Poetry {v}"),
                    ));
                    choice.version = Some(v);
                }
            }
        }
        Ok(None) => {}
        Err(e) => notes.push(format!(
            "poetry.lock could not be read for its Poetry version ({}); the latest Poetry is used",
            e.describe()
        )),
    }
    if choice.evidence.is_none() {
        choice.evidence = Some(Evidence::new("poetry.lock", None, "poetry lockfile"));
    }
    choice
}

/// Lockfiles and a `requirements.txt` that lost to the chosen manager are
/// reported as ignored.
pub(crate) fn note_ignored_inputs(repo: &Repo, choice: &ManagerChoice, notes: &mut Vec<String>) {
    let lockfile = choice.lockfile.as_deref();
    for l in LOCKFILES.iter().copied().filter(|l| repo.exists(l)) {
        if lockfile != Some(l) {
            notes.push(format!(
                "{l} ignored: {} decides the package manager",
                lockfile.unwrap_or("pyproject.toml")
            ));
        }
    }
    if choice.manager != Manager::PipRequirements && repo.exists("requirements.txt") {
        notes.push(format!(
            "requirements.txt ignored: {} decides the dependencies",
            lockfile.unwrap_or("the manifest")
        ));
    }
}
