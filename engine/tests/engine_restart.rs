//! The engine killed (`kill -9`) in the middle of a job's step, then
//! started again on the same state directory: the attempt's containers are
//! removed, the attempt ends at once (not when its 30 s lease would run out)
//! and the job runs again as a new attempt; nothing is left behind.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::query_parameters::ListContainersOptionsBuilder;
use serde_json::{Value, json};
use support::serve::{BUSYBOX, Server, get, post_json, start};

fn job(server: &Server, id: u64) -> Value {
    serde_json::from_str(&get(server, &format!("/api/v1/jobs/{id}")).1).unwrap()
}

fn log_of(server: &Server, id: u64) -> String {
    get(server, &format!("/api/v1/jobs/{id}/logs")).1
}

/// Ids of the containers labelled for job `id`.
fn containers_of(id: u64) -> Vec<String> {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let docker = slipway::runner::connect().await.expect("Docker");
        let filters = HashMap::from([("label".to_owned(), vec![format!("io.slipway.job={id}")])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let mut ids: Vec<String> = docker
            .list_containers(Some(options))
            .await
            .unwrap()
            .into_iter()
            .filter_map(|c| c.id)
            .collect();
        ids.sort();
        ids
    })
}

fn wait_until(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
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
        log_of(&server, id).contains("long-step-42")
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
        log_of(&server, id).matches("long-step-42").count() >= 2
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
