//! Builds the plugins workspace (`plugins/`) for `wasm32-wasip2` and bundles
//! the first-party plugins into the binary.
//!
//! Every folder of `plugins/` with a `plugin.toml` (except `testdata/`) is a
//! bundled plugin: its manifest gets the wasm's `sha256` and both are embedded
//! (see `src/plugins/bundled.rs`). The test plugins under `plugins/testdata/`
//! are built too; tests find them through `TEST_PLUGINS_WASM_DIR`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("engine/ has a parent")
        .to_path_buf();
    let plugins = root.join("plugins");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    for path in [
        root.join("wit"),
        root.join("plugin-sdk/src"),
        root.join("plugin-sdk/Cargo.toml"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    for entry in read_dir_sorted(&plugins) {
        if entry.file_name().is_some_and(|n| n != "target") {
            println!("cargo:rerun-if-changed={}", entry.display());
        }
    }

    // Beside the outer build's target dir, so profiles and test runs share it.
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
    .join("wasm-plugins");
    build_plugins(&plugins, &target_dir);
    let wasm_dir = target_dir.join("wasm32-wasip2/release");
    println!(
        "cargo:rustc-env=TEST_PLUGINS_WASM_DIR={}",
        wasm_dir.display()
    );

    let members = workspace_members(&plugins);
    let mut generated = String::from("pub static BUNDLED: &[BundledPlugin] = &[\n");
    for dir in read_dir_sorted(&plugins) {
        let manifest_path = dir.join("plugin.toml");
        if !manifest_path.is_file() {
            continue;
        }
        let member = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| members.iter().any(|m| m == n));
        if !member {
            println!(
                "cargo:warning={} has a plugin.toml but is not a member of plugins/Cargo.toml; not bundled",
                dir.display()
            );
            continue;
        }
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("plugin folder names are UTF-8")
            .to_owned();
        let wasm_path = wasm_dir.join(format!("{}.wasm", name.replace('-', "_")));
        let wasm = std::fs::read(&wasm_path)
            .unwrap_or_else(|e| panic!("plugin `{name}` built no {}: {e}", wasm_path.display()));
        let manifest = std::fs::read_to_string(&manifest_path).expect("plugin.toml is readable");
        let sha = hex::encode(Sha256::digest(&wasm));
        // As JSON: the engine reads these at every start, and JSON reads in
        // a fraction of a TOML parse.
        let mut table: toml::Table = manifest.parse().expect("plugin.toml is valid TOML");
        table.insert("sha256".into(), toml::Value::String(sha));
        let manifest = serde_json::to_string(&table).expect("a TOML table is JSON");
        let copy = out_dir.join(format!("{name}.wasm"));
        std::fs::write(&copy, &wasm).expect("OUT_DIR is writable");
        writeln!(
            generated,
            "    BundledPlugin {{ dir_name: {name:?}, manifest: {manifest:?}, wasm: include_bytes!({:?}) }},",
            copy.display().to_string()
        )
        .expect("writing to a String cannot fail");
    }
    generated.push_str("];\n");
    std::fs::write(out_dir.join("bundled_plugins.rs"), generated).expect("OUT_DIR is writable");
}

/// `members` of `plugins/Cargo.toml`.
fn workspace_members(plugins: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(plugins.join("Cargo.toml"))
        .expect("plugins/Cargo.toml is readable");
    let table: toml::Table = text.parse().expect("plugins/Cargo.toml is valid TOML");
    table
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    entries
}

fn build_plugins(plugins: &Path, target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--workspace",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
    ])
    .arg(plugins.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(target_dir);
    // The outer build's settings are for the host target, not for wasm.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let outer = key.starts_with("CARGO_")
            && !matches!(key, "CARGO_HOME" | "CARGO_MAKEFLAGS" | "CARGO_NET_OFFLINE");
        if outer
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "TARGET"
                    | "HOST"
                    | "PROFILE"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "OUT_DIR"
                    | "NUM_JOBS"
            )
        {
            cmd.env_remove(key);
        }
    }
    cmd.stdout(std::io::stderr()); // stdout lines of a build script are directives to cargo
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the plugins: {e}"));
    if !status.success() {
        panic!(
            "building the plugins in {} for wasm32-wasip2 failed (see the output above). \
             If the target is missing, run `rustup target add wasm32-wasip2`.",
            plugins.display()
        );
    }
}
