//! The workspaces' decisions on the in-memory runtime: busy, expiry and the
//! order of a reset, each in well under a second and without a daemon.
//! What needs a kernel (the steps really running, services answering over
//! a network) is in `tests/all/workspaces.rs` against Docker.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use super::*;
use crate::checkout::Checkouts;
use crate::job::{JobSpec, SpecPolicy, Tier};
use crate::plugins::sandbox::SandboxOptions;
use crate::plugins::{LimitsPolicy, PluginSandbox, Registry};
use crate::profile::Profile;
use crate::queue::{ProfileStore, RedbStore};
use crate::runner::prepare::RunnerSettings;
use crate::runtime::memory::{ExecReply, MemoryRuntime};

const HOLDER: &str = "busybox:test";

/// A psql exec: the container, its argv, and `app.txt` in the checkout then.
type PsqlCall = (String, String, Option<String>);

struct Harness {
    dir: tempfile::TempDir,
    memory: Arc<MemoryRuntime>,
    workspaces: Arc<Workspaces>,
}

impl Harness {
    /// Workspaces over the in-memory runtime with the bundled plugins, and a
    /// profile `p` with these steps and services.
    async fn new(fast: &[&str], services: serde_json::Value) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            RedbStore::open(&dir.path().join("store.redb"), SpecPolicy::default()).unwrap(),
        );
        let profile: Profile = serde_json::from_value(serde_json::json!({
            "name": "p", "validation": {"fast": fast, "full": []}, "services": services,
        }))
        .unwrap();
        store.put_profile(profile, true).await.unwrap();
        let sandbox = PluginSandbox::new(SandboxOptions {
            cache_dir: None,
            policy: LimitsPolicy::default(),
            pooling: false,
            single_caller: false,
        })
        .unwrap();
        let memory = Arc::new(MemoryRuntime::new());
        memory.add_image(HOLDER);
        memory.add_image("postgres:15");
        let runner = Arc::new(Runner {
            runtime: memory.clone(),
            checkouts: Checkouts::new(dir.path(), Duration::from_secs(30)),
            registry: Arc::new(Registry::load(Arc::new(sandbox), true, &[])),
            store,
            settings: RunnerSettings {
                engine_id: "mem".into(),
                base_images: BTreeMap::new(),
                ecosystem_order: Vec::new(),
                job_user: (1000, 1000),
                build_network: "host".into(),
                holder_image: HOLDER.into(),
                stop_grace: Duration::from_secs(1),
                ca_bundle: None,
                cache_budget_mb: 0,
                image_budget_mb: None,
                output_kept_mb: 1,
                selinux_relabel: false,
            },
        });
        let workspaces = Workspaces::new(
            runner,
            WorkspaceSettings {
                max_open: 4,
                max_full_runs: 2,
                step_timeout: Duration::from_secs(10),
                output_cap: 64 * 1024,
                logs_dir: dir.path().join("workspace-logs"),
                policy: SpecPolicy {
                    allow_local_paths: true,
                    ..SpecPolicy::default()
                },
            },
        )
        .await;
        Harness {
            dir,
            memory,
            workspaces,
        }
    }

    /// A repository with a Dockerfile and `app.txt`, committed.
    fn repo(&self) -> std::path::PathBuf {
        let repo = self.dir.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::write(repo.join("Dockerfile"), "FROM busybox:test\n").unwrap();
        std::fs::write(repo.join("app.txt"), "app\n").unwrap();
        for args in [
            &["init", "-q"][..],
            &["add", "-A"],
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-q",
                "-m",
                "base",
            ],
        ] {
            let ok = Command::new("git")
                .args(args)
                .current_dir(&repo)
                .status()
                .unwrap();
            assert!(ok.success(), "git {args:?}");
        }
        repo
    }

    /// Create a workspace of the repository with profile `p`; wait until ready.
    async fn open(&self, repo: &Path) -> String {
        let spec: JobSpec = serde_json::from_value(serde_json::json!({
            "repository": repo.to_str().unwrap(), "commit": "HEAD", "profile": "p",
        }))
        .unwrap();
        let record = self
            .workspaces
            .create(WorkspaceRequest {
                spec,
                idle_timeout_s: 600,
                max_lifetime_s: 3600,
            })
            .await
            .unwrap();
        for _ in 0..400 {
            let now = self.workspaces.get(&record.id).await.unwrap();
            match now.state {
                WorkspaceState::Ready => return record.id,
                WorkspaceState::Preparing => tokio::time::sleep(Duration::from_millis(25)).await,
                other => panic!("workspace ended {other:?}: {:?}", now.reason),
            }
        }
        panic!("workspace not ready after 10 s");
    }
}

fn record(id: &str, state: WorkspaceState, created_ms: u64, last_used_ms: u64) -> WorkspaceRecord {
    WorkspaceRecord {
        id: id.into(),
        state,
        reason: None,
        progress: None,
        repository: "/r".into(),
        tier: Tier::Fast,
        base_sha: None,
        image: None,
        planned_by: None,
        plugins: Vec::new(),
        created_ms,
        last_used_ms,
        idle_timeout_s: 60,
        max_lifetime_s: 3600,
        full_runs: 0,
        history: Vec::new(),
    }
}

