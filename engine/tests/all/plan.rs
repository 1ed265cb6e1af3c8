//! `slipway plan` end to end: the real binary, the bundled (real, compiled)
//! ecosystem plugins, example repos from `examples/` and fixture repos from
//! `tests/fixtures/plan/`. Plans and error texts are insta snapshots, reviewed
//! like code (`cargo insta review`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn slipway_plan(dir: &Path, json: bool) -> Output {
    let state = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plan-state");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.arg("plan")
        .arg(dir)
        .env("SLIPWAY_STATE_DIR", state)
        .env_remove("SLIPWAY_PLUGINS_DIR")
        .env_remove("SLIPWAY_CONFIG");
    if json {
        cmd.arg("--json");
    }
    cmd.output().expect("run slipway plan")
}

/// Plugin ids end in the wasm's sha256, which changes with every plugin
/// build; snapshots keep `name@version`.
fn without_hashes(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            if let Some((id, hash)) = s.rsplit_once('@')
                && hash.len() == 64
                && hash.bytes().all(|b| b.is_ascii_hexdigit())
            {
                *s = format!("{id}@<sha256>");
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(without_hashes),
        serde_json::Value::Object(map) => map.values_mut().for_each(without_hashes),
        _ => {}
    }
}

fn plan_json(dir: &Path) -> String {
    let out = slipway_plan(dir, true);
    assert!(
        out.status.success(),
        "plan {} failed ({:?}): {}",
        dir.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut value: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("plan --json prints JSON");
    without_hashes(&mut value);
    serde_json::to_string_pretty(&value).unwrap()
}

fn failure(dir: &Path) -> (Option<i32>, String) {
    let out = slipway_plan(dir, false);
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&repo_root().display().to_string(), "<repo>");
    (out.status.code(), stderr)
}

#[test]
fn example_repos_of_every_ecosystem() {
    for (example, ecosystem) in [
        ("node-app", "node"),
        ("python-app", "python"),
        ("ruby-app", "ruby"),
        ("go-app", "go"),
        ("rust-app", "rust"),
        ("rust-lib", "rust"),
        ("dockerfile-app", "dockerfile"),
    ] {
        let json = plan_json(&repo_root().join("examples").join(example));
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["ecosystem"], ecosystem, "{example}");
        insta::assert_snapshot!(format!("example-{example}"), json);
    }
}

#[test]
fn fixture_repos() {
    for fixture in [
        "nvmrc-vs-engines",
        "python-with-asset-package-json",
        "monorepo",
        "dockerfile-with-node",
        "mise-pin",
    ] {
        let json = plan_json(&repo_root().join("engine/tests/fixtures/plan").join(fixture));
        insta::assert_snapshot!(format!("fixture-{fixture}"), json);
    }
}

#[test]
fn human_output_of_the_node_example() {
    let out = slipway_plan(&repo_root().join("examples/node-app"), false);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    insta::assert_snapshot!("human-node-app", text);
}

#[test]
fn nothing_detected_exits_2_listing_what_was_looked_for() {
    let empty = tempfile::tempdir().unwrap();
    let (code, stderr) = failure(empty.path());
    assert_eq!(code, Some(2));
    assert!(stderr.contains("no ecosystem detected"), "{stderr}");
    for ecosystem in ["dockerfile", "go", "node", "python", "ruby", "rust"] {
        assert!(
            stderr.contains(ecosystem),
            "{ecosystem} missing from: {stderr}"
        );
    }
    let (code, stderr) =
        failure(&repo_root().join("engine/tests/fixtures/plan/pyproject-tool-only"));
    assert_eq!(
        code,
        Some(2),
        "a pyproject.toml with only tool configuration is not a Python project: {stderr}"
    );
}

#[test]
fn malformed_manifests_exit_2_naming_the_file_and_line() {
    for (fixture, expected) in [
        ("malformed-package-json", "package.json:5"),
        ("malformed-pyproject", "pyproject.toml:3"),
        ("malformed-go-mod", "go.mod:3"),
        ("malformed-cargo-toml", "Cargo.toml:3"),
    ] {
        let (code, stderr) = failure(&repo_root().join("engine/tests/fixtures/plan").join(fixture));
        assert_eq!(code, Some(2), "{fixture}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{fixture}: expected `{expected}` in: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn oversized_symlinked_and_binary_hint_files_are_named_not_fatal() {
    // A hint file of several megabytes.
    let huge = tempfile::tempdir().unwrap();
    std::fs::write(huge.path().join("package.json"), "{\"name\": \"x\"}").unwrap();
    std::fs::write(huge.path().join(".nvmrc"), "1".repeat(5 * 1024 * 1024)).unwrap();
    // A hint file that is a symlink leaving the repository.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret-version"), "3.12\n").unwrap();
    let linked = tempfile::tempdir().unwrap();
    std::fs::write(linked.path().join("requirements.txt"), "flask\n").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret-version"),
        linked.path().join(".python-version"),
    )
    .unwrap();
    // Binary garbage in a lockfile.
    let garbage = tempfile::tempdir().unwrap();
    std::fs::write(
        garbage.path().join("Gemfile"),
        "source \"https://rubygems.org\"\ngem \"rake\"\n",
    )
    .unwrap();
    std::fs::write(
        garbage.path().join("Gemfile.lock"),
        [0xff, 0xfe, 0x00, 0x13, 0x37, 0x80],
    )
    .unwrap();

    for (dir, file) in [
        (huge.path(), ".nvmrc"),
        (linked.path(), ".python-version"),
        (garbage.path(), "Gemfile.lock"),
    ] {
        let out = slipway_plan(dir, true);
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(2) => {
                assert!(stderr.contains(file), "error must name {file}: {stderr}");
                assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
            }
            Some(0) => {
                let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                let notes = plan["notes"].to_string();
                assert!(
                    notes.contains(file),
                    "a plan that ignores {file} must say so: {notes}"
                );
            }
            other => panic!("{file}: exit {other:?}: {stderr}"),
        }
        assert!(
            !stderr.contains("crashed") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}

#[test]
fn not_a_directory_exits_2() {
    let (code, stderr) = failure(Path::new("/nonexistent/repo"));
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("/nonexistent/repo is not a directory"),
        "{stderr}"
    );
}
