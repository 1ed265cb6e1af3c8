//! The validation tiers: ruff and mypy (fast) and pytest or unittest (full),
//! each taken from the project's own configuration or dependencies, with a
//! byte-compile check standing in when no linter is configured. The tools
//! read their own configuration, so no options are invented, except those
//! that keep a step from changing the checkout (ruff never fixes).

use std::collections::BTreeSet;

use slipway_plugin_sdk::ecosystem::Step;
use slipway_plugin_sdk::{Repo, TextFile};

use crate::manifest::Manifests;

/// The cheap check when the project declares no linter: byte-compile every
/// .py file (a syntax check that imports nothing), bytecode kept under /tmp.
pub(crate) const COMPILE_CHECK: &str = "PYTHONPYCACHEPREFIX=/tmp/slipway-pycache python -m compileall -q -x '/(\\.git|\\.venv|venv|\\.tox|\\.nox|node_modules|\\.slipway)/' .";

/// The steps of both tiers, and the tools they need that the project does
/// not declare (installed unpinned into the image).
pub(crate) struct Validation {
    pub(crate) fast: Vec<Step>,
    pub(crate) full: Vec<Step>,
    pub(crate) undeclared_tools: Vec<&'static str>,
}

/// The configuration files the choices look at, read once.
struct Configs<'a> {
    repo: &'a Repo,
    manifests: &'a Manifests,
    setup_cfg: Option<TextFile>,
    /// Canonical names of the declared dependencies.
    declared: &'a BTreeSet<String>,
}

impl Configs<'_> {
    /// Does `setup.cfg` have a section starting `[section`?
    fn cfg_has(&self, section: &str) -> bool {
        self.setup_cfg.as_ref().is_some_and(|f| {
            f.numbered_lines()
                .any(|(_, l)| l.trim().starts_with(&format!("[{section}")))
        })
    }
}

/// Both tiers, in order: ruff, mypy (or the compile check) fast; pytest or
/// unittest full; each step's source noted, then the undeclared tools.
pub(crate) fn validation(
    repo: &Repo,
    manifests: &Manifests,
    declared: &BTreeSet<String>,
    notes: &mut Vec<String>,
) -> Validation {
    let configs = Configs {
        repo,
        manifests,
        setup_cfg: repo.read_text("setup.cfg").ok().flatten(),
        declared,
    };
    let mut fast = Vec::new();
    let mut full = Vec::new();
    let mut needed = Vec::new();
    if let Some(step) = ruff(&configs, notes) {
        fast.push(step);
        needed.push("ruff");
    }
    if let Some(step) = mypy(&configs, notes) {
        fast.push(step);
        needed.push("mypy");
    }
    if let Some(step) = pytest(&configs, notes) {
        full.push(step);
        needed.push("pytest");
    } else if let Some(step) = unittest(repo, notes) {
        full.push(step);
    }
    if fast.is_empty() {
        fast.push(Step::new("compile", COMPILE_CHECK));
        notes.push("no ruff or mypy configuration: the fast tier byte-compiles the project (`python -m compileall`, syntax only, into /tmp), chosen because the project declares no linter".into());
    }
    Validation {
        fast,
        full,
        undeclared_tools: undeclared(&needed, declared, notes),
    }
}

/// ruff's lint in check mode: `--no-fix` and `--no-fix-only` override a
/// configured `fix = true` / `fix-only = true` (either writes fixes).
const RUFF_CHECK: &str = "ruff check --no-fix --no-fix-only --output-format json .";

/// ruff, from the first of `[tool.ruff]`, `ruff.toml`, `.ruff.toml`, or ruff
/// among the dependencies.
fn ruff(c: &Configs, notes: &mut Vec<String>) -> Option<Step> {
    let from = if c.manifests.has_tool("ruff") {
        "pyproject.toml [tool.ruff]"
    } else if c.repo.exists("ruff.toml") {
        "ruff.toml"
    } else if c.repo.exists(".ruff.toml") {
        ".ruff.toml"
    } else if c.declared.contains("ruff") {
        "the declared dependencies"
    } else {
        return None;
    };
    notes.push(format!(
        "ruff: from {from}; ruff reads its own configuration"
    ));
    Some(Step::new("ruff", RUFF_CHECK).with_report("ruff-json", None))
}

