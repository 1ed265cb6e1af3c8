//! The Slipway plugin SDK.
//!
//! A Slipway plugin is a WebAssembly component (`wasm32-wasip2`) that targets one
//! of the worlds of the WIT package `slipway:plugin@1.0.0` (see `wit/` in the
//! Slipway repository). This crate hides the generated bindings behind three
//! traits and three export macros:
//!
//! | world       | trait                               | export macro                 |
//! |-------------|-------------------------------------|------------------------------|
//! | `ecosystem` | [`ecosystem::Ecosystem`]            | [`export_ecosystem!`]        |
//! | `validator` | [`validator::Validator`]            | [`export_validator!`]        |
//! | `readiness` | [`readiness::Readiness`]            | [`export_readiness!`]        |
//!
//! Helpers every plugin needs: [`Repo`] reads the repository through the
//! sandbox with size caps and good errors (JSON/TOML with line numbers),
//! [`version`] parses the version constraints people write (`v18.17.0`,
//! `>=3.10,<3.13`, `lts/hydrogen`, `~> 3.2`), [`log`] writes to the engine's
//! log, and [`testing`] runs a plugin against a fixture directory under plain
//! `cargo test` on the host, without compiling to wasm. [`report`] helps
//! validator plugins read JSON reports (banners, line numbers in errors,
//! repository-relative paths, caps on findings). [`shell::quote`] is the one
//! way to put a value into a shell command or a generated Dockerfile.
//!
//! The job contract every generated image follows is in
//! [`ecosystem::JOB_UID`], [`ecosystem::JOB_GID`] and
//! [`ecosystem::DEPS_MARKER`] (spelled out on `plan.image` in `wit/`).
//!
//! ```text
//! use slipway_plugin_sdk::ecosystem::*;
//! use slipway_plugin_sdk::{Repo, export_ecosystem};
//!
//! struct Make;
//! impl Ecosystem for Make {
//!     fn detect(repo: &Repo) -> Result<Option<Detection>, PluginError> { /* ... */ }
//!     fn plan(repo: &Repo) -> Result<Plan, PluginError> { /* ... */ }
//! }
//! export_ecosystem!(Make);
//! ```

pub mod ecosystem;
mod errors;
pub mod log;
pub mod readiness;
mod repo;
pub mod report;
pub mod shell;
pub mod testing;
pub mod toolchain;
pub mod validator;
pub mod version;

pub use errors::{internal, malformed, unsupported};
pub use repo::{DEFAULT_MAX_FILE_BYTES, Repo, TextFile};

/// Types shared by every world (`slipway:plugin/types`).
pub mod types {
    pub use crate::ecosystem::bindings::slipway::plugin::types::{
        Evidence, OptionPair, PluginError, Problem,
    };
}

/// The version of the WIT package this SDK was built against.
pub const API_VERSION: &str = "1.0.0";
