//! Replicas on PostgreSQL beside graphile-worker, on one PostgreSQL server
//! and in one run (issue 22). `cargo bench -p slipway --bench replicas`.
//!
//! The bench starts a private PostgreSQL (fsync on: durable) and, per
//! replica count (1, 2, 3), N independent `PostgresStore` + `Scheduler`
//! pairs in this process, each with its own pool and its own LISTEN loop,
//! sharing one database and the machine's cores. Per count:
//! - enqueue: 20,000 submits, 32 in flight, no scheduler running;
//! - complete: the schedulers then drain them (no-op executor);
//! - lifecycle: on a fresh database, submit → lease → no-op → complete
//!   with both running at once;
//! - latency: 200 jobs/s for 5 s, submit ack → executor start.
//!
//! graphile-worker (pinned in `benches/graphile/`, installed with `npm ci`
//! under the target dir) does the same with its `addJob` and a worker with
//! default settings; `benches/graphile/bench.js` prints its figures.
//!
//! Each attempt writes its job log as under `serve` (one file per job,
//! under `$TMPDIR`), so the filesystem there counts: on ext4 without a
//! journal, creating files within ~35 s of deleting thousands is several
//! times slower (freed inodes are not reused that soon, and the allocator
//! scans past them). The bench deletes its logs only at the end, and a run
//! right after another inherits that one's deletions: leave a minute
//! between runs, or point `TMPDIR` at a journaled filesystem.

#[allow(dead_code)]
#[path = "../tests/support/postgres.rs"]
mod postgres;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slipway::executor::{Attempt, ExecFuture, Executor};
use slipway::job::{JobId, JobSpec, JobState, Outcome, SpecPolicy};
use slipway::logs::JobLogs;
use slipway::queue::{JobQueue, PostgresStore, Scheduler, SchedulerConfig};
use tokio_util::sync::CancellationToken;

const JOBS: usize = 20_000;
const IN_FLIGHT: usize = 32;
const RATE: u64 = 200;
const LATENCY_SECONDS: u64 = 5;
/// How often "all done?" is asked: coarse, so that asking costs little of
/// the 2 cores (both systems are asked alike).
const POLL: Duration = Duration::from_millis(50);

#[derive(Default)]
struct NoopExecutor {
    started: Mutex<HashMap<JobId, Instant>>,
}

impl Executor for NoopExecutor {
    fn execute(&self, attempt: Attempt) -> ExecFuture {
        self.started
            .lock()
            .unwrap()
            .insert(attempt.job.id, Instant::now());
        Box::pin(async { Outcome::Succeeded })
    }
}

fn spec(n: usize) -> JobSpec {
    serde_json::from_value(serde_json::json!({
        "repository": format!("https://example.com/repo-{}.git", n % 16),
        "commit": "0123456789abcdef0123456789abcdef01234567",
    }))
    .unwrap()
}

/// N replicas on database `url`: stores open, schedulers not yet running.
struct Replicas {
    stores: Vec<Arc<PostgresStore>>,
    schedulers: Vec<Arc<Scheduler>>,
    executor: Arc<NoopExecutor>,
    shutdown: CancellationToken,
}

impl Replicas {
    /// Their job logs go under `logs`, a directory no other phase uses.
    async fn open(url: &str, n: usize, logs: &Path) -> Replicas {
        let executor = Arc::new(NoopExecutor::default());
        let mut stores = Vec::new();
        let mut schedulers = Vec::new();
        for i in 0..n {
            let store = Arc::new(
                PostgresStore::open(url, SpecPolicy::default())
                    .await
                    .unwrap(),
            );
            let config = SchedulerConfig {
                worker: format!("bench-{i}/{}", std::process::id()),
                concurrency: 256,
                per_repository: 0,
                heartbeat: Duration::from_secs(60),
                lease: Duration::from_secs(300),
                ..SchedulerConfig::default()
            };
            let logs = JobLogs::new(logs.join(format!("logs-{i}"))).unwrap();
            schedulers.push(Scheduler::new(
                store.clone(),
                executor.clone(),
                logs,
                config,
            ));
            stores.push(store);
        }
        Replicas {
            stores,
            schedulers,
            executor,
            shutdown: CancellationToken::new(),
        }
    }

