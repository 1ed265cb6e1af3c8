//! Planning: from the repository's manifests to the image, setup and
//! validation steps. Each step of [`plan`] is its own module; notes are
//! collected in the order the steps run.

mod dependencies;
mod dockerfile;
mod manager;
mod project;
pub(crate) mod validation;

use slipway_plugin_sdk::Repo;
use slipway_plugin_sdk::ecosystem::{ImageSource, OptionPair, Plan, PluginError};
use slipway_plugin_sdk::shell::quote;

use crate::manifest::Manifests;
use crate::version::python_toolchain;

/// The plan: read the manifests, resolve the Python line, choose the package
/// manager and its install, decide whether the project itself is installed,
/// pick the validation steps, then write the Dockerfile from those choices.
pub(crate) fn plan(repo: &Repo) -> Result<Plan, PluginError> {
    let mut notes = Vec::new();
    let manifests = Manifests::read(repo)?;
    let toolchain = python_toolchain(repo, &manifests, &mut notes)?;
    let base = format!("python:{}-slim", toolchain.resolved);
    let choice = manager::choose_manager(repo, &manifests, &mut notes);
    manager::note_ignored_inputs(repo, &choice, &mut notes);
    let deps = dependencies::dependency_install(repo, &manifests, &choice, &mut notes)?;
    let build_requires = project::build_requires(repo, &manifests, choice.manager, &mut notes);
    let checks = validation::validation(repo, &manifests, &deps.declared, &mut notes);
    let extra = image_extra_packages(&build_requires, &checks.undeclared_tools);
    let dockerfile = dockerfile::dockerfile(&base, choice.manager, &deps, &extra);
    Ok(Plan {
        base_image: base,
        image: ImageSource::Generated(dockerfile),
        toolchains: vec![toolchain],
        setup: project::setup_steps(&build_requires),
        fast: checks.fast,
        full: checks.full,
        cache: choice.manager.caches(),
        package_manager: Some(choice.into_package_manager()),
        env: job_env(),
        notes,
    })
}

/// What the image pip installs after the dependencies: the project's build
/// requirements (so `setup` builds it offline), then the configured tools
/// the project does not declare.
fn image_extra_packages(build_requires: &[String], undeclared_tools: &[&str]) -> Vec<String> {
    let mut extra: Vec<String> = build_requires.iter().map(|r| quote(r)).collect();
    extra.extend(undeclared_tools.iter().map(|t| t.to_string()));
    extra
}

/// The environment of every job step.
fn job_env() -> Vec<OptionPair> {
    vec![
        OptionPair {
            name: "CI".into(),
            value: "true".into(),
        },
        OptionPair {
            name: "PYTHONUNBUFFERED".into(),
            value: "1".into(),
        },
    ]
}
