//! Docker runner benchmarks against the real Docker engine; prints its
//! figures. `cargo bench -p slipway --bench runner`.
//!
//! - job start overhead: from the lease to the first output line of a
//!   trivial step in the job's log (checkout, plan, image on a cache hit,
//!   the job container running the step, its output followed), against
//!   bollard's raw create + start + wait of the same image running the same
//!   command, interleaved in the same run;
//! - image resolution on a cache hit (hashing the inputs + the lookup), from
//!   the jobs' own phase timings;
//! - 50 trivial jobs at concurrency 1 and 4: jobs per minute;
//! - `slipway run` of `examples/python-app`, cold (no image, no package
//!   cache: the image is built, packages come from PyPI) and warm.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;
use slipway::job::{JobRecord, JobSpec, JobState, SpecPolicy};
use slipway::logs::JobLogs;
use slipway::profile::Profile;
use slipway::queue::{JobQueue, ProfileStore};
use slipway::queue::{RedbStore, Scheduler, SchedulerConfig};
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "slipway-test/busybox:1";

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

struct Engine {
    _state: tempfile::TempDir,
    store: Arc<RedbStore>,
    scheduler: Arc<Scheduler>,
    logs: JobLogs,
    shutdown: CancellationToken,
}

async fn engine(runtime: &slipway::runner::Runtime, concurrency: usize) -> Engine {
    let state = tempfile::tempdir().unwrap();
    let policy = SpecPolicy {
        allow_local_paths: true,
        ..SpecPolicy::default()
    };
    let store = Arc::new(RedbStore::open(&state.path().join("store.redb"), policy).unwrap());
    let logs = JobLogs::new(state.path().join("logs")).unwrap();
    let executor = common::docker_executor(
        runtime,
        state.path(),
        store.clone(),
        format!("bench-runner-{}-{concurrency}", std::process::id()),
    );
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(executor),
        logs.clone(),
        SchedulerConfig {
            concurrency,
            per_repository: concurrency,
            poll: Duration::from_millis(20),
            ..SchedulerConfig::default()
        },
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(scheduler.clone().run(shutdown.clone()));
    let profile: Profile = serde_json::from_value(serde_json::json!({
        "name": "trivial", "validation": {"fast": ["echo hi"]},
    }))
    .unwrap();
    store.put_profile(profile, false).await.unwrap();
    Engine {
        _state: state,
        store,
        scheduler,
        logs,
        shutdown,
    }
}

impl Engine {
    async fn submit(&self, repo: &Path) -> u64 {
        let spec: JobSpec = serde_json::from_value(serde_json::json!({
            "repository": repo, "commit": "HEAD", "profile": "trivial",
        }))
        .unwrap();
        let id = self.store.submit(spec).await.unwrap().record.id;
        self.scheduler.wake();
        id
    }

