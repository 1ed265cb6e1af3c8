//! A job's services against the real Docker engine with the real readiness
//! plugins (bundled, plus the hostile test plugin): each kind of probe,
//! startup deadlines, services that exit, misbehaving plugins. Needs Docker;
//! fails loudly without it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use slipway::job::ServiceSpec;
use slipway::logs::JobLogs;
use slipway::plugins::sandbox::SandboxOptions;
use slipway::plugins::{LimitsPolicy, PluginSandbox, Registry};
use slipway::runner::services::{self, RunningService, ServiceError};
use slipway::runner::{self, Pod, PodSpec};
use tokio_util::sync::CancellationToken;

use crate::support::docker;

const BUSYBOX: &str = "slipway-test/busybox:1";

/// The bundled plugins plus `hostile-readiness`, shared by the tests.
fn registry() -> Arc<Registry> {
    static REGISTRY: OnceLock<(tempfile::TempDir, Arc<Registry>)> = OnceLock::new();
    REGISTRY
        .get_or_init(|| {
            use sha2::Digest;
            let dir = tempfile::tempdir().unwrap();
            let wasm_path = Path::new(env!("TEST_PLUGINS_WASM_DIR")).join("hostile_readiness.wasm");
            let wasm = std::fs::read(&wasm_path)
                .unwrap_or_else(|e| panic!("{}: {e}", wasm_path.display()));
            let manifest = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../plugins/testdata/hostile-readiness/plugin.toml"),
            )
            .unwrap();
            let installed = dir.path().join("hostile-readiness/0.1.0");
            std::fs::create_dir_all(&installed).unwrap();
            let sha = hex::encode(sha2::Sha256::digest(&wasm));
            std::fs::write(
                installed.join("plugin.toml"),
                format!("sha256 = \"{sha}\"\n{manifest}"),
            )
            .unwrap();
            std::fs::write(installed.join("plugin.wasm"), &wasm).unwrap();
            let sandbox = Arc::new(
                PluginSandbox::new(SandboxOptions {
                    cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("svc-cache")),
                    policy: LimitsPolicy::default(),
                    pooling: true,
                    single_caller: false,
                })
                .unwrap(),
            );
            let registry = Arc::new(Registry::load(sandbox, true, &[dir.path().to_path_buf()]));
            (dir, registry)
        })
        .1
        .clone()
}

fn label(test: &str) -> String {
    format!("svc-{test}-{}", std::process::id())
}

fn service(value: serde_json::Value) -> ServiceSpec {
    serde_json::from_value(value).unwrap()
}

/// Start `specs` in a fresh pod and wait for them.
struct Run {
    docker: runner::Runtime,
    pod: Option<Pod>,
    result: Result<Option<Vec<RunningService>>, ServiceError>,
    elapsed: Duration,
    logs: JobLogs,
    _dir: tempfile::TempDir,
    test: &'static str,
}

