//! `slipway plugins list|verify|new|install`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;
use slipway::config::Config;
use slipway::plugins::compile_cache::CacheOutcome;
use slipway::plugins::{Candidate, PluginSandbox, Registry, Status, World, verify};

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List every plugin found (bundled, SLIPWAY_PLUGINS_DIR, <state>/plugins) with its status.
    List {
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Load plugins in the sandbox and call each once; exit 1 if any is rejected.
    ///
    /// PATH is a plugins directory (<dir>/<name>/<version>/), one installed plugin
    /// (a folder with plugin.toml and plugin.wasm), a plugin's source folder
    /// (plugin.toml and Cargo.toml, built with `cargo build --target wasm32-wasip2
    /// --release`), or a .wasm file with a plugin.toml beside it.
    Verify {
        path: PathBuf,
        /// The component to check, when it is not where PATH implies.
        #[arg(long)]
        wasm: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Create a new third-party plugin from the template.
    New {
        /// Plugin name: lowercase letters, digits and `-`.
        name: String,
        /// The world the plugin implements.
        #[arg(long, default_value = "ecosystem", value_parser = parse_world)]
        world: World,
        /// Folder to create the plugin in (default: the current directory).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Path of the slipway-plugin-sdk crate (default: the SDK of this Slipway checkout).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Install a built plugin into a plugins directory, writing its sha256 into the manifest.
    Install {
        /// A plugin's source folder (after `cargo build --target wasm32-wasip2 --release`),
        /// a plugin folder, or a .wasm file with a plugin.toml beside it.
        path: PathBuf,
        #[arg(long)]
        wasm: Option<PathBuf>,
        /// Plugins directory (default: the first of SLIPWAY_PLUGINS_DIR, else <state>/plugins).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Replace an installed copy of the same version with a different sha256.
        #[arg(long)]
        force: bool,
    },
}

fn parse_world(s: &str) -> Result<World, String> {
    World::parse(s)
        .ok_or_else(|| format!("unknown world `{s}` (known: ecosystem, validator, readiness)"))
}

pub fn run(cmd: PluginsCommand, config: &Config) -> anyhow::Result<ExitCode> {
    match cmd {
        PluginsCommand::List { json } => {
            let mut registry = super::registry_for(config, super::Calls::Few)?;
            registry.prepare_all();
            print_candidates(&registry, json, false);
            Ok(ExitCode::SUCCESS)
        }
        PluginsCommand::Verify { path, wasm, json } => {
            let sandbox = super::sandbox_for(config, super::Calls::Few)?;
            let mut registry = verify_target(&path, wasm.as_deref(), sandbox)?;
            registry.prepare_all();
            let ok = print_candidates(&registry, json, true);
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        PluginsCommand::New {
            name,
            world,
            dir,
            sdk,
        } => {
            let created = super::scaffold::create(&name, world, &dir, sdk.as_deref())?;
            println!("created {} ({world} plugin)", created.display());
            println!(
                "next: cd {} && cargo build --target wasm32-wasip2 --release && slipway plugins verify .",
                created.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginsCommand::Install {
            path,
            wasm,
            dir,
            force,
        } => {
            let target = dir
                .or_else(|| config.plugin_dirs.first().cloned())
                .unwrap_or_else(|| config.state_dir.join("plugins"));
            let sandbox = super::sandbox_for(config, super::Calls::Few)?;
            install(&path, wasm.as_deref(), &target, force, &sandbox)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Where a plugin's manifest and component are, given what the user pointed at.
enum Target {
    /// A single plugin; `installed` means the manifest must carry sha256.
    Single {
        manifest: PathBuf,
        wasm: PathBuf,
        installed: bool,
    },
    /// A plugins directory.
    Directory(PathBuf),
}

fn locate(path: &Path, wasm: Option<&Path>) -> anyhow::Result<Target> {
    if path.is_file() {
        let manifest = path.with_file_name("plugin.toml");
        if !manifest.is_file() {
            bail!(
                "no plugin.toml beside {} (hint: point at the plugin's folder instead)",
                path.display()
            );
        }
        return Ok(Target::Single {
            manifest,
            wasm: path.to_path_buf(),
            installed: false,
        });
    }
    if !path.is_dir() {
        bail!("{} does not exist", path.display());
    }
    let manifest = path.join("plugin.toml");
    if !manifest.is_file() {
        if wasm.is_some() {
            bail!(
                "--wasm needs a plugin folder with a plugin.toml, and {} has none",
                path.display()
            );
        }
        return Ok(Target::Directory(path.to_path_buf()));
    }
    if let Some(wasm) = wasm {
        return Ok(Target::Single {
            manifest,
            wasm: wasm.to_path_buf(),
            installed: false,
        });
    }
    if path.join("plugin.wasm").is_file() {
        return Ok(Target::Single {
            manifest,
            wasm: path.join("plugin.wasm"),
            installed: true,
        });
    }
    let cargo_toml = path.join("Cargo.toml");
    if cargo_toml.is_file() {
        return Ok(Target::Single {
            manifest,
            wasm: built_wasm(path, &cargo_toml)?,
            installed: false,
        });
    }
    bail!(
        "{} has a plugin.toml but neither plugin.wasm nor Cargo.toml (hint: pass --wasm)",
        path.display()
    )
}

/// `target/wasm32-wasip2/release/<crate>.wasm` of a plugin's source folder.
fn built_wasm(dir: &Path, cargo_toml: &Path) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(cargo_toml)
        .with_context(|| format!("reading {}", cargo_toml.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("parsing {}", cargo_toml.display()))?;
    let name = table
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .with_context(|| format!("{} has no [package] name", cargo_toml.display()))?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("target"));
    let wasm = target_dir
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    if !wasm.is_file() {
        bail!(
            "{} is not built yet (hint: run `cargo build --target wasm32-wasip2 --release` in {})",
            wasm.display(),
            dir.display()
        );
    }
    Ok(wasm)
}

fn verify_target(
    path: &Path,
    wasm: Option<&Path>,
    sandbox: Arc<PluginSandbox>,
) -> anyhow::Result<Registry> {
    Ok(match locate(path, wasm)? {
        Target::Single {
            manifest,
            wasm,
            installed,
        } => {
            let candidate = Candidate::from_files(&manifest, &wasm, installed, &sandbox);
            Registry::from_candidates(sandbox, vec![candidate])
        }
        Target::Directory(dir) => Registry::load(sandbox, false, &[dir]),
    })
}

/// Call every function of the plugin once (see `plugins::verify`) and store
/// the verdict under its sha256; `Err` only for sandbox failures (a plugin
/// that answers "unsupported" is working).
fn smoke_call(candidate: &Candidate, sandbox: &PluginSandbox) -> Result<String, String> {
    let prepared = candidate.prepare(sandbox).map_err(|e| e.to_string())?;
    let outcome = verify::exercise(sandbox, &prepared);
    sandbox.verdicts().put(&verify::Verdict {
        sha256: candidate.sha256.clone(),
        plugin: prepared.id.to_string(),
        checks: outcome.clone().unwrap_or_default(),
        problem: outcome.as_ref().err().cloned(),
        at_ms: slipway::job::now_ms(),
    });
    outcome.map(|checks| checks.join("; "))
}

/// Print the registry; with `smoke`, call each usable plugin once. Returns
/// whether everything was fine.
fn print_candidates(registry: &Registry, json: bool, smoke: bool) -> bool {
    let mut all_ok = registry.source_problems.is_empty();
    let mut rows = Vec::new();
    for c in registry.candidates() {
        let (status, mut reason) = match &c.status {
            Status::Active => ("active", String::new()),
            Status::Shadowed { by } => ("shadowed", format!("version {by} is in use")),
            Status::Replaced { by } => (
                "replaced",
                format!("the third-party {by} replaces it (plugins.replace)"),
            ),
            Status::Rejected(e) => ("rejected", e.to_string()),
        };
        let mut status = status.to_owned();
        let mut check = None;
        if smoke && status != "rejected" {
            match smoke_call(c, registry.sandbox()) {
                Ok(s) => check = Some(s),
                Err(e) => {
                    status = "rejected".into();
                    reason = e;
                }
            }
        }
        all_ok &= status != "rejected";
        let compile = c.prepare(registry.sandbox()).ok().map(|p| match p.compile {
            CacheOutcome::Memory | CacheOutcome::Disk => "cached",
            CacheOutcome::Compiled => "compiled",
        });
        rows.push((c, status, reason, check, compile));
    }
    if json {
        let items: Vec<_> = rows
            .iter()
            .map(|(c, status, reason, check, _)| {
                json!({
                    "name": c.name,
                    "version": c.version().map(|v| v.to_string()),
                    "world": c.world().map(|w| w.name()),
                    "status": status,
                    "reason": (!reason.is_empty()).then_some(reason),
                    "check": check,
                    "origin": c.origin.to_string(),
                    "third_party": c.is_third_party(),
                    "sha256": (!c.sha256.is_empty()).then_some(&c.sha256),
                    "description": c.manifest.as_ref().map(|m| &m.description),
                })
            })
            .collect();
        let doc = json!({ "plugins": items, "source_problems": registry.source_problems });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return all_ok;
    }
    if rows.is_empty() {
        println!("no plugins found");
    }
    for (c, status, reason, check, compile) in &rows {
        let version = c
            .version()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into());
        let world = c.world().map(|w| w.name()).unwrap_or("?");
        print!(
            "{:<10} {:<16} {:<9} {:<10} {}{}",
            status,
            c.name,
            version,
            world,
            c.origin,
            if c.is_third_party() {
                " (third-party)"
            } else {
                ""
            }
        );
        if let Some(compile) = compile {
            print!(" [{compile}]");
        }
        println!();
        if let Some(check) = check {
            println!("{:>12}{check}", "");
        }
        if !reason.is_empty() {
            println!("{:>12}{reason}", "");
        }
    }
    for p in &registry.source_problems {
        println!("problem    {p}");
    }
    all_ok
}

fn install(
    path: &Path,
    wasm: Option<&Path>,
    plugins_dir: &Path,
    force: bool,
    sandbox: &PluginSandbox,
) -> anyhow::Result<()> {
    let Target::Single {
        manifest: manifest_path,
        wasm: wasm_path,
        ..
    } = locate(path, wasm)?
    else {
        bail!(
            "{} is a plugins directory, not one plugin (hint: point at the plugin's folder)",
            path.display()
        );
    };
    let candidate = Candidate::from_files(&manifest_path, &wasm_path, false, sandbox);
    if let Status::Rejected(e) = &candidate.status {
        bail!("not installed: {e}");
    }
    candidate
        .prepare(sandbox)
        .map_err(|e| anyhow::anyhow!("not installed: {e}"))?;
    smoke_call(&candidate, sandbox).map_err(|e| anyhow::anyhow!("not installed: {e}"))?;
    let manifest = candidate
        .manifest
        .as_ref()
        .context("a usable candidate has a manifest")?;
    let dest = plugins_dir
        .join(&manifest.name)
        .join(manifest.version.to_string());
    if dest.join("plugin.toml").is_file() {
        let existing = std::fs::read_to_string(dest.join("plugin.toml")).unwrap_or_default();
        if existing.contains(&candidate.sha256) {
            println!(
                "{}@{} is already installed in {}",
                manifest.name,
                manifest.version,
                dest.display()
            );
            return Ok(());
        }
        if !force {
            bail!(
                "{}@{} is already installed in {} with a different sha256 (hint: bump the version, or pass --force to replace it)",
                manifest.name,
                manifest.version,
                dest.display()
            );
        }
    }
    let parent = dest.parent().context("the destination has a parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    // Assemble in a temporary folder and rename: a reader never sees half a plugin.
    let staging = tempfile::Builder::new()
        .prefix(".install-")
        .tempdir_in(parent)?;
    std::fs::copy(&wasm_path, staging.path().join("plugin.wasm"))?;
    std::fs::write(
        staging.path().join("plugin.toml"),
        manifest.to_toml_with_sha256(&candidate.sha256),
    )?;
    if dest.exists() {
        std::fs::remove_dir_all(&dest)
            .with_context(|| format!("removing the old {}", dest.display()))?;
    }
    std::fs::rename(staging.keep(), &dest)
        .with_context(|| format!("moving the plugin into {}", dest.display()))?;
    println!(
        "installed {}@{} ({}) into {}",
        manifest.name,
        manifest.version,
        manifest.world,
        dest.display()
    );
    Ok(())
}
