//! `slipway plugins …` as a user runs it: the real binary, real compiled
//! plugins, and a scaffolded third-party plugin built with cargo.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TESTDATA_WASM: &str = env!("TEST_PLUGINS_WASM_DIR");

/// `slipway` with a state directory shared by these tests (so the
/// precompiled-plugin cache is reused) and no configuration from outside.
fn slipway(args: &[&str], plugins_dir: Option<&Path>) -> Output {
    let state = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-state");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.args(args)
        .env("SLIPWAY_STATE_DIR", &state)
        .env_remove("SLIPWAY_CONFIG")
        .env_remove("SLIPWAY_PLUGINS_DIR");
    if let Some(dir) = plugins_dir {
        cmd.env("SLIPWAY_PLUGINS_DIR", dir);
    }
    let out = cmd.output().expect("run slipway");
    eprintln!(
        "$ slipway {}\nexit: {:?}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn install_raw(dir: &Path, name: &str, version: &str, manifest: &str, wasm: &[u8]) {
    let d = dir.join(name).join(version);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("plugin.toml"), manifest).unwrap();
    std::fs::write(d.join("plugin.wasm"), wasm).unwrap();
}

#[test]
fn list_shows_the_bundled_plugins_as_json() {
    let out = slipway(&["plugins", "list", "--json"], None);
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tcp = doc["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tcp")
        .expect("tcp is bundled");
    assert_eq!(tcp["status"], "active");
    assert_eq!(tcp["world"], "readiness");
    assert_eq!(tcp["origin"], "bundled");
    assert_eq!(tcp["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn verify_rejects_bad_plugins_with_their_reasons_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let tcp = std::fs::read(Path::new(TESTDATA_WASM).join("tcp.wasm")).unwrap();
    let core = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/core-module.wasm"),
    )
    .unwrap();
    let manifest = |name: &str, world: &str, sha: &str| {
        format!(
            "name = \"{name}\"\nversion = \"1.0.0\"\nworld = \"{world}\"\napi = \"^1.0\"\nsha256 = \"{sha}\"\ndescription = \"t\"\n"
        )
    };
    use sha2::Digest;
    let sha = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
    install_raw(
        dir.path(),
        "fine",
        "1.0.0",
        &manifest("fine", "readiness", &sha(&tcp)),
        &tcp,
    );
    install_raw(
        dir.path(),
        "module",
        "1.0.0",
        &manifest("module", "ecosystem", &sha(&core)),
        &core,
    );
    install_raw(
        dir.path(),
        "tampered",
        "1.0.0",
        &manifest("tampered", "readiness", &"a".repeat(64)),
        &tcp,
    );
    install_raw(
        dir.path(),
        "confused",
        "1.0.0",
        &manifest("confused", "validator", &sha(&tcp)),
        &tcp,
    );

    let out = slipway(&["plugins", "verify", dir.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("probe(sample service) -> ok"), "{text}");
    assert!(
        text.contains("not a WebAssembly component: it is a core WebAssembly module"),
        "{text}"
    );
    assert!(text.contains("sha256 mismatch"), "{text}");
    assert!(
        text.contains(
            "manifest says world `validator` but the component is a `readiness` component"
        ),
        "{text}"
    );

    let good = dir.path().join("fine/1.0.0");
    let out = slipway(&["plugins", "verify", good.to_str().unwrap()], None);
    assert!(out.status.success(), "a good plugin verifies");
}

/// Build a scaffolded plugin like its author would.
fn cargo(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args).current_dir(dir);
    for (key, _) in std::env::vars_os() {
        if key
            .to_str()
            .is_some_and(|k| k.starts_with("CARGO_") && k != "CARGO_HOME")
        {
            cmd.env_remove(key);
        }
    }
    // Share compiled dependencies with the engine's plugin build.
    cmd.env(
        "CARGO_TARGET_DIR",
        Path::new(TESTDATA_WASM).ancestors().nth(2).unwrap(),
    );
    let status = cmd.status().expect("run cargo");
    assert!(
        status.success(),
        "cargo {args:?} failed in {}",
        dir.display()
    );
}

#[test]
fn scaffolded_plugins_build_verify_install_and_load() {
    let work = tempfile::tempdir().unwrap();
    let registry = work.path().join("registry");
    for (name, world) in [
        ("make-ci", "ecosystem"),
        ("gcc-lines", "validator"),
        ("cmd-ready", "readiness"),
    ] {
        let out = slipway(
            &[
                "plugins",
                "new",
                name,
                "--world",
                world,
                "--dir",
                work.path().to_str().unwrap(),
            ],
            None,
        );
        assert!(out.status.success());
        let crate_dir = work.path().join(name);
        if world == "ecosystem" {
            cargo(&crate_dir, &["test", "--quiet"]); // the SDK's fixture harness, natively
        }
        cargo(
            &crate_dir,
            &["build", "--quiet", "--target", "wasm32-wasip2", "--release"],
        );
        // `verify .` finds the build output through CARGO_TARGET_DIR, as cargo does.
        let target_dir = Path::new(TESTDATA_WASM)
            .ancestors()
            .nth(2)
            .unwrap()
            .to_path_buf();
        let verify = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(["plugins", "verify", "."])
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env(
                "SLIPWAY_STATE_DIR",
                PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-state"),
            )
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "verify {name}: {}{}",
            stdout(&verify),
            String::from_utf8_lossy(&verify.stderr)
        );
        assert!(
            stdout(&verify).contains(&format!("active     {name}")),
            "{}",
            stdout(&verify)
        );
        let install = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args([
                "plugins",
                "install",
                ".",
                "--dir",
                registry.to_str().unwrap(),
            ])
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env(
                "SLIPWAY_STATE_DIR",
                PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-state"),
            )
            .output()
            .unwrap();
        assert!(
            install.status.success(),
            "install {name}: {}",
            String::from_utf8_lossy(&install.stderr)
        );
        let manifest =
            std::fs::read_to_string(registry.join(name).join("0.1.0/plugin.toml")).unwrap();
        assert!(
            manifest.contains("sha256 = \""),
            "install writes the sha256: {manifest}"
        );
    }
    let out = slipway(&["plugins", "list", "--json"], Some(&registry));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for name in ["make-ci", "gcc-lines", "cmd-ready"] {
        let p = doc["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed"));
        assert_eq!(p["status"], "active", "{p}");
    }
    let again = slipway(
        &[
            "plugins",
            "new",
            "make-ci",
            "--dir",
            work.path().to_str().unwrap(),
        ],
        None,
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let bad = slipway(&["plugins", "new", "Bad_Name"], None);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a plugin name"));
}

