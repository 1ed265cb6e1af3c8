//! The durable queue with a real store (each test runs on a redb file and
//! on a PostgreSQL database, see `on_every_store!`) and an executor defined here
//! (succeeds, fails, hangs, or crashes on command; it runs no host commands).
//! The behaviour comes from the job's `behaviour` label.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use slipway::job::{JobId, JobRecord, JobSpec, JobState, Outcome, SpecPolicy};
use slipway::logs::JobLogs;
use slipway::queue::{
    JobQueue, JobStore, LeaseRequest, ListFilter, RedbStore, Scheduler, SchedulerConfig, StoreError,
};
use tokio_util::sync::CancellationToken;

use crate::support::stores::{Backend, Place};
use crate::support::{ScriptedExecutor, spec};

fn fast_config() -> SchedulerConfig {
    SchedulerConfig {
        concurrency: 4,
        per_repository: 0,
        lease: Duration::from_millis(1000),
        heartbeat: Duration::from_millis(100),
        poll: Duration::from_millis(50),
        stop_grace: Duration::from_millis(500),
        ..SchedulerConfig::default()
    }
}

struct Harness {
    /// Keeps the store's files (or database) for the test's length.
    _place: Place,
    store: Arc<dyn JobStore>,
    executor: Arc<ScriptedExecutor>,
    scheduler: Arc<Scheduler>,
    logs: JobLogs,
    shutdown: CancellationToken,
}

impl Harness {
    async fn new(backend: Backend, config: SchedulerConfig) -> Harness {
        let place = Place::new(backend);
        let store = place.open().await;
        let logs = JobLogs::new(place.dir.path().join("logs")).unwrap();
        let executor = Arc::new(ScriptedExecutor::default());
        let scheduler = Scheduler::new(store.clone(), executor.clone(), logs.clone(), config);
        Harness {
            _place: place,
            store,
            executor,
            scheduler,
            logs,
            shutdown: CancellationToken::new(),
        }
    }

    fn start(&self) {
        tokio::spawn(self.scheduler.clone().run(self.shutdown.clone()));
    }

    async fn submit(&self, spec: JobSpec) -> JobRecord {
        let submitted = self.store.submit(spec).await.unwrap();
        self.scheduler.wake();
        submitted.record
    }

    /// Wait (bounded) until job `id` is in a final state.
    async fn finished(&self, id: JobId) -> JobRecord {
        for _ in 0..400 {
            let record = self.store.get(id).await.unwrap().unwrap();
            if record.state.is_final() {
                return record;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "job {id} did not finish: {:?}",
            self.store.get(id).await.unwrap()
        );
    }
}

async fn a_job_runs_to_success_with_its_events_and_log(b: Backend) {
    let h = Harness::new(b, fast_config()).await;
    h.start();
    let job = h.submit(spec("succeed")).await;
    let done = h.finished(job.id).await;
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.attempt, 1);
    let states: Vec<JobState> = done.events.iter().map(|e| e.to).collect();
    assert_eq!(
        states,
        vec![JobState::Queued, JobState::Running, JobState::Succeeded]
    );
    assert_eq!(
        done.progress.as_ref().map(|p| p.message.as_str()),
        Some("succeed")
    );
    let (log, _) = h.logs.read(job.id, 0, 1 << 20).unwrap();
    let log = String::from_utf8(log).unwrap();
    assert!(
        log.contains("stdout running succeed") && log.contains("attempt ended: succeeded"),
        "{log}"
    );
}

async fn priority_first_then_fifo(b: Backend) {
    let h = Harness::new(
        b,
        SchedulerConfig {
            concurrency: 1,
            ..fast_config()
        },
    )
    .await;
    let mut ids = Vec::new();
    for priority in [0, 5, 0, 5, 1] {
        let mut s = spec("succeed");
        s.priority = priority;
        ids.push(h.submit(s).await.id);
    }
    h.start();
    for id in &ids {
        h.finished(*id).await;
    }
    let order = h.executor.started.lock().unwrap().clone();
    assert_eq!(order, vec![ids[1], ids[3], ids[4], ids[0], ids[2]]);
}

async fn red_suite_is_not_retried_but_infrastructure_errors_are_until_dead(b: Backend) {
    let h = Harness::new(b, fast_config()).await;
    h.start();
    let failed = h.submit(spec("fail")).await;
    let mut infra = spec("infra");
    infra.max_attempts = Some(2);
    let infra = h.submit(infra).await;
    let crash = h
        .submit(JobSpec {
            max_attempts: Some(1),
            ..spec("crash")
        })
        .await;

    let failed = h.finished(failed.id).await;
    assert_eq!((failed.state, failed.attempt), (JobState::Failed, 1));
    assert_eq!(failed.reason.as_deref(), Some("tests failed"));

    let infra = h.finished(infra.id).await;
    assert_eq!((infra.state, infra.attempt), (JobState::Dead, 2));
    assert!(
        infra.events.iter().any(|e| e.to == JobState::Retrying),
        "{:?}",
        infra.events
    );
    assert!(infra.reason.unwrap().contains("2 attempts exhausted"));

    let crash = h.finished(crash.id).await;
    assert_eq!(crash.state, JobState::Dead);
    assert!(crash.reason.unwrap().contains("the executor crashed"));
}

