//! How the chosen manager installs the dependencies in the image: the files
//! copied to `/opt/deps`, the manager's tool, its environment, the install
//! command, and the packages that end up declared (so the validation steps
//! know which tools the venv already has).

use std::collections::BTreeSet;

use slipway_plugin_sdk::Repo;
use slipway_plugin_sdk::ecosystem::PluginError;
use slipway_plugin_sdk::shell::quote;

use super::manager::{Manager, ManagerChoice};
use crate::VENV;
use crate::manifest::{Manifests, requirement_name, string_array, table_keys};
use crate::requirements::{ReqFile, read_requirements};

/// Optional-dependency extras / dependency groups that hold development tools.
const DEV_GROUPS: &[&str] = &[
    "dev",
    "develop",
    "development",
    "test",
    "tests",
    "testing",
    "lint",
    "linting",
    "typing",
    "types",
    "check",
    "ci",
];

/// What the dependency installation puts into the Dockerfile, and what it
/// installs.
#[derive(Default)]
pub(crate) struct DependencyInstall {
    /// Canonical names of the declared dependencies (dev ones included).
    pub(crate) declared: BTreeSet<String>,
    /// Manifests and lockfiles copied to `/opt/deps`.
    pub(crate) copies: Vec<String>,
    /// The `RUN` line, as root, that installs the manager's tool in
    /// `/opt/tools`; empty for pip.
    pub(crate) root_tools: String,
    /// The `RUN` line that installs the dependencies; empty when none.
    pub(crate) install: String,
    /// The manager's `ENV` entries, each as ` \` + newline + indented `K=V`.
    pub(crate) extra_env: String,
}

/// The installation for the chosen manager; reading requirements files can
/// fail (an include that does not exist).
pub(crate) fn dependency_install(
    repo: &Repo,
    manifests: &Manifests,
    choice: &ManagerChoice,
    notes: &mut Vec<String>,
) -> Result<DependencyInstall, PluginError> {
    Ok(match choice.manager {
        Manager::Uv => uv(manifests, notes),
        Manager::Poetry => poetry(manifests, choice),
        Manager::Pipenv => pipenv(manifests, choice.lockfile.is_some()),
        Manager::PipRequirements => pip_requirements(repo, notes)?,
        Manager::PipProject => pip_project(manifests, notes),
        Manager::PipNone => DependencyInstall::default(),
    })
}

/// The root `RUN` line that installs `tool` (pip requirement `spec`, already
/// shell-quoted where needed) into its own venv at `/opt/tools`, linked onto
/// `PATH`: never into the project's venv.
fn tools_venv(tool: &str, spec: &str) -> String {
    format!(
        "RUN python -m venv /opt/tools && /opt/tools/bin/pip install --no-cache-dir {spec} && ln -s /opt/tools/bin/{tool} /usr/local/bin/{tool}\n"
    )
}

/// uv: `uv sync --frozen` into the environment of the `python` on `PATH`;
/// only the root `pyproject.toml` and `uv.lock` are copied (a workspace's
/// members are not, which is noted).
fn uv(manifests: &Manifests, notes: &mut Vec<String>) -> DependencyInstall {
    let mut declared = BTreeSet::new();
    for k in [
        &["project", "dependencies"][..],
        &["dependency-groups", "dev"],
        &["tool", "uv", "dev-dependencies"],
    ] {
        declared.extend(
            string_array(manifests.get(k))
                .iter()
                .filter_map(|s| requirement_name(s)),
        );
    }
    if manifests.get(&["tool", "uv", "workspace"]).is_some() {
        notes.push("pyproject.toml declares a uv workspace: only the root pyproject.toml and uv.lock are copied into the image; member packages are not installed".into());
    }
    DependencyInstall {
        declared,
        // .python-version is not copied: the venv's interpreter is the image's line.
        copies: vec!["pyproject.toml".into(), "uv.lock".into()],
        root_tools: tools_venv("uv", "uv"),
        // Into the environment of the `python` on PATH: /opt/venv here,
        // the image's own environment when layered on a repository image.
        install: "RUN UV_PROJECT_ENVIRONMENT=\"$(python -c 'import sys; print(sys.prefix)')\" uv sync --frozen --no-install-project --inexact\n".into(),
        extra_env: format!(
            " \\\n    UV_PROJECT_ENVIRONMENT={VENV} \\\n    UV_PYTHON_DOWNLOADS=never \\\n    UV_LINK_MODE=copy"
        ),
    }
}

