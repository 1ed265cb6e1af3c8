//! The `readiness` world: say how to probe a service and judge the result.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "readiness",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_readiness_world",
        default_bindings_module: "slipway_plugin_sdk::readiness::bindings",
        with: {
            "slipway:plugin/types@1.0.0": crate::ecosystem::bindings::slipway::plugin::types,
            "slipway:plugin/host@1.0.0": crate::ecosystem::bindings::slipway::plugin::host,
        },
    });
}

pub use crate::types::{OptionPair, PluginError, Problem};
pub use bindings::slipway::plugin::readiness_types::{
    HttpCheck, Probe, ProbeAction, ProbeOutput, Service, Verdict,
};

/// What a readiness plugin implements.
pub trait Readiness {
    /// The probe that tells whether `service` is ready.
    fn probe(service: &Service) -> Result<Probe, PluginError>;

    /// Judge one probe attempt.
    fn judge(service: &Service, output: &ProbeOutput) -> Verdict;

    /// argv that records the post-setup state (default: not supported).
    fn snapshot(_service: &Service) -> Option<Vec<String>> {
        None
    }

    /// argv that restores the state recorded by `snapshot` (default: not supported).
    fn reset(_service: &Service) -> Option<Vec<String>> {
        None
    }
}

impl Service {
    /// The value of `readiness.options.<name>`, if set.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|o| o.name == name)
            .map(|o| o.value.as_str())
    }

    /// The value of environment variable `name` declared for the service.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|o| o.name == name)
            .map(|o| o.value.as_str())
    }
}

/// Export a type implementing [`Readiness`] as the plugin's component exports.
#[macro_export]
macro_rules! export_readiness {
    ($plugin:ty) => {
        const _: () = {
            struct SlipwayReadinessExport;
            impl $crate::readiness::bindings::Guest for SlipwayReadinessExport {
                fn probe(
                    service: $crate::readiness::Service,
                ) -> Result<$crate::readiness::Probe, $crate::readiness::PluginError> {
                    <$plugin as $crate::readiness::Readiness>::probe(&service)
                }
                fn judge(
                    service: $crate::readiness::Service,
                    output: $crate::readiness::ProbeOutput,
                ) -> $crate::readiness::Verdict {
                    <$plugin as $crate::readiness::Readiness>::judge(&service, &output)
                }
                fn snapshot(service: $crate::readiness::Service) -> Option<Vec<String>> {
                    <$plugin as $crate::readiness::Readiness>::snapshot(&service)
                }
                fn reset(service: $crate::readiness::Service) -> Option<Vec<String>> {
                    <$plugin as $crate::readiness::Readiness>::reset(&service)
                }
            }
            $crate::readiness::bindings::__export_readiness_world!(SlipwayReadinessExport with_types_in $crate::readiness::bindings);
        };
    };
}
