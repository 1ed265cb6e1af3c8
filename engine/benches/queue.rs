//! Queue benchmarks; prints its figures. `cargo bench -p slipway --bench queue`.
//!
//! - lifecycle throughput: submit → lease → execute (no-op) → complete, all
//!   durable (every acknowledged change committed with fsync), 64 concurrent
//!   submitters, the scheduler in the same process;
//! - submit-to-lease latency at a modest offered rate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slipway::executor::{Attempt, ExecFuture, Executor};
use slipway::job::{JobId, JobSpec, JobState, Outcome, SpecPolicy};
use slipway::logs::JobLogs;
use slipway::queue::JobQueue;
use slipway::queue::{RedbStore, Scheduler, SchedulerConfig};
use tokio_util::sync::CancellationToken;

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

fn setup(
    concurrency: usize,
) -> (
    tempfile::TempDir,
    Arc<RedbStore>,
    Arc<NoopExecutor>,
    Arc<Scheduler>,
    CancellationToken,
) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(RedbStore::open(&dir.path().join("store.redb"), SpecPolicy::default()).unwrap());
    let executor = Arc::new(NoopExecutor::default());
    let config = SchedulerConfig {
        concurrency,
        per_repository: 0,
        heartbeat: Duration::from_secs(60),
        lease: Duration::from_secs(300),
        ..SchedulerConfig::default()
    };
    let logs = JobLogs::new(dir.path().join("logs")).unwrap();
    let scheduler = Scheduler::new(store.clone(), executor.clone(), logs, config);
    let shutdown = CancellationToken::new();
    tokio::spawn(scheduler.clone().run(shutdown.clone()));
    (dir, store, executor, scheduler, shutdown)
}

