//! The `ecosystem` world: detect a kind of repository and plan its image,
//! setup and validation steps.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "ecosystem",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_ecosystem_world",
        default_bindings_module: "slipway_plugin_sdk::ecosystem::bindings",
    });
}

pub use crate::types::{Evidence, OptionPair, PluginError, Problem};
pub use bindings::slipway::plugin::ecosystem_types::{
    CacheMount, ConstraintKind, Detection, ImageSource, OverruledHint, PackageManager, Plan,
    RepoRequest, Report, Step, Toolchain, VersionHint,
};

use crate::Repo;

/// The uid job containers run every step (`setup`, `fast`, `full`) as: the
/// owner of the checkout at `/workspace`. A generated image gives its user
/// this uid (or starts from a base image whose own user has it, as `node`
/// images do) and leaves what it installs outside `/workspace` readable, and
/// where the tools write, writable by it (`COPY --chown=1000:1000`, `chown`,
/// `chmod a+rX`). The contract is written out on `plan.image` in `wit/`.
pub const JOB_UID: u32 = 1000;

/// The gid job containers run every step as (see [`JOB_UID`]).
pub const JOB_GID: u32 = 1000;

/// The line of a generated Dockerfile where its dependency installation
/// starts. What follows it must also work on its own, as root, on top of
/// another image of the same ecosystem (a repository's own Dockerfile, when
/// the steps come from this plugin): it names no user, sets the environment
/// it needs, creates its directories (owned by [`JOB_UID`]:[`JOB_GID`] or
/// readable by all) and installs the package manager only when it is missing.
/// Without anything to install, leave the line out.
pub const DEPS_MARKER: &str = "# slipway:deps";

/// What an ecosystem plugin implements.
pub trait Ecosystem {
    /// Does the repository belong to this ecosystem? Keep it cheap: it runs
    /// for every candidate plugin. `Ok(None)` when it does not.
    fn detect(repo: &Repo) -> Result<Option<Detection>, PluginError>;

    /// The plan for a repository this plugin detected.
    fn plan(repo: &Repo) -> Result<Plan, PluginError>;
}

impl Plan {
    /// The Dockerfile text the plugin generated; `None` when the repository
    /// brings its own.
    pub fn generated_dockerfile(&self) -> Option<&str> {
        match &self.image {
            ImageSource::Generated(text) => Some(text),
            ImageSource::Repository(_) => None,
        }
    }
}

impl Step {
    /// A step without a machine-readable report.
    pub fn new(name: &str, command: &str) -> Self {
        Step {
            name: name.to_owned(),
            command: command.to_owned(),
            report: None,
        }
    }

    /// The same step, declaring the report it writes (`path: None` = stdout).
    pub fn with_report(mut self, format: &str, path: Option<&str>) -> Self {
        self.report = Some(Report {
            format: format.to_owned(),
            path: path.map(str::to_owned),
        });
        self
    }
}

impl Evidence {
    pub fn new(file: &str, line: Option<u32>, note: impl Into<String>) -> Self {
        Evidence {
            file: file.to_owned(),
            line,
            note: note.into(),
        }
    }
}

/// Export a type implementing [`Ecosystem`] as the plugin's component exports.
#[macro_export]
macro_rules! export_ecosystem {
    ($plugin:ty) => {
        const _: () = {
            struct SlipwayEcosystemExport;
            impl $crate::ecosystem::bindings::Guest for SlipwayEcosystemExport {
                fn detect(
                    request: $crate::ecosystem::RepoRequest,
                ) -> Result<Option<$crate::ecosystem::Detection>, $crate::ecosystem::PluginError> {
                    <$plugin as $crate::ecosystem::Ecosystem>::detect(&$crate::Repo::from_request(
                        &request.root,
                        &request.options,
                    ))
                }
                fn plan(
                    request: $crate::ecosystem::RepoRequest,
                ) -> Result<$crate::ecosystem::Plan, $crate::ecosystem::PluginError> {
                    <$plugin as $crate::ecosystem::Ecosystem>::plan(&$crate::Repo::from_request(
                        &request.root,
                        &request.options,
                    ))
                }
            }
            $crate::ecosystem::bindings::__export_ecosystem_world!(SlipwayEcosystemExport with_types_in $crate::ecosystem::bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_contract_is_the_engines() {
        // The engine runs steps as 1000:1000 and looks for exactly this line.
        assert_eq!((JOB_UID, JOB_GID), (1000, 1000));
        assert_eq!(DEPS_MARKER, "# slipway:deps");
        assert!(DEPS_MARKER.starts_with('#') && !DEPS_MARKER.contains('\n'));
    }
}