async fn start(test: &'static str, specs: Vec<ServiceSpec>) -> Run {
    let docker = docker().await;
    let pod = Pod::create(
        &docker,
        PodSpec {
            name: format!("slipway-{}", label(test)),
            labels: HashMap::from([
                (runner::LABEL_MANAGED.to_owned(), "true".to_owned()),
                ("io.slipway.test".to_owned(), label(test)),
            ]),
            holder_image: slipway::config::DEFAULT_HOLDER_IMAGE.into(),
            network: "none".into(),
            reach: Default::default(),
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let logs = JobLogs::new(dir.path()).unwrap();
    let started = Instant::now();
    let result = services::start_and_wait(
        &docker,
        &pod,
        &specs,
        &registry(),
        &logs.writer(1),
        &CancellationToken::new(),
    )
    .await;
    Run {
        docker,
        pod: Some(pod),
        result,
        elapsed: started.elapsed(),
        logs,
        _dir: dir,
        test,
    }
}

impl Run {
    fn log(&self) -> String {
        String::from_utf8_lossy(&self.logs.read(1, 0, 1 << 20).unwrap().0).into_owned()
    }

    fn error(&self) -> String {
        match &self.result {
            Err(e) => e.to_string(),
            Ok(_) => panic!("expected an error; log:\n{}", self.log()),
        }
    }

    async fn containers(&self) -> usize {
        let wanted = format!("io.slipway.test={}", label(self.test));
        self.docker.list_containers(&[wanted]).await.unwrap().len()
    }

    async fn finish(mut self) {
        self.pod.take().unwrap().remove().await;
        assert_eq!(self.containers().await, 0, "the pod is removed");
    }
}

#[tokio::test]
async fn each_kind_of_probe_waits_until_its_service_is_ready() {
    let run = start(
        "kinds",
        vec![
            service(serde_json::json!({
                "name": "web", "image": BUSYBOX, "ports": [8080],
                "command": ["sh", "-c", "mkdir -p /tmp/www && httpd -p 8080 -h /tmp/www && sleep 0.6 && echo ok > /tmp/www/health && sleep 600"],
                "readiness": {"plugin": "http", "options": {"path": "/health"}},
            })),
            service(serde_json::json!({
                "name": "plain", "image": BUSYBOX, "ports": [7002],
                "command": ["sh", "-c", "sleep 0.6; exec httpd -f -p 7002 -h /tmp"],
            })),
            service(serde_json::json!({
                "name": "logger", "image": BUSYBOX,
                "command": ["sh", "-c", "echo booting; sleep 0.6; echo 'ready to serve'; exec sleep 600"],
                "readiness": {"plugin": "log-line", "options": {"pattern": "ready to serve$"}},
            })),
            service(serde_json::json!({
                "name": "file", "image": BUSYBOX,
                "command": ["sh", "-c", "sleep 0.6; touch /tmp/ready; exec sleep 600"],
                "readiness": {"plugin": "exec", "options": {"command": "test -f /tmp/ready"}},
            })),
        ],
    )
    .await;
    let log = run.log();
    let services = match &run.result {
        Ok(Some(s)) => s,
        other => panic!("{:?}\n{log}", other.as_ref().err()),
    };
    assert_eq!(services.len(), 4);
    for name in ["web", "plain", "logger", "file"] {
        assert!(
            log.contains(&format!("service `{name}` ready after")),
            "{name} in:\n{log}"
        );
    }
    assert!(
        log.contains("readiness by tcp@"),
        "ports and no plugin: tcp: {log}"
    );
    assert!(
        log.contains("service/logger booting"),
        "service logs are kept: {log}"
    );
    assert!(
        run.elapsed >= Duration::from_millis(600),
        "it waited for the slowest: {:?}",
        run.elapsed
    );
    run.finish().await;
}

#[tokio::test]
async fn a_service_never_ready_fails_at_its_deadline_with_the_last_probe() {
    let run = start(
        "deadline",
        vec![service(serde_json::json!({
            "name": "web", "image": BUSYBOX, "ports": [8081],
            "command": ["sh", "-c", "mkdir -p /tmp/www && exec httpd -f -p 8081 -h /tmp/www"],
            "readiness": {"plugin": "http", "options": {"path": "/missing", "startup_deadline_ms": "1500"}},
        }))],
    )
    .await;
    let e = run.error();
    assert!(
        e.contains("service `web` was not ready within its startup deadline of 1.5 s"),
        "{e}"
    );
    assert!(e.contains("404"), "the last probe's result is named: {e}");
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
    run.finish().await;
}

#[tokio::test]
async fn a_missing_image_and_a_service_that_exits_are_clear_errors() {
    let run = start(
        "missing",
        vec![service(serde_json::json!({
            "name": "db", "image": "slipway-test/no-such-db:1", "ports": [5432],
        }))],
    )
    .await;
    let e = run.error();
    assert!(
        e.contains("service `db`: image `slipway-test/no-such-db:1` is not available"),
        "{e}"
    );
    run.finish().await;

    let run = start(
        "exits",
        vec![service(serde_json::json!({
            "name": "db", "image": BUSYBOX, "ports": [5432],
            "command": ["sh", "-c", "echo 'fatal: bad config line 3'; exit 3"],
        }))],
    )
    .await;
    let e = run.error();
    assert!(
        e.contains("service `db` exited with code 3 before it was ready"),
        "{e}"
    );
    assert!(e.contains("fatal: bad config line 3"), "with its log: {e}");
    run.finish().await;
}

#[tokio::test]
async fn unknown_plugins_and_bad_options_fail_before_any_service_starts() {
    let run = start(
        "unknown",
        vec![service(serde_json::json!({
            "name": "db", "image": BUSYBOX, "readiness": {"plugin": "nope"},
        }))],
    )
    .await;
    let e = run.error();
    assert!(e.contains("no readiness plugin `nope`"), "{e}");
    assert!(
        e.contains("postgres") && e.contains("redis"),
        "lists the known ones: {e}"
    );
    assert_eq!(run.containers().await, 1, "only the holder was started");
    run.finish().await;

    let run = start(
        "options",
        vec![service(serde_json::json!({
            "name": "db", "image": BUSYBOX, "readiness": {"plugin": "exec"},
        }))],
    )
    .await;
    let e = run.error();
    assert!(e.contains("readiness.options.command"), "{e}");
    assert_eq!(run.containers().await, 1);
    run.finish().await;
}

#[tokio::test]
async fn misbehaving_readiness_plugins_are_failed_probes_and_the_engine_carries_on() {
    for mode in ["trap-judge", "loop-judge"] {
        let run = start(
            "hostile",
            vec![service(serde_json::json!({
                "name": "svc", "image": BUSYBOX, "ports": [7100],
                "command": ["sh", "-c", "exec httpd -f -p 7100 -h /tmp"],
                "readiness": {"plugin": "hostile-readiness", "options": {"mode": mode}},
            }))],
        )
        .await;
        let e = run.error();
        assert!(
            e.contains("not ready within its startup deadline of 3.0 s")
                && e.contains("the readiness plugin failed: plugin hostile-readiness@0.1.0"),
            "{mode}: {e}"
        );
        run.finish().await;
    }
    let run = start(
        "hostile",
        vec![service(serde_json::json!({
            "name": "svc", "image": BUSYBOX, "ports": [7100],
            "readiness": {"plugin": "hostile-readiness", "options": {"mode": "bad-probe"}},
        }))],
    )
    .await;
    let e = run.error();
    assert!(
        e.contains("hostile-readiness@0.1.0") && e.contains("period"),
        "{e}"
    );
    run.finish().await;

    // The same plugin, behaving, still works: nothing was left broken.
    let run = start(
        "hostile",
        vec![service(serde_json::json!({
            "name": "svc", "image": BUSYBOX, "ports": [7100],
            "command": ["sh", "-c", "exec httpd -f -p 7100 -h /tmp"],
            "readiness": {"plugin": "hostile-readiness"},
        }))],
    )
    .await;
    assert!(matches!(run.result, Ok(Some(_))), "{}", run.log());
    run.finish().await;
}
