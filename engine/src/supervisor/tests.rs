//! The supervisor's decisions on the in-memory runtime: no daemon, so
//! each runs in milliseconds. What needs a kernel (the containers'
//! hardening, readiness probes over a real network) is in
//! `tests/managed_services.rs` against Docker.

use super::*;
use crate::job::SpecPolicy;
use crate::plugins::sandbox::SandboxOptions;
use crate::plugins::{LimitsPolicy, PluginSandbox};
use crate::queue::RedbStore;
use crate::queue::ServiceStore;
use crate::runtime::ContainerRuntime;
use crate::runtime::memory::MemoryRuntime;
use crate::service::{ManagedService, RestartPolicy};

const HOLDER: &str = "busybox:test";
const IMAGE: &str = "worker:1";

struct Harness {
    _dir: tempfile::TempDir,
    memory: Arc<MemoryRuntime>,
    store: Arc<RedbStore>,
    registry: Arc<Registry>,
    logs: PathBuf,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            RedbStore::open(&dir.path().join("store.redb"), SpecPolicy::default()).unwrap(),
        );
        let sandbox = PluginSandbox::new(SandboxOptions {
            cache_dir: None,
            policy: LimitsPolicy::default(),
            pooling: false,
            single_caller: false,
        })
        .unwrap();
        let memory = Arc::new(MemoryRuntime::new());
        memory.add_image(HOLDER);
        memory.add_image(IMAGE);
        Harness {
            logs: dir.path().join("service-logs"),
            _dir: dir,
            memory,
            store,
            registry: Arc::new(Registry::load(Arc::new(sandbox), false, &[])),
        }
    }

    /// A supervisor of this engine, running until the token is cancelled.
    fn supervisor(&self) -> (Arc<Supervisor>, CancellationToken) {
        let supervisor = Supervisor::new(
            self.memory.clone(),
            self.store.clone(),
            self.registry.clone(),
            SupervisorSettings {
                engine_id: "mem".into(),
                holder_image: HOLDER.into(),
                logs_dir: self.logs.clone(),
                reconcile_every: Duration::from_secs(3600),
                stop_grace: Duration::from_secs(1),
            },
        );
        let shutdown = CancellationToken::new();
        tokio::spawn(supervisor.clone().run(shutdown.clone()));
        (supervisor, shutdown)
    }

    async fn declare(&self, spec: ManagedServiceSpec) {
        self.store
            .put_service(ManagedService::new(spec), false)
            .await
            .unwrap();
    }
}

fn worker(max_restarts: u32) -> ManagedServiceSpec {
    let mut spec: ManagedServiceSpec =
        serde_json::from_value(serde_json::json!({"name": "worker", "image": IMAGE})).unwrap();
    spec.restart = RestartPolicy {
        max_restarts,
        window_s: 60,
        backoff_ms: 1,
        max_backoff_ms: 4,
        ..RestartPolicy::default()
    };
    spec
}

/// Wait (up to 5 s) until the service's status satisfies `done`.
async fn until(
    supervisor: &Supervisor,
    what: &str,
    done: impl Fn(&ServiceStatus) -> bool,
) -> ServiceStatus {
    for _ in 0..1000 {
        if let Some(s) = supervisor.status("worker")
            && done(&s)
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what}: {:?}", supervisor.status("worker"));
}

fn ready(s: &ServiceStatus) -> bool {
    s.state == ServiceState::Ready
}

fn count(journal: &[String], prefix: &str) -> usize {
    journal.iter().filter(|e| e.starts_with(prefix)).count()
}

#[tokio::test]
async fn crashes_restart_in_place_within_the_budget_then_the_service_fails_and_is_kept() {
    let h = Harness::new();
    h.declare(worker(2)).await;
    let (supervisor, shutdown) = h.supervisor();
    let first = until(&supervisor, "first start", ready).await;
    let container = first.container.clone().unwrap();
    for n in 1..=2u64 {
        h.memory.exit(&container, 1, false);
        let s = until(&supervisor, "restarted", |s| ready(s) && s.restarts == n).await;
        assert_eq!(s.container.as_deref(), Some(container.as_str()), "in place");
    }
    h.memory.exit(&container, 1, true);
    let failed = until(&supervisor, "failed", |s| s.state == ServiceState::Failed).await;
    let reason = failed.reason.unwrap();
    assert!(
        reason.contains("out of memory") && reason.contains("restart budget"),
        "{reason}"
    );
    let journal = h.memory.journal();
    assert_eq!(count(&journal, "restart "), 2, "{journal:?}");
    assert_eq!(
        count(&journal, "create "),
        2,
        "holder and service, once: {journal:?}"
    );
    // Failed, not removed: its logs stay readable.
    assert_eq!(h.memory.containers().len(), 2);
    shutdown.cancel();
}

