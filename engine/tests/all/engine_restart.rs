//! The engine killed (`kill -9`) in the middle of a job's step, then
//! started again on the same state directory.
//!
//! - The job's container kept running meanwhile: the new engine takes the
//!   attempt over and follows the same container from where the log
//!   stopped. Output written while no engine was there reaches the log
//!   once, and the job ends as attempt 1. A job with services keeps its
//!   whole pod: the service still answers on the pod's loopback.
//! - The job's container was removed meanwhile: the attempt ends at once
//!   (not when its 30 s lease would run out), with the reason, and the job
//!   runs again as attempt 2 in a new pod.
//!
//! Nothing is left behind in either case.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::serve::{
    BUSYBOX, dockerfile_repo, job, job_containers, job_log, post_json, start, submit_profiled,
    wait_until,
};

#[test]
fn a_job_whose_container_survived_is_followed_again_to_its_end() {
    let server = start(tempfile::tempdir().unwrap());
    let repo = dockerfile_repo(&format!("FROM {BUSYBOX}\n"));
    // The log shows each step's command too: the markers are computed, so
    // only the output contains them.
    let id = submit_profiled(
        &server,
        repo.path(),
        "adopted",
        &[
            "echo before-$((6*7)); sleep 2; echo during-$((6*7)); echo err-$((6*7)) >&2",
            "sleep 3; echo after-$((6*7))",
        ],
        json!({}),
    );
    wait_until("the first step runs", 120, || {
        job_log(&server, id).contains("before-42")
    });
    let before = job_containers(server.state(), id);
    assert!(!before.is_empty(), "the attempt has its pod");

    let state = server.crash();
    // Step 1 ends and step 2 begins while no engine is there.
    std::thread::sleep(Duration::from_secs(3));
    let server = start(state);
    assert!(
        server.log().contains("taking them over"),
        "{}",
        server.log()
    );
    wait_until("the adopted job ends", 60, || {
        job(&server, id)["state"] != "running"
    });
    let j = job(&server, id);
    let log = job_log(&server, id);
    assert_eq!(j["state"], "succeeded", "{j}\n{log}");
    assert_eq!(j["attempt"], 1, "the same attempt went on: {j}");
    for marker in [
        "stdout before-42",
        "stdout during-42",
        "stderr err-42",
        "stdout after-42",
    ] {
        assert_eq!(
            log.matches(marker).count(),
            1,
            "`{marker}` is in the log exactly once:\n{log}"
        );
    }
    assert!(log.contains("following the job container again"), "{log}");
    let steps = j["run"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{j}");
    assert!(steps.iter().all(|s| s["exit_code"] == 0), "{j}");
    let second = steps[1]["duration_ms"].as_u64().unwrap();
    assert!(
        (2500..10_000).contains(&second),
        "step 2's duration comes from the container's own clock: {second} ms"
    );
    let output = &log[steps[1]["log_start"].as_u64().unwrap() as usize
        ..steps[1]["log_end"].as_u64().unwrap() as usize];
    assert!(
        output.contains("after-42") && !output.contains("during-42"),
        "step 2's log range holds its own output: {output}"
    );
    wait_until("its containers are gone", 30, || {
        job_containers(server.state(), id).is_empty()
    });
}

#[test]
fn a_job_whose_container_is_gone_ends_at_once_and_runs_again() {
    let server = start(tempfile::tempdir().unwrap());
    let repo = dockerfile_repo(&format!("FROM {BUSYBOX}\n"));
    let id = submit_profiled(
        &server,
        repo.path(),
        "long",
        &["echo long-step-$((6*7)); sleep 300"],
        json!({}),
    );
    wait_until("the step runs", 120, || {
        job_log(&server, id).contains("long-step-42")
    });
    let before = job_containers(server.state(), id);
    let state = server.crash();
    assert!(!before.is_empty(), "the attempt has its pod");
    let removed = std::process::Command::new("docker")
        .args(["rm", "-f"])
        .args(&before)
        .output()
        .unwrap();
    assert!(removed.status.success(), "{removed:?}");

    let server = start(state);
    let restarted = Instant::now();
    wait_until("attempt 1 ends with the reason", 20, || {
        job(&server, id)["events"]
            .to_string()
            .contains("the engine restarted during attempt 1")
    });
    let events = job(&server, id)["events"].to_string();
    assert!(events.contains("its job container is gone"), "{events}");

    // It runs again, as attempt 2 in a new pod.
    wait_until("attempt 2 runs its step", 60, || {
        job_log(&server, id).matches("long-step-42").count() >= 2
    });
    assert!(
        restarted.elapsed() < Duration::from_secs(25),
        "attempt 2 started {:?} after the restart: it waited for the old lease",
        restarted.elapsed()
    );
    assert_eq!(job(&server, id)["attempt"], 2);
    let after = job_containers(server.state(), id);
    assert!(
        !after.is_empty() && before.iter().all(|c| !after.contains(c)),
        "attempt 2 runs in a new pod: before {before:?}, after {after:?}"
    );

    let (code, body) = post_json(&server, &format!("/api/v1/jobs/{id}/cancel"), &json!({}));
    assert!(code == 200 || code == 202, "{code} {body}");
    wait_until("the job is cancelled", 60, || {
        job(&server, id)["state"] == "cancelled"
    });
    wait_until("its containers are gone", 30, || {
        job_containers(server.state(), id).is_empty()
    });
}

#[test]
fn an_adopted_job_keeps_its_services_and_reaches_them() {
    let server = start(tempfile::tempdir().unwrap());
    let repo = dockerfile_repo(&format!("FROM {BUSYBOX}\n"));
    let services = json!({"services": [{
        "name": "web", "image": BUSYBOX, "ports": [8080],
        "command": ["sh", "-c", "mkdir -p /tmp/www && echo from-the-service > /tmp/www/data && exec httpd -f -p 8080 -h /tmp/www"],
        "readiness": {"plugin": "http", "options": {"path": "/data"}},
    }]});
    let id = submit_profiled(
        &server,
        repo.path(),
        "with-web",
        &[
            "echo before-$((6*7)); sleep 3; printf 'GET /data HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8080",
        ],
        services,
    );
    wait_until("the step runs", 120, || {
        job_log(&server, id).contains("before-42")
    });
    let before = job_containers(server.state(), id);
    assert_eq!(
        before.len(),
        3,
        "holder, service and job container: {before:?}"
    );
    let server = start(server.crash());
    wait_until("the adopted job ends", 60, || {
        job(&server, id)["state"] != "running"
    });
    let j = job(&server, id);
    let log = job_log(&server, id);
    assert_eq!(j["state"], "succeeded", "{j}\n{log}");
    assert_eq!(j["attempt"], 1, "{j}");
    assert!(
        log.contains("stdout from-the-service"),
        "the service kept answering on the pod's loopback: {log}"
    );
    wait_until("its containers are gone", 30, || {
        job_containers(server.state(), id).is_empty()
    });
}

/// An adopted job's end prunes its package-cache volumes as any job's end
/// does: the budget comes back from its container's label, the volumes
/// from its mounts.
#[test]
fn an_adopted_job_prunes_its_caches_past_their_budget() {
    let server = start(tempfile::tempdir().unwrap());
    // A Python repository: the python plan mounts a `pip` cache volume.
    let repo = dockerfile_repo(
        "FROM python:3.11-slim\nRUN useradd --uid 1000 --create-home --home-dir /home/app app\nWORKDIR /workspace\n",
    );
    std::fs::write(
        repo.path().join("pyproject.toml"),
        "[project]\nname = \"adopted-cache\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    let (code, body) = post_json(
        &server,
        "/api/v1/profiles",
        &json!({"name": "fills-cache", "cache": {"size_mb": 1}, "validation": {"fast": [
            "dd if=/dev/zero of=/home/app/.cache/pip/blob bs=1M count=2 && echo filled-$((6*7)); sleep 3"
        ]}}),
    );
    assert_eq!(code, 201, "{body}");
    let (code, body) = post_json(
        &server,
        "/api/v1/jobs",
        &json!({"repository": repo.path(), "commit": "HEAD", "profile": "fills-cache"}),
    );
    assert_eq!(code, 201, "{body}");
    let id = body["id"].as_u64().unwrap();
    wait_until("the cache is filled", 120, || {
        job_log(&server, id).contains("filled-42")
    });
    let log = job_log(&server, id);
    let volume = log
        .split_whitespace()
        .find(|w| w.starts_with("slipway-cache-pip-"))
        .unwrap_or_else(|| panic!("the job mounts a pip cache: {log}"))
        .to_owned();
    let server = start(server.crash());
    wait_until("the adopted job ends", 60, || {
        job(&server, id)["state"] != "running"
    });
    let log = job_log(&server, id);
    assert_eq!(job(&server, id)["state"], "succeeded", "{log}");
    assert!(
        log.contains(&format!(
            "cache volume {volume} grew past its budget: removed"
        )),
        "{log}"
    );
    let listed = std::process::Command::new("docker")
        .args(["volume", "ls", "-q", "--filter", &format!("name={volume}")])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains(&volume),
        "{volume} was removed"
    );
}
