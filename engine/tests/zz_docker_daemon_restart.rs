//! The Docker daemon restarted in the middle of a job's step. It stops every
//! container, so this test has its own binary, named to run after the other
//! Docker tests (cargo runs test binaries one at a time, by name), and it
//! starts dockerd again with the flags `scripts/setup.sh` uses.
//!
//! The job ends as an infrastructure failure that names the reason (not as
//! a red step), its stopped containers are removed once the daemon is back,
//! and the engine runs the next job as if nothing happened.

mod support;

use std::process::Command;

use serde_json::json;
use support::serve::{BUSYBOX, containers_labelled, get, job, post_json, start, wait_until};

fn containers_of(id: u64) -> usize {
    containers_labelled(&format!("io.slipway.job={id}")).len()
}

fn docker_answers() -> bool {
    Command::new("docker")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Stop dockerd (SIGTERM: it stops its containers) and start it again,
/// detached from this test, as `scripts/setup.sh` does.
fn restart_dockerd() {
    assert!(
        Command::new("pkill")
            .args(["-TERM", "-x", "dockerd"])
            .status()
            .unwrap()
            .success(),
        "no dockerd to restart: these tests need the daemon `scripts/setup.sh` starts"
    );
    wait_until("dockerd exits", 60, || {
        !Command::new("pgrep")
            .args(["-x", "dockerd"])
            .status()
            .unwrap()
            .success()
    });
    let _ = std::fs::remove_file("/var/run/docker.pid");
    let started = Command::new("sh")
        .args([
            "-c",
            "setsid nohup dockerd --bridge=none --iptables=false --ip6tables=false >>/var/log/slipway-dockerd.log 2>&1 < /dev/null &",
        ])
        .status()
        .unwrap();
    assert!(started.success());
    wait_until("dockerd answers again", 60, docker_answers);
}

#[test]
fn a_daemon_restart_mid_step_is_an_infrastructure_failure_with_nothing_left_behind() {
    assert!(
        docker_answers(),
        "these tests need Docker (bash scripts/setup.sh)"
    );
    let server = start(tempfile::tempdir().unwrap());
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join("Dockerfile"), format!("FROM {BUSYBOX}\n")).unwrap();
    for (name, step) in [
        ("long", "echo started-$((6*7)); sleep 300"),
        ("quick", "echo fine"),
    ] {
        let (code, body) = post_json(
            &server,
            "/api/v1/profiles",
            &json!({"name": name, "validation": {"fast": [step]}}),
        );
        assert_eq!(code, 201, "{body}");
    }
    let (code, body) = post_json(
        &server,
        "/api/v1/jobs",
        &json!({"repository": repo.path(), "commit": "HEAD", "profile": "long", "max_attempts": 1}),
    );
    assert_eq!(code, 201, "{body}");
    let id = body["id"].as_u64().unwrap();
    wait_until("the step runs", 120, || {
        get(&server, &format!("/api/v1/jobs/{id}/logs"))
            .1
            .contains("started-42")
    });

    restart_dockerd();

    wait_until("the job ends", 120, || {
        job(&server, id)["state"]
            .as_str()
            .is_some_and(|s| s == "dead" || s == "failed")
    });
    let j = job(&server, id);
    assert_eq!(
        j["state"], "dead",
        "an infrastructure failure (retried until attempts run out), not a red step: {j}"
    );
    let reason = j["reason"].as_str().unwrap();
    eprintln!("the job's reason: {reason}");
    assert!(
        reason.contains("stopped from outside") || reason.contains("does not answer"),
        "the reason names what happened: {reason}"
    );
    wait_until("the job's stopped containers are removed", 90, || {
        containers_of(id) == 0
    });

    // The engine carries on with the daemon that came back.
    let (code, body) = post_json(
        &server,
        "/api/v1/jobs",
        &json!({"repository": repo.path(), "commit": "HEAD", "profile": "quick"}),
    );
    assert_eq!(code, 201, "{body}");
    let next = body["id"].as_u64().unwrap();
    wait_until("the next job ends", 120, || {
        job(&server, next)["state"]
            .as_str()
            .is_some_and(|s| ["succeeded", "failed", "dead", "cancelled", "timed_out"].contains(&s))
    });
    assert_eq!(
        job(&server, next)["state"],
        "succeeded",
        "{}",
        job(&server, next)
    );
    assert_eq!(containers_of(next), 0);
}