async fn throughput(total: usize) {
    let (_dir, store, _executor, scheduler, shutdown) = setup(256);
    let started = Instant::now();
    let mut submitters = Vec::new();
    for s in 0..64 {
        let store = store.clone();
        let scheduler = scheduler.clone();
        submitters.push(tokio::spawn(async move {
            for n in (s..total).step_by(64) {
                store.submit(spec(n)).await.unwrap();
                scheduler.wake();
            }
        }));
    }
    for s in submitters {
        s.await.unwrap();
    }
    let submitted = started.elapsed();
    loop {
        let done = store
            .counts()
            .await
            .unwrap()
            .get(&JobState::Succeeded)
            .copied()
            .unwrap_or(0);
        if done as usize >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    println!(
        "queue lifecycle (submit -> lease -> no-op -> complete, durable), {total} jobs, 64 submitters: {:.0} jobs/s (all submits acknowledged after {:.2} s, all succeeded after {:.2} s)",
        total as f64 / elapsed.as_secs_f64(),
        submitted.as_secs_f64(),
        elapsed.as_secs_f64()
    );
}

async fn latency(count: usize, rate_per_s: u64) {
    let (_dir, store, executor, scheduler, shutdown) = setup(16);
    let mut acked = HashMap::new();
    let gap = Duration::from_micros(1_000_000 / rate_per_s);
    let mut submit_times = Vec::new();
    for n in 0..count {
        let t0 = Instant::now();
        let id = store.submit(spec(n)).await.unwrap().record.id;
        submit_times.push(t0.elapsed());
        acked.insert(id, Instant::now());
        scheduler.wake();
        tokio::time::sleep(gap.saturating_sub(t0.elapsed())).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown.cancel();
    let started = executor.started.lock().unwrap();
    let mut lat: Vec<Duration> = acked
        .iter()
        .filter_map(|(id, t)| started.get(id).map(|s| s.saturating_duration_since(*t)))
        .collect();
    lat.sort();
    submit_times.sort();
    let pct = |v: &[Duration], p: f64| v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "at {rate_per_s} jobs/s offered: submit (durable ack) p50 {:.2} ms, p99 {:.2} ms; submit-ack -> executor start p50 {:.2} ms, p99 {:.2} ms  [{} jobs]",
        pct(&submit_times, 0.5),
        pct(&submit_times, 0.99),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.len()
    );
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// HTTP submit latency with 64 concurrent clients on loopback; RSS idle and
/// with 100,000 queued jobs.
fn http_and_memory() {
    use slipway::api::{self, AppState};
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store =
        Arc::new(RedbStore::open(&dir.path().join("store.redb"), SpecPolicy::default()).unwrap());
    let logs = JobLogs::new(dir.path().join("logs")).unwrap();
    // No executor work: measure the API and the store, with a scheduler that never leases.
    let config = SchedulerConfig {
        concurrency: 0,
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(NoopExecutor::default()),
        logs.clone(),
        config,
    );
    let state = AppState {
        store: store.clone(),
        scheduler: scheduler.clone(),
        logs,
        token: "t".into(),
        policy: SpecPolicy::default(),
        supervisor: None,
        workspaces: None,
        plugins: None,
        request_timeout: api::REQUEST_TIMEOUT,
        // The bench's repository host, allowed by name: no DNS is asked.
        git_credentials: slipway::git_auth::GitCredentials::default().with_outbound(
            std::sync::Arc::new(slipway::outbound::OutboundPolicy {
                allow_hosts: vec!["example.com".into()],
                ..Default::default()
            }),
        ),
        watcher: None,
        deployments: None,
        self_update: None,
        auth_guard: Default::default(),
        dashboard: Default::default(),
        replica: None,
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    rt.spawn(async move {
        tokio::spawn(scheduler.run(stop.clone()));
        api::serve(
            tokio::net::TcpListener::from_std(listener).unwrap(),
            state,
            stop,
        )
        .await
        .unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    let idle = rss_mib();
    // 64 clients saturate the 2 cores (clients included): latency is then
    // concurrency / throughput. 8 clients show the latency below saturation.
    let mut submitted = 0;
    for (clients, per_client) in [(64usize, 300usize), (8, 1000)] {
        let offset = submitted;
        let started = Instant::now();
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                std::thread::spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
                    let mut lat = Vec::with_capacity(per_client);
                    for n in 0..per_client {
                        let body =
                            serde_json::to_string(&spec(offset + c * per_client + n)).unwrap();
                        let t0 = Instant::now();
                        let r = agent
                            .post(format!("http://{addr}/api/v1/jobs"))
                            .header("Authorization", "Bearer t")
                            .header("Content-Type", "application/json")
                            .send(body)
                            .unwrap();
                        assert_eq!(r.status(), 201);
                        lat.push(t0.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut lat: Vec<Duration> = threads
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        let elapsed = started.elapsed();
        lat.sort();
        let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
        println!(
            "HTTP submit, {clients} concurrent clients on loopback (same 2 cores): p50 {:.2} ms, p99 {:.2} ms, {:.0} submits/s  [{} submits]",
            pct(0.5),
            pct(0.99),
            lat.len() as f64 / elapsed.as_secs_f64(),
            lat.len()
        );
        submitted += lat.len();
    }
    // Fill to 100,000 queued jobs through the store.
    let have = submitted;
    rt.block_on(async {
        let mut tasks = Vec::new();
        for s in 0..32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for n in (have + s..100_000).step_by(32) {
                    store.submit(spec(n)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let queued = rt.block_on(store.counts()).unwrap()[&JobState::Queued];
    println!(
        "RSS (store + scheduler + API in one process): idle {:.1} MiB; with {queued} queued jobs {:.1} MiB; store file {:.1} MiB",
        idle,
        rss_mib(),
        std::fs::metadata(store.path())
            .map(|m| m.len() as f64 / 1048576.0)
            .unwrap_or(0.0)
    );
    shutdown.cancel();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        throughput(20_000).await;
        latency(1_000, 200).await;
    });
    drop(rt);
    http_and_memory();
}
