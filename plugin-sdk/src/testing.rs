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
use crate::ecosystem::{DEPS_MARKER, Detection, Ecosystem, Plan, PluginError};
use crate::readiness::{OptionPair, ProbeOutput, Readiness, Service, Verdict};
use crate::validator::{Finding, Validator};

/// The dependency installation of a generated Dockerfile (what follows
/// [`DEPS_MARKER`]), checked against the layering contract: it runs as root
/// on top of another image of the same ecosystem, so it creates no user,
/// switches to none, and never names `user` (the generated image's own
/// user, which that image may lack) where a uid will do. Panics with the
/// Dockerfile when it does not hold.
pub fn layerable_section<'a>(dockerfile: &'a str, user: &str) -> &'a str {
    let (_, after) = dockerfile
        .split_once(&format!("\n{DEPS_MARKER}\n"))
        .unwrap_or_else(|| panic!("no `{DEPS_MARKER}` line: {dockerfile}"));
    let owned = [format!("{user}:{user}"), format!("--chown={user}")];
    for bad in ["useradd", "adduser", "USER "]
        .into_iter()
        .chain(owned.iter().map(String::as_str))
    {
        assert!(
            !after.contains(bad),
            "`{bad}` after the marker: {dockerfile}"
        );
    }
    after
}

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

/// A service named `svc` (image `image:1`) with these env vars, ports and
/// readiness options, for readiness plugin tests.
pub fn service(env: &[(&str, &str)], ports: Vec<u16>, options: &[(&str, &str)]) -> Service {
    let pairs = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(n, v)| OptionPair {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect()
    };
    Service {
        name: "svc".into(),
        image: "image:1".into(),
        env: pairs(env),
        ports,
        options: pairs(options),
    }
}

/// The result of an `exec` probe attempt.
pub fn probe_output(exit_code: Option<i32>, stdout: &str, stderr: &str) -> ProbeOutput {
    ProbeOutput {
        exit_code,
        stdout: stdout.into(),
        stderr: stderr.into(),
        connected: false,
        http_status: None,
        elapsed_ms: 7,
    }
}

/// The message of a `not-ready` verdict; panics on any other.
pub fn not_ready(v: Verdict) -> String {
    match v {
        Verdict::NotReady(m) => m,
        other => panic!("expected not-ready, got {other:?}"),
    }
}

/// The message of a `failed` verdict; panics on any other.
pub fn failed(v: Verdict) -> String {
    match v {
        Verdict::Failed(m) => m,
        other => panic!("expected failed, got {other:?}"),
    }
}
