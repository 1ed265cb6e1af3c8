//! Test a plugin against fixture directories with plain `cargo test`.
//!
//! The plugin's trait implementation runs natively on the host against a
//! directory, through the same [`Repo`] type it uses in the sandbox (which
//! refuses paths and symlinks that leave the directory). This tests the
//! plugin's logic; `slipway plugins verify` then checks the compiled component.
//!
//! ```text
//! #[test]
//! fn detects_nvmrc() {
//!     let plan = slipway_plugin_sdk::testing::plan::<MyPlugin>("tests/fixtures/nvmrc").unwrap();
//!     assert_eq!(plan.base_image, "node:18-slim");
//! }
//! ```

use std::path::Path;

use crate::Repo;
use crate::ecosystem::{Detection, Ecosystem, Plan, PluginError};
use crate::readiness::{ProbeOutput, Readiness, Service, Verdict};
use crate::validator::{Finding, Validator};

/// Run `detect` of ecosystem plugin `P` against `fixture`.
pub fn detect<P: Ecosystem>(fixture: impl AsRef<Path>) -> Result<Option<Detection>, PluginError> {
    P::detect(&Repo::at(fixture.as_ref()))
}

/// Run `plan` of ecosystem plugin `P` against `fixture`.
pub fn plan<P: Ecosystem>(fixture: impl AsRef<Path>) -> Result<Plan, PluginError> {
    P::plan(&Repo::at(fixture.as_ref()))
}

/// Run `parse` of validator plugin `P` on a report file.
pub fn parse_report<P: Validator>(
    format: &str,
    report: impl AsRef<Path>,
) -> Result<Vec<Finding>, PluginError> {
    let text = std::fs::read_to_string(report.as_ref())
        .map_err(|e| crate::internal(format!("cannot read {}: {e}", report.as_ref().display())))?;
    P::parse(format, &text)
}

/// Run `judge` of readiness plugin `P`.
pub fn judge<P: Readiness>(service: &Service, output: &ProbeOutput) -> Verdict {
    P::judge(service, output)
}