async fn cancel_stops_a_running_job_and_a_queued_one(b: Backend) {
    let h = Harness::new(b, fast_config()).await;
    h.start();
    let running = h.submit(spec("hang")).await;
    while h.store.get(running.id).await.unwrap().unwrap().state != JobState::Running {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.store.cancel(running.id).await.unwrap();
    let done = h.finished(running.id).await;
    assert_eq!(done.state, JobState::Cancelled);

    let cancelled_again = h.store.cancel(running.id).await.unwrap_err();
    assert!(
        cancelled_again
            .to_string()
            .contains("is cancelled, so it cannot be cancelled"),
        "{cancelled_again}"
    );
    assert!(matches!(
        h.store.cancel(999_999).await,
        Err(StoreError::NotFound(999_999))
    ));
}

async fn timeout_ends_a_hanging_job_as_timed_out(b: Backend) {
    let h = Harness::new(b, fast_config()).await;
    h.start();
    let job = h
        .submit(JobSpec {
            timeout_s: Some(1),
            ..spec("hang")
        })
        .await;
    let done = h.finished(job.id).await;
    assert_eq!(done.state, JobState::TimedOut);
}

async fn idempotency_key_returns_the_first_job(b: Backend) {
    let h = Harness::new(b, fast_config()).await;
    let s = JobSpec {
        idempotency_key: Some("deploy-42".into()),
        ..spec("succeed")
    };
    let first = h.store.submit(s.clone()).await.unwrap();
    let second = h.store.submit(s).await.unwrap();
    assert!(first.created && !second.created);
    assert_eq!(first.record.id, second.record.id);
    assert_eq!(h.store.list(&ListFilter::default()).await.unwrap().len(), 1);
}

async fn expired_lease_requeues_and_the_stale_attempt_is_fenced_out(b: Backend) {
    let h = Harness::new(b, fast_config()).await;
    let job = h.store.submit(spec("succeed")).await.unwrap().record;
    let lease = |worker: &str| LeaseRequest {
        worker: worker.into(),
        max: 1,
        lease_ms: 1,
        per_repository: 0,
        total: 0,
    };
    let first = h.store.lease(lease("slow-worker")).await.unwrap().remove(0);
    let old_fence = first.lease.unwrap().fence;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(h.store.expire_leases().await.unwrap(), vec![job.id]);
    assert_eq!(
        h.store.get(job.id).await.unwrap().unwrap().state,
        JobState::Retrying
    );
    // Wait out the backoff, then a second worker takes it.
    let second = loop {
        let leased = h
            .store
            .lease(LeaseRequest {
                lease_ms: 60_000,
                ..lease("fast-worker")
            })
            .await
            .unwrap();
        if let Some(r) = leased.into_iter().next() {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let new_fence = second.lease.unwrap().fence;
    assert!(new_fence > old_fence);
    let stale = h
        .store
        .complete(
            job.id,
            old_fence,
            Outcome::Failed {
                reason: "late".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(stale.to_string().contains("is stale"), "{stale}");
    let done = h
        .store
        .complete(job.id, new_fence, Outcome::Succeeded)
        .await
        .unwrap();
    assert_eq!((done.state, done.attempt), (JobState::Succeeded, 2));
}

async fn per_repository_limit_holds(b: Backend) {
    let h = Harness::new(b, fast_config()).await;
    for _ in 0..3 {
        h.store.submit(spec("succeed")).await.unwrap();
    }
    let other = JobSpec {
        repository: "https://example.com/other.git".into(),
        ..spec("succeed")
    };
    h.store.submit(other).await.unwrap();
    let leased = h
        .store
        .lease(LeaseRequest {
            worker: "w".into(),
            max: 10,
            lease_ms: 60_000,
            per_repository: 2,
            total: 0,
        })
        .await
        .unwrap();
    let mut by_repo: HashMap<String, usize> = HashMap::new();
    for r in &leased {
        *by_repo.entry(r.spec.repository.clone()).or_default() += 1;
    }
    assert_eq!(by_repo.get("https://example.com/repo.git"), Some(&2));
    assert_eq!(by_repo.get("https://example.com/other.git"), Some(&1));
}

async fn jobs_survive_a_reopen_and_ids_keep_growing(b: Backend) {
    let place = Place::new(b);
    let first = {
        let store = place.open().await;
        store.submit(spec("succeed")).await.unwrap().record
    };
    let store = place.open().await;
    assert_eq!(store.get(first.id).await.unwrap().unwrap().spec, first.spec);
    let second = store.submit(spec("succeed")).await.unwrap().record;
    assert!(second.id > first.id);
    assert_eq!(store.counts().await.unwrap()[&JobState::Queued], 2);
}

#[test]
fn damaged_or_newer_store_files_are_clear_errors_never_reset() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.redb");
    std::fs::write(&garbage, vec![0x5a; 64 * 1024]).unwrap();
    let e = RedbStore::open(&garbage, SpecPolicy::default())
        .err()
        .expect("garbage must not open")
        .to_string();
    assert!(
        e.contains("garbage.redb") && e.contains("never resets it silently"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(&garbage).unwrap(),
        vec![0x5a; 64 * 1024],
        "the damaged file is left as it was"
    );

    let newer = dir.path().join("newer.redb");
    {
        let db = redb::Database::create(&newer).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .unwrap();
            meta.insert("schema_version", 99).unwrap();
        }
        txn.commit().unwrap();
    }
    let e = RedbStore::open(&newer, SpecPolicy::default())
        .err()
        .expect("newer schema must not open")
        .to_string();
    assert!(e.contains("written by a newer Slipway (schema 99"), "{e}");
}

#[test]
fn truncated_store_is_refused_or_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = RedbStore::open(&path, SpecPolicy::default()).unwrap();
        for _ in 0..50 {
            store.submit(spec("succeed")).await.unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(50));
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 3).unwrap();
    drop(file);
    match RedbStore::open(&path, SpecPolicy::default()) {
        Err(e) => assert!(e.to_string().contains("store.redb"), "{e}"),
        Ok(store) => {
            // redb repaired it from its last committed state: no silent reset.
            assert_eq!(
                rt.block_on(store.list(&ListFilter {
                    limit: 100,
                    ..Default::default()
                }))
                .unwrap()
                .len(),
                50
            );
        }
    }
    assert!(Path::new(&path).exists());
}

/// A read-only state directory (a read-only bind mount: `chmod` does not
/// stop root) gives a clear error naming the path and the fix.
#[test]
fn read_only_state_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("state");
    std::fs::create_dir(&target).unwrap();
    let run = |args: &[&str]| {
        let status = std::process::Command::new("mount")
            .args(args)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount {args:?} failed: this test needs root (as CI runs)"
        );
    };
    let path = target.to_str().unwrap();
    run(&["--bind", path, path]);
    run(&["-o", "remount,ro,bind", path]);
    let result = RedbStore::open(&target.join("store.redb"), SpecPolicy::default());
    let _ = std::process::Command::new("umount").arg(path).status();
    let e = result
        .err()
        .expect("a read-only state directory must not open")
        .to_string();
    assert!(
        e.contains("store.redb") && e.contains("not writable"),
        "{e}"
    );
}

