//! Host-side bindings of `wit/`, one module per world. The shared interfaces
//! (`types`, `host`) are generated once, in `ecosystem`, and reused by the
//! other worlds so a `PluginError` is one type everywhere.

/// The `ecosystem` world (`detect`, `plan`), with the shared `types` and `host`.
#[allow(missing_docs)] // generated from wit/
pub mod ecosystem {
    wasmtime::component::bindgen!({
        world: "ecosystem",
        path: "../wit",
        additional_derives: [serde::Serialize, serde::Deserialize],
        // Calls run on a fiber so a call stuck in a WASI host call can be
        // abandoned at its deadline (see `sandbox`).
        exports: { default: async },
    });
}

/// The `validator` world (`formats`, `parse`).
#[allow(missing_docs)] // generated from wit/
pub mod validator {
    wasmtime::component::bindgen!({
        world: "validator",
        path: "../wit",
        additional_derives: [serde::Serialize, serde::Deserialize],
        // Calls run on a fiber so a call stuck in a WASI host call can be
        // abandoned at its deadline (see `sandbox`).
        exports: { default: async },
        with: {
            "slipway:plugin/types": super::ecosystem::slipway::plugin::types,
            "slipway:plugin/host": super::ecosystem::slipway::plugin::host,
        },
    });
}

/// The `readiness` world (`probe`, `judge`, `snapshot`, `reset`).
#[allow(missing_docs)] // generated from wit/
pub mod readiness {
    wasmtime::component::bindgen!({
        world: "readiness",
        path: "../wit",
        additional_derives: [serde::Serialize, serde::Deserialize],
        // Calls run on a fiber so a call stuck in a WASI host call can be
        // abandoned at its deadline (see `sandbox`).
        exports: { default: async },
        with: {
            "slipway:plugin/types": super::ecosystem::slipway::plugin::types,
            "slipway:plugin/host": super::ecosystem::slipway::plugin::host,
        },
    });
}

pub use ecosystem::slipway::plugin::ecosystem_types::{
    CacheMount, ConstraintKind, Detection, ImageSource, OverruledHint, PackageManager, Plan,
    RepoRequest, Report, Step, Toolchain, VersionHint,
};
pub use ecosystem::slipway::plugin::host::Level;
pub use ecosystem::slipway::plugin::types::{Evidence, OptionPair, PluginError, Problem};
pub use readiness::slipway::plugin::readiness_types::{
    HttpCheck, Probe, ProbeAction, ProbeOutput, Service, Verdict,
};
pub use validator::slipway::plugin::validator_types::{Finding, Severity};

impl PluginError {
    /// The problem inside, whatever the kind.
    pub fn problem(&self) -> &Problem {
        match self {
            PluginError::MalformedInput(p)
            | PluginError::Unsupported(p)
            | PluginError::Internal(p) => p,
        }
    }

    /// `malformed input`, `unsupported` or `internal error`.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::MalformedInput(_) => "malformed input",
            PluginError::Unsupported(_) => "unsupported",
            PluginError::Internal(_) => "internal error",
        }
    }

    /// One line: `package.json:3: is not valid JSON (hint: …)`.
    /// One line for people, the plugin's words quoted (see `quote`).
    pub fn describe(&self) -> String {
        use super::quote::quote;
        let p = self.problem();
        let mut s = String::new();
        if let Some(file) = &p.file {
            s.push_str(&quote(file));
            if let Some(line) = p.line {
                s.push_str(&format!(":{line}"));
            }
            s.push_str(": ");
        }
        s.push_str(&quote(&p.message));
        if let Some(hint) = &p.hint {
            s.push_str(&format!(" (hint: {})", quote(hint)));
        }
        s
    }
}