/// mypy, when configured. mypy reads only the first of its configuration
/// files; `files` there names what to check, and then bare `mypy` checks
/// exactly that, else `mypy .`.
fn mypy(c: &Configs, notes: &mut Vec<String>) -> Option<Step> {
    let config = if c.manifests.has_tool("mypy") {
        "pyproject.toml [tool.mypy]"
    } else if c.repo.exists("mypy.ini") {
        "mypy.ini"
    } else if c.repo.exists(".mypy.ini") {
        ".mypy.ini"
    } else if c.cfg_has("mypy") {
        "setup.cfg [mypy]"
    } else {
        return None;
    };
    if mypy_files(c.repo, c.manifests, config) {
        notes.push(format!(
            "mypy: `mypy` with the `files` of {config} (the project's own selection)"
        ));
        Some(Step::new("mypy", "mypy"))
    } else {
        notes.push(format!(
            "mypy: configured in {config} without `files`: `mypy .`"
        ));
        Some(Step::new("mypy", "mypy ."))
    }
}

/// Does the mypy configuration that applies name `files`?
fn mypy_files(repo: &Repo, manifests: &Manifests, config: &str) -> bool {
    if config.starts_with("pyproject.toml") {
        return manifests
            .get(&["tool", "mypy", "files"])
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

/// pytest, from the first of `[tool.pytest.ini_options]`, `pytest.ini`,
/// `[pytest]` in `tox.ini`, `[tool:pytest]` in `setup.cfg`, a `conftest.py`
/// (root or `tests/`), or pytest among the dependencies.
fn pytest(c: &Configs, notes: &mut Vec<String>) -> Option<Step> {
    let tox_pytest = c
        .repo
        .read_text("tox.ini")
        .ok()
        .flatten()
        .is_some_and(|f| f.numbered_lines().any(|(_, l)| l.trim() == "[pytest]"));
    let from = if c
        .manifests
        .get(&["tool", "pytest", "ini_options"])
        .is_some()
    {
        "pyproject.toml [tool.pytest.ini_options]"
    } else if c.repo.exists("pytest.ini") {
        "pytest.ini"
    } else if tox_pytest {
        "tox.ini [pytest]"
    } else if c.cfg_has("tool:pytest") {
        "setup.cfg [tool:pytest]"
    } else if c.repo.exists("conftest.py") || c.repo.exists("tests/conftest.py") {
        "conftest.py"
    } else if c.declared.contains("pytest") {
        "the declared dependencies"
    } else {
        return None;
    };
    notes.push(format!(
        "pytest: from {from}; pytest reads its own configuration"
    ));
    Some(
        Step::new("pytest", "python -m pytest --junitxml=.slipway/junit.xml")
            .with_report("junit-xml", Some(".slipway/junit.xml")),
    )
}

/// Without pytest, a `tests/` directory runs with the standard library's
/// unittest.
fn unittest(repo: &Repo, notes: &mut Vec<String>) -> Option<Step> {
    if !repo.exists("tests") {
        return None;
    }
    notes.push("tests/ has no pytest configuration and pytest is not a dependency: running it with unittest".into());
    Some(Step::new(
        "unittest",
        "python -m unittest discover -s tests",
    ))
}

/// The tools the steps need that the project does not declare, noted: the
/// image installs them unpinned.
fn undeclared(
    needed: &[&'static str],
    declared: &BTreeSet<String>,
    notes: &mut Vec<String>,
) -> Vec<&'static str> {
    let missing: Vec<&'static str> = needed
        .iter()
        .copied()
        .filter(|t| !declared.contains(*t))
        .collect();
    if !missing.is_empty() {
        let pronoun = if missing.len() == 1 { "it" } else { "them" };
        notes.push(format!(
            "{} configured but not a declared dependency: installed unpinned into the image; declare {pronoun} with the project's dev dependencies to pin {pronoun}",
            missing.join(", "),
        ));
    }
    missing
}
