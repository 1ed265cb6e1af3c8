//! What `slipway plugins verify` finds out about a plugin, and how long it is
//! remembered.
//!
//! [`exercise`] calls every function of the plugin's world once with sample
//! input: an empty repository for `detect` and `plan`, an empty report for
//! each format `parse` claims, a sample service for `probe`, `judge`,
//! `snapshot` and `reset`. An answer of the plugin's own (`unsupported`, a
//! malformed-input error) is a working plugin; a trap, a limit or output the
//! host refuses is not.
//!
//! The verdict is stored under the plugin's sha256 ([`Verdicts`]), so it
//! holds until the wasm changes: a plugin `verify` rejected is `rejected` in
//! `plugins list` and never called by `plan`, `run` or `serve`
//! ([`super::Registry::apply_verdicts`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::World;
use super::bindings::{ProbeOutput, Service};
use super::sandbox::{CallError, PluginSandbox, PreparedPlugin};

/// The outcome of one `verify` of one plugin build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// sha256 of the component judged, hex.
    pub sha256: String,
    /// `name@version` of the plugin judged.
    pub plugin: String,
    /// What each function answered, in the order called.
    pub checks: Vec<String>,
    /// The first function that failed, and how; `None`: every function works.
    pub problem: Option<String>,
    /// When it was judged (Unix ms).
    pub at_ms: u64,
}

/// Call every function of `plugin`'s world once; the answers as lines, or
/// the first failure (`function: error`).
pub fn exercise(sandbox: &PluginSandbox, plugin: &PreparedPlugin) -> Result<Vec<String>, String> {
    let mut checks = Vec::new();
    let mut check = |function: &str, answer: Result<String, CallError>| match answer {
        Ok(said) => {
            checks.push(format!("{function} -> {said}"));
            Ok(())
        }
        // The plugin ran and answered in its own terms: it works.
        Err(CallError::Reported { error, .. }) => {
            checks.push(format!("{function} -> answered: {}", error.describe()));
            Ok(())
        }
        Err(e) => Err(format!("{function}: {e}")),
    };
    match plugin.world() {
        World::Ecosystem => {
            let empty = tempfile::tempdir()
                .map_err(|e| format!("cannot create an empty repository: {e}"))?;
            check(
                "detect(empty repo)",
                sandbox.detect(plugin, empty.path(), &[]).map(|d| match d {
                    Some(d) => format!("confidence {}", d.confidence),
                    None => "none".to_owned(),
                }),
            )?;
            check(
                "plan(empty repo)",
                sandbox
                    .plan(plugin, empty.path(), &[])
                    .map(|p| format!("{} setup step(s)", p.setup.len())),
            )?;
        }
        World::Validator => {
            let formats = sandbox.formats(plugin);
            let claimed = formats.as_ref().map(|f| f.clone()).unwrap_or_default();
            check("formats", formats.map(|f| format!("[{}]", f.join(", "))))?;
            for format in claimed {
                check(
                    &format!("parse({format}, empty report)"),
                    sandbox
                        .parse_report(plugin, &format, "")
                        .map(|f| format!("{} finding(s)", f.len())),
                )?;
            }
        }
        World::Readiness => {
            let service = Service {
                name: "sample".into(),
                image: "sample:1".into(),
                env: vec![],
                ports: vec![1],
                options: vec![],
            };
            check(
                "probe(sample service)",
                sandbox.probe(plugin, &service).map(|_| "ok".to_owned()),
            )?;
            let output = ProbeOutput {
                exit_code: Some(1),
                stdout: String::new(),
                stderr: String::new(),
                connected: false,
                http_status: None,
                elapsed_ms: 1,
            };
            check(
                "judge(sample output)",
                sandbox
                    .judge(plugin, &service, &output)
                    .map(|v| format!("{v:?}")),
            )?;
            for reset in [false, true] {
                check(
                    if reset { "reset" } else { "snapshot" },
                    sandbox
                        .state_command(plugin, &service, reset)
                        .map(|c| if c.is_some() { "a command" } else { "none" }.to_owned()),
                )?;
            }
        }
    }
    Ok(checks)
}

/// Verdicts on disk, one file per sha256 (`<plugin cache>/verdicts/`); none
/// are kept without a cache directory.
#[derive(Debug, Clone)]
pub struct Verdicts {
    dir: Option<PathBuf>,
}

impl Verdicts {
    /// Verdicts kept under `cache_dir` (the plugin compile cache's directory).
    pub fn new(cache_dir: Option<&Path>) -> Verdicts {
        Verdicts {
            dir: cache_dir.map(|d| d.join("verdicts")),
        }
    }

    /// The verdict on the component with this sha256, if one was stored.
    pub fn get(&self, sha256: &str) -> Option<Verdict> {
        let path = self.path(sha256)?;
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str::<Verdict>(&text)
            .ok()
            .filter(|v| v.sha256 == sha256)
    }

    /// Store `verdict`, replacing an earlier one on the same build. Failing
    /// to write is logged, not fatal: the plugin is judged again next time.
    pub fn put(&self, verdict: &Verdict) {
        let Some(path) = self.path(&verdict.sha256) else {
            return;
        };
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                let text = serde_json::to_vec_pretty(verdict).map_err(std::io::Error::other)?;
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, text)?;
                std::fs::rename(&tmp, &path)
            });
        if let Err(e) = written {
            tracing::warn!(plugin = %verdict.plugin, error = %e, "the verify verdict was not stored");
        }
    }

    fn path(&self, sha256: &str) -> Option<PathBuf> {
        // sha256 values come from manifests: only hex names a file here.
        if sha256.is_empty() || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(self.dir.as_ref()?.join(format!("{sha256}.json")))
    }
}