/// Poetry: `poetry install --no-root` into the active venv
/// (`POETRY_VIRTUALENVS_CREATE=false`), with the Poetry version the
/// lockfile was made with.
fn poetry(manifests: &Manifests, choice: &ManagerChoice) -> DependencyInstall {
    let mut copies = vec!["pyproject.toml".into()];
    if choice.lockfile.is_some() {
        copies.push("poetry.lock".into());
    }
    let spec = match &choice.version {
        Some(v) => format!("poetry=={v}"),
        None => "poetry".into(),
    };
    DependencyInstall {
        declared: poetry_declared(manifests),
        copies,
        root_tools: tools_venv("poetry", &quote(&spec)),
        install: format!(
            "RUN {}poetry install --no-root --no-interaction --no-ansi\n",
            touch_readmes(manifests)
        ),
        extra_env: " \\\n    POETRY_VIRTUALENVS_CREATE=false \\\n    POETRY_NO_INTERACTION=1"
            .into(),
    }
}

/// Poetry's dependencies, dev-dependencies, every group's dependencies, and
/// `[project] dependencies` (Poetry 2).
fn poetry_declared(manifests: &Manifests) -> BTreeSet<String> {
    let mut declared = BTreeSet::new();
    let Some(p) = manifests.pyproject.as_ref() else {
        return declared;
    };
    declared.extend(table_keys(p.get(&["tool", "poetry", "dependencies"])));
    declared.extend(table_keys(p.get(&["tool", "poetry", "dev-dependencies"])));
    declared.extend(
        string_array(p.get(&["project", "dependencies"]))
            .iter()
            .filter_map(|s| requirement_name(s)),
    );
    if let Some(groups) = p
        .get(&["tool", "poetry", "group"])
        .and_then(|g| g.as_table())
    {
        for g in groups.values() {
            declared.extend(table_keys(g.get("dependencies")));
        }
    }
    declared
}

/// Poetry validates that a declared readme exists even with `--no-root`, and
/// only manifests are copied: the command prefix that creates empty stand-ins
/// (`mkdir -p … && touch … && `), or nothing. Paths leaving the project are
/// skipped.
fn touch_readmes(manifests: &Manifests) -> String {
    let mut stubs = Vec::new();
    for k in [&["tool", "poetry", "readme"][..], &["project", "readme"]] {
        match manifests.get(k) {
            Some(toml::Value::String(s)) => stubs.push(s.clone()),
            Some(toml::Value::Array(a)) => {
                stubs.extend(a.iter().filter_map(|v| v.as_str().map(str::to_owned)))
            }
            _ => {}
        }
    }
    stubs.retain(|s| !s.contains("..") && !s.starts_with('/') && !s.contains('\n'));
    if stubs.is_empty() {
        return String::new();
    }
    let dirs: Vec<String> = stubs
        .iter()
        .filter_map(|s| s.rsplit_once('/').map(|(d, _)| quote(d)))
        .collect();
    let mk = if dirs.is_empty() {
        String::new()
    } else {
        format!("mkdir -p {} && ", dirs.join(" "))
    };
    format!(
        "{mk}touch {} && ",
        stubs.iter().map(|s| quote(s)).collect::<Vec<_>>().join(" ")
    )
}

/// pipenv: `pipenv verify` (the `--deploy` check) with a lock, `pipenv lock`
/// without one; the lock is exported and installed with the venv's pip.
fn pipenv(manifests: &Manifests, locked: bool) -> DependencyInstall {
    let mut declared = BTreeSet::new();
    if let Some((_, t)) = manifests.pipfile.as_ref() {
        declared.extend(table_keys(t.get("packages")));
        declared.extend(table_keys(t.get("dev-packages")));
    }
    let mut copies = vec!["Pipfile".into()];
    if locked {
        copies.push("Pipfile.lock".into());
    }
    // `verify` is the --deploy check (Pipfile.lock matches Pipfile);
    // `requirements` exports the lock, which pip installs into the venv.
    let install = if locked {
        "RUN pipenv verify && pipenv requirements --dev > /tmp/pipenv-requirements.txt \\\n && pip install --no-cache-dir -r /tmp/pipenv-requirements.txt && rm /tmp/pipenv-requirements.txt\n"
    } else {
        "RUN pipenv lock && pipenv requirements --dev > /tmp/pipenv-requirements.txt \\\n && pip install --no-cache-dir -r /tmp/pipenv-requirements.txt && rm /tmp/pipenv-requirements.txt\n"
    };
    DependencyInstall {
        declared,
        copies,
        root_tools: tools_venv("pipenv", "pipenv"),
        install: install.into(),
        extra_env: " \\\n    PIPENV_VERBOSITY=-1 \\\n    PIPENV_IGNORE_VIRTUALENVS=1".into(),
    }
}

