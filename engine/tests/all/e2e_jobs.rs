//! Jobs end to end through the real pieces: redb queue, scheduler, the
//! Docker runner as executor (checkout, plan through the bundled plugins,
//! image by content hash, hardened step containers), on the local
//! `slipway-test/busybox:1` image. Needs Docker; fails loudly without it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::ListContainersOptionsBuilder;
use slipway::checkout::Checkouts;
use slipway::job::{JobRecord, JobSpec, JobState, SpecPolicy};
use slipway::jobs::executor::{ContainerExecutor, RunnerSettings};
use slipway::logs::JobLogs;
use slipway::plugins::sandbox::SandboxOptions;
use slipway::plugins::{LimitsPolicy, PluginSandbox, Registry};
use slipway::profile::Profile;
use slipway::queue::{JobQueue, ProfileStore};
use slipway::queue::{JobStore, RedbStore, Scheduler, SchedulerConfig};
use tokio_util::sync::CancellationToken;

struct Engine {
    _state: tempfile::TempDir,
    store: Arc<RedbStore>,
    scheduler: Arc<Scheduler>,
    logs: JobLogs,
    docker: bollard::Docker,
    runtime: slipway::runner::Runtime,
    checkouts_dir: std::path::PathBuf,
    engine_id: String,
    shutdown: CancellationToken,
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn engine() -> Engine {
    let state = tempfile::tempdir().unwrap();
    let runtime = slipway::runner::connect()
        .await
        .unwrap_or_else(|e| panic!("these tests need Docker (bash scripts/setup.sh): {e}"));
    let docker = slipway::runtime::docker::connect()
        .await
        .expect("Docker")
        .client()
        .clone();
    let policy = SpecPolicy {
        allow_local_paths: true,
        ..SpecPolicy::default()
    };
    let store = Arc::new(RedbStore::open(&state.path().join("store.redb"), policy).unwrap());
    let logs = JobLogs::new(state.path().join("logs")).unwrap();
    let cache =
        Some(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-plugin-cache"));
    let sandbox = Arc::new(
        PluginSandbox::new(SandboxOptions {
            cache_dir: cache,
            policy: LimitsPolicy::default(),
            pooling: true,
            single_caller: false,
        })
        .unwrap(),
    );
    let registry = Arc::new(Registry::load(sandbox, true, &[]));
    let engine_id = format!(
        "test-{}",
        state.path().file_name().unwrap().to_string_lossy()
    );
    let settings = RunnerSettings {
        engine_id: engine_id.clone(),
        base_images: Default::default(),
        ecosystem_order: slipway::config::DEFAULT_ECOSYSTEM_ORDER
            .iter()
            .map(|s| s.to_string())
            .collect(),
        job_user: (1000, 1000),
        build_network: "none".into(),
        holder_image: slipway::config::DEFAULT_HOLDER_IMAGE.into(),
        stop_grace: Duration::from_secs(1),
        ca_bundle: None,
        cache_budget_mb: 2048,
        image_budget_mb: None,
        output_kept_mb: 1024,
        // Mounts carry SELinux relabel options here (a daemon without
        // SELinux ignores them); `serve` sets this from `docker info`.
        selinux_relabel: true,
    };
    let checkouts = Checkouts::new(state.path(), Duration::from_secs(60));
    let executor = ContainerExecutor::new(
        runtime.clone(),
        checkouts,
        registry,
        store.clone(),
        settings,
    );
    let config = SchedulerConfig {
        heartbeat: Duration::from_millis(200),
        lease: Duration::from_secs(10),
        poll: Duration::from_millis(100),
        stop_grace: Duration::from_secs(5),
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::new(store.clone(), Arc::new(executor), logs.clone(), config);
    let shutdown = CancellationToken::new();
    tokio::spawn(scheduler.clone().run(shutdown.clone()));
    let checkouts_dir = state.path().join("checkouts");
    Engine {
        _state: state,
        store,
        scheduler,
        logs,
        docker,
        runtime,
        checkouts_dir,
        engine_id,
        shutdown,
    }
}

impl Engine {
    async fn submit(&self, repo: &Path, profile: &str, tier: &str) -> JobRecord {
        self.submit_with(repo, profile, tier, serde_json::json!({}))
            .await
    }

    /// Submit with more fields of the spec (e.g. `services`).
    async fn submit_with(
        &self,
        repo: &Path,
        profile: &str,
        tier: &str,
        extra: serde_json::Value,
    ) -> JobRecord {
        let mut json = serde_json::json!({
            "repository": repo.to_str().unwrap(), "commit": "HEAD", "tier": tier, "profile": profile,
        });
        json.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let spec: JobSpec = serde_json::from_value(json).unwrap();
        let record = self.store.submit(spec).await.unwrap().record;
        self.scheduler.wake();
        record
    }

    async fn finished(&self, id: u64) -> JobRecord {
        for _ in 0..600 {
            let r = self.store.get(id).await.unwrap().unwrap();
            if r.state.is_final() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {id} did not finish; log:\n{}", self.log(id));
    }

    fn log(&self, id: u64) -> String {
        String::from_utf8_lossy(&self.logs.read(id, 0, 1 << 20).unwrap().0).into_owned()
    }

    async fn containers_of(&self, id: u64) -> usize {
        let filters = std::collections::HashMap::from([(
            "label".to_owned(),
            vec![
                format!("io.slipway.job={id}"),
                format!("io.slipway.engine={}", self.engine_id),
            ],
        )]);
        self.docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap()
            .len()
    }
}

/// A plain directory with its own Dockerfile, and a profile with its steps.
async fn repo_and_profile(
    engine: &Engine,
    name: &str,
    fast: &[&str],
    full: &[&str],
) -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(
        repo.path().join("Dockerfile"),
        "FROM slipway-test/busybox:1\nWORKDIR /workspace\n",
    )
    .unwrap();
    std::fs::write(repo.path().join("app.txt"), "the app\n").unwrap();
    let profile: Profile = serde_json::from_value(serde_json::json!({
        "name": name, "validation": {"fast": fast, "full": full},
    }))
    .unwrap();
    engine.store.put_profile(profile, false).await.unwrap();
    repo
}

#[tokio::test]
async fn a_full_job_runs_every_step_in_hardened_containers_and_cleans_up() {
    let e = engine().await;
    let repo = repo_and_profile(
        &e,
        "demo",
        &["echo lint-ok"],
        &[
            "cat app.txt",
            "echo written > out.txt && cat out.txt",
            "id -u",
        ],
    )
    .await;
    let job = e.submit(repo.path(), "demo", "full").await;
    let done = e.finished(job.id).await;
    let log = e.log(job.id);
    assert_eq!(done.state, JobState::Succeeded, "{:?}\n{log}", done.reason);
    for expected in [
        "stdout lint-ok",
        "stdout the app",
        "stdout written",
        "stdout 1000",
        "plan: dockerfile via dockerfile@1.0.0",
        "image slipway-runner/",
    ] {
        assert!(log.contains(expected), "missing `{expected}` in:\n{log}");
    }
    assert!(
        !repo.path().join("out.txt").exists(),
        "the job wrote into its own checkout, not the source"
    );
    assert_eq!(e.containers_of(job.id).await, 0, "no container is left");
    assert!(
        !e.checkouts_dir.join(format!("job-{}", job.id)).exists(),
        "the checkout is removed"
    );

    // The job record: image, plugins, each step with its log range, timings.
    let run = done.run.expect("the attempt recorded what it ran");
    let image = run.image.expect("image");
    assert!(
        image.tag.starts_with("slipway-runner/") && image.id.starts_with("sha256:"),
        "{image:?}"
    );
    assert!(
        run.plugins
            .iter()
            .any(|p| p.starts_with("dockerfile@1.0.0@")),
        "{:?}",
        run.plugins
    );
    assert_eq!(
        run.steps
            .iter()
            .map(|s| (s.name.as_str(), s.exit_code))
            .collect::<Vec<_>>(),
        [
            ("fast-1", Some(0)),
            ("full-1", Some(0)),
            ("full-2", Some(0)),
            ("full-3", Some(0))
        ]
    );
    let log_bytes = e.log(job.id).into_bytes();
    let third = &run.steps[2];
    let range =
        String::from_utf8_lossy(&log_bytes[third.log_start as usize..third.log_end as usize])
            .into_owned();
    assert!(
        range.contains("stdout written"),
        "the step's log range holds its output: {range}"
    );
    for phase in ["checkout", "plan", "image", "services", "steps", "cleanup"] {
        assert!(
            run.phases_ms.contains_key(phase),
            "{phase} in {:?}",
            run.phases_ms
        );
    }
    assert_eq!((run.attempt, run.fence > 0), (1, true));
}

#[tokio::test]
async fn a_failing_step_fails_the_job_and_stops_there() {
    let e = engine().await;
    let repo = repo_and_profile(&e, "red", &["echo checking; exit 4", "echo never"], &[]).await;
    let job = e.submit(repo.path(), "red", "fast").await;
    let done = e.finished(job.id).await;
    let log = e.log(job.id);
    assert_eq!(done.state, JobState::Failed, "{log}");
    assert_eq!(done.reason.as_deref(), Some("step `fast-1` exited with 4"));
    assert_eq!(done.attempt, 1, "a red step is not retried");
    assert!(
        !log.contains("stdout never"),
        "the job stops at the first failing step: {log}"
    );
}

/// Docker splits a line past 16 KiB into partial messages, each with its own
/// timestamp: the job log gets the line whole, once.
#[tokio::test]
async fn a_long_line_arrives_whole() {
    let e = engine().await;
    let repo = repo_and_profile(
        &e,
        "long-line",
        &["head -c 40000 /dev/zero | tr '\\0' a; echo; printf 'no newline at the end'"],
        &[],
    )
    .await;
    let job = e.submit(repo.path(), "long-line", "fast").await;
    let done = e.finished(job.id).await;
    let log = e.log(job.id);
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.reason);
    let line = format!(" stdout {}\n", "a".repeat(40000));
    assert_eq!(
        log.matches(&line).count(),
        1,
        "one whole line of 40,000 `a`"
    );
    assert!(
        log.contains(" stdout no newline at the end\n"),
        "a last line without a newline is kept: {}",
        &log[log.len().saturating_sub(600)..]
    );
}

#[tokio::test]
async fn cancel_stops_a_running_step() {
    let e = engine().await;
    let repo = repo_and_profile(&e, "slow", &["echo started; sleep 120"], &[]).await;
    let job = e.submit(repo.path(), "slow", "fast").await;
    for _ in 0..200 {
        if e.log(job.id).contains("stdout started") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    e.store.cancel(job.id).await.unwrap();
    let done = e.finished(job.id).await;
    assert_eq!(done.state, JobState::Cancelled, "{}", e.log(job.id));
    assert_eq!(e.containers_of(job.id).await, 0);
}

/// `docker inspect` of a running job container: every hardening setting
/// (docs/design.md, "Containers"), the labels, and the steps as its command.
#[tokio::test]
async fn docker_inspect_of_a_job_container_shows_every_hardening_setting() {
    let e = engine().await;
    // The step prints /tmp's mount as the kernel has it, then waits.
    let repo = repo_and_profile(
        &e,
        "inspected",
        &["grep ' /tmp ' /proc/mounts; echo started; sleep 120"],
        &[],
    )
    .await;
    let job = e
        .submit_with(
            repo.path(),
            "inspected",
            "fast",
            serde_json::json!({"resources": {"memory_mb": 96, "pids": 48, "cpus": 0.5}}),
        )
        .await;
    for _ in 0..200 {
        if e.log(job.id).contains("stdout started") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let filters = std::collections::HashMap::from([(
        "label".to_owned(),
        vec![
            format!("io.slipway.job={}", job.id),
            format!("io.slipway.engine={}", e.engine_id),
            "io.slipway.role=job".to_owned(),
        ],
    )]);
    let found = e
        .docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "one running job container: {found:?}");
    let c = e
        .docker
        .inspect_container(found[0].id.as_deref().unwrap(), None)
        .await
        .unwrap();
    let host = c.host_config.clone().unwrap();
    let config = c.config.clone().unwrap();
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]), "{host:?}");
    assert!(
        host.cap_add.unwrap_or_default().is_empty(),
        "no capability kept"
    );
    assert_eq!(host.privileged, Some(false));
    assert_eq!(
        host.security_opt,
        Some(vec!["no-new-privileges".to_owned()])
    );
    assert_eq!(host.readonly_rootfs, Some(true), "read-only root");
    let tmpfs = host.tmpfs.clone().unwrap_or_default();
    assert_eq!(
        tmpfs.get("/tmp").map(String::as_str),
        Some("rw,exec,nosuid,nodev,size=256m,mode=1777"),
        "tmpfs scratch: {tmpfs:?}"
    );
    // As mounted: executable (tools run what they build there), never
    // set-uid or device files.
    let log = e.log(job.id);
    let tmp_mount = log
        .lines()
        .find(|l| l.contains(" /tmp tmpfs "))
        .unwrap_or_else(|| panic!("no /tmp mount line in the log:\n{log}"));
    let options: Vec<&str> = tmp_mount
        .split(" /tmp tmpfs ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default()
        .split(',')
        .collect();
    for wanted in ["rw", "nosuid", "nodev"] {
        assert!(options.contains(&wanted), "{wanted} in {options:?}");
    }
    assert!(
        !options.contains(&"noexec"),
        "/tmp is executable: {options:?}"
    );
    assert_eq!(config.user.as_deref(), Some("1000:1000"), "non-root");
    assert_eq!(host.init, Some(true), "--init");
    assert_eq!(host.pids_limit, Some(48));
    assert_eq!(host.memory, Some(96 << 20));
    assert_eq!(host.memory_swap, Some(96 << 20), "no swap past the limit");
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.network_mode.as_deref(), Some("none"), "network off");
    assert_eq!(config.network_disabled, Some(true), "network off");
    assert!(
        host.port_bindings.unwrap_or_default().is_empty(),
        "no published port"
    );
    // The checkout is the only writable mount; no Docker socket.
    let mounts = c.mounts.clone().unwrap_or_default();
    let writable: Vec<_> = mounts
        .iter()
        .filter(|m| m.rw == Some(true))
        .map(|m| m.destination.clone().unwrap_or_default())
        .collect();
    assert_eq!(writable, ["/workspace"], "{mounts:?}");
    assert!(
        !format!("{mounts:?}").contains("docker.sock"),
        "no Docker socket: {mounts:?}"
    );
    let binds = host.binds.clone().unwrap_or_default();
    assert!(
        binds.iter().any(|b| b.ends_with(":/workspace:Z")),
        "the checkout is relabelled private for SELinux: {binds:?}"
    );
    let log = host.log_config.unwrap();
    assert_eq!(log.typ.as_deref(), Some("json-file"));
    assert_eq!(
        log.config
            .unwrap_or_default()
            .get("max-size")
            .map(String::as_str),
        Some("512m"),
        "Docker keeps a bounded part of the output"
    );
    // The steps are its command, under the driver, and named in a label.
    let cmd = config.cmd.unwrap_or_default();
    assert_eq!(
        cmd.last().map(String::as_str),
        Some("grep ' /tmp ' /proc/mounts; echo started; sleep 120")
    );
    assert_eq!(config.open_stdin, Some(false), "steps get EOF on stdin");
    let labels = config.labels.unwrap_or_default();
    assert_eq!(
        labels.get("io.slipway.managed").map(String::as_str),
        Some("true")
    );
    assert!(labels["io.slipway.steps"].contains("fast-1"), "{labels:?}");

