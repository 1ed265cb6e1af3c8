//! Service readiness benchmark against the real Docker engine; prints its
//! figures. `cargo bench -p slipway --bench services`.
//!
//! The figure: time from a service's process becoming ready to the job's
//! first step starting, through the runner's own path (the workload starts
//! while `services::start_and_wait` probes; the first step is an exec).
//! "Ready" is taken from the service itself: a busybox httpd prints the
//! kernel clock (`adjtimex`, µs) right after it has bound its port, and
//! PostgreSQL logs "ready to accept connections" with a millisecond stamp.
//! The step prints the kernel clock as its first act. Same kernel, same
//! clock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use slipway::job::ServiceSpec;
use slipway::logs::JobLogs;
use slipway::plugins::sandbox::SandboxOptions;
use slipway::plugins::{LimitsPolicy, PluginSandbox, Registry};
use slipway::runner::{self, ContainerLimits, Pod, PodSpec, StepExec, WorkloadSpec, services};
use tokio_util::sync::CancellationToken;

/// Prints the kernel's wall clock in microseconds (busybox has no `%N`).
const NOW_US: &str =
    "adjtimex | awk '/tv_sec/ {s=$2} /tv_usec/ {u=$2} END {printf \"%d%06d\\n\", s, u}'";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// One job-like run; returns (ready µs, first step µs) from the log;
/// `ready_at` finds the ready time in the whole log.
async fn one(
    docker: &bollard::Docker,
    registry: &Arc<Registry>,
    service: &ServiceSpec,
    ready_at: impl Fn(&str) -> Option<u64>,
    n: usize,
) -> (u64, u64) {
    let pod = Pod::create(
        docker,
        PodSpec {
            name: format!("slipway-bench-{}-{n}", std::process::id()),
            labels: HashMap::from([(runner::LABEL_MANAGED.to_owned(), "true".to_owned())]),
            holder_image: slipway::config::DEFAULT_HOLDER_IMAGE.into(),
            network: "none".into(),
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let logs = JobLogs::new(dir.path()).unwrap();
    let log = logs.writer(1);
    let workload = WorkloadSpec {
        image: "slipway-test/busybox:1".into(),
        env: vec![],
        workdir: Some("/tmp".into()),
        user: "1000:1000".into(),
        binds: vec![],
        limits: ContainerLimits::default(),
        role: "job",
    };
    let cancel = CancellationToken::new();
    let (container, ready) = tokio::join!(
        pod.start_workload(&workload),
        services::start_and_wait(
            docker,
            &pod,
            std::slice::from_ref(service),
            registry,
            &log,
            &cancel
        )
    );
    let (container, _ready) = (container.unwrap(), ready.unwrap().unwrap());
    let step = StepExec {
        command: format!("echo step-at $({NOW_US})"),
        env: vec![],
        workdir: Some("/tmp".into()),
        user: "1000:1000".into(),
    };
    runner::exec_step(
        docker,
        &container,
        &step,
        &log,
        Duration::from_secs(30),
        Duration::from_secs(1),
        &cancel,
    )
    .await
    .unwrap();
    pod.remove().await;
    let text = String::from_utf8(logs.read(1, 0, 1 << 22).unwrap().0).unwrap();
    let ready = ready_at(&text).expect("ready time in the log");
    let step = text
        .lines()
        .find_map(|l| l.split("stdout step-at ").nth(1)?.trim().parse().ok())
        .expect("step time in the log");
    (ready, step)
}

fn report(name: &str, mut gaps_ms: Vec<f64>) {
    gaps_ms.sort_by(f64::total_cmp);
    println!(
        "{name}: ready → first step, {} runs: p50 {:.0} ms, p99 {:.0} ms, min {:.0} ms, max {:.0} ms (target < 250 ms)",
        gaps_ms.len(),
        percentile(&gaps_ms, 0.5),
        percentile(&gaps_ms, 0.99),
        gaps_ms[0],
        gaps_ms[gaps_ms.len() - 1]
    );
}

/// `2026-11-24 11:40:56.737 UTC [6] LOG:  database system is ready…` → µs.
fn postgres_ready(line: &str) -> Option<u64> {
    if !line.contains("database system is ready to accept connections") {
        return None;
    }
    let stamp = line.split(" service/db ").nth(1)?;
    let (date, rest) = stamp.split_once(' ')?;
    let time = rest.split(' ').next()?;
    let output = std::process::Command::new("date")
        .args(["-u", "-d", &format!("{date} {time}"), "+%s%6N"])
        .output()
        .ok()?;
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let docker = runner::connect().await.expect("Docker (bash scripts/setup.sh)");
        let sandbox = Arc::new(
            PluginSandbox::new(SandboxOptions {
                cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-cache")),
                policy: LimitsPolicy::default(),
                pooling: true,
            })
            .unwrap(),
        );
        let registry = Arc::new(Registry::load(sandbox, true, &[]));

        let web: ServiceSpec = serde_json::from_value(serde_json::json!({
            "name": "web", "image": "slipway-test/busybox:1", "ports": [8080],
            "command": ["sh", "-c", format!("sleep 0.5; httpd -p 8080 -h /tmp && echo ready-at $({NOW_US}); exec sleep 600")],
        }))
        .unwrap();
        let mut gaps = Vec::new();
        for n in 0..20 {
            let (ready, step) = one(
                &docker,
                &registry,
                &web,
                |text| {
                    text.lines()
                        .find_map(|l| l.split("service/web ready-at ").nth(1)?.trim().parse().ok())
                },
                n,
            )
            .await;
            gaps.push((step as f64 - ready as f64) / 1000.0);
        }
        report("busybox httpd, tcp readiness", gaps);

        let db: ServiceSpec = serde_json::from_value(serde_json::json!({
            "name": "db", "image": "postgres:15", "ports": [5432],
            "env": {"POSTGRES_PASSWORD": "bench"},
            "readiness": {"plugin": "postgres"},
        }))
        .unwrap();
        let mut gaps = Vec::new();
        for n in 0..8 {
            // The last "ready" line is the real server (the first is the
            // entrypoint's init pass, on the Unix socket only).
            let last_ready = |text: &str| text.lines().rev().find_map(postgres_ready);
            let (ready, step) = one(&docker, &registry, &db, last_ready, 100 + n).await;
            gaps.push((step as f64 - ready as f64) / 1000.0);
        }
        report("postgres:15, postgres readiness (pg_isready, 2 passes)", gaps);
    });
}