    async fn finished(&self, id: u64) -> JobRecord {
        loop {
            let r = self.store.get(id).await.unwrap().unwrap();
            if r.state.is_final() {
                assert_eq!(r.state, JobState::Succeeded, "{:?}", r.reason);
                return r;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// When (ms since the epoch) the job's first output line was in its
    /// log, polled every millisecond. The line's own stamp is Docker's
    /// capture time, earlier than the engine has it.
    async fn first_output_seen(&self, id: u64) -> u64 {
        loop {
            let (bytes, _) = self.logs.read(id, 0, 1 << 20).unwrap();
            if String::from_utf8_lossy(&bytes)
                .lines()
                .any(|l| l.split(' ').nth(1) == Some("stdout"))
            {
                return slipway::job::now_ms();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// ms from the lease to `seen`.
    fn since_lease(r: &JobRecord, seen: u64) -> f64 {
        let leased = r
            .events
            .iter()
            .find(|e| e.to == JobState::Running)
            .unwrap()
            .at_ms;
        seen.saturating_sub(leased) as f64
    }
}

/// bollard's create + start + wait of `IMAGE` running `echo hi`, in ms.
async fn raw_run(docker: &Docker, n: usize) -> f64 {
    let t = Instant::now();
    let name = format!("slipway-bench-raw-{}-{n}", std::process::id());
    let body = ContainerCreateBody {
        image: Some(IMAGE.into()),
        cmd: Some(vec!["echo".into(), "hi".into()]),
        network_disabled: Some(true),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::new().name(&name).build();
    let id = docker
        .create_container(Some(options), body)
        .await
        .unwrap()
        .id;
    docker.start_container(&id, None).await.unwrap();
    let mut wait = docker.wait_container(&id, Some(WaitContainerOptionsBuilder::new().build()));
    while wait.next().await.is_some() {}
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let rm = RemoveContainerOptionsBuilder::new().force(true).build();
    docker.remove_container(&id, Some(rm)).await.unwrap();
    ms
}

fn busybox_repo() -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(
        repo.path().join("Dockerfile"),
        format!("FROM {IMAGE}\nWORKDIR /workspace\n"),
    )
    .unwrap();
    std::fs::write(repo.path().join("app.txt"), "app\n").unwrap();
    repo
}

/// `slipway run examples/python-app`: wall time in s, and whether it passed.
fn slipway_run(state: &Path) -> (f64, bool) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let t = Instant::now();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.args([
        "run",
        root.join("examples/python-app").to_str().unwrap(),
        "--tier",
        "full",
    ])
    .env("SLIPWAY_STATE_DIR", state)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    if Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
        cmd.env("SLIPWAY_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt");
    }
    let ok = cmd.status().unwrap().success();
    (t.elapsed().as_secs_f64(), ok)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let runtime = slipway::runner::connect().await.expect("Docker (bash scripts/setup.sh)");
        // The raw baseline talks to Docker's API directly.
        let docker = slipway::runtime::docker::connect().await.unwrap().client().clone();
        let repo = busybox_repo();

        // Job start overhead, interleaved with raw runs.
        let e = engine(&runtime, 1).await;
        e.finished(e.submit(repo.path()).await).await; // builds the image once
        let (mut engine_ms, mut raw_ms, mut image_ms) = (Vec::new(), Vec::new(), Vec::new());
        let mut phases: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for n in 0..20 {
            let id = e.submit(repo.path()).await;
            let (seen, r) = tokio::join!(e.first_output_seen(id), e.finished(id));
            engine_ms.push(Engine::since_lease(&r, seen));
            let run = r.run.as_ref().unwrap();
            assert!(run.image.as_ref().unwrap().cache_hit);
            image_ms.push(run.phases_ms["image"] as f64);
            for (phase, ms) in &run.phases_ms {
                phases.entry(phase.clone()).or_default().push(*ms as f64);
            }
            raw_ms.push(raw_run(&docker, n).await);
        }
        let (engine_ms, raw_ms, image_ms) = (sorted(engine_ms), sorted(raw_ms), sorted(image_ms));
        println!(
            "job start, lease -> first output line of `echo hi` (20 runs): p50 {:.0} ms, p90 {:.0} ms; raw create+start+wait of the same image: p50 {:.0} ms, p90 {:.0} ms; ratio of p50s {:.2}x",
            pct(&engine_ms, 0.5),
            pct(&engine_ms, 0.9),
            pct(&raw_ms, 0.5),
            pct(&raw_ms, 0.9),
            pct(&engine_ms, 0.5) / pct(&raw_ms, 0.5)
        );
        let phase_text: Vec<String> = phases
            .into_iter()
            .map(|(p, v)| format!("{p} {:.0}", pct(&sorted(v), 0.5)))
            .collect();
        println!("  phases, p50 ms: {}", phase_text.join(", "));
        println!(
            "image resolution on a cache hit (hash inputs + lookup + record use): p50 {:.0} ms, max {:.0} ms",
            pct(&image_ms, 0.5),
            image_ms[image_ms.len() - 1]
        );
        e.shutdown.cancel();

        for concurrency in [1, 4] {
            let e = engine(&runtime, concurrency).await;
            e.finished(e.submit(repo.path()).await).await;
            let t = Instant::now();
            let mut ids = Vec::new();
            for _ in 0..50 {
                ids.push(e.submit(repo.path()).await);
            }
            for id in ids {
                e.finished(id).await;
            }
            let s = t.elapsed().as_secs_f64();
            println!(
                "50 trivial jobs at concurrency {concurrency}: {s:.1} s, {:.0} jobs per minute",
                50.0 / s * 60.0
            );
            e.shutdown.cancel();
        }
    });

    // Cold and warm `slipway run` of the Python example.
    let _ = std::process::Command::new("sh")
        .args([
            "-c",
            "docker images --format '{{.Repository}}:{{.Tag}}' | grep '^slipway-runner/examples-python-app:' | xargs -r docker rmi -f; \
             docker volume ls -q --filter label=io.slipway.role=cache | grep -- '-examples-python-app$' | xargs -r docker volume rm -f",
        ])
        .output();
    let state = tempfile::tempdir().unwrap();
    let (cold, cold_ok) = slipway_run(state.path());
    let (warm, warm_ok) = slipway_run(state.path());
    println!(
        "slipway run examples/python-app --tier full: cold {cold:.1} s (image built, packages from PyPI; passed: {cold_ok}), warm {warm:.1} s (passed: {warm_ok})"
    );
}
