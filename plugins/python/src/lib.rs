//! `python`: the first-party ecosystem plugin for Python repositories.
//!
//! Detects pyproject/setup/requirements/Pipfile/lockfile repositories, picks
//! the Python line from pins (mise.toml, .tool-versions, .python-version,
//! runtime.txt) over ranges (requires-python, poetry's python dependency,
//! Pipfile's python_version) over the default, and plans an image with a
//! virtual environment at `/opt/venv` filled by the repository's package
//! manager (uv, poetry, pipenv or pip) in frozen mode. See README.md.

use std::collections::BTreeSet;

use slipway_plugin_sdk::ecosystem::*;
use slipway_plugin_sdk::shell::quote;
use slipway_plugin_sdk::toolchain::{
    ReleaseTable, resolve, version_file_pin, version_manager_pins,
};
use slipway_plugin_sdk::version::Constraint;
use slipway_plugin_sdk::{Repo, TextFile, export_ecosystem, malformed};

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

/// The cheap check when the project declares no linter: byte-compile every
/// .py file (a syntax check that imports nothing), bytecode kept under /tmp.
const COMPILE_CHECK: &str = "PYTHONPYCACHEPREFIX=/tmp/slipway-pycache python -m compileall -q -x '/(\\.git|\\.venv|venv|\\.tox|\\.nox|node_modules|\\.slipway)/' .";

/// Does the mypy configuration that applies name `files`?
fn mypy_files(repo: &Repo, py: Option<&Pyproject>, config: &str) -> bool {
    if config.starts_with("pyproject.toml") {
        return py
            .and_then(|p| p.get(&["tool", "mypy", "files"]))
            .is_some_and(|v| match v {
                toml::Value::String(s) => !s.trim().is_empty(),
                toml::Value::Array(a) => !a.is_empty(),
                _ => false,
            });
    }
    let (file, section) = match config {
        "setup.cfg [mypy]" => ("setup.cfg", "mypy"),
        other => (other, "mypy"),
    };
    let Ok(Some(text)) = repo.read_text(file) else {
        return false;
    };
    let mut current = String::new();
    for (_, line) in text.numbered_lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            current = name.trim().to_owned();
            continue;
        }
        if current == section
            && let Some((key, value)) = t.split_once(['=', ':'])
            && key.trim() == "files"
            && !value.trim().is_empty()
        {
            return true;
        }
    }
    false
}

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

// ---------------------------------------------------------------- manifests

/// `pyproject.toml`, parsed.
struct Pyproject {
    file: TextFile,
    table: toml::Table,
}

impl Pyproject {
    fn get(&self, path: &[&str]) -> Option<&toml::Value> {
        let mut cur = self.table.get(path[0])?;
        for key in &path[1..] {
            cur = cur.as_table()?.get(*key)?;
        }
        Some(cur)
    }
    fn has_project(&self) -> bool {
        self.table.get("project").is_some_and(|v| v.is_table())
    }
    fn has_poetry(&self) -> bool {
        self.get(&["tool", "poetry"]).is_some_and(|v| v.is_table())
    }
    fn has_tool(&self, tool: &str) -> bool {
        self.get(&["tool", tool]).is_some()
    }
}