/// pip with `requirements.txt` (plus `requirements-dev.txt` /
/// `dev-requirements.txt`): every included file is copied; local-path lines
/// are deleted from the image's copies first, with a note each.
fn pip_requirements(
    repo: &Repo,
    notes: &mut Vec<String>,
) -> Result<DependencyInstall, PluginError> {
    let mut top = vec!["requirements.txt".to_owned()];
    for dev in ["requirements-dev.txt", "dev-requirements.txt"] {
        if repo.exists(dev) {
            top.push(dev.into());
        }
    }
    let mut files = Vec::new();
    for t in &top {
        read_requirements(repo, t, &mut files, notes)?;
    }
    let mut deps = DependencyInstall::default();
    let mut drop_cmds = Vec::new();
    for f in &files {
        deps.declared.extend(f.names.iter().cloned());
        deps.copies.push(f.path.clone());
        drop_cmds.extend(drop_local_lines(f, notes));
    }
    let reqs: Vec<String> = top.iter().map(|t| format!("-r {}", quote(t))).collect();
    let pre = if drop_cmds.is_empty() {
        String::new()
    } else {
        format!("{} && ", drop_cmds.join(" && "))
    };
    deps.install = format!("RUN {pre}pip install --no-cache-dir {}\n", reqs.join(" "));
    Ok(deps)
}

/// The `sed` command that deletes a file's local-path lines from its copy in
/// the image (the source is not there; tests use the checkout), noting each.
fn drop_local_lines(f: &ReqFile, notes: &mut Vec<String>) -> Option<String> {
    if f.local_lines.is_empty() {
        return None;
    }
    let lines: Vec<String> = f
        .local_lines
        .iter()
        .map(|(n, _)| format!("-e {n}d"))
        .collect();
    for (n, l) in &f.local_lines {
        notes.push(format!("{}:{n}: `{l}` installs a local path, which is not in the image; dropped from the image's install (the checkout is used from /workspace)", f.path));
    }
    Some(format!("sed -i {} {}", lines.join(" "), quote(&f.path)))
}

/// pip with a `[project]` table and no lockfile: its dependencies plus the
/// dev-like extras and dependency groups, installed unfrozen.
fn pip_project(manifests: &Manifests, notes: &mut Vec<String>) -> DependencyInstall {
    let reqs = project_requirements(manifests, notes);
    let install = if reqs.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = reqs.iter().map(|r| quote(r)).collect();
        format!("RUN pip install --no-cache-dir {}\n", quoted.join(" "))
    };
    DependencyInstall {
        declared: reqs.iter().filter_map(|r| requirement_name(r)).collect(),
        copies: vec!["pyproject.toml".into()],
        install,
        ..DependencyInstall::default()
    }
}

/// `[project] dependencies`, then the requirements of every extra
/// (`[project.optional-dependencies]`) and dependency group named in
/// [`DEV_GROUPS`], noted by name; requirements spanning lines are dropped.
fn project_requirements(manifests: &Manifests, notes: &mut Vec<String>) -> Vec<String> {
    let mut reqs = string_array(manifests.get(&["project", "dependencies"]));
    let mut used = Vec::new();
    for section in [
        &["project", "optional-dependencies"][..],
        &["dependency-groups"],
    ] {
        if let Some(t) = manifests.get(section).and_then(|v| v.as_table()) {
            for (name, v) in t {
                if DEV_GROUPS.contains(&name.to_ascii_lowercase().as_str()) {
                    reqs.extend(string_array(Some(v)));
                    used.push(name.clone());
                }
            }
        }
    }
    if !used.is_empty() {
        notes.push(format!(
            "development extras/groups installed from pyproject.toml: {}",
            used.join(", ")
        ));
    }
    reqs.retain(|r| !r.contains(['\n', '\r']));
    reqs
}