    e.store.cancel(job.id).await.unwrap();
    let done = e.finished(job.id).await;
    assert_eq!(done.state, JobState::Cancelled, "{}", e.log(job.id));
    assert_eq!(e.containers_of(job.id).await, 0);
}

#[tokio::test]
async fn a_job_waits_for_its_services_and_reaches_them_on_localhost() {
    let e = engine().await;
    let repo = repo_and_profile(
        &e,
        "with-web",
        &["printf 'GET /data HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8080"],
        &[],
    )
    .await;
    let services = serde_json::json!({"services": [{
        "name": "web", "image": "slipway-test/busybox:1", "ports": [8080],
        "command": ["sh", "-c", "mkdir -p /tmp/www && sleep 0.5 && echo from-the-service > /tmp/www/data && exec httpd -f -p 8080 -h /tmp/www"],
        "readiness": {"plugin": "http", "options": {"path": "/data"}},
    }]});
    let job = e
        .submit_with(repo.path(), "with-web", "fast", services)
        .await;
    let done = e.finished(job.id).await;
    let log = e.log(job.id);
    assert_eq!(done.state, JobState::Succeeded, "{:?}\n{log}", done.reason);
    assert!(log.contains("service `web` ready after"), "{log}");
    assert!(log.contains("stdout from-the-service"), "{log}");
    assert_eq!(
        e.containers_of(job.id).await,
        0,
        "services are removed with the job"
    );
}