async fn shutdown_lets_running_jobs_finish_within_the_drain_then_requeues(b: Backend) {
    for (drain, expected) in [
        (Duration::from_secs(5), JobState::Succeeded),
        (Duration::ZERO, JobState::Retrying),
    ] {
        let h = Harness::new(
            b,
            SchedulerConfig {
                drain,
                heartbeat: Duration::from_millis(50),
                poll: Duration::from_millis(50),
                ..SchedulerConfig::default()
            },
        )
        .await;
        let running = tokio::spawn(h.scheduler.clone().run(h.shutdown.clone()));
        let job = h.submit(spec("slow")).await;
        for _ in 0..200 {
            if h.store.get(job.id).await.unwrap().unwrap().state == JobState::Running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        h.shutdown.cancel();
        running.await.unwrap();
        let record = h.store.get(job.id).await.unwrap().unwrap();
        assert_eq!(
            record.state, expected,
            "drain {drain:?}: {:?}",
            record.events
        );
    }
}

/// A ready workspace's runtime is kept apart from its record, survives a
/// reopen (what a restarted engine reads), and is gone once deleted.
async fn a_workspace_runtime_is_kept_until_deleted(b: Backend) {
    use slipway::plan::{Step, StepReport};
    use slipway::runner::services::ServiceView;
    use slipway::workspace::{RuntimeService, WorkspaceRuntime};
    let place = Place::new(b);
    let runtime = WorkspaceRuntime {
        container: "c0ffee".into(),
        workdir: "/workspace".into(),
        user: "1000:1000".into(),
        step_timeout_ms: 2000,
        fast: vec![Step {
            name: "lint".into(),
            command: "ruff check .".into(),
            report: Some(StepReport {
                format: "ruff-json".into(),
                path: None,
            }),
        }],
        full: Vec::new(),
        services: vec![RuntimeService {
            name: "db".into(),
            container: "beef".into(),
            service: ServiceView {
                name: "db".into(),
                image: "postgres:15".into(),
                env: Vec::new(),
                ports: vec![5432],
                options: Vec::new(),
            },
            reset: Some(vec!["psql".into(), "-c".into(), "select 1".into()]),
        }],
    };
    {
        let store = place.open().await;
        assert!(store.get_workspace_runtime("ws-1").await.unwrap().is_none());
        store
            .put_workspace_runtime("ws-1", Some(runtime.clone()))
            .await
            .unwrap();
        assert!(
            store.list_workspaces().await.unwrap().is_empty(),
            "not a record"
        );
    }
    let store = place.open().await;
    let read = store.get_workspace_runtime("ws-1").await.unwrap().unwrap();
    assert_eq!(
        serde_json::to_value(&read).unwrap(),
        serde_json::to_value(&runtime).unwrap()
    );
    assert!(store.put_workspace_runtime("ws-1", None).await.unwrap());
    assert!(store.get_workspace_runtime("ws-1").await.unwrap().is_none());
}

/// A queued job starts as soon as a slot frees, not at the next poll: with
/// one slot and a poll of a minute, ten quick jobs in a row take moments.
async fn a_freed_slot_leases_the_next_job_without_waiting_for_the_poll(b: Backend) {
    let h = Harness::new(
        b,
        SchedulerConfig {
            concurrency: 1,
            poll: Duration::from_secs(60),
            ..fast_config()
        },
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(h.submit(spec("succeed")).await.id);
    }
    let t0 = std::time::Instant::now();
    h.start();
    for id in ids {
        assert_eq!(h.finished(id).await.state, JobState::Succeeded);
    }
    // The interval's first tick is at once; a second would take a minute.
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(8), "10 jobs took {took:?}");
}