fn read_pyproject(repo: &Repo) -> Result<Option<Pyproject>, PluginError> {
    Ok(repo
        .read_toml("pyproject.toml")?
        .map(|(file, table)| Pyproject { file, table }))
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
fn key_line(file: &TextFile, section: &str, key: &str) -> Option<u32> {
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
fn header_line(file: &TextFile, section: &str) -> Option<u32> {
    file.numbered_lines()
        .find(|(_, l)| header_name(l).as_deref() == Some(section))
        .map(|(n, _)| n)
}

/// Canonical package name (PEP 503).
fn canonical(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace(['_', '.'], "-")
}

/// The package name at the start of a PEP 508 requirement.
fn requirement_name(req: &str) -> Option<String> {
    let name: String = req
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    (!name.is_empty()).then(|| canonical(&name))
}

fn string_array(v: Option<&toml::Value>) -> Vec<String> {
    v.and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn table_keys(v: Option<&toml::Value>) -> Vec<String> {
    v.and_then(|v| v.as_table())
        .map(|t| t.keys().map(|k| canonical(k)).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- requirements files

/// A requirements file and what it references.
struct ReqFile {
    path: String,
    /// Lines that install a local path (`-e .`, `.`): they need the source,
    /// which is not in the image; dropped from the copy in the image.
    local_lines: Vec<(u32, String)>,
    names: Vec<String>,
}

/// Read `path` and the files it includes (`-r`, `-c`), depth-first, once each.
fn read_requirements(
    repo: &Repo,
    path: &str,
    out: &mut Vec<ReqFile>,
    notes: &mut Vec<String>,
) -> Result<(), PluginError> {
    if out.iter().any(|r| r.path == path) || out.len() >= 32 {
        return Ok(());
    }
    let Some(file) = repo.read_text(path)? else {
        return Ok(());
    };
    let dir = path
        .rsplit_once('/')
        .map(|(d, _)| format!("{d}/"))
        .unwrap_or_default();
    let mut req = ReqFile {
        path: path.to_owned(),
        local_lines: Vec::new(),
        names: Vec::new(),
    };
    let mut includes = Vec::new();
    for (n, raw) in file.numbered_lines() {
        let line = raw.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let include = ["-r", "--requirement", "-c", "--constraint"]
            .iter()
            .find_map(|opt| {
                let rest = line.strip_prefix(opt)?;
                (rest.starts_with([' ', '=', '\t']))
                    .then(|| rest.trim_start_matches(['=', ' ', '\t']).trim().to_owned())
            });
        if let Some(inc) = include {
            if inc.contains("..") || inc.starts_with('/') || inc.contains("://") {
                notes.push(format!("{path}:{n}: `{line}` refers outside the repository root's files; not copied into the image"));
                continue;
            }
            let target = format!("{dir}{inc}");
            if !repo.exists(&target) {
                return Err(malformed(
                    path,
                    Some(n),
                    format!("includes `{inc}`, which does not exist"),
                    Some("fix or remove the include; pip would fail on it"),
                ));
            }
            includes.push(target);
            continue;
        }
        let editable = ["-e", "--editable"].iter().find_map(|opt| {
            let rest = line.strip_prefix(opt)?;
            rest.starts_with([' ', '=', '\t'])
                .then(|| rest.trim_start_matches(['=', ' ', '\t']).trim())
        });
        let target = editable.unwrap_or(line);
        if target.starts_with(['.', '/'])
            || target.starts_with("file:")
            || target.contains("@ file:")
        {
            req.local_lines.push((n, line.to_owned()));
            continue;
        }
        if target.starts_with('-') || (target.contains("://") && editable.is_some()) {
            continue;
        }
        if let Some(name) = requirement_name(target) {
            req.names.push(name);
        }
    }
    out.push(req);
    for inc in includes {
        read_requirements(repo, &inc, out, notes)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- detection

const MANIFESTS: &[&str] = &["setup.py", "setup.cfg", "requirements.txt", "Pipfile"];
const LOCKFILES: &[&str] = &["poetry.lock", "uv.lock", "Pipfile.lock"];

impl Ecosystem for Python {
    fn detect(repo: &Repo) -> Result<Option<Detection>, PluginError> {
        let mut evidence = Vec::new();
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
                // Parsed, so that a broken Pipfile is reported with its line.
                if repo.read_toml(name)?.is_some() {
                    manifest = true;
                    evidence.push(Evidence::new(name, None, "Pipfile"));
                }
            } else if repo.exists(name) {
                manifest = true;
                evidence.push(Evidence::new(name, None, format!("{name} present")));
            }
        }
        let mut lockfile = false;
        for name in LOCKFILES {
            if repo.exists(name) {
                lockfile = true;
                evidence.push(Evidence::new(name, None, "lockfile"));
            }
        }
        if manifest || lockfile {
            let confidence = if manifest && lockfile { 90 } else { 80 };
            return Ok(Some(Detection {
                confidence,
                evidence,
            }));
        }
        // Only version hints: a weak signal. Unreadable hint files are left
        // for `plan` to report; detection stays quiet about them.
        if let Ok(Some(pin)) = version_file_pin(repo, ".python-version", PREFIXES)
            && let Some(src) = pin.source
        {
            return Ok(Some(Detection {
                confidence: 50,
                evidence: vec![src],
            }));
        }
        if let Ok(Some(pin)) = version_file_pin(repo, "runtime.txt", PREFIXES)
            && pin.written_form.to_ascii_lowercase().starts_with("python")
            && let Some(src) = pin.source
        {
            return Ok(Some(Detection {
                confidence: 50,
                evidence: vec![src],
            }));
        }
        if let Ok(pins) = version_manager_pins(repo, &["python"], PREFIXES)
            && let Some(src) = pins.into_iter().next().and_then(|p| p.source)
        {
            return Ok(Some(Detection {
                confidence: 50,
                evidence: vec![src],
            }));
        }
        Ok(None)
    }

    fn plan(repo: &Repo) -> Result<Plan, PluginError> {
        plan(repo)
    }
}

// ---------------------------------------------------------------- version hints

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

fn version_hints(
    repo: &Repo,
    py: Option<&Pyproject>,
    pipfile: Option<&(TextFile, toml::Table)>,
    notes: &mut Vec<String>,
) -> Result<Vec<VersionHint>, PluginError> {
    let mut hints = Vec::new();
    // Pins: mise.toml, .tool-versions, .python-version, runtime.txt.
    for h in version_manager_pins(repo, &["python"], PREFIXES)? {
        hints.extend(usable(h, notes));
    }
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
            hints.extend(usable(h, notes));
        }
        Ok(None) => {}
        Err(e) => notes.push(format!(".python-version ignored: {}", e.describe())),
    }
    match version_file_pin(repo, "runtime.txt", PREFIXES) {
        Ok(Some(h)) if h.written_form.to_ascii_lowercase().starts_with("python") => {
            hints.extend(usable(h, notes))
        }
        Ok(Some(h)) => notes.push(format!(
            "runtime.txt ignored: `{}` is not a Python runtime (expected e.g. `python-3.11.6`)",
            h.written_form
        )),
        Ok(None) => {}
        Err(e) => notes.push(format!("runtime.txt ignored: {}", e.describe())),
    }
    // Ranges: requires-python, poetry's python dependency, Pipfile [requires].
    if let Some(py) = py {
        match py.get(&["project", "requires-python"]) {
            Some(toml::Value::String(s)) => {
                let line = key_line(&py.file, "project", "requires-python");
                hints.extend(usable(
                    VersionHint::from_file(
                        ConstraintKind::Range,
                        "pyproject.toml",
                        line,
                        s,
                        PREFIXES,
                    ),
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
                hints.extend(usable(VersionHint::from_file(ConstraintKind::Range, "pyproject.toml", line, s, PREFIXES), notes));
            }
            Some(_) => notes.push("pyproject.toml [tool.poetry.dependencies] python ignored: not a plain version string".into()),
            None => {}
        }
    }
    if let Some((file, table)) = pipfile {
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
                hints.extend(usable(
                    VersionHint::from_file(ConstraintKind::Range, "Pipfile", line, s, PREFIXES),
                    notes,
                ));
                break;
            }
        }
    }
    Ok(hints)
}

// ---------------------------------------------------------------- planning

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Manager {
    Uv,
    Poetry,
    Pipenv,
    PipRequirements,
    PipProject,
    /// Nothing to install from (setup.py only, version file only).
    PipNone,
}

/// JSON-quote for Dockerfile exec/COPY forms.
fn json_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn copy_line(files: &[String]) -> String {
    let mut parts: Vec<String> = files.iter().map(|f| json_quote(f)).collect();
    parts.push("\"./\"".into());
    format!("COPY --chown={JOB_UID}:{JOB_GID} [{}]\n", parts.join(", "))
}

fn plan(repo: &Repo) -> Result<Plan, PluginError> {
    let mut notes = Vec::new();
    let py = read_pyproject(repo)?;
    let pipfile = repo.read_toml("Pipfile")?;
    let hints = version_hints(repo, py.as_ref(), pipfile.as_ref(), &mut notes)?;
    let toolchain = resolve(&PYTHON, hints)?;
    notes.extend(toolchain.notes());
    let line = toolchain.resolved.clone();
    let base = format!("python:{line}-slim");

    let has_project = py.as_ref().is_some_and(Pyproject::has_project);
    let has_poetry = py.as_ref().is_some_and(Pyproject::has_poetry);

    // ---- package manager
    let manager;
    let mut pm_evidence: Option<Evidence> = None;
    let mut lockfile: Option<String> = None;
    let mut pm_version: Option<String> = None;
    let lock_present: Vec<&str> = LOCKFILES
        .iter()
        .copied()
        .filter(|l| repo.exists(l))
        .collect();
    if repo.exists("uv.lock") && py.is_some() {
        manager = Manager::Uv;
        lockfile = Some("uv.lock".into());
        pm_evidence = Some(Evidence::new("uv.lock", None, "uv lockfile"));
    } else if repo.exists("poetry.lock") && py.is_some() {
        manager = Manager::Poetry;
        lockfile = Some("poetry.lock".into());
        match repo.read_text("poetry.lock") {
            Ok(Some(f)) => {
                // "# This file is automatically @generated by Poetry 1.8.3 and should not be changed by hand."
                if let Some((n, l)) = f.numbered_lines().take(3).find(|(_, l)| l.contains("generated by Poetry ")) {
                    let v: String = l.split("generated by Poetry ").nth(1).unwrap_or("").chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
                    let v = v.trim_end_matches('.').to_owned();
                    if v.split('.').count() >= 2 {
                        pm_evidence = Some(Evidence::new("poetry.lock", Some(n), format!("generated by Poetry {v}")));
                        pm_version = Some(v);
                    }
                }
            }
            Ok(None) => {}
            Err(e) => notes.push(format!("poetry.lock could not be read for its Poetry version ({}); the latest Poetry is used", e.describe())),
        }
        if pm_evidence.is_none() {
            pm_evidence = Some(Evidence::new("poetry.lock", None, "poetry lockfile"));
        }
    } else if repo.exists("Pipfile.lock") && pipfile.is_some() {
        manager = Manager::Pipenv;
        lockfile = Some("Pipfile.lock".into());
        pm_evidence = Some(Evidence::new("Pipfile.lock", None, "pipenv lockfile"));
    } else if repo.exists("requirements.txt") {
        manager = Manager::PipRequirements;
        lockfile = Some("requirements.txt".into());
        pm_evidence = Some(Evidence::new("requirements.txt", None, "pip requirements"));
    } else if pipfile.is_some() {
        manager = Manager::Pipenv;
        pm_evidence = Some(Evidence::new(
            "Pipfile",
            None,
            "Pipfile without Pipfile.lock",
        ));
        notes.push("Pipfile has no Pipfile.lock: dependencies are locked while the image is built, not frozen; commit Pipfile.lock for reproducible images".into());
    } else if has_poetry && !has_project {
        manager = Manager::Poetry;
        pm_evidence = py.as_ref().map(|p| {
            Evidence::new(
                "pyproject.toml",
                header_line(&p.file, "tool.poetry"),
                "[tool.poetry] without poetry.lock",
            )
        });
        notes.push("pyproject.toml uses Poetry but there is no poetry.lock: dependencies are resolved while the image is built, not frozen; commit poetry.lock".into());
    } else if has_project {
        manager = Manager::PipProject;
        pm_evidence = py.as_ref().map(|p| {
            Evidence::new(
                "pyproject.toml",
                header_line(&p.file, "project"),
                "[project] dependencies",
            )
        });
        notes.push("no lockfile (uv.lock, poetry.lock, Pipfile.lock, requirements.txt): dependencies from pyproject.toml [project] are installed with pip, not frozen".into());
    } else {
        manager = Manager::PipNone;
        if repo.exists("setup.py") || repo.exists("setup.cfg") {
            notes.push("setup.py/setup.cfg dependencies are not installed in the image (they need the source to build); add a requirements.txt or a pyproject.toml [project] table".into());
        }
    }
    for l in &lock_present {
        if lockfile.as_deref() != Some(*l) {
            notes.push(format!(
                "{l} ignored: {} decides the package manager",
                lockfile.as_deref().unwrap_or("pyproject.toml")
            ));
        }
    }
    if manager != Manager::PipRequirements && repo.exists("requirements.txt") {
        notes.push(format!(
            "requirements.txt ignored: {} decides the dependencies",
            lockfile.as_deref().unwrap_or("the manifest")
        ));
    }

    // ---- what is installed, for knowing which tools exist in the venv
    let mut declared: BTreeSet<String> = BTreeSet::new();
    let mut copies: Vec<String> = Vec::new();
    let mut root_tools = String::new();
    let mut install = String::new();
    let mut extra_env = String::new();
    match manager {
        Manager::Uv => {
            let p = py.as_ref();
            for k in [
                &["project", "dependencies"][..],
                &["dependency-groups", "dev"],
                &["tool", "uv", "dev-dependencies"],
            ] {
                declared.extend(
                    string_array(p.and_then(|p| p.get(k)))
                        .iter()
                        .filter_map(|s| requirement_name(s)),
                );
            }
            // .python-version is not copied: the venv's interpreter is the image's line.
            copies = vec!["pyproject.toml".into(), "uv.lock".into()];
            root_tools = "RUN python -m venv /opt/tools && /opt/tools/bin/pip install --no-cache-dir uv && ln -s /opt/tools/bin/uv /usr/local/bin/uv\n".into();
            extra_env = format!(
                " \\\n    UV_PROJECT_ENVIRONMENT={VENV} \\\n    UV_PYTHON_DOWNLOADS=never \\\n    UV_LINK_MODE=copy"
            );
            // Into the environment of the `python` on PATH: /opt/venv here,
            // the image's own environment when layered on a repository image.
            install = "RUN UV_PROJECT_ENVIRONMENT=\"$(python -c 'import sys; print(sys.prefix)')\" uv sync --frozen --no-install-project --inexact\n".into();
            if p.is_some_and(|p| p.get(&["tool", "uv", "workspace"]).is_some()) {
                notes.push("pyproject.toml declares a uv workspace: only the root pyproject.toml and uv.lock are copied into the image; member packages are not installed".into());
            }
        }
        Manager::Poetry => {
            if let Some(p) = py.as_ref() {
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
            }
            copies = vec!["pyproject.toml".into()];
            if lockfile.is_some() {
                copies.push("poetry.lock".into());
            }
            let spec = match &pm_version {
                Some(v) => format!("poetry=={v}"),
                None => "poetry".into(),
            };
            root_tools = format!(
                "RUN python -m venv /opt/tools && /opt/tools/bin/pip install --no-cache-dir {} && ln -s /opt/tools/bin/poetry /usr/local/bin/poetry\n",
                quote(&spec)
            );
            extra_env =
                " \\\n    POETRY_VIRTUALENVS_CREATE=false \\\n    POETRY_NO_INTERACTION=1".into();
            // Poetry validates that a declared readme exists even with --no-root.
            let mut stubs = Vec::new();
            if let Some(p) = py.as_ref() {
                for k in [&["tool", "poetry", "readme"][..], &["project", "readme"]] {
                    match p.get(k) {
                        Some(toml::Value::String(s)) => stubs.push(s.clone()),
                        Some(toml::Value::Array(a)) => {
                            stubs.extend(a.iter().filter_map(|v| v.as_str().map(str::to_owned)))
                        }
                        _ => {}
                    }
                }
            }
            stubs.retain(|s| !s.contains("..") && !s.starts_with('/') && !s.contains('\n'));
            let touch = if stubs.is_empty() {
                String::new()
            } else {
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
            };
            install = format!("RUN {touch}poetry install --no-root --no-interaction --no-ansi\n");
        }
        Manager::Pipenv => {
            if let Some((_, t)) = pipfile.as_ref() {
                declared.extend(table_keys(t.get("packages")));
                declared.extend(table_keys(t.get("dev-packages")));
            }
            copies = vec!["Pipfile".into()];
            if lockfile.is_some() {
                copies.push("Pipfile.lock".into());
            }
            root_tools = "RUN python -m venv /opt/tools && /opt/tools/bin/pip install --no-cache-dir pipenv && ln -s /opt/tools/bin/pipenv /usr/local/bin/pipenv\n".into();
            extra_env = " \\\n    PIPENV_VERBOSITY=-1 \\\n    PIPENV_IGNORE_VIRTUALENVS=1".into();
            // `verify` is the --deploy check (Pipfile.lock matches Pipfile);
            // `requirements` exports the lock, which pip installs into the venv.
            install = if lockfile.is_some() {
                "RUN pipenv verify && pipenv requirements --dev > /tmp/pipenv-requirements.txt \\\n && pip install --no-cache-dir -r /tmp/pipenv-requirements.txt && rm /tmp/pipenv-requirements.txt\n".into()
            } else {
                "RUN pipenv lock && pipenv requirements --dev > /tmp/pipenv-requirements.txt \\\n && pip install --no-cache-dir -r /tmp/pipenv-requirements.txt && rm /tmp/pipenv-requirements.txt\n".into()
            };
        }
        Manager::PipRequirements => {
            let mut files = Vec::new();
            let mut top = vec!["requirements.txt".to_owned()];
            for dev in ["requirements-dev.txt", "dev-requirements.txt"] {
                if repo.exists(dev) {
                    top.push(dev.into());
                }
            }
            for t in &top {
                read_requirements(repo, t, &mut files, &mut notes)?;
            }
            let mut drop_cmds = Vec::new();
            for f in &files {
                declared.extend(f.names.iter().cloned());
                copies.push(f.path.clone());
                if !f.local_lines.is_empty() {
                    let lines: Vec<String> = f
                        .local_lines
                        .iter()
                        .map(|(n, _)| format!("-e {n}d"))
                        .collect();
                    drop_cmds.push(format!("sed -i {} {}", lines.join(" "), quote(&f.path)));
                    for (n, l) in &f.local_lines {
                        notes.push(format!("{}:{n}: `{l}` installs a local path, which is not in the image; dropped from the image's install (the checkout is used from /workspace)", f.path));
                    }
                }
            }
            let reqs: Vec<String> = top.iter().map(|t| format!("-r {}", quote(t))).collect();
            let pre = if drop_cmds.is_empty() {
                String::new()
            } else {
                format!("{} && ", drop_cmds.join(" && "))
            };
            install = format!("RUN {pre}pip install --no-cache-dir {}\n", reqs.join(" "));
        }
        Manager::PipProject => {
            let p = py.as_ref();
            let mut reqs = string_array(p.and_then(|p| p.get(&["project", "dependencies"])));
            let mut used = Vec::new();
            for section in [
                &["project", "optional-dependencies"][..],
                &["dependency-groups"],
            ] {
                if let Some(t) = p.and_then(|p| p.get(section)).and_then(|v| v.as_table()) {
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
            declared.extend(reqs.iter().filter_map(|r| requirement_name(r)));
            copies = vec!["pyproject.toml".into()];
            if !reqs.is_empty() {
                let quoted: Vec<String> = reqs.iter().map(|r| quote(r)).collect();
                install = format!("RUN pip install --no-cache-dir {}\n", quoted.join(" "));
            }
        }
        Manager::PipNone => {}
    }

    // ---- the project itself: built in the job (setup) from the checkout,
    // with its build backend preinstalled so that no network is needed.
    let mut setup = Vec::new();
    let mut build_requires: Vec<String> = Vec::new();
    let package_mode = py
        .as_ref()
        .and_then(|p| p.get(&["tool", "poetry", "package-mode"]))
        .and_then(|v| v.as_bool())
        != Some(false)
        && py
            .as_ref()
            .and_then(|p| p.get(&["tool", "uv", "package"]))
            .and_then(|v| v.as_bool())
            != Some(false);
    let build_system = py
        .as_ref()
        .is_some_and(|p| p.get(&["build-system"]).is_some());
    if package_mode && build_system {
        build_requires = string_array(
            py.as_ref()
                .and_then(|p| p.get(&["build-system", "requires"])),
        );
        if build_requires.is_empty() {
            notes.push("pyproject.toml [build-system] has no requires: the project itself is not installed; tests import it from the checkout".into());
        }
    } else if package_mode
        && !matches!(manager, Manager::Uv | Manager::Poetry)
        && (has_project || repo.exists("setup.py"))
    {
        // pip's legacy default backend.
        build_requires = vec!["setuptools>=61".into(), "wheel".into()];
    }
    build_requires.retain(|r| !r.contains(['\n', '\r']));
    if !build_requires.is_empty() {
        let scm = build_requires
            .iter()
            .filter_map(|r| requirement_name(r))
            .any(|n| {
                matches!(
                    n.as_str(),
                    "setuptools-scm"
                        | "hatch-vcs"
                        | "versioningit"
                        | "poetry-dynamic-versioning"
                        | "setuptools-git-versioning"
                        | "dunamai"
                )
            });
        let prefix = if scm {
            "SETUPTOOLS_SCM_PRETEND_VERSION=0.0.0 "
        } else {
            ""
        };
        setup.push(Step::new(
            "install-project",
            &format!(
                "{prefix}pip install --no-index --no-deps --no-build-isolation --quiet -e . || echo 'slipway: the project could not be installed in editable mode; tests import it from the checkout' >&2"
            ),
        ));
    }

    // ---- validation tiers
    let setup_cfg = repo.read_text("setup.cfg").ok().flatten();
    let cfg_has = |section: &str| {
        setup_cfg.as_ref().is_some_and(|f| {
            f.numbered_lines()
                .any(|(_, l)| l.trim().starts_with(&format!("[{section}")))
        })
    };
    let has_tool = |t: &str| py.as_ref().is_some_and(|p| p.has_tool(t));
    let mut fast = Vec::new();
    let mut full = Vec::new();
    let mut needed: Vec<&str> = Vec::new();
    if has_tool("ruff")
        || repo.exists("ruff.toml")
        || repo.exists(".ruff.toml")
        || declared.contains("ruff")
    {
        fast.push(
            Step::new("ruff", "ruff check --output-format json .").with_report("ruff-json", None),
        );
        let from = if has_tool("ruff") {
            "pyproject.toml [tool.ruff]"
        } else if repo.exists("ruff.toml") {
            "ruff.toml"
        } else if repo.exists(".ruff.toml") {
            ".ruff.toml"
        } else {
            "the declared dependencies"
        };
        notes.push(format!(
            "ruff: from {from}; ruff reads its own configuration"
        ));
        needed.push("ruff");
    }
    let mypy_config = if has_tool("mypy") {
        Some("pyproject.toml [tool.mypy]")
    } else if repo.exists("mypy.ini") {
        Some("mypy.ini")
    } else if repo.exists(".mypy.ini") {
        Some(".mypy.ini")
    } else if cfg_has("mypy") {
        Some("setup.cfg [mypy]")
    } else {
        None
    };
    if let Some(config) = mypy_config {
        // mypy reads only the first of these files; `files` there names what
        // to check, and then bare `mypy` checks exactly that.
        let files = mypy_files(repo, py.as_ref(), config);
        if files {
            fast.push(Step::new("mypy", "mypy"));
            notes.push(format!(
                "mypy: `mypy` with the `files` of {config} (the project's own selection)"
            ));
        } else {
            fast.push(Step::new("mypy", "mypy ."));
            notes.push(format!(
                "mypy: configured in {config} without `files`: `mypy .`"
            ));
        }
        needed.push("mypy");
    }
    let tox_pytest = repo
        .read_text("tox.ini")
        .ok()
        .flatten()
        .is_some_and(|f| f.numbered_lines().any(|(_, l)| l.trim() == "[pytest]"));
    let pytest = py
        .as_ref()
        .is_some_and(|p| p.get(&["tool", "pytest", "ini_options"]).is_some())
        || repo.exists("pytest.ini")
        || repo.exists("conftest.py")
        || repo.exists("tests/conftest.py")
        || tox_pytest
        || cfg_has("tool:pytest")
        || declared.contains("pytest");
    if pytest {
        let from = if py
            .as_ref()
            .is_some_and(|p| p.get(&["tool", "pytest", "ini_options"]).is_some())
        {
            "pyproject.toml [tool.pytest.ini_options]"
        } else if repo.exists("pytest.ini") {
            "pytest.ini"
        } else if tox_pytest {
            "tox.ini [pytest]"
        } else if cfg_has("tool:pytest") {
            "setup.cfg [tool:pytest]"
        } else if repo.exists("conftest.py") || repo.exists("tests/conftest.py") {
            "conftest.py"
        } else {
            "the declared dependencies"
        };
        notes.push(format!(
            "pytest: from {from}; pytest reads its own configuration"
        ));
        full.push(
            Step::new("pytest", "python -m pytest --junitxml=.slipway/junit.xml")
                .with_report("junit-xml", Some(".slipway/junit.xml")),
        );
        needed.push("pytest");
    } else if repo.exists("tests") {
        full.push(Step::new(
            "unittest",
            "python -m unittest discover -s tests",
        ));
        notes.push("tests/ has no pytest configuration and pytest is not a dependency: running it with unittest".into());
    }
    if fast.is_empty() {
        fast.push(Step::new("compile", COMPILE_CHECK));
        notes.push("no ruff or mypy configuration: the fast tier byte-compiles the project (`python -m compileall`, syntax only, into /tmp), chosen because the project declares no linter".into());
    }
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|t| !declared.contains(*t))
        .collect();
    if !missing.is_empty() {
        notes.push(format!(
            "{} configured but not a declared dependency: installed unpinned into the image; declare {} with the project's dev dependencies to pin {}",
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" },
            if missing.len() == 1 { "it" } else { "them" },
        ));
    }

    // ---- Dockerfile
    let tool_name = match manager {
        Manager::Uv => Some("uv"),
        Manager::Poetry => Some("poetry"),
        Manager::Pipenv => Some("pipenv"),
        _ => None,
    };
    let mut d = String::new();
    d.push_str(&format!("FROM {base}\n"));
    d.push_str(&format!(
        "ENV PYTHONDONTWRITEBYTECODE=1 \\\n    PYTHONUNBUFFERED=1 \\\n    PIP_DISABLE_PIP_VERSION_CHECK=1 \\\n    HOME={HOME} \\\n    VIRTUAL_ENV={VENV} \\\n    PATH={VENV}/bin:$PATH{extra_env}\n"
    ));
    d.push_str(&format!(
        "RUN useradd --uid {JOB_UID} --create-home --home-dir {HOME} --shell /bin/bash app \\\n && mkdir -p {VENV} {DEPS_DIR} \\\n && chown app:app {VENV} {DEPS_DIR}\n"
    ));
    d.push_str(&root_tools);
    d.push_str("USER app\n");
    d.push_str(&format!(
        "RUN python -m venv {VENV} && pip install --no-cache-dir --upgrade pip\n"
    ));
    // Everything after the marker can also run, as root, on top of the
    // repository's own Python image: no user named, directories made here,
    // the manager's tool installed when missing, and `pip`/`python` taken from
    // PATH (/opt/venv here; the image's own environment there).
    d.push_str(DEPS_MARKER);
    d.push('\n');
    d.push_str(&format!(
        "ENV PYTHONDONTWRITEBYTECODE=1 \\\n    PIP_DISABLE_PIP_VERSION_CHECK=1{}\n",
        extra_env.replace(&format!(" \\\n    UV_PROJECT_ENVIRONMENT={VENV}"), "")
    ));
    if let Some(tool) = tool_name {
        d.push_str(&format!(
            "RUN command -v {tool} >/dev/null 2>&1 || {{ {}; }}\n",
            root_tools.trim_end().trim_start_matches("RUN ")
        ));
    }
    d.push_str(&format!("RUN mkdir -p {DEPS_DIR}\n"));
    d.push_str(&format!("WORKDIR {DEPS_DIR}\n"));
    let (root_copies, nested): (Vec<String>, Vec<String>) =
        copies.iter().cloned().partition(|c| !c.contains('/'));
    if !root_copies.is_empty() {
        d.push_str(&copy_line(&root_copies));
    }
    for n in &nested {
        d.push_str(&format!(
            "COPY --chown={JOB_UID}:{JOB_GID} [{}, {}]\n",
            json_quote(n),
            json_quote(n)
        ));
    }
    d.push_str(&install);
    let mut after: Vec<String> = build_requires.iter().map(|r| quote(r)).collect();
    after.extend(missing.iter().map(|t| t.to_string()));
    if !after.is_empty() {
        d.push_str(&format!(
            "RUN pip install --no-cache-dir {}\n",
            after.join(" ")
        ));
    }
    d.push_str("WORKDIR /workspace\n");

    // ---- caches
    let mut cache = vec![CacheMount {
        id: "pip".into(),
        path: format!("{HOME}/.cache/pip"),
    }];
    match manager {
        Manager::Uv => cache.push(CacheMount {
            id: "uv".into(),
            path: format!("{HOME}/.cache/uv"),
        }),
        Manager::Poetry => cache.push(CacheMount {
            id: "poetry".into(),
            path: format!("{HOME}/.cache/pypoetry"),
        }),
        Manager::Pipenv => cache.push(CacheMount {
            id: "pipenv".into(),
            path: format!("{HOME}/.cache/pipenv"),
        }),
        _ => {}
    }

    let pm_name = match manager {
        Manager::Uv => "uv",
        Manager::Poetry => "poetry",
        Manager::Pipenv => "pipenv",
        _ => "pip",
    };
    let package_manager = Some(PackageManager {
        name: pm_name.into(),
        version: pm_version,
        lockfile,
        source: pm_evidence,
    });

    Ok(Plan {
        base_image: base,
        image: ImageSource::Generated(d),
        toolchains: vec![toolchain],
        package_manager,
        setup,
        fast,
        full,
        cache,
        env: vec![
            OptionPair {
                name: "CI".into(),
                value: "true".into(),
            },
            OptionPair {
                name: "PYTHONUNBUFFERED".into(),
                value: "1".into(),
            },
        ],
        notes,
    })
}

export_ecosystem!(Python);

#[cfg(test)]
mod tests;