#[tokio::test]
async fn a_service_that_dies_during_the_job_fails_it() {
    let e = engine().await;
    let repo = repo_and_profile(&e, "flaky", &["echo running; sleep 60"], &[]).await;
    let services = serde_json::json!({"services": [{
        "name": "flaky", "image": "slipway-test/busybox:1",
        "command": ["sh", "-c", "sleep 1; echo 'out of memory, bye'; exit 7"],
    }]});
    let started = std::time::Instant::now();
    let job = e.submit_with(repo.path(), "flaky", "fast", services).await;
    let done = e.finished(job.id).await;
    let log = e.log(job.id);
    assert_eq!(done.state, JobState::Failed, "{log}");
    let reason = done.reason.unwrap_or_default();
    assert!(
        reason.contains("service `flaky` exited with code 7 while the job was running")
            && reason.contains("out of memory, bye"),
        "{reason}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the step was stopped, not waited for"
    );
    assert_eq!(done.attempt, 1, "not retried: the service's own failure");
    assert_eq!(e.containers_of(job.id).await, 0);
}

#[tokio::test]
async fn secrets_reach_the_step_and_never_the_log() {
    let e = engine().await;
    let repo = repo_and_profile(
        &e,
        "secret",
        &["echo \"key is $API_KEY\"; printf %s \"$API_KEY\" | base64; test \"$API_KEY\" = 'tr0ub4dor&3-horse'"],
        &[],
    )
    .await;
    let secret_file = repo.path().join("secret.txt");
    std::fs::write(&secret_file, "tr0ub4dor&3-horse\n").unwrap();
    let secrets =
        serde_json::json!({"secrets": {"API_KEY": format!("file:{}", secret_file.display())}});
    let job = e.submit_with(repo.path(), "secret", "fast", secrets).await;
    let done = e.finished(job.id).await;
    let log = e.log(job.id);
    assert_eq!(
        done.state,
        JobState::Succeeded,
        "the step saw the value: {log}"
    );
    assert!(log.contains("stdout key is [redacted]"), "{log}");
    assert!(!log.contains("tr0ub4dor"), "{log}");
    assert!(
        !log.contains("dHIwdWI0ZG9yJjMtaG9yc2U"),
        "nor its base64 form: {log}"
    );

    let missing = serde_json::json!({"secrets": {"API_KEY": "env:SLIPWAY_TEST_SURELY_UNSET"}});
    let job = e.submit_with(repo.path(), "secret", "fast", missing).await;
    let done = e.finished(job.id).await;
    assert_eq!(done.state, JobState::Failed);
    assert!(
        done.reason
            .unwrap_or_default()
            .contains("has no `SLIPWAY_TEST_SURELY_UNSET`"),
        "a missing secret fails the job with its name"
    );
}