/// A component with a custom section appended: the same code, another sha256.
fn rebuilt(wasm: &[u8]) -> Vec<u8> {
    let name = b"slipway-test-rebuild";
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    out.push(name.len() as u8 + 1); // size, < 128: one LEB128 byte
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out
}

#[test]
fn verify_calls_every_function_and_its_verdict_holds_until_the_wasm_changes() {
    use sha2::Digest;
    let sha = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
    // Its own state directory: the verdict must not reach other tests.
    let state = tempfile::tempdir().unwrap();
    let plugins = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(args)
            .env("SLIPWAY_STATE_DIR", state.path())
            .env("SLIPWAY_PLUGINS_DIR", plugins.path())
            .env_remove("SLIPWAY_CONFIG")
            .output()
            .unwrap();
        eprintln!(
            "$ slipway {}\n{}{}",
            args.join(" "),
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../plugins/testdata/hostile-readiness/plugin.toml"),
    )
    .unwrap();
    let install = |wasm: &[u8]| {
        install_raw(
            plugins.path(),
            "hostile-readiness",
            "0.1.0",
            &format!("sha256 = \"{}\"\n{manifest}", sha(wasm)),
            wasm,
        )
    };
    let broken = std::fs::read(Path::new(TESTDATA_WASM).join("hostile_readiness.wasm")).unwrap();
    install(&broken);

    // Before any verify it loads: probe and judge work, and nothing calls reset.
    let list = |out: &Output| -> serde_json::Value {
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "hostile-readiness")
            .unwrap()
            .clone()
    };
    assert_eq!(
        list(&run(&["plugins", "list", "--json"]))["status"],
        "active"
    );

    // verify calls reset too, and finds it traps.
    let out = run(&[
        "plugins",
        "verify",
        plugins.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let judged = list(&out);
    assert_eq!(judged["status"], "rejected");
    let reason = judged["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("reset: plugin hostile-readiness@0.1.0 crashed in `reset`"),
        "{reason}"
    );

    // The verdict holds: list (and so plan, run, serve) rejects that build.
    let listed = list(&run(&["plugins", "list", "--json"]));
    assert_eq!(listed["status"], "rejected");
    let reason = listed["reason"].as_str().unwrap();
    assert!(
        reason.contains("`slipway plugins verify` rejected this build: reset:"),
        "{reason}"
    );

    // Until the wasm changes.
    install(&rebuilt(&broken));
    assert_eq!(
        list(&run(&["plugins", "list", "--json"]))["status"],
        "active"
    );
}
