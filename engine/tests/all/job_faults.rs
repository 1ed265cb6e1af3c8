//! Jobs that misbehave, through a real `slipway serve` and real Docker: a
//! step that prints 100 MB, one that forks without end, one that sleeps
//! past its timeout, and a cancel in the middle of an image build. Each
//! ends as it should, the engine carries on, and nothing is left behind.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::serve::{
    BUSYBOX, Server, containers_labelled, dockerfile_repo, get, job, job_log, post_json,
    start_with, submit_profiled,
};

fn containers_of(id: u64) -> usize {
    containers_labelled(&format!("io.slipway.job={id}")).len()
}

fn wait_final(server: &Server, id: u64, seconds: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let j = job(server, id);
        if ["succeeded", "failed", "cancelled", "timed_out", "dead"]
            .contains(&j["state"].as_str().unwrap_or(""))
        {
            return j;
        }
        assert!(Instant::now() < deadline, "job {id} did not finish: {j}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// When the job entered `to` (from its events), in ms.
fn entered(j: &Value, to: &str) -> u64 {
    j["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["to"] == to)
        .and_then(|e| e["at_ms"].as_u64())
        .unwrap_or_else(|| panic!("never {to}: {j}"))
}

#[test]
fn misbehaving_steps_end_as_they_should_and_leave_nothing() {
    let server = start_with(
        tempfile::tempdir().unwrap(),
        &[
            ("SLIPWAY_RUNNER__LOG_CAP_MB", "1"),
            ("SLIPWAY_RUNNER__STOP_GRACE_S", "2"),
            // Docker rotates the 100 MB step's log under the reader.
            ("SLIPWAY_RUNNER__OUTPUT_KEPT_MB", "8"),
        ],
    );
    let busybox = dockerfile_repo(&format!("FROM {BUSYBOX}\n"));

    // 100 MB of output: the log stops at its cap with a marker; the step
    // still runs to its end (Docker keeps 8 MB of it: rotated under the
    // reader, the end marker may be lost, and the exit code tells).
    let noisy = submit_profiled(
        &server,
        busybox.path(),
        "noisy",
        &["yes 0123456789abcdef | head -c 100000000; echo exit-$((40+2)) >&2"],
        json!({}),
    );
    let j = wait_final(&server, noisy, 180);
    assert_eq!(j["state"], "succeeded", "{j}");
    let tail = get(&server, &format!("/api/v1/jobs/{noisy}/logs?tail=20")).1;
    assert!(
        tail.contains("[log truncated: it reached its cap of 1048576 bytes"),
        "{tail}"
    );
    let size = std::fs::metadata(server.state().join(format!("logs/{noisy}.log")))
        .unwrap()
        .len();
    assert!(size < 1_200_000, "the log is {size} bytes");
    assert_eq!(j["run"]["steps"][0]["exit_code"], 0, "{j}");

    // A fork bomb meets the pids limit: a fork fails, the shell gives up
    // and the step fails; its 30-odd sleepers go with the pod.
    let bomb = submit_profiled(
        &server,
        busybox.path(),
        "bomb",
        &["i=0; while [ $i -lt 500 ]; do sleep 300 & i=$((i+1)); done; wait"],
        json!({"resources": {"pids": 32}, "timeout_s": 8}),
    );
    let j = wait_final(&server, bomb, 120);
    assert_eq!(j["state"], "failed", "{j}");
    assert!(j["reason"].as_str().unwrap().contains("exited with"), "{j}");
    let log = job_log(&server, bomb);
    assert!(
        log.contains("can't fork") || log.contains("Resource temporarily unavailable"),
        "the pids limit stopped the forks: {}",
        &log[log.len().saturating_sub(3000)..]
    );

    // Past its memory limit: the kernel's OOM killer ends the step (sort
    // holds its one 100 MB line in memory), and the job says so.
    let hog = submit_profiled(
        &server,
        busybox.path(),
        "hog",
        &["head -c 100000000 /dev/zero | tr '\\0' a | sort >/dev/null && echo sorted"],
        json!({"resources": {"memory_mb": 64}}),
    );
    let j = wait_final(&server, hog, 120);
    assert_eq!(j["state"], "failed", "{j}");
    let reason = j["reason"].as_str().unwrap();
    assert!(
        reason.contains("out of memory") && reason.contains("64 MiB"),
        "the reason names the memory limit: {reason}"
    );
    assert!(!job_log(&server, hog).contains("stdout sorted"));

    // `sleep 3600` with a 3 s timeout: ended within the grace period
    // (2 s) plus 2 s of the timeout firing.
    let sleeper = submit_profiled(
        &server,
        busybox.path(),
        "sleeper",
        &["sleep 3600"],
        json!({"timeout_s": 3}),
    );
    let j = wait_final(&server, sleeper, 120);
    assert_eq!(j["state"], "timed_out", "{j}");
    let ran_for = entered(&j, "timed_out") - entered(&j, "running");
    assert!(
        ran_for <= (3 + 2 + 2) * 1000,
        "the attempt lasted {ran_for} ms, for a 3 s timeout and a 2 s grace"
    );

    // Cancel during an image build: the build stops, the job is cancelled.
    let slow_build = dockerfile_repo(&format!("FROM {BUSYBOX}\nRUN sleep 120\n"));
    let building = submit_profiled(&server, slow_build.path(), "building", &["true"], json!({}));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !job_log(&server, building).contains("RUN sleep 120") {
        assert!(
            Instant::now() < deadline,
            "the build never started: {}",
            job_log(&server, building)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let asked = Instant::now();
    let (code, body) = post_json(
        &server,
        &format!("/api/v1/jobs/{building}/cancel"),
        &json!({}),
    );
    assert!(code == 200 || code == 202, "{code} {body}");
    let j = wait_final(&server, building, 30);
    assert_eq!(j["state"], "cancelled", "{j}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "cancel took {:?} during the build",
        asked.elapsed()
    );
    assert!(
        job_log(&server, building).contains("image build stopped"),
        "{}",
        job_log(&server, building)
    );

    // The engine carries on, and nothing of these jobs is left.
    assert_eq!(get(&server, "/readyz").0, 200);
    // Removal follows the final state by a moment (the record is written
    // first); a leak would outlast the wait.
    for id in [noisy, bomb, hog, sleeper, building] {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while containers_of(id) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(containers_of(id), 0, "job {id} left containers");
    }
}
