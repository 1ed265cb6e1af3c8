//! The plugin host.
//!
//! Owns everything between a plugin's files on disk and a validated result of
//! one call: manifests ([`manifest`]), the registry that finds plugins and
//! picks one version per name ([`registry`]), the precompiled-component cache
//! ([`compile_cache`]), and the sandbox that runs one call under limits
//! ([`sandbox`]), and the quoting of plugin text shown to people
//! ([`quote`]). It does not know about jobs, Docker or HTTP.
//!
//! Invariants:
//! - A plugin is compiled at most once per wasm sha256 and engine
//!   configuration; after that it is loaded from the on-disk cache.
//! - Every call gets a fresh instance: nothing survives from one call to the
//!   next, so one repository or job never sees another's state.
//! - A plugin sees only the repository of the call, read-only. A trap, a
//!   limit or a malformed result becomes a [`CallError`] naming the plugin,
//!   its version and what was hit; the host itself never panics on it.

pub mod bindings;
mod bundled;
pub mod compile_cache;
pub mod manifest;
mod output;
pub mod quote;
pub mod registry;
pub mod sandbox;
pub mod verify;

use std::fmt;

pub use compile_cache::CompileCache;
pub use manifest::{Manifest, ManifestError};
pub use registry::{Candidate, Origin, Registry, Status};
pub use sandbox::{CallError, LoadError, PluginSandbox, PreparedPlugin};

/// The version of the WIT package `slipway:plugin` this host implements.
pub const HOST_API_VERSION: semver::Version = semver::Version::new(1, 0, 0);

/// The worlds of `wit/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum World {
    /// Ecosystem plugins: detect a kind of repository, plan its image and steps.
    Ecosystem,
    /// Validator plugins: parse a tool's report (or check data such as a
    /// Dockerfile) into findings.
    Validator,
    /// Readiness plugins: tell when a kind of service is ready, and snapshot
    /// and reset its state.
    Readiness,
}

impl World {
    /// Every world this host implements.
    pub const ALL: [World; 3] = [World::Ecosystem, World::Validator, World::Readiness];

    /// The world's name in `wit/` and in a manifest's `world` field.
    pub fn name(self) -> &'static str {
        match self {
            World::Ecosystem => "ecosystem",
            World::Validator => "validator",
            World::Readiness => "readiness",
        }
    }

    /// The functions a component of this world exports.
    pub fn exports(self) -> &'static [&'static str] {
        match self {
            World::Ecosystem => &["detect", "plan"],
            World::Validator => &["formats", "parse"],
            World::Readiness => &["probe", "judge", "snapshot", "reset"],
        }
    }

    /// The world named `s` (as in a manifest's `world` field); `None` for an
    /// unknown name.
    pub fn parse(s: &str) -> Option<World> {
        World::ALL.into_iter().find(|w| w.name() == s)
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `name@version`, the way errors and logs name a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PluginId {
    /// The plugin's name, from its manifest (e.g. `node`, `tcp`).
    pub name: String,
    /// The plugin's version, from its manifest.
    pub version: semver::Version,
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// Per-call limits of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one call (epoch deadline), in milliseconds.
    pub cpu_ms: u32,
    /// Linear memory cap, in MiB.
    pub memory_mib: u32,
    /// Cap on the total size of the strings and lists a call returns, in KiB.
    pub output_kib: u32,
}

/// The engine-wide limits: defaults for plugins that state none, and maxima
/// no manifest may exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsPolicy {
    /// What a call runs under unless its manifest lowers a limit
    /// (`plugins.default_*`); a manifest cannot raise them.
    pub defaults: Limits,
    /// Upper bounds of the defaults (`plugins.max_*`); the instance pool's
    /// memory is sized for `memory_mib`.
    pub maxima: Limits,
}

impl Default for LimitsPolicy {
    fn default() -> Self {
        LimitsPolicy {
            // 2 s of wall clock is far more than an honest detect or plan
            // needs (tens of microseconds), and survives a loaded machine.
            defaults: Limits {
                cpu_ms: 2_000,
                memory_mib: 64,
                output_kib: 1024,
            },
            maxima: Limits {
                cpu_ms: 30_000,
                memory_mib: 512,
                output_kib: 16 * 1024,
            },
        }
    }
}
