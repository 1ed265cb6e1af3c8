//! A misconfigured host as users meet it: `slipway serve` and `slipway
//! doctor` refuse with what is wrong and how to fix it. Runs as root (as CI
//! does): the read-only state directory is a read-only bind mount, and the
//! unpermitted socket is tested as the `nobody` user.

use std::process::{Command, Output};

use crate::support::serve::text;

fn slipway(env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(args)
        .env_remove("SLIPWAY_CONFIG")
        .env_remove("SLIPWAY_TOKEN")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn serve_refuses_a_taken_port_a_missing_token_file_and_a_read_only_state_directory() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap();

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let out = slipway(
        &[("SLIPWAY_STATE_DIR", dir), ("SLIPWAY_LISTEN", &address)],
        &["serve"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "listening on {address} (hint: set SLIPWAY_LISTEN)"
        )) && text(&out).contains("Address already in use"),
        "{}",
        text(&out)
    );

    let out = slipway(
        &[
            ("SLIPWAY_STATE_DIR", dir),
            ("SLIPWAY_LISTEN", "127.0.0.1:0"),
            ("SLIPWAY_TOKEN_FILE", "/nonexistent/slipway-token"),
        ],
        &["serve"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("reading the token file /nonexistent/slipway-token"),
        "{}",
        text(&out)
    );

    let ro = state.path().join("read-only");
    std::fs::create_dir(&ro).unwrap();
    let ro_path = ro.to_str().unwrap();
    for args in [
        vec!["--bind", ro_path, ro_path],
        vec!["-o", "remount,ro,bind", ro_path],
    ] {
        let status = Command::new("mount").args(&args).status().unwrap();
        assert!(status.success(), "mount {args:?} (these tests run as root)");
    }
    let out = slipway(
        &[
            ("SLIPWAY_STATE_DIR", ro_path),
            ("SLIPWAY_LISTEN", "127.0.0.1:0"),
        ],
        &["serve"],
    );
    let _ = Command::new("umount").arg(ro_path).status();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("Read-only file system")
            && text(&out).contains("set SLIPWAY_STATE_DIR"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_socket_this_user_may_not_use_is_named_with_the_fix() {
    let state = tempfile::tempdir().unwrap();
    let mut perms = std::fs::metadata(state.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o777);
    std::fs::set_permissions(state.path(), perms).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_slipway"))
        .args(["doctor", "--json"])
        .env("SLIPWAY_STATE_DIR", state.path())
        .env("DOCKER_HOST", "unix:///var/run/docker.sock")
        .env_remove("SLIPWAY_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let engine = checks
        .iter()
        .find(|c| c["check"] == "container engine")
        .unwrap();
    assert_eq!(engine["status"], "fail", "{engine}");
    assert!(
        engine["detail"]
            .as_str()
            .unwrap()
            .contains("permission denied: the socket is owned by"),
        "{engine}"
    );
    assert!(
        engine["fix"]
            .as_str()
            .unwrap()
            .contains("usermod -aG docker"),
        "{engine}"
    );
}

/// `slipway` run as `uid`, with a state directory anyone may write.
fn slipway_as(uid: u32, state: &std::path::Path, args: &[&str]) -> Output {
    let mut perms = std::fs::metadata(state).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o777);
    std::fs::set_permissions(state, perms).unwrap();
    Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg(env!("CARGO_BIN_EXE_slipway"))
        .args(args)
        .env("SLIPWAY_STATE_DIR", state)
        .env("SLIPWAY_LISTEN", "127.0.0.1:0")
        .env("SLIPWAY_TOKEN", "t")
        .env_remove("SLIPWAY_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn an_engine_that_cannot_hand_checkouts_to_the_job_user_is_refused_at_start() {
    // uid 4242 may not chown to the job user 1000: every job would fail.
    let state = tempfile::tempdir().unwrap();
    let out = slipway_as(4242, state.path(), &["serve"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(
            "the engine runs as uid 4242 and cannot hand checkouts to the job user 1000:1000"
        ) && text(&out).contains("run it as root or as uid 1000"),
        "{}",
        text(&out)
    );
    let leftovers: Vec<_> = std::fs::read_dir(state.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".hand-over-check")
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "the probe is cleaned up: {leftovers:?}"
    );

    let out = slipway_as(4242, state.path(), &["doctor", "--json"]);
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let job_user = checks.iter().find(|c| c["check"] == "job user").unwrap();
    assert_eq!(job_user["status"], "fail", "{job_user}");
    assert!(
        job_user["fix"].as_str().unwrap().contains("uid 1000"),
        "{job_user}"
    );

    // Running as the job user itself is fine.
    let state = tempfile::tempdir().unwrap();
    let out = slipway_as(1000, state.path(), &["doctor", "--json"]);
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let job_user = checks.iter().find(|c| c["check"] == "job user").unwrap();
    assert_eq!(job_user["status"], "ok", "{job_user}");
}