/// `total` holds across schedulers sharing a store (on PostgreSQL, two
/// stores on one database, as two replicas are): two slots each, a total
/// of three, so the limit is reached only with both running, and never
/// passed; every job still runs.
async fn a_total_limit_holds_across_replicas(b: Backend) {
    let config = SchedulerConfig {
        concurrency: 2,
        total: 3,
        ..fast_config()
    };
    let h = Harness::new(b, config.clone()).await;
    // A second replica: its own store where the backend allows two openers.
    let other_store = match b {
        Backend::Postgres => h._place.open().await,
        Backend::Redb => h.store.clone(),
    };
    let other = Scheduler::new(
        other_store,
        h.executor.clone(),
        h.logs.clone(),
        SchedulerConfig {
            worker: "other-replica".into(),
            ..config
        },
    );
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(h.submit(spec("slow")).await.id);
    }
    h.start();
    tokio::spawn(other.clone().run(h.shutdown.clone()));
    let mut most = 0;
    loop {
        let counts = h.store.counts().await.unwrap();
        let running = counts.get(&JobState::Running).copied().unwrap_or(0);
        most = most.max(running);
        assert!(running <= 3, "{running} running at once, limit 3");
        if counts.get(&JobState::Succeeded).copied().unwrap_or(0) == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(most, 3, "the limit was never reached: it proves nothing");
    let workers: std::collections::HashSet<String> = {
        let mut w = std::collections::HashSet::new();
        for id in ids {
            let done = h.store.get(id).await.unwrap().unwrap();
            for e in &done.events {
                if let Some(worker) = e.reason.split("leased by ").nth(1) {
                    w.insert(worker.to_owned());
                }
            }
        }
        w
    };
    assert_eq!(workers.len(), 2, "both replicas ran jobs: {workers:?}");
}

crate::on_every_store!(
    a_job_runs_to_success_with_its_events_and_log,
    a_total_limit_holds_across_replicas,
    a_freed_slot_leases_the_next_job_without_waiting_for_the_poll,
    priority_first_then_fifo,
    red_suite_is_not_retried_but_infrastructure_errors_are_until_dead,
    cancel_stops_a_running_job_and_a_queued_one,
    timeout_ends_a_hanging_job_as_timed_out,
    idempotency_key_returns_the_first_job,
    expired_lease_requeues_and_the_stale_attempt_is_fenced_out,
    per_repository_limit_holds,
    jobs_survive_a_reopen_and_ids_keep_growing,
    shutdown_lets_running_jobs_finish_within_the_drain_then_requeues,
    a_workspace_runtime_is_kept_until_deleted,
);