    /// Run each replica's scheduler, woken by its own LISTEN loop.
    async fn start(&self) {
        for (store, scheduler) in self.stores.iter().zip(&self.schedulers) {
            let notify = Arc::new(tokio::sync::Notify::new());
            let (s, n, stop) = (store.clone(), notify.clone(), self.shutdown.clone());
            tokio::spawn(async move { s.listen(n, stop).await });
            let (sch, stop) = (scheduler.clone(), self.shutdown.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = notify.notified() => sch.wake(),
                    }
                }
            });
            tokio::spawn(scheduler.clone().run(self.shutdown.clone()));
        }
    }

    /// Submit `total` jobs, `IN_FLIGHT` at a time, spread over the replicas
    /// as a load balancer would; each replica wakes its own scheduler.
    async fn submit_all(&self, total: usize) {
        let mut submitters = Vec::new();
        for s in 0..IN_FLIGHT {
            let r = s % self.stores.len();
            let (store, scheduler) = (self.stores[r].clone(), self.schedulers[r].clone());
            submitters.push(tokio::spawn(async move {
                for n in (s..total).step_by(IN_FLIGHT) {
                    store.submit(spec(n)).await.unwrap();
                    scheduler.wake();
                }
            }));
        }
        for s in submitters {
            s.await.unwrap();
        }
    }

    async fn until_succeeded(&self, total: usize) {
        loop {
            let done = self.stores[0]
                .counts()
                .await
                .unwrap()
                .get(&JobState::Succeeded)
                .copied()
                .unwrap_or(0);
            if done as usize >= total {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[derive(Default, Clone, Copy)]
struct Figures {
    enqueue: f64,
    complete: f64,
    sequential: f64,
    concurrent_submit: f64,
    lifecycle: f64,
    p50_ms: f64,
    p99_ms: f64,
    latency_jobs: usize,
}

fn pct(v: &[Duration], p: f64) -> f64 {
    v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3
}

/// Slipway's figures with `n` replicas; each phase writes its job logs to a
/// directory of its own under `logs`.
async fn slipway(pg: &postgres::TestPostgres, n: usize, logs: &Path) -> Figures {
    let mut f = Figures::default();

    // Enqueue alone, then drain.
    let replicas = Replicas::open(&pg.database(), n, &logs.join(format!("{n}-drain"))).await;
    let t0 = Instant::now();
    replicas.submit_all(JOBS).await;
    let enqueue = t0.elapsed();
    let t0 = Instant::now();
    replicas.start().await;
    replicas.until_succeeded(JOBS).await;
    let drain = t0.elapsed();
    drop(replicas);
    f.enqueue = JOBS as f64 / enqueue.as_secs_f64();
    f.complete = JOBS as f64 / drain.as_secs_f64();
    f.sequential = JOBS as f64 / (enqueue + drain).as_secs_f64();

    // Both at once.
    let replicas = Replicas::open(&pg.database(), n, &logs.join(format!("{n}-lifecycle"))).await;
    replicas.start().await;
    // The LISTEN connections are up before the clock starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    replicas.submit_all(JOBS).await;
    let submitted = t0.elapsed();
    replicas.until_succeeded(JOBS).await;
    let elapsed = t0.elapsed();
    drop(replicas);
    f.concurrent_submit = JOBS as f64 / submitted.as_secs_f64();
    f.lifecycle = JOBS as f64 / elapsed.as_secs_f64();

    // Latency at a modest rate, one submit at a time, round-robin.
    let replicas = Replicas::open(&pg.database(), n, &logs.join(format!("{n}-latency"))).await;
    replicas.start().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gap = Duration::from_micros(1_000_000 / RATE);
    let begin = Instant::now();
    let mut acked = HashMap::new();
    for i in 0..(RATE * LATENCY_SECONDS) as usize {
        let due = begin + gap * i as u32;
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
        let r = i % n;
        let id = replicas.stores[r].submit(spec(i)).await.unwrap().record.id;
        acked.insert(id, Instant::now());
        replicas.schedulers[r].wake();
    }
    replicas.until_succeeded(acked.len()).await;
    let mut lat: Vec<Duration> = {
        let started = replicas.executor.started.lock().unwrap();
        acked
            .iter()
            .filter_map(|(id, t)| started.get(id).map(|s| s.saturating_duration_since(*t)))
            .collect()
    };
    drop(replicas);
    lat.sort();
    f.p50_ms = pct(&lat, 0.5);
    f.p99_ms = pct(&lat, 0.99);
    f.latency_jobs = lat.len();
    f
}

/// graphile-worker installed (`npm ci`, pinned by the lock file) under the
/// target dir; its directory, with `bench.js` beside `node_modules`.
fn install_graphile() -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/graphile");
    // The bench binary is <target>/release/deps/replicas-…
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("graphile");
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["package.json", "package-lock.json", "bench.js"] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    // Reinstall only when the lock file changed since the last install.
    let lock = std::fs::read(dir.join("package-lock.json")).unwrap();
    let stamp = dir.join("node_modules/.slipway-lock");
    if std::fs::read(&stamp).ok().as_deref() != Some(&lock[..]) {
        let status = Command::new("npm")
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed for the graphile-worker side (Node 20)");
        assert!(status.success(), "npm ci in {} failed", dir.display());
        std::fs::write(&stamp, &lock).unwrap();
    }
    dir
}

fn graphile(pg: &postgres::TestPostgres) -> (String, Figures) {
    let dir = install_graphile();
    let out = Command::new("node")
        .arg("bench.js")
        .current_dir(&dir)
        .env("DATABASE_URL", pg.database())
        .env("JOBS", JOBS.to_string())
        .env("RATE", RATE.to_string())
        .env("LATENCY_SECONDS", LATENCY_SECONDS.to_string())
        .output()
        .expect("node is needed for the graphile-worker side");
    assert!(
        out.status.success(),
        "graphile-worker bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("graphile-worker bench printed {stdout:?}: {e}"));
    let num = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let figures = Figures {
        enqueue: num("enqueue_per_s"),
        complete: num("complete_per_s"),
        sequential: num("sequential_lifecycle_per_s"),
        concurrent_submit: num("concurrent_submit_per_s"),
        lifecycle: num("concurrent_lifecycle_per_s"),
        p50_ms: num("latency_p50_ms"),
        p99_ms: num("latency_p99_ms"),
        latency_jobs: v["latency_jobs"].as_u64().unwrap_or(0) as usize,
    };
    (v["version"].as_str().unwrap_or("?").to_owned(), figures)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let pg = postgres::TestPostgres::start();
    let version = pg.psql("postgres", "SHOW server_version");
    let fsync = pg.psql("postgres", "SHOW fsync");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());

    // For looking into one side: SLIPWAY_BENCH_REPLICAS=1 (a list, "1,3")
    // and SLIPWAY_BENCH_GRAPHILE=0. The comparison needs the defaults.
    let counts: Vec<usize> = std::env::var("SLIPWAY_BENCH_REPLICAS")
        .map(|v| v.split(',').map(|n| n.trim().parse().unwrap()).collect())
        .unwrap_or_else(|_| vec![1, 2, 3]);
    let with_graphile = std::env::var("SLIPWAY_BENCH_GRAPHILE").as_deref() != Ok("0");
    let (gw_version, gw) = if with_graphile {
        graphile(&pg)
    } else {
        ("not run".to_owned(), Figures::default())
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Job logs are deleted at the end, not between phases: on a filesystem
    // without a journal, ext4 does not reuse an inode within ~35 s of its
    // deletion, so creating files right after deleting thousands scans past
    // them all. That would measure the bench's cleanup, not the queue.
    let logs = tempfile::tempdir().unwrap();
    let slipway: Vec<Figures> = counts
        .iter()
        .map(|&n| rt.block_on(slipway(&pg, n, logs.path())))
        .collect();
    drop(rt);

    println!(
        "Lifecycle on PostgreSQL {version} (fsync={fsync}, durable), {JOBS} jobs, {IN_FLIGHT} submits in flight, {cores} cores shared by everything (the database, both systems, all replicas); latency at {RATE} jobs/s for {LATENCY_SECONDS} s, submit ack -> start."
    );
    println!(
        "Slipway replicas: N PostgresStore + Scheduler pairs in one process, each with its own pool and LISTEN loop, one database. graphile-worker {gw_version}: addJob one by one, worker with default settings (concurrency 1)."
    );
    println!();
    println!(
        "{:<22} {:>10} {:>10} {:>12} {:>12} {:>11} {:>9} {:>9}",
        "",
        "enqueue/s",
        "complete/s",
        "enq+drain/s",
        "lifecycle/s",
        "(submit/s)",
        "p50 ms",
        "p99 ms"
    );
    let row = |name: &str, f: &Figures| {
        println!(
            "{:<22} {:>10.0} {:>10.0} {:>12.0} {:>12.0} {:>11.0} {:>9.2} {:>9.2}",
            name,
            f.enqueue,
            f.complete,
            f.sequential,
            f.lifecycle,
            f.concurrent_submit,
            f.p50_ms,
            f.p99_ms
        );
    };
    if with_graphile {
        row("graphile-worker", &gw);
    }
    for (n, f) in counts.iter().zip(&slipway) {
        row(&format!("Slipway, {n} replica(s)"), f);
    }
    println!();
    println!(
        "enqueue: submits alone; complete: draining them after; enq+drain: the two in sequence; lifecycle: submits and workers at once (submit/s: the submit rate meanwhile). Latency samples: graphile {}, Slipway {:?}.",
        gw.latency_jobs,
        slipway.iter().map(|f| f.latency_jobs).collect::<Vec<_>>()
    );
    // Targets: 1 replica at least 2x graphile-worker's default figures;
    // 3 replicas at least 1.5x that (3x graphile-worker).
    let of = |n: usize| counts.iter().position(|&c| c == n).map(|i| &slipway[i]);
    let (Some(one), Some(three)) = (of(1), of(3)) else {
        return;
    };
    if !with_graphile {
        return;
    }
    let check = |what: &str, got: f64, base: f64, want: f64| {
        let ratio = got / base;
        println!(
            "  {what:<44} {ratio:>5.2}x graphile-worker (target {want:.1}x): {}",
            if ratio >= want { "met" } else { "MISSED" }
        );
    };
    println!("Against the targets:");
    check("1 replica enqueue", one.enqueue, gw.enqueue, 2.0);
    check("1 replica complete", one.complete, gw.complete, 2.0);
    check(
        "1 replica lifecycle (vs its enq+drain)",
        one.lifecycle,
        gw.sequential,
        2.0,
    );
    check(
        "1 replica lifecycle (vs its lifecycle)",
        one.lifecycle,
        gw.lifecycle,
        2.0,
    );
    check("3 replicas enqueue", three.enqueue, gw.enqueue, 3.0);
    check("3 replicas complete", three.complete, gw.complete, 3.0);
    check(
        "3 replicas lifecycle (vs its lifecycle)",
        three.lifecycle,
        gw.lifecycle,
        3.0,
    );
}
