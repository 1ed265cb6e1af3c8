//! `dockerfile`: the repository brings its own Dockerfile.

use slipway_plugin_sdk::ecosystem::*;
use slipway_plugin_sdk::{Repo, TextFile, export_ecosystem, malformed};

pub struct RepoDockerfile;

/// The Dockerfile to use: the profile's option, else a root file.
fn find(repo: &Repo) -> Result<Option<TextFile>, PluginError> {
    if let Some(path) = repo.option("dockerfile") {
        return match repo.read_text(path)? {
            Some(file) => Ok(Some(file)),
            None => Err(malformed(
                path,
                None,
                "is set as the profile's dockerfile but does not exist",
                Some(
                    "fix the `dockerfile` path in the repo profile (relative to the repository root)",
                ),
            )),
        };
    }
    for name in ["Dockerfile", "Containerfile"] {
        if let Some(file) = repo.read_text(name)? {
            return Ok(Some(file));
        }
    }
    Ok(None)
}

/// The image of the first `FROM` (skipping `--platform=…`), with its line.
fn first_from(file: &TextFile) -> Result<(String, u32), PluginError> {
    for (n, line) in file.numbered_lines() {
        let mut words = line.split_whitespace();
        if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
            continue;
        }
        if let Some(image) = words.find(|w| !w.starts_with("--")) {
            return Ok((image.to_owned(), n));
        }
        return Err(malformed(
            &file.path,
            Some(n),
            "has a FROM line without an image",
            None,
        ));
    }
    Err(malformed(
        &file.path,
        None,
        "has no FROM line",
        Some("a Dockerfile starts from a base image: `FROM debian:12-slim`"),
    ))
}

impl Ecosystem for RepoDockerfile {
    fn detect(repo: &Repo) -> Result<Option<Detection>, PluginError> {
        let Some(file) = find(repo)? else {
            return Ok(None);
        };
        let (image, line) = first_from(&file)?;
        Ok(Some(Detection {
            confidence: 100,
            evidence: vec![Evidence::new(
                &file.path,
                Some(line),
                format!("FROM {image}"),
            )],
        }))
    }

    fn plan(repo: &Repo) -> Result<Plan, PluginError> {
        let Some(file) = find(repo)? else {
            return Err(malformed(
                "Dockerfile",
                None,
                "does not exist",
                Some("this repository has no Dockerfile to build"),
            ));
        };
        let (image, _) = first_from(&file)?;
        let mut notes = vec!["setup and validation steps come from the repo profile, else from the best ecosystem plugin".to_owned()];
        if image.contains('$') {
            notes.push(format!(
                "the base image `{image}` depends on build arguments"
            ));
        }
        Ok(Plan {
            base_image: image,
            image: ImageSource::Repository(file.path.clone()),
            toolchains: vec![],
            package_manager: None,
            setup: vec![],
            fast: vec![],
            full: vec![],
            cache: vec![],
            env: vec![OptionPair {
                name: "CI".into(),
                value: "true".into(),
            }],
            notes,
        })
    }
}

export_ecosystem!(RepoDockerfile);

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_plugin_sdk::testing;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

    #[test]
    fn root_dockerfile_first_from_wins() {
        let d = testing::detect::<RepoDockerfile>(format!("{FIXTURES}/root"))
            .unwrap()
            .unwrap();
        assert_eq!(d.confidence, 100);
        assert_eq!(
            (d.evidence[0].file.as_str(), d.evidence[0].line),
            ("Dockerfile", Some(3))
        );
        let plan = testing::plan::<RepoDockerfile>(format!("{FIXTURES}/root")).unwrap();
        assert_eq!(plan.base_image, "python:3.11-slim");
        assert!(matches!(plan.image, ImageSource::Repository(ref p) if p == "Dockerfile"));
    }

    #[test]
    fn profile_path_and_platform_flag() {
        let repo =
            Repo::at(format!("{FIXTURES}/custom")).with_option("dockerfile", "ci/Dockerfile.ci");
        let plan = RepoDockerfile::plan(&repo).unwrap();
        assert_eq!(plan.base_image, "node:18-slim");
        let missing =
            Repo::at(format!("{FIXTURES}/custom")).with_option("dockerfile", "nope/Dockerfile");
        let e = RepoDockerfile::detect(&missing).unwrap_err().describe();
        assert!(
            e.contains("nope/Dockerfile: is set as the profile's dockerfile but does not exist"),
            "{e}"
        );
        let escape =
            Repo::at(format!("{FIXTURES}/custom")).with_option("dockerfile", "../root/Dockerfile");
        assert!(RepoDockerfile::detect(&escape).is_err());
    }

    #[test]
    fn no_from_is_malformed_and_args_are_noted() {
        let e = testing::detect::<RepoDockerfile>(format!("{FIXTURES}/no-from"))
            .unwrap_err()
            .describe();
        assert!(e.contains("Dockerfile: has no FROM line"), "{e}");
        let plan = testing::plan::<RepoDockerfile>(format!("{FIXTURES}/args")).unwrap();
        assert!(
            plan.notes
                .iter()
                .any(|n| n.contains("depends on build arguments"))
        );
    }

    #[test]
    fn no_dockerfile_is_not_detected() {
        assert!(
            testing::detect::<RepoDockerfile>(format!("{FIXTURES}/custom"))
                .unwrap()
                .is_none()
        );
    }
}
