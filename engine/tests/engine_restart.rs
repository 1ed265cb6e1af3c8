//! The engine killed (`kill -9`) in the middle of a job's step, then
//! started again on the same state directory: the attempt's containers are
//! removed, the attempt ends at once (not when its 30 s lease would run out)
//! and the job runs again as a new attempt; nothing is left behind.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::serve::{BUSYBOX, containers_labelled, job, job_log, post_json, start, wait_until};

fn containers_of(id: u64) -> Vec<String> {
    containers_labelled(&format!("io.slipway.job={id}"))
}

#[test]
fn a_job_running_when_the_engine_is_killed_is_cleaned_and_runs_again() {
    // The log shows the step's command too: the marker is only in its output.
    let server = start(tempfile::tempdir().unwrap());
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join("Dockerfile"), format!("FROM {BUSYBOX}\n")).unwrap();
    let (code, body) = post_json(
        &server,
        "/api/v1/profiles",
        &json!({"name": "long", "validation": {"fast": ["echo long-step-$((6*7)); sleep 300"]}}),
    );
    assert_eq!(code, 201, "{body}");
    let (code, submitted) = post_json(
        &server,
        "/api/v1/jobs",
        &json!({"repository": repo.path(), "commit": "HEAD", "profile": "long"}),
    );
    assert_eq!(code, 201, "{submitted}");
    let id = submitted["id"].as_u64().unwrap();
    wait_until("the step runs", 120, || {
        job_log(&server, id).contains("long-step-42")
    });
    let before = containers_of(id);
    assert!(!before.is_empty(), "the attempt has its pod");

    let server = start(server.crash());
    let restarted = Instant::now();
    // The attempt ended with the restart, with the reason, well before its
    // lease would have run out.
    let j = job(&server, id);
    let events = j["events"].to_string();
    assert!(
        events.contains("the engine restarted during attempt 1"),
        "{j}"
    );
    assert!(
        ["retrying", "running"].contains(&j["state"].as_str().unwrap()),
        "{j}"
    );
    let after = containers_of(id);
    assert!(
        before.iter().all(|c| !after.contains(c)),
        "attempt 1's containers were removed at start: before {before:?}, after {after:?}"
    );
    assert!(
        server.log().contains("go back to the queue"),
        "{}",
        server.log()
    );

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

    let (code, body) = post_json(&server, &format!("/api/v1/jobs/{id}/cancel"), &json!({}));
    assert!(code == 200 || code == 202, "{code} {body}");
    wait_until("the job is cancelled", 60, || {
        job(&server, id)["state"] == "cancelled"
    });
    wait_until("its containers are gone", 30, || {
        containers_of(id).is_empty()
    });
}