#[test]
fn the_reaper_closes_ready_workspaces_past_idle_or_lifetime_only() {
    let now = 10_000_000;
    let records = [
        record("ws-fresh", WorkspaceState::Ready, now - 1000, now - 1000),
        record("ws-idle", WorkspaceState::Ready, now - 61_000, now - 61_000),
        record("ws-old", WorkspaceState::Ready, now - 3_601_000, now),
        // Setup may take longer than the idle timeout: never reaped while preparing.
        record("ws-prep", WorkspaceState::Preparing, now - 3_601_000, 0),
        record("ws-closed", WorkspaceState::Closed, 0, 0),
    ];
    let due = due_for_closing(&records, now);
    assert_eq!(
        due,
        [
            ("ws-idle".to_owned(), "idle for more than 60 s".to_owned()),
            (
                "ws-old".to_owned(),
                "reached its maximum lifetime of 3600 s".to_owned()
            ),
        ]
    );
    // Exactly at the limit is not past it.
    let at_limit = [record("ws-edge", WorkspaceState::Ready, now, now - 60_000)];
    assert!(due_for_closing(&at_limit, now).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_a_busy_workspace_is_refused_and_the_running_one_finishes() {
    let h = Harness::new(&["slow-check"], serde_json::json!([])).await;
    h.memory.on_exec(|_, exec| {
        if exec.argv.iter().any(|a| a.contains("slow-check")) {
            std::thread::sleep(Duration::from_millis(400));
            return ExecReply {
                stdout: "checked\n".into(),
                ..ExecReply::default()
            };
        }
        ExecReply::default()
    });
    let id = h.open(&h.repo()).await;

    let (ws, vid) = (h.workspaces.clone(), id.clone());
    let running = tokio::spawn(async move { ws.validate(&vid, Tier::Fast).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let refused = h.workspaces.reset(&id).await.unwrap_err();
    assert!(
        matches!(&refused, WorkspaceError::Busy(b) if *b == id),
        "{refused:?}"
    );
    // Refused at once, not queued behind the running call.
    assert!(started.elapsed() < Duration::from_millis(200));
    let result = running.await.unwrap().unwrap();
    assert_eq!(result.steps.len(), 1);
    assert_eq!(result.steps[0].exit_code, Some(0));
    // Free again once the call ends.
    h.workspaces.reset(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_restores_the_files_before_the_services_in_their_order() {
    let services = serde_json::json!([
        {"name": "db", "image": "postgres:15", "ports": [5432], "readiness": {"plugin": "postgres"}},
        {"name": "db2", "image": "postgres:15", "ports": [5433], "readiness": {"plugin": "postgres"}},
    ]);
    let h = Harness::new(&["true"], services).await;
    // Each psql command (snapshot at setup, reset later): the container it
    // ran in, and what `app.txt` held in the checkout at that moment.
    let seen: Arc<Mutex<Vec<PsqlCall>>> = Default::default();
    let checkouts = h.dir.path().join("checkouts");
    let log = seen.clone();
    h.memory.on_exec(move |container, exec| {
        if exec.argv.first().is_some_and(|a| a == "psql") {
            let app = std::fs::read_dir(&checkouts)
                .ok()
                .and_then(|mut d| d.next())
                .and_then(|e| std::fs::read_to_string(e.ok()?.path().join("app.txt")).ok());
            log.lock()
                .unwrap()
                .push((container.to_owned(), exec.argv.join(" "), app));
        }
        ExecReply::default()
    });
    let id = h.open(&h.repo()).await;
    assert_eq!(seen.lock().unwrap().len(), 2, "one snapshot per service");

    h.workspaces
        .write_file(&id, "app.txt", b"edited\n")
        .await
        .unwrap();
    h.workspaces
        .write_file(&id, "new.txt", b"new\n")
        .await
        .unwrap();
    h.workspaces.reset(&id).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "{seen:#?}");
    let (snapshots, resets) = seen.split_at(2);
    for (i, name) in ["-db", "-db2"].into_iter().enumerate() {
        assert!(snapshots[i].0.ends_with(name), "{seen:#?}");
        assert!(
            resets[i].0.ends_with(name),
            "services reset in their order: {seen:#?}"
        );
        assert_ne!(snapshots[i].1, resets[i].1, "a reset is not a snapshot");
        // The files were back at the base commit before any service reset.
        assert_eq!(resets[i].2.as_deref(), Some("app\n"), "{seen:#?}");
    }
    assert_eq!(
        h.workspaces.read_file(&id, "app.txt").await.unwrap(),
        b"app\n"
    );
    assert!(matches!(
        h.workspaces.read_file(&id, "new.txt").await,
        Err(WorkspaceError::NoFile(_))
    ));
}
