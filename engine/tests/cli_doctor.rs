//! `slipway doctor` as users run it, against this machine's Docker.

use std::process::Command;

use serde_json::Value;

fn doctor(state: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, Vec<Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["doctor", "--json"])
        .env("SLIPWAY_STATE_DIR", state)
        .env_remove("SLIPWAY_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let checks: Vec<Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), checks)
}

fn find<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {checks:?}"))
}

#[test]
fn a_healthy_host_passes_and_each_problem_comes_with_its_fix() {
    let state = tempfile::tempdir().unwrap();
    let (code, checks) = doctor(state.path(), &[]);
    assert_eq!(code, Some(0), "{checks:#?}");
    for name in [
        "container engine",
        "resource limits",
        "holder image",
        "state directory",
        "plugins",
    ] {
        assert_eq!(find(&checks, name)["status"], "ok", "{name}: {checks:#?}");
    }
    assert!(
        find(&checks, "container engine")["detail"]
            .as_str()
            .unwrap()
            .contains("API 1.")
    );

    // A state directory that cannot be one, and a holder image that is not there.
    let file = state.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let (code, checks) = doctor(
        &file,
        &[(
            "SLIPWAY_RUNNER__HOLDER_IMAGE",
            "slipway-test/no-such-holder:1",
        )],
    );
    assert_eq!(code, Some(1), "{checks:#?}");
    let holder = find(&checks, "holder image");
    assert_eq!(holder["status"], "fail");
    assert!(
        holder["fix"]
            .as_str()
            .unwrap()
            .contains("scripts/images.sh"),
        "{holder}"
    );
    let dir = find(&checks, "state directory");
    assert_eq!(dir["status"], "fail");
    assert!(
        dir["fix"].as_str().unwrap().contains("SLIPWAY_STATE_DIR"),
        "{dir}"
    );
}
