//! The `validator` world: turn a tool's report into findings.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "validator",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_validator_world",
        default_bindings_module: "slipway_plugin_sdk::validator::bindings",
        with: {
            "slipway:plugin/types@1.0.0": crate::ecosystem::bindings::slipway::plugin::types,
            "slipway:plugin/host@1.0.0": crate::ecosystem::bindings::slipway::plugin::host,
        },
    });
}

pub use crate::types::{PluginError, Problem};
pub use bindings::slipway::plugin::validator_types::{Finding, Severity};

/// What a validator plugin implements.
pub trait Validator {
    /// The report formats this plugin parses (e.g. `["junit-xml"]`).
    fn formats() -> Vec<String>;

    /// Parse `report`, written in `format`, into findings.
    fn parse(format: &str, report: &str) -> Result<Vec<Finding>, PluginError>;
}

/// Export a type implementing [`Validator`] as the plugin's component exports.
#[macro_export]
macro_rules! export_validator {
    ($plugin:ty) => {
        const _: () = {
            struct SlipwayValidatorExport;
            impl $crate::validator::bindings::Guest for SlipwayValidatorExport {
                fn formats() -> Vec<String> {
                    <$plugin as $crate::validator::Validator>::formats()
                }
                fn parse(
                    format: String,
                    report: String,
                ) -> Result<Vec<$crate::validator::Finding>, $crate::validator::PluginError> {
                    <$plugin as $crate::validator::Validator>::parse(&format, &report)
                }
            }
            $crate::validator::bindings::__export_validator_world!(SlipwayValidatorExport with_types_in $crate::validator::bindings);
        };
    };
}
