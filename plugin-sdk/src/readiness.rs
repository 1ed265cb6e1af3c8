//! The `readiness` world: say how to probe a service and judge the result.

#[doc(hidden)]
// Generated: a WIT record with many fields becomes a constructor with as
// many arguments.
#[allow(clippy::too_many_arguments)]
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
use crate::{malformed, unsupported};
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

// Helpers every readiness plugin needs: options by name with errors that
// point into the job spec, a port choice, the plugin's default timing with
// per-service overrides, and a short quote of what a probe command said.

/// Where an option lives in the job spec, for error messages.
pub fn option_path(service: &Service, name: &str) -> String {
    format!("services.{}.readiness.options.{name}", service.name)
}

pub fn bad_option(
    service: &Service,
    name: &str,
    message: impl Into<String>,
    hint: Option<&str>,
) -> PluginError {
    malformed(&option_path(service, name), None, message, hint)
}

/// Option `name` parsed as a number, or `default` when it is not set.
pub fn number<T: std::str::FromStr>(
    service: &Service,
    name: &str,
    default: T,
) -> Result<T, PluginError> {
    match service.option(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| bad_option(service, name, format!("`{v}` is not a valid number"), None)),
    }
}

/// A duration or count that must be at least 1.
pub fn positive(service: &Service, name: &str, default: u32) -> Result<u32, PluginError> {
    match number(service, name, default)? {
        0 => Err(bad_option(service, name, "must be at least 1", None)),
        v => Ok(v),
    }
}

/// Option `port`, else the service's first declared port, else `fallback`.
pub fn port(service: &Service, fallback: Option<u16>) -> Result<u16, PluginError> {
    if let Some(v) = service.option("port") {
        return match v.trim().parse::<u16>() {
            Ok(p) if p != 0 => Ok(p),
            _ => Err(bad_option(
                service,
                "port",
                format!("`{v}` is not a valid port (1-65535)"),
                None,
            )),
        };
    }
    service.ports.first().copied().or(fallback).ok_or_else(|| {
        unsupported(
            None,
            format!("service `{}` declares no port to probe", service.name),
            Some("add `ports: [<port>]` to the service or set readiness.options.port"),
        )
    })
}

/// The plugin's default timing; every field can be overridden by the option
/// of the same name.
pub struct Timing {
    pub period_ms: u32,
    pub timeout_ms: u32,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    pub startup_deadline_ms: u32,
}

pub fn probe_with(service: &Service, action: ProbeAction, d: Timing) -> Result<Probe, PluginError> {
    Ok(Probe {
        action,
        period_ms: positive(service, "period_ms", d.period_ms)?,
        timeout_ms: positive(service, "timeout_ms", d.timeout_ms)?,
        success_threshold: positive(service, "success_threshold", d.success_threshold)?,
        failure_threshold: positive(service, "failure_threshold", d.failure_threshold)?,
        startup_deadline_ms: positive(service, "startup_deadline_ms", d.startup_deadline_ms)?,
    })
}

/// The last `max` characters of `text`, trimmed (`…` marks a cut).
pub fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    let n = text.chars().count();
    if n <= max {
        return text.to_owned();
    }
    let start = text
        .char_indices()
        .nth(n - max + 1)
        .map_or(text.len(), |(i, _)| i);
    format!("…{}", &text[start..])
}

/// What a command said: its stderr, else its stdout, cut to `max` characters.
pub fn said(output: &ProbeOutput, max: usize) -> String {
    let text = if output.stderr.trim().is_empty() {
        &output.stdout
    } else {
        &output.stderr
    };
    tail(text, max)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::service;

    fn probe(s: &Service) -> Result<Probe, PluginError> {
        let defaults = Timing {
            period_ms: 1,
            timeout_ms: 2,
            success_threshold: 3,
            failure_threshold: 4,
            startup_deadline_ms: 5,
        };
        probe_with(s, ProbeAction::Tcp(1), defaults)
    }

    #[test]
    fn timing_options_override_defaults_and_are_checked() {
        let p = probe(&service(&[], vec![1], &[])).unwrap();
        assert_eq!(
            (
                p.period_ms,
                p.timeout_ms,
                p.success_threshold,
                p.failure_threshold,
                p.startup_deadline_ms
            ),
            (1, 2, 3, 4, 5)
        );
        let options = [
            ("period_ms", "10"),
            ("timeout_ms", "20"),
            ("startup_deadline_ms", "30"),
            ("success_threshold", "4"),
            ("failure_threshold", "5"),
        ];
        let p = probe(&service(&[], vec![1], &options)).unwrap();
        assert_eq!(
            (
                p.period_ms,
                p.timeout_ms,
                p.startup_deadline_ms,
                p.success_threshold,
                p.failure_threshold
            ),
            (10, 20, 30, 4, 5)
        );
        for (opt, _) in options {
            let e = probe(&service(&[], vec![1], &[(opt, "soon")]))
                .unwrap_err()
                .describe();
            assert!(
                e.contains(&format!(
                    "services.svc.readiness.options.{opt}: `soon` is not a valid number"
                )),
                "{e}"
            );
            let e = probe(&service(&[], vec![1], &[(opt, "0")]))
                .unwrap_err()
                .describe();
            assert!(e.contains("must be at least 1"), "{e}");
        }
    }

    #[test]
    fn port_from_option_then_declared_then_fallback() {
        assert_eq!(
            port(&service(&[], vec![5432], &[("port", "6543")]), Some(1)).unwrap(),
            6543
        );
        assert_eq!(port(&service(&[], vec![5432], &[]), Some(1)).unwrap(), 5432);
        assert_eq!(port(&service(&[], vec![], &[]), Some(1)).unwrap(), 1);
        assert!(port(&service(&[], vec![], &[]), None).is_err());
    }

    #[test]
    fn tail_keeps_the_end_on_char_boundaries() {
        assert_eq!(tail("  short \n", 500), "short");
        let long = format!("{}é-end", "x".repeat(600));
        let t = tail(&long, 500);
        assert_eq!(t.chars().count(), 500);
        assert!(t.starts_with('…') && t.ends_with("é-end"), "{t}");
    }
}