/// A Python repository with its own Dockerfile: the python plan's `pip`
/// cache entry applies.
fn python_repo() -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(
        repo.path().join("Dockerfile"),
        "FROM python:3.11-slim\nRUN useradd --uid 1000 --create-home --home-dir /home/app app\nWORKDIR /workspace\n",
    )
    .unwrap();
    std::fs::write(
        repo.path().join("pyproject.toml"),
        "[project]\nname = \"cached\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    repo
}

async fn profile(e: &Engine, name: &str, fast: &[&str], size_mb: Option<u64>) {
    let mut json = serde_json::json!({"name": name, "validation": {"fast": fast}});
    if let Some(mb) = size_mb {
        json["cache"] = serde_json::json!({"size_mb": mb});
    }
    let profile: Profile = serde_json::from_value(json).unwrap();
    e.store.put_profile(profile, false).await.unwrap();
}

async fn volumes_named(e: &Engine, part: &str) -> Vec<String> {
    e.docker
        .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
        .await
        .unwrap()
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .filter(|n| n.contains(part))
        .collect()
}

#[tokio::test]
async fn package_caches_persist_between_jobs_and_are_pruned_past_their_budget() {
    let e = engine().await;
    let repo = python_repo();
    profile(
        &e,
        "warm",
        &["echo warm > /home/app/.cache/pip/marker"],
        None,
    )
    .await;
    profile(&e, "read", &["cat /home/app/.cache/pip/marker"], None).await;
    let first = e.submit(repo.path(), "warm", "fast").await;
    let done = e.finished(first.id).await;
    assert_eq!(done.state, JobState::Succeeded, "{}", e.log(first.id));
    assert!(e.log(first.id).contains("-pip-"), "{}", e.log(first.id));
    let second = e.submit(repo.path(), "read", "fast").await;
    let done = e.finished(second.id).await;
    assert_eq!(done.state, JobState::Succeeded, "{}", e.log(second.id));
    assert!(
        e.log(second.id).contains("stdout warm"),
        "the cache survived: {}",
        e.log(second.id)
    );

    // Another repository, a 1 MiB budget, 2 MiB written: the volume goes.
    let big = python_repo();
    profile(
        &e,
        "big",
        &["dd if=/dev/zero of=/home/app/.cache/pip/blob bs=1M count=2"],
        Some(1),
    )
    .await;
    let job = e.submit(big.path(), "big", "fast").await;
    let done = e.finished(job.id).await;
    let log = e.log(job.id);
    assert_eq!(done.state, JobState::Succeeded, "{log}");
    assert!(log.contains("grew past its budget: removed"), "{log}");
    let slug = big
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_ascii_lowercase();
    let slug = slug.trim_start_matches('.').to_owned();
    assert!(volumes_named(&e, &slug).await.is_empty(), "pruned");

    // Clean up this test's volumes.
    let filters = std::collections::HashMap::from([(
        "label".to_owned(),
        vec![format!("io.slipway.engine={}", e.engine_id)],
    )]);
    let options = bollard::query_parameters::ListVolumesOptionsBuilder::new()
        .filters(&filters)
        .build();
    let mine = e
        .docker
        .list_volumes(Some(options))
        .await
        .unwrap()
        .volumes
        .unwrap_or_default();
    for v in mine {
        let _ = e
            .docker
            .remove_volume(
                &v.name,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await;
    }
}

#[tokio::test]
async fn image_gc_removes_the_least_recently_used_image_it_knows_past_the_budget() {
    let e = engine().await;
    let older = repo_and_profile(&e, "gc-a", &["echo a"], &[]).await;
    std::fs::write(
        older.path().join("Dockerfile"),
        "FROM slipway-test/busybox:1\nLABEL gc=a\n",
    )
    .unwrap();
    let job = e.submit(older.path(), "gc-a", "fast").await;
    let first = e.finished(job.id).await.run.unwrap().image.unwrap().tag;
    let newer = repo_and_profile(&e, "gc-b", &["echo b"], &[]).await;
    std::fs::write(
        newer.path().join("Dockerfile"),
        "FROM slipway-test/busybox:1\nLABEL gc=b\n",
    )
    .unwrap();
    let job = e.submit(newer.path(), "gc-b", "fast").await;
    let second = e.finished(job.id).await.run.unwrap().image.unwrap().tag;
    assert_ne!(first, second);

    let size = |tag: String| {
        let docker = e.docker.clone();
        async move { docker.inspect_image(&tag).await.unwrap().size.unwrap_or(0) as u64 }
    };
    // Room for the newer image only: the older one goes, nothing else does.
    let budget = size(second.clone()).await + 1;
    let store: std::sync::Arc<dyn JobStore> = e.store.clone();
    let removed = slipway::runner::image_gc::collect(&e.runtime, &store, budget)
        .await
        .unwrap();
    assert_eq!(
        removed,
        vec![first.clone()],
        "only the least recently used one"
    );
    assert!(e.docker.inspect_image(&first).await.is_err());
    assert!(e.docker.inspect_image(&second).await.is_ok());
    assert!(
        e.docker
            .inspect_image(slipway::config::DEFAULT_HOLDER_IMAGE)
            .await
            .is_ok(),
        "images it has no record of are never touched"
    );
    let _ = e
        .docker
        .remove_image(
            &second,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
}

/// The reason of a job whose image build (of `dockerfile`) fails.
async fn build_failure(e: &Engine, dockerfile: &str) -> String {
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join("Dockerfile"), dockerfile).unwrap();
    profile(e, "build-fails", &["true"], None).await;
    let job = e.submit(repo.path(), "build-fails", "fast").await;
    let done = e.finished(job.id).await;
    assert_eq!(done.state, JobState::Failed, "{}", e.log(job.id));
    done.reason.unwrap_or_default()
}

/// A build that needs a registry it cannot reach (builds here have network
/// `none`, so nothing leaves the machine): the job's reason names the host
/// and what would help.
#[tokio::test]
async fn an_unreachable_registry_is_named_in_the_reason() {
    let e = engine().await;
    // The node:18-slim stand-in (scripts/images.sh --all): no pull.
    let reason = build_failure(
        &e,
        "FROM node:18-slim\nWORKDIR /app\nRUN npm install --no-audit --fetch-retries=0 left-pad\n",
    )
    .await;
    assert!(
        reason.contains("the build could not reach `registry.npmjs.org`"),
        "{reason}"
    );
    assert!(reason.contains("`runner.build_network`"), "{reason}");
    assert!(reason.contains("`ca_bundle`"), "{reason}");
}

/// A base image that is not on the host and cannot be pulled (its registry
/// is a closed port on loopback, so the pull leaves nothing behind): the
/// reason names it, `base_images` and `scripts/images.sh`.
#[tokio::test]
async fn a_missing_base_image_is_named_in_the_reason() {
    let e = engine().await;
    let reason = build_failure(
        &e,
        "FROM 127.0.0.1:1/slipway-test/never-built:1\nWORKDIR /workspace\n",
    )
    .await;
    assert!(
        reason.contains(
            "the base image `127.0.0.1:1/slipway-test/never-built:1` is not on this host"
        ),
        "{reason}"
    );
    assert!(reason.contains("scripts/images.sh"), "{reason}");
    assert!(reason.contains("`base_images`"), "{reason}");
}

/// A tier without steps succeeds but says it checked nothing: in the job
/// record's notes and in its log.
#[tokio::test]
async fn an_empty_tier_says_it_checked_nothing() {
    let e = engine().await;
    let repo = repo_and_profile(&e, "empty-fast", &[], &["echo full ran"]).await;
    let job = e.submit(repo.path(), "empty-fast", "full").await;
    let done = e.finished(job.id).await;
    assert_eq!(done.state, JobState::Succeeded, "{}", e.log(job.id));
    let notes = &done.run.as_ref().expect("a run record").notes;
    assert_eq!(
        notes,
        &vec!["the fast tier has no steps: running it checks nothing".to_owned()],
        "{done:?}"
    );
    assert!(
        e.log(job.id)
            .contains("slipway the fast tier has no steps: running it checks nothing"),
        "{}",
        e.log(job.id)
    );
    assert!(e.log(job.id).contains("full ran"), "{}", e.log(job.id));
}

/// On a host without a GPU runtime (this one: the test says so if not), a
/// job that prefers GPUs runs on the CPU with `SLIPWAY_GPU=0` and the
/// fallback in its record; one that requires them fails before anything
/// starts (no checkout, no container), naming what is missing.
#[tokio::test]
async fn gpus_preferred_fall_back_to_the_cpu_and_required_are_refused() {
    let e = engine().await;
    let offer = slipway::runner::gpu::offer(&e.runtime).await.unwrap();
    assert!(
        !offer.available(),
        "this test needs a host without a GPU runtime; this one has `{:?}`",
        offer.runtime
    );
    let repo = repo_and_profile(&e, "gpu", &["echo gpu=$SLIPWAY_GPU"], &[]).await;
    let preferred = e
        .submit_with(
            repo.path(),
            "gpu",
            "fast",
            serde_json::json!({"gpus": 1, "gpu": "preferred"}),
        )
        .await;
    let done = e.finished(preferred.id).await;
    assert_eq!(done.state, JobState::Succeeded, "{}", e.log(preferred.id));
    let fallback = done.run.as_ref().and_then(|r| r.gpu_fallback.clone());
    assert!(
        fallback
            .as_deref()
            .is_some_and(|f| f.starts_with("fallback to cpu: 1 GPU(s) preferred")),
        "{fallback:?}"
    );
    assert!(
        e.log(preferred.id).contains("stdout gpu=0"),
        "{}",
        e.log(preferred.id)
    );

    let required = e
        .submit_with(
            repo.path(),
            "gpu",
            "fast",
            serde_json::json!({"gpus": "all"}),
        )
        .await;
    let done = e.finished(required.id).await;
    assert_eq!(done.state, JobState::Failed, "{}", e.log(required.id));
    let reason = done.reason.unwrap_or_default();
    assert!(reason.contains("requires every GPU"), "{reason}");
    assert!(reason.contains("NVIDIA Container Toolkit"), "{reason}");
    assert!(
        !e.log(required.id).contains("checked out"),
        "{}",
        e.log(required.id)
    );
    assert_eq!(e.containers_of(required.id).await, 0);
}

/// A repository's own image that lacks its ecosystem's tools: the layer of
/// the steps' plugin fails with what to do; a profile with its own steps
/// needs no layer, and none is built.
#[tokio::test]
async fn a_dependency_layer_is_built_only_for_the_plugins_steps() {
    let e = engine().await;
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(
        repo.path().join("Dockerfile"),
        "FROM slipway-test/busybox:1\nWORKDIR /workspace\n",
    )
    .unwrap();
    std::fs::write(
        repo.path().join("pyproject.toml"),
        "[project]\nname = \"layered\"\nversion = \"0.1.0\"\n\n[tool.pytest.ini_options]\ntestpaths = [\"tests\"]\n",
    )
    .unwrap();
    let spec: JobSpec = serde_json::from_value(serde_json::json!({
        "repository": repo.path().to_str().unwrap(), "commit": "HEAD", "tier": "full",
    }))
    .unwrap();
    let job = e.store.submit(spec).await.unwrap().record;
    e.scheduler.wake();
    let done = e.finished(job.id).await;
    assert_eq!(done.state, JobState::Failed, "{}", e.log(job.id));
    let reason = done.reason.unwrap_or_default();
    assert!(
        reason.contains("this layer installs what the steps of python@"),
        "{reason}"
    );
    assert!(reason.contains("a profile with its own steps"), "{reason}");
    assert!(
        e.log(job.id).contains("dependencies layered on"),
        "{}",
        e.log(job.id)
    );

    profile(&e, "own-steps", &["echo own step ran"], None).await;
    let job = e.submit(repo.path(), "own-steps", "fast").await;
    let done = e.finished(job.id).await;
    assert_eq!(done.state, JobState::Succeeded, "{}", e.log(job.id));
    assert!(
        !e.log(job.id).contains("dependencies layered"),
        "{}",
        e.log(job.id)
    );
    assert!(e.log(job.id).contains("own step ran"), "{}", e.log(job.id));
}
