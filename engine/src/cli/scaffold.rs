//! `slipway plugins new`: a third-party plugin from `examples/plugin-template`.
//! The template is compiled into the binary, so an installed `slipway` can
//! scaffold anywhere.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use slipway::plugins::World;

const TEMPLATE: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../examples/plugin-template/Cargo.toml"),
    ),
    (
        "plugin.toml",
        include_str!("../../../examples/plugin-template/plugin.toml"),
    ),
    (
        "README.md",
        include_str!("../../../examples/plugin-template/README.md"),
    ),
    (
        "tests/fixtures/basic/Makefile",
        include_str!("../../../examples/plugin-template/tests/fixtures/basic/Makefile"),
    ),
];

fn world_source(world: World) -> &'static str {
    match world {
        World::Ecosystem => include_str!("../../../examples/plugin-template/src/ecosystem.rs"),
        World::Validator => include_str!("../../../examples/plugin-template/src/validator.rs"),
        World::Readiness => include_str!("../../../examples/plugin-template/src/readiness.rs"),
    }
}

/// The SDK of the checkout this binary was built from, if it is still there.
fn default_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk");
    sdk.join("Cargo.toml")
        .is_file()
        .then(|| sdk.canonicalize().unwrap_or(sdk))
}

pub fn create(
    name: &str,
    world: World,
    parent: &Path,
    sdk: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "`{name}` is not a plugin name: use lowercase letters, digits and `-`, starting with a letter"
        );
    }
    let sdk = match sdk {
        Some(p) => p
            .canonicalize()
            .with_context(|| format!("--sdk {}", p.display()))?,
        None => default_sdk()
            .context("cannot find slipway-plugin-sdk (hint: pass --sdk <path to plugin-sdk>)")?,
    };
    let dir = parent.join(name);
    if dir.exists() {
        bail!(
            "{} already exists; choose another name or folder",
            dir.display()
        );
    }
    let description = match world {
        World::Ecosystem => {
            "Detects repositories built with make and runs their lint and test targets."
        }
        World::Validator => {
            "Turns compiler-style `file:line:col: severity: message` lines into findings."
        }
        World::Readiness => "Ready once a command in the service container exits 0.",
    };
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{world}}", world.name())
            .replace("{{description}}", description)
            .replace("{{sdk_path}}", &sdk.display().to_string())
    };
    let mut files: Vec<(&str, &str)> = TEMPLATE.to_vec();
    files.push(("src/lib.rs", world_source(world)));
    for (rel, text) in files {
        if world != World::Ecosystem && rel.starts_with("tests/") {
            continue;
        }
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, fill(text)).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir)
}
