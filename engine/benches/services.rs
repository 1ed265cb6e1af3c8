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
//!
//! Managed services: time from a service turning unhealthy (its container
//! killed from outside; its liveness check starting to fail) to the restart
//! being issued, and the engine's CPU while watching 20 healthy services.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use slipway::job::ServiceSpec;
use slipway::logs::JobLogs;
use slipway::plugins::sandbox::SandboxOptions;
use slipway::plugins::{LimitsPolicy, PluginSandbox, Registry};
use slipway::queue::ServiceStore;
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
    docker: &runner::Runtime,
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
            reach: Default::default(),
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
        role: slipway::runner::Role::Job,
        output_kept_mb: None,
        gpus: None,
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

/// CPU time of this process so far (user + system), from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// Managed services: time from a service turning unhealthy (container
/// killed; liveness probe failing) to the restart being issued, and the
/// engine's CPU while it watches 20 healthy services.
async fn supervisor_figures(docker: &runner::Runtime, registry: &Arc<Registry>) {
    use slipway::job::SpecPolicy;
    use slipway::queue::RedbStore;
    use slipway::service::{ManagedService, ManagedServiceSpec};
    use slipway::supervisor::{ServiceState, Supervisor, SupervisorSettings};

    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(RedbStore::open(&dir.path().join("store.redb"), SpecPolicy::default()).unwrap());
    let engine_id = format!("bench-{}", std::process::id());
    let supervisor = Supervisor::new(
        docker.clone(),
        store.clone(),
        registry.clone(),
        SupervisorSettings {
            engine_id: engine_id.clone(),
            holder_image: slipway::config::DEFAULT_HOLDER_IMAGE.into(),
            logs_dir: dir.path().join("service-logs"),
            reconcile_every: Duration::from_secs(30),
            stop_grace: Duration::from_secs(1),
        },
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(supervisor.clone().run(shutdown.clone()));
    let count = 20;
    for i in 0..count {
        // A liveness check every second, as a watched worker would have.
        let spec: ManagedServiceSpec = serde_json::from_value(serde_json::json!({
            "name": format!("svc-{i}"), "image": "slipway-test/busybox:1",
            "command": ["sh", "-c", "rm -f /tmp/sick; exec httpd -f -p 8080 -h /tmp"],
            "ports": [8080],
            "liveness": {"plugin": "exec", "options": {
                "command": "test ! -e /tmp/sick", "period_ms": "1000", "failure_threshold": "1"}},
            "restart": {"backoff_ms": 50},
        }))
        .unwrap();
        store
            .put_service(ManagedService::new(spec), true)
            .await
            .unwrap();
    }
    supervisor.sync().await;
    let ready = |n: usize| {
        let statuses = supervisor.statuses();
        statuses.len() == count
            && statuses
                .iter()
                .take(n)
                .all(|s| s.state == ServiceState::Ready)
    };
    while !ready(count) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // At rest: 20 services, each probed once a second.
    let (cpu0, wall0) = (cpu_time(), std::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(20)).await;
    let busy = (cpu_time() - cpu0).as_secs_f64() / wall0.elapsed().as_secs_f64();
    println!(
        "supervisor: {count} healthy services, liveness every 1 s: engine CPU {:.1}% of one core (over 20 s)",
        busy * 100.0
    );

    // Unhealthy → restart issued, read from the service's own event log.
    let issued_after = |name: &str, since_ms: u64| {
        let log = std::fs::read_to_string(dir.path().join(format!("service-logs/{name}.log")))
            .unwrap_or_default();
        log.lines().find_map(|l| {
            let (stamp, rest) = l.split_once(' ')?;
            let stamp: u64 = stamp.parse().ok()?;
            (stamp >= since_ms && rest.contains("restarting in")).then(|| stamp - since_ms)
        })
    };
    for (what, action) in [("container killed", "kill"), ("liveness failing", "sick")] {
        let mut delays = Vec::new();
        for i in 0..10 {
            let name = format!("svc-{i}");
            let status = supervisor.status(&name).unwrap();
            let container = status.container.clone().unwrap();
            let at = slipway::job::now_ms();
            if action == "kill" {
                docker.kill_container(&container, "KILL").await.unwrap();
            } else {
                let exec = runner::exec::capture(
                    docker,
                    &container,
                    &["touch".into(), "/tmp/sick".into()],
                    None,
                    Duration::from_secs(5),
                    100,
                )
                .await
                .unwrap();
                assert_eq!(exec.exit_code, Some(0));
            }
            let delay = loop {
                if let Some(ms) = issued_after(&name, at) {
                    break ms;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            delays.push(delay as f64);
            while supervisor.status(&name).map(|s| s.state) != Some(ServiceState::Ready) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        delays.sort_by(f64::total_cmp);
        println!(
            "supervisor: {what} → restart issued, 10 runs: p50 {:.0} ms, max {:.0} ms (target < 2000 ms)",
            percentile(&delays, 0.5),
            delays[delays.len() - 1]
        );
    }
    for i in 0..count {
        store.delete_service(&format!("svc-{i}")).await.unwrap();
    }
    supervisor.sync().await;
    shutdown.cancel();
    let _ = running.await;
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
                single_caller: false,
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

        supervisor_figures(&docker, &registry).await;
    });
}
