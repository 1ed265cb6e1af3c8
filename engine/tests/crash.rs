//! Crash test: an engine process (this test binary re-run as a child, with
//! the test executor) is killed with SIGKILL at random moments while jobs are
//! submitted continuously; after a last restart, every acknowledged job must
//! have reached a final state exactly once: none lost, none completed twice.
//!
//! A custom harness (`harness = false`): with `SLIPWAY_CRASH_CHILD` set this
//! binary is the engine; otherwise it runs the test.

mod support;

use std::collections::BTreeSet;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use slipway::api::{self, AppState};
use slipway::executor::{Attempt, ExecFuture, Executor};
use slipway::job::{Outcome, SpecPolicy};
use slipway::logs::JobLogs;
use slipway::queue::{RedbStore, Scheduler, SchedulerConfig};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "crash-test-token";
const ROUNDS: usize = 15;

/// Takes a little while, so kills land in the middle of attempts.
struct SlowExecutor;

impl Executor for SlowExecutor {
    fn execute(&self, attempt: Attempt) -> ExecFuture {
        Box::pin(async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(fastrand::u64(1..20))) => Outcome::Succeeded,
                _ = attempt.cancel.cancelled() => Outcome::Cancelled,
            }
        })
    }
}

fn child_main(state_dir: &str, port: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = std::path::Path::new(state_dir);
        let store = Arc::new(
            RedbStore::open(&dir.join("store.redb"), SpecPolicy::default()).expect("open store"),
        );
        let logs = JobLogs::new(dir.join("logs")).unwrap();
        let config = SchedulerConfig {
            concurrency: 16,
            per_repository: 0,
            heartbeat: Duration::from_millis(50),
            lease: Duration::from_millis(400),
            poll: Duration::from_millis(50),
            ..SchedulerConfig::default()
        };
        let scheduler = Scheduler::new(store.clone(), Arc::new(SlowExecutor), logs.clone(), config);
        let shutdown = CancellationToken::new();
        tokio::spawn(scheduler.clone().run(shutdown.clone()));
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
            .await
            .expect("bind");
        let state = AppState {
            store,
            scheduler,
            logs,
            token: TOKEN.into(),
            policy: SpecPolicy::default(),
            supervisor: None,
            workspaces: None,
            plugins: None,
            request_timeout: slipway::api::REQUEST_TIMEOUT,
            git_credentials: Default::default(),
            watcher: None,
            deployments: None,
            self_update: None,
            auth_guard: Default::default(),
            dashboard: Default::default(),
            replica: None,
        };
        api::serve(listener, state, shutdown).await.unwrap();
    });
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

fn start(state_dir: &str, port: u16) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("SLIPWAY_CRASH_CHILD", state_dir)
        .env("SLIPWAY_CRASH_PORT", port.to_string())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = agent()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .call()
            && r.status() == 200
        {
            return child;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the engine did not come up on port {port}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get_job(port: u16, id: u64) -> Option<Value> {
    let mut r = agent()
        .get(format!("http://127.0.0.1:{port}/api/v1/jobs/{id}"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .ok()?;
    (r.status() == 200)
        .then(|| r.body_mut().read_json().ok())
        .flatten()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("crash_kill_and_restart: test");
        return;
    }
    if let (Ok(dir), Ok(port)) = (
        std::env::var("SLIPWAY_CRASH_CHILD"),
        std::env::var("SLIPWAY_CRASH_PORT"),
    ) {
        child_main(&dir, &port);
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().to_str().unwrap().to_owned();
    let acknowledged: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let mut kills = 0;
    for round in 0..ROUNDS {
        let port = free_port();
        let mut child = start(&state_dir, port);
        let stop = Arc::new(AtomicBool::new(false));
        let mut submitters = Vec::new();
        for _ in 0..4 {
            let (stop, acked) = (stop.clone(), acknowledged.clone());
            submitters.push(std::thread::spawn(move || {
                let agent = agent();
                while !stop.load(Ordering::Relaxed) {
                    let mut spec = support::spec_json("succeed");
                    spec["max_attempts"] = Value::from(1000);
                    let response = agent
                        .post(format!("http://127.0.0.1:{port}/api/v1/jobs"))
                        .header("Authorization", format!("Bearer {TOKEN}"))
                        .header("Content-Type", "application/json")
                        .send(spec.to_string());
                    match response {
                        // Only a 201 is an acknowledgement; anything cut short is not.
                        Ok(mut r) if r.status() == 201 => {
                            if let Ok(job) = r.body_mut().read_json::<Value>() {
                                acked.lock().unwrap().insert(job["id"].as_u64().unwrap());
                            }
                            // A steady stream, not a flood: the point is kills mid-write.
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        _ => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(fastrand::u64(150..700)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        stop.store(true, Ordering::Relaxed);
        for s in submitters {
            s.join().unwrap();
        }
        eprintln!(
            "round {round}: killed; {} jobs acknowledged so far",
            acknowledged.lock().unwrap().len()
        );
    }

    // A last life: everything acknowledged must finish, exactly once.
    let port = free_port();
    let mut child = start(&state_dir, port);
    let acked: Vec<u64> = acknowledged.lock().unwrap().iter().copied().collect();
    assert!(
        acked.len() > 50,
        "too few jobs were acknowledged ({}) for the test to mean anything",
        acked.len()
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut failures = Vec::new();
    let mut retried = 0;
    for id in &acked {
        let job = loop {
            match get_job(port, *id) {
                Some(job)
                    if job["state"] == "succeeded"
                        || job["state"] == "dead"
                        || job["state"] == "failed" =>
                {
                    break Some(job);
                }
                Some(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                other => break other,
            }
        };
        let Some(job) = job else {
            failures.push(format!("job {id} was acknowledged but is lost"));
            continue;
        };
        if job["state"] != "succeeded" {
            failures.push(format!(
                "job {id} ended {}: {}",
                job["state"], job["reason"]
            ));
        }
        let finals = job["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                ["succeeded", "failed", "cancelled", "timed_out", "dead"]
                    .contains(&e["to"].as_str().unwrap_or(""))
            })
            .count();
        if finals != 1 {
            failures.push(format!(
                "job {id} reached a final state {finals} times: {}",
                job["events"]
            ));
        }
        if job["attempt"].as_u64().unwrap_or(0) > 1 {
            retried += 1;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    if failures.is_empty() {
        println!(
            "crash test: {} acknowledged jobs over {kills} SIGKILLs all reached `succeeded` exactly once ({retried} needed more than one attempt) in {:.1} s",
            acked.len(),
            started.elapsed().as_secs_f64()
        );
        println!("crash: 1 passed, 0 failed");
    } else {
        for f in failures.iter().take(20) {
            eprintln!("{f}");
        }
        println!("crash: 0 passed, 1 failed");
        std::process::exit(1);
    }
}
