//! Every bundled example, as a new user runs it: `slipway run
//! examples/<name> --tier full` with the real binary, the Docker runner and
//! the local stand-in images (`scripts/images.sh --all`). Each must pass, and
//! its log must show that its tests really ran. Needs Docker; fails loudly
//! without it.
//!
//! Generated images fetch dependencies from package registries (PyPI,
//! crates.io) at build time, trusting the host's CA bundle through
//! `SLIPWAY_CA_BUNDLE`, as the README tells users behind a TLS-inspecting
//! proxy to do.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::serve::text;

/// What each example's full tier must show, beyond exit code 0.
/// `services-app` needs its profile and is run by `cli_serve.rs`.
pub(crate) const EXPECTED: &[(&str, &[&str])] = &[
    ("python-app", &["passed"]),
    ("node-app", &["# pass 1", "# fail 0"]),
    (
        "go-app",
        &[
            r#""Action":"pass","Package":"example.com/slipway/goapp","Test":"TestAdd""#,
            r#""Action":"pass","Package":"example.com/slipway/goapp","Test":"TestScale""#,
        ],
    ),
    ("rust-app", &["test result: ok."]),
    ("rust-lib", &["test result: ok.", "resolved at image build"]),
    ("ruby-app", &["0 failures, 0 errors"]),
    ("dockerfile-app", &["passed"]),
];

/// Examples that are not repositories to run as a job (`compose-app` is
/// deployed in `deployments.rs`).
const NOT_RUN_HERE: &[&str] = &["compose-app", "deploy", "plugin-template", "services-app"];

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .canonicalize()
        .unwrap()
}

fn run_full(name: &str) -> String {
    let bundle = "/etc/ssl/certs/ca-certificates.crt";
    assert!(
        Path::new(bundle).is_file(),
        "{bundle} is missing (Debian's ca-certificates; scripts/setup.sh installs it)"
    );
    let state = tempfile::tempdir().unwrap();
    let dir = examples().join(name);
    let plan = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["plan", dir.to_str().unwrap()])
        .env_remove("SLIPWAY_CONFIG")
        .env_remove("SLIPWAY_PLUGINS_DIR")
        .output()
        .unwrap();
    assert_eq!(plan.status.code(), Some(0), "plan {name}: {}", text(&plan));
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["run", dir.to_str().unwrap(), "--tier", "full"])
        .env("SLIPWAY_STATE_DIR", state.path())
        .env("SLIPWAY_CA_BUNDLE", bundle)
        .env_remove("SLIPWAY_CONFIG")
        .env_remove("SLIPWAY_TOKEN")
        .env_remove("SLIPWAY_PLUGINS_DIR")
        .output()
        .unwrap();
    let t = format!("{}{}", text(&plan), text(&out));
    assert_eq!(out.status.code(), Some(0), "{name} --tier full:\n{t}");
    assert!(t.contains(" succeeded in "), "{name}:\n{t}");
    let (_, wanted) = EXPECTED.iter().find(|(n, _)| *n == name).unwrap();
    for w in *wanted {
        assert!(t.contains(w), "{name}: missing `{w}` in:\n{t}");
    }
    t
}

#[test]
fn every_example_is_run_by_the_suite() {
    for entry in std::fs::read_dir(examples()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            NOT_RUN_HERE.contains(&name.as_str()) || EXPECTED.iter().any(|(n, _)| *n == name),
            "examples/{name} has no full-tier test: add it to EXPECTED"
        );
    }
}

#[test]
fn python_app() {
    run_full("python-app");
}

#[test]
fn node_app_without_dependencies() {
    run_full("node-app");
}

#[test]
fn go_app_runs_go_test_with_a_vendored_dependency() {
    run_full("go-app");
}

#[test]
fn rust_app() {
    run_full("rust-app");
}

#[test]
fn rust_lib_without_a_lockfile() {
    run_full("rust-lib");
}

#[test]
fn ruby_app_offline() {
    run_full("ruby-app");
}

#[test]
fn dockerfile_app_gets_its_test_tools_layered_on_its_own_image() {
    let t = run_full("dockerfile-app");
    assert!(t.contains("dependencies layered on"), "{t}");
}
