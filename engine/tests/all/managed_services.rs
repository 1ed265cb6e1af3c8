//! Managed services as users run them: the real `slipway serve`, its HTTP
//! API and `slipway services` commands, the supervisor against the real
//! Docker engine. Needs Docker; fails loudly without it.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::query_parameters::ListContainersOptionsBuilder;
use serde_json::Value;

use crate::support::serve::{BUSYBOX, Server, cli, get, post_json, start, text};

fn status(server: &Server, name: &str) -> Value {
    let (code, body) = get(server, &format!("/api/v1/services/{name}"));
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["status"].clone()
}

/// Poll `name`'s status until `pred` holds; the last status otherwise.
fn wait_for(server: &Server, name: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = status(server, name);
        if pred(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn declare(server: &Server, dir: &Path, name: &str, toml: &str) {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!("name = \"{name}\"\nimage = \"{BUSYBOX}\"\n{toml}"),
    )
    .unwrap();
    let out = cli(server, &["services", "add", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// Containers of managed service `name` (any engine), with their state.
fn containers(name: &str) -> Vec<(String, String, String)> {
    rt().block_on(async {
        let docker = slipway::runtime::docker::connect()
            .await
            .expect("Docker")
            .client()
            .clone();
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![
                format!("io.slipway.service={name}"),
                "io.slipway.role=managed-service".to_owned(),
            ],
        )]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        docker
            .list_containers(Some(options))
            .await
            .unwrap()
            .into_iter()
            .map(|c| {
                let id = c.id.unwrap_or_default();
                let started = docker_started_at(&docker, &id);
                (
                    id,
                    c.state.map(|s| s.to_string()).unwrap_or_default(),
                    started,
                )
            })
            .collect()
    })
}

fn docker_started_at(_docker: &bollard::Docker, id: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "--format", "{{.State.StartedAt}}", id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn docker_kill(id: &str) {
    let out = Command::new("docker").args(["kill", id]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn killed_services_restart_crash_loops_stop_at_their_budget_and_hung_liveness_restarts() {
    let server = start(tempfile::tempdir().unwrap());
    let files = tempfile::tempdir().unwrap();
    let unique = format!("t{}", std::process::id());
    let web = format!("web-{unique}");
    let crash = format!("crash-{unique}");
    let hung = format!("hung-{unique}");
    declare(
        &server,
        files.path(),
        &web,
        "command = [\"sh\", \"-c\", \"exec httpd -f -p 8080 -h /tmp\"]\nports = [8080]\n\
         [restart]\nbackoff_ms = 100\n",
    );
    declare(
        &server,
        files.path(),
        &crash,
        "command = [\"sh\", \"-c\", \"echo starting; sleep 0.3; exit 3\"]\n\
         [restart]\nmax_restarts = 3\nwindow_s = 60\nbackoff_ms = 100\nmax_backoff_ms = 400\n",
    );
    declare(
        &server,
        files.path(),
        &hung,
        "command = [\"sh\", \"-c\", \"exec sleep 600\"]\n\
         [liveness]\nplugin = \"exec\"\noptions = { command = \"sleep 100\", timeout_ms = \"300\", period_ms = \"200\", failure_threshold = \"2\" }\n\
         [restart]\nbackoff_ms = 100\n",
    );

    // Ready, then killed from outside: restarted at once, counted.
    let ready = wait_for(&server, &web, 30, |s| s["state"] == "ready");
    assert_eq!(ready["state"], "ready", "{ready}");
    let first = ready["container"].as_str().unwrap().to_owned();
    docker_kill(&first);
    let killed_at = Instant::now();
    let back = wait_for(&server, &web, 20, |s| {
        s["state"] == "ready" && s["restarts"] == 1
    });
    assert_eq!(
        (back["state"].as_str(), back["restarts"].as_u64()),
        (Some("ready"), Some(1)),
        "{back}"
    );
    eprintln!(
        "killed → ready again in {:.2} s",
        killed_at.elapsed().as_secs_f64()
    );
    let logs = text(&cli(&server, &["services", "logs", &web, "--tail", "50"]));
    assert!(
        logs.contains("restarting in 100 ms: the container") && logs.contains("code 137"),
        "{logs}"
    );

    // A crash loop: restarts back off, stop at the budget, no storm after.
    let failed = wait_for(&server, &crash, 30, |s| s["state"] == "failed");
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["restarts"], 3, "{failed}");
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("exited with code 3")
            && reason.contains("restarted 3 times within 60 s, the restart budget"),
        "{reason}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let later = status(&server, &crash);
    assert_eq!(
        (later["state"].as_str(), later["restarts"].as_u64()),
        (Some("failed"), Some(3)),
        "no restart past the budget"
    );
    let (code, health) = get(&server, "/api/v1/services/health");
    assert_eq!(code, 503, "{health}");
    assert!(health.contains("\"status\":\"unhealthy\""), "{health}");

    // A liveness probe that hangs: each timeout is a failure; two restart it.
    let restarted = wait_for(&server, &hung, 30, |s| s["restarts"].as_u64() >= Some(1));
    assert!(restarted["restarts"].as_u64() >= Some(1), "{restarted}");
    let logs = text(&cli(&server, &["services", "logs", &hung]));
    assert!(
        logs.contains("liveness check failed (2/2)"),
        "the hung probe counted: {logs}"
    );

    let (_, metrics) = get(&server, "/metrics");
    assert!(
        metrics.contains("slipway_managed_services{state=\"failed\"} 1"),
        "{metrics}"
    );
    let list = text(&cli(&server, &["services", "list"]));
    assert!(list.contains(&crash) && list.contains("failed"), "{list}");

    // `restart` starts a failed service over with a fresh budget.
    let out = cli(&server, &["services", "restart", &crash]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let again = wait_for(&server, &crash, 10, |s| s["state"] != "failed");
    assert_ne!(again["state"], "failed", "{again}");

    for name in [&web, &crash, &hung] {
        let out = cli(&server, &["services", "rm", name]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(containers(name).is_empty(), "{name} removed with its pod");
    }
}

#[test]
fn after_a_kill_9_the_engine_adopts_running_services_without_restarting_them() {
    let server = start(tempfile::tempdir().unwrap());
    let files = tempfile::tempdir().unwrap();
    let name = format!("keep-{}", std::process::id());
    declare(
        &server,
        files.path(),
        &name,
        "command = [\"sh\", \"-c\", \"exec httpd -f -p 8090 -h /tmp\"]\nports = [8090]\n",
    );
    let ready = wait_for(&server, &name, 30, |s| s["state"] == "ready");
    assert_eq!(ready["state"], "ready", "{ready}");
    let before = containers(&name);
    assert_eq!(before.len(), 1, "{before:?}");

    // kill -9, then the same state directory comes back.
    let server = start(server.crash());
    let adopted = wait_for(&server, &name, 30, |s| s["state"] == "ready");
    assert_eq!(adopted["state"], "ready", "{adopted}");
    assert_eq!(adopted["restarts"], 0);
    let after = containers(&name);
    assert_eq!(
        after, before,
        "the same container, still running since the same start: adopted, not duplicated"
    );
    let logs = text(&cli(&server, &["services", "logs", &name]));
    assert!(logs.contains("adopted the running container"), "{logs}");
    let out = cli(&server, &["services", "rm", &name]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(containers(&name).is_empty());
}

#[test]
fn bad_declarations_are_refused_field_by_field() {
    let server = start(tempfile::tempdir().unwrap());
    let (code, body) = post_json(
        &server,
        "/api/v1/services",
        &serde_json::json!({
            "name": "health", "image": BUSYBOX,
            "readiness": {"plugin": "no-such-plugin"},
        }),
    );
    assert_eq!(code, 422, "{body}");
    let text = body.to_string();
    assert!(text.contains("is reserved"), "{text}");
    assert!(
        text.contains("readiness.plugin") && text.contains("no readiness plugin `no-such-plugin`"),
        "{text}"
    );
    let (code, body) = post_json(
        &server,
        "/api/v1/services",
        &serde_json::json!({"name": "x", "image": BUSYBOX, "replicas": 3}),
    );
    assert_eq!(code, 422, "{body}");
    assert!(
        body.to_string().contains("unknown field `replicas`"),
        "{body}"
    );
    let (code, _) = get(&server, "/api/v1/services/nope");
    assert_eq!(code, 404);
    let (code, body) = get(&server, "/api/v1/services/health");
    assert_eq!((code, body.contains("\"healthy\"")), (200, true), "{body}");
}

/// On a host without a GPU runtime: a service that prefers GPUs runs on the
/// CPU (`SLIPWAY_GPU=0`, the fallback in its log); one that requires them
/// is `failed` at once with what is missing, not restarted in a loop, and
/// nothing of it runs.
#[test]
fn gpu_services_fall_back_or_fail_once_on_a_host_without_gpus() {
    let offer = rt().block_on(async {
        let docker = slipway::runner::connect().await.expect("Docker");
        slipway::runner::gpu::offer(&docker).await.unwrap()
    });
    assert!(
        !offer.available(),
        "this test needs a host without a GPU runtime; this one has {:?}",
        offer.runtime
    );
    let server = start(tempfile::tempdir().unwrap());
    let files = tempfile::tempdir().unwrap();
    let preferring = format!("gpu-pref-{}", std::process::id());
    let requiring = format!("gpu-req-{}", std::process::id());
    declare(
        &server,
        files.path(),
        &preferring,
        "command = [\"sh\", \"-c\", \"echo gpu=$SLIPWAY_GPU; exec httpd -f -p 8093 -h /tmp\"]\nports = [8093]\ngpus = 1\ngpu = \"preferred\"\n",
    );
    declare(
        &server,
        files.path(),
        &requiring,
        "command = [\"sh\", \"-c\", \"exec sleep 600\"]\ngpus = \"all\"\n",
    );
    let ready = wait_for(&server, &preferring, 30, |s| s["state"] == "ready");
    assert_eq!(ready["state"], "ready", "{ready}");
    let logs = text(&cli(&server, &["services", "logs", &preferring]));
    assert!(
        logs.contains("gpu: fallback to cpu: 1 GPU(s) preferred"),
        "{logs}"
    );
    assert!(logs.contains("gpu=0"), "{logs}");

    let failed = wait_for(&server, &requiring, 30, |s| s["state"] == "failed");
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["restarts"], 0, "{failed}");
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("requires every GPU"), "{reason}");
    assert!(reason.contains("NVIDIA Container Toolkit"), "{reason}");
    assert!(containers(&requiring).is_empty());

    for name in [&preferring, &requiring] {
        let out = cli(&server, &["services", "rm", name]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(containers(name).is_empty(), "{name} removed");
    }
}
