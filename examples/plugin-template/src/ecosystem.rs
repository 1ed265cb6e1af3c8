//! `{{name}}`: an ecosystem plugin for repositories built with `make`.
//!
//! It detects a root `Makefile` and runs its `lint` target in the fast tier
//! and its `test` target in the full tier, when those targets exist.

use slipway_plugin_sdk::ecosystem::*;
use slipway_plugin_sdk::{Repo, export_ecosystem};

pub struct Plugin;

/// Targets defined in the Makefile, with their line numbers.
fn targets(repo: &Repo) -> Result<Option<(String, Vec<(String, u32)>)>, PluginError> {
    let Some(file) = repo.read_text("Makefile")? else { return Ok(None) };
    let found = file
        .numbered_lines()
        .filter_map(|(n, line)| {
            let (target, _) = line.split_once(':')?;
            let ok = !target.is_empty() && !line.starts_with(['\t', ' ', '.', '#']) && !target.contains([' ', '=', '$']);
            ok.then(|| (target.to_owned(), n))
        })
        .collect();
    Ok(Some((file.path, found)))
}

impl Ecosystem for Plugin {
    fn detect(repo: &Repo) -> Result<Option<Detection>, PluginError> {
        let Some((path, targets)) = targets(repo)? else { return Ok(None) };
        let evidence = vec![Evidence::new(&path, None, format!("{} targets", targets.len()))];
        Ok(Some(Detection { confidence: 40, evidence }))
    }

    fn plan(repo: &Repo) -> Result<Plan, PluginError> {
        let targets = targets(repo)?.map(|(_, t)| t).unwrap_or_default();
        let has = |name: &str| targets.iter().any(|(t, _)| t == name);
        let mut fast = Vec::new();
        let mut full = Vec::new();
        if has("lint") {
            fast.push(Step::new("lint", "make lint"));
        }
        if has("test") {
            full.push(Step::new("test", "make test"));
        }
        let base = "debian:12-slim";
        Ok(Plan {
            base_image: base.into(),
            image: ImageSource::Generated(format!(
                "FROM {base}\nRUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*\nRUN useradd --create-home app\nUSER app\nWORKDIR /workspace\n"
            )),
            toolchains: vec![],
            package_manager: None,
            setup: vec![],
            fast,
            full,
            cache: vec![],
            env: vec![],
            notes: vec![],
        })
    }
}

export_ecosystem!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_plugin_sdk::testing;

    #[test]
    fn detects_and_plans_the_fixture() {
        let detection = testing::detect::<Plugin>("tests/fixtures/basic").unwrap().expect("a Makefile is detected");
        assert_eq!(detection.evidence[0].file, "Makefile");
        let plan = testing::plan::<Plugin>("tests/fixtures/basic").unwrap();
        assert_eq!(plan.fast[0].command, "make lint");
        assert_eq!(plan.full[0].command, "make test");
    }

    #[test]
    fn no_makefile_is_not_detected() {
        let empty = std::env::temp_dir();
        assert!(testing::detect::<Plugin>(empty.join("slipway-template-no-such-dir")).unwrap().is_none());
    }
}
