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