#[tokio::test]
async fn a_user_restart_of_a_failed_service_starts_its_budget_over() {
    let h = Harness::new();
    h.declare(worker(0)).await;
    let (supervisor, shutdown) = h.supervisor();
    let container = until(&supervisor, "start", ready).await.container.unwrap();
    h.memory.exit(&container, 3, false);
    until(&supervisor, "failed at once", |s| {
        s.state == ServiceState::Failed
    })
    .await;
    supervisor.restart("worker").unwrap();
    let s = until(&supervisor, "ready again", ready).await;
    assert_eq!(s.restarts, 0, "a user's restart is not a failure");
    shutdown.cancel();
}

#[tokio::test]
async fn an_unhealthy_verdict_of_the_image_restarts_the_service() {
    let h = Harness::new();
    h.declare(worker(5)).await;
    let (supervisor, shutdown) = h.supervisor();
    let container = until(&supervisor, "start", ready).await.container.unwrap();
    h.memory.unhealthy(&container);
    let s = until(&supervisor, "restarted", |s| ready(s) && s.restarts == 1).await;
    assert_eq!(s.container, Some(container));
    shutdown.cancel();
}

#[tokio::test]
async fn a_new_engine_adopts_a_whole_running_pod_and_replaces_a_changed_one() {
    let h = Harness::new();
    h.declare(worker(5)).await;
    let (first, shutdown) = h.supervisor();
    let container = until(&first, "start", ready).await.container.unwrap();
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(20)).await;

    // The next engine finds the pod running as declared: it keeps it.
    let (second, shutdown) = h.supervisor();
    let adopted = until(&second, "adopted", ready).await;
    assert_eq!(adopted.container.as_deref(), Some(container.as_str()));
    assert_eq!(count(&h.memory.journal(), "create "), 2, "nothing new");

    // A changed declaration replaces the pod: the old one goes first.
    let mut changed = worker(5);
    changed.env.insert("MODE".into(), "fast".into());
    h.declare(changed).await;
    second.sync().await;
    let replaced = until(&second, "replaced", |s| {
        ready(s) && s.container.as_deref() != Some(container.as_str())
    })
    .await;
    let journal = h.memory.journal();
    let removed_at = journal
        .iter()
        .rposition(|e| e.starts_with("remove "))
        .unwrap();
    let created_at = journal
        .iter()
        .rposition(|e| e.starts_with("create "))
        .unwrap();
    assert!(removed_at < created_at, "{journal:?}");
    assert_eq!(h.memory.containers().len(), 2, "only the new pod");
    assert!(replaced.container.is_some());
    shutdown.cancel();

    // A partial pod (its holder gone) is not adopted: it starts clean.
    let holder = h
        .memory
        .containers()
        .into_iter()
        .find(|c| c.labels.get(LABEL_ROLE).map(String::as_str) == Some("holder"))
        .unwrap();
    h.memory.remove_container(&holder.id).await.unwrap();
    let (third, shutdown) = h.supervisor();
    let fresh = until(&third, "started clean", ready).await;
    assert_ne!(fresh.container, replaced.container);
    assert_eq!(h.memory.containers().len(), 2);
    shutdown.cancel();
}

#[tokio::test]
async fn a_service_required_to_have_gpus_fails_once_on_a_host_without_them() {
    let h = Harness::new();
    let mut spec = worker(5);
    spec.gpus = Some(crate::job::Gpus::Count(1));
    spec.gpu = Some(crate::job::GpuPolicy::Required);
    h.declare(spec).await;
    let (supervisor, shutdown) = h.supervisor();
    let s = until(&supervisor, "failed", |s| s.state == ServiceState::Failed).await;
    assert!(s.reason.unwrap().contains("offers no GPU"));
    assert_eq!(s.restarts, 0, "retrying cannot give the host a GPU");
    assert!(h.memory.containers().is_empty(), "nothing started");
    shutdown.cancel();
}
