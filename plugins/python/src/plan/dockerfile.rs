//! The generated Dockerfile: the image (user `app`, the venv at `/opt/venv`,
//! the manager's tool), then, after [`DEPS_MARKER`], the self-contained
//! dependency installation the engine can also layer on a repository's own
//! Python image.

use slipway_plugin_sdk::ecosystem::{DEPS_MARKER, JOB_GID, JOB_UID};

use super::dependencies::DependencyInstall;
use super::manager::Manager;
use crate::{DEPS_DIR, HOME, VENV};

/// The whole Dockerfile: `extra_packages` (already shell-quoted) are pip
/// installed after the dependencies.
pub(crate) fn dockerfile(
    base: &str,
    manager: Manager,
    deps: &DependencyInstall,
    extra_packages: &[String],
) -> String {
    let mut d = image_section(base, deps);
    d.push_str(&deps_section(manager, deps, extra_packages));
    d
}

/// Before the marker: the base image, the job user (uid [`JOB_UID`]), the
/// manager's tool as root, and the venv owned by `app`.
fn image_section(base: &str, deps: &DependencyInstall) -> String {
    let extra_env = &deps.extra_env;
    let mut d = String::new();
    d.push_str(&format!("FROM {base}\n"));
    d.push_str(&format!(
        "ENV PYTHONDONTWRITEBYTECODE=1 \\\n    PYTHONUNBUFFERED=1 \\\n    PIP_DISABLE_PIP_VERSION_CHECK=1 \\\n    HOME={HOME} \\\n    VIRTUAL_ENV={VENV} \\\n    PATH={VENV}/bin:$PATH{extra_env}\n"
    ));
    d.push_str(&format!(
        "RUN useradd --uid {JOB_UID} --create-home --home-dir {HOME} --shell /bin/bash app \\\n && mkdir -p {VENV} {DEPS_DIR} \\\n && chown app:app {VENV} {DEPS_DIR}\n"
    ));
    d.push_str(&deps.root_tools);
    d.push_str("USER app\n");
    d.push_str(&format!(
        "RUN python -m venv {VENV} && pip install --no-cache-dir --upgrade pip\n"
    ));
    d
}

/// The marker and what follows it. Everything here can also run, as root,
/// on top of the repository's own Python image: no user named, directories
/// made here, the manager's tool installed when missing, and `pip`/`python`
/// taken from PATH (/opt/venv here; the image's own environment there).
fn deps_section(manager: Manager, deps: &DependencyInstall, extra_packages: &[String]) -> String {
    let mut d = String::new();
    d.push_str(DEPS_MARKER);
    d.push('\n');
    d.push_str(&format!(
        "ENV PYTHONDONTWRITEBYTECODE=1 \\\n    PIP_DISABLE_PIP_VERSION_CHECK=1{}\n",
        layered_env(&deps.extra_env)
    ));
    if let Some(tool) = manager.tool() {
        d.push_str(&format!(
            "RUN command -v {tool} >/dev/null 2>&1 || {{ {}; }}\n",
            deps.root_tools.trim_end().trim_start_matches("RUN ")
        ));
    }
    d.push_str(&format!("RUN mkdir -p {DEPS_DIR}\n"));
    d.push_str(&format!("WORKDIR {DEPS_DIR}\n"));
    d.push_str(&copy_lines(&deps.copies));
    d.push_str(&deps.install);
    if !extra_packages.is_empty() {
        d.push_str(&format!(
            "RUN pip install --no-cache-dir {}\n",
            extra_packages.join(" ")
        ));
    }
    d.push_str("WORKDIR /workspace\n");
    d
}

/// The manager's environment after the marker, without uv's fixed
/// `UV_PROJECT_ENVIRONMENT` (the install command points uv at the `python`
/// on PATH instead).
fn layered_env(extra_env: &str) -> String {
    extra_env.replace(&format!(" \\\n    UV_PROJECT_ENVIRONMENT={VENV}"), "")
}

/// The `COPY` lines for the manifests: the root files in one line into
/// `./`, each file in a subdirectory on its own line to the same path.
fn copy_lines(copies: &[String]) -> String {
    let (root, nested): (Vec<String>, Vec<String>) =
        copies.iter().cloned().partition(|c| !c.contains('/'));
    let mut d = String::new();
    if !root.is_empty() {
        d.push_str(&copy_line(&root));
    }
    for n in &nested {
        d.push_str(&format!(
            "COPY --chown={JOB_UID}:{JOB_GID} [{}, {}]\n",
            json_quote(n),
            json_quote(n)
        ));
    }
    d
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
