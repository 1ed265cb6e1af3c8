//! `slipway serve` and `slipway run`: the engine with the Docker runner.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use slipway::api::{self, AppState};
use slipway::callbacks::sender::CallbackSender;
use slipway::checkout::Checkouts;
use slipway::config::{Config, StoreLocation};
use slipway::deployments::Deployments;
use slipway::job::{JobSpec, SpecPolicy};
use slipway::jobs::executor::{ContainerExecutor, RunnerSettings};
use slipway::logs::JobLogs;
use slipway::queue::{JobStore, PostgresStore, RedbStore, Scheduler, SchedulerConfig};
use slipway::replica::Replica;
use slipway::supervisor::{Supervisor, SupervisorSettings};
use slipway::watches::Watcher;
use slipway::watches::secret::SealingKey;
use slipway::watches::watcher::WatcherSettings;
use slipway::workspaces::{WorkspaceSettings, Workspaces};
use tokio_util::sync::CancellationToken;

/// The pieces `serve` and `run` share: store, scheduler with the Docker runner.
struct EngineParts {
    store: Arc<dyn JobStore>,
    /// The same store when it is PostgreSQL: its listener and node record.
    shared: Option<Arc<PostgresStore>>,
    scheduler: Arc<Scheduler>,
    logs: JobLogs,
    policy: SpecPolicy,
    supervisor: Arc<Supervisor>,
    workspaces: Arc<Workspaces>,
    plugins: Arc<slipway::plugins::PluginSandbox>,
    registry: Arc<slipway::plugins::Registry>,
    deployments: Arc<Deployments>,
}

/// `work` holds the store, logs and checkouts: the state directory for
/// `serve`, a private folder for each `run` (so job ids never collide).
async fn engine(
    config: &Config,
    work: &Path,
    location: &StoreLocation,
    allow_local_paths: bool,
    engine_id: String,
) -> anyhow::Result<EngineParts> {
    let policy = SpecPolicy {
        allow_local_paths,
        ..SpecPolicy::default()
    };
    let (store, shared): (Arc<dyn JobStore>, Option<Arc<PostgresStore>>) =
        match location.postgres_url()? {
            None => (
                Arc::new(RedbStore::open(&work.join("store.redb"), policy.clone())?),
                None,
            ),
            Some(url) => {
                let pg = Arc::new(PostgresStore::open(&url, policy.clone()).await?);
                (pg.clone(), Some(pg))
            }
        };
    let node = config.node_id.clone();
    // With a shared store, other replicas' attempts are theirs.
    let ours = |job: &slipway::job::JobRecord| {
        shared.is_none()
            || job
                .lease
                .as_ref()
                .is_some_and(|l| l.worker.split('/').next() == Some(node.as_str()))
    };
    let logs = JobLogs::new(work.join("logs"))
        .with_context(|| format!("creating {}", work.join("logs").display()))?
        .with_cap(config.log_cap);
    slipway::runner::prepare::check_can_hand_over(work)?;
    let registry = Arc::new(super::registry(config)?);
    let plugins = registry.sandbox().clone();
    let runtime = slipway::runtime::connect().await?;
    // In a container, the daemon must see checkouts at the same path.
    if let Some(own) = slipway::runtime::host::own_container() {
        slipway::runtime::host::check_state_dir_is_shared(runtime.as_ref(), &own, work).await?;
    }
    // Jobs the previous process was running keep their containers and
    // checkouts: the scheduler takes their attempts over and the runner
    // follows them again (or removes them). So do ready workspaces, which
    // `Workspaces::new` takes over. Managed services still declared are
    // kept for the supervisor to adopt. Everything else is a leftover.
    let running: Vec<String> = store
        .list(&slipway::queue::ListFilter {
            state: Some(slipway::job::JobState::Running),
            before: None,
            limit: usize::MAX,
        })
        .await?
        .into_iter()
        .filter(|j| ours(j))
        .map(|j| j.id.to_string())
        .collect();
    let ready_workspaces: Vec<String> = store
        .list_workspaces()
        .await?
        .into_iter()
        .filter(|w| w.state == slipway::workspace::WorkspaceState::Ready)
        .map(|w| w.id)
        .collect();
    let declared: Vec<String> = store
        .list_services()
        .await?
        .into_iter()
        .map(|s| s.spec.name)
        .collect();
    let shared_store_off = shared.is_none();
    let keep = |labels: &std::collections::HashMap<String, String>| {
        let role = labels.get(slipway::runner::LABEL_ROLE).map(String::as_str);
        let of_running_job = labels
            .get(slipway::runner::LABEL_JOB)
            .is_some_and(|id| running.contains(id));
        let of_ready_workspace = labels
            .get(slipway::workspaces::LABEL_WORKSPACE)
            .is_some_and(|id| ready_workspaces.contains(id));
        // With a shared store, services run where the duties are held,
        // which may be elsewhere now: this replica's old ones go.
        let declared_service = shared_store_off
            && matches!(role, Some("holder" | "managed-service" | "deployment"))
            && labels
                .get(slipway::runner::LABEL_SERVICE)
                .is_some_and(|name| declared.contains(name));
        of_running_job || of_ready_workspace || declared_service
    };
    let removed = slipway::runner::reconcile(&runtime, &engine_id, keep)
        .await
        .context("removing leftover containers")?;
    if removed > 0 {
        eprintln!("slipway: removed {removed} leftover container(s) of an earlier run");
    }
    let kept_checkouts: Vec<String> = running
        .iter()
        .map(|id| format!("job-{id}"))
        .chain(ready_workspaces.iter().cloned())
        .collect();
    remove_stale_checkouts(&work.join("checkouts"), &kept_checkouts)?;
    if !running.is_empty() {
        eprintln!(
            "slipway: job(s) {} were running when the engine stopped: taking them over",
            running.join(", ")
        );
    }
    // Mounts are relabelled where the daemon enforces SELinux labels.
    let selinux_relabel = match config.selinux_relabel {
        Some(set) => set,
        None => runtime
            .host_facts()
            .await
            .is_ok_and(|facts| slipway::runtime::daemon_uses_selinux(&facts.security_options)),
    };
    // `run`'s store is private and short-lived: only `serve` collects images.
    let collects_images = engine_id.starts_with("serve-");
    let settings = RunnerSettings {
        engine_id,
        base_images: config.base_images.clone(),
        ecosystem_order: config.ecosystem_order.clone(),
        job_user: slipway::runner::prepare::JOB_USER,
        build_network: config.build_network.clone(),
        holder_image: config.holder_image.clone(),
        stop_grace: config.stop_grace,
        ca_bundle: config.ca_bundle.clone(),
        cache_budget_mb: config.cache_budget_mb,
        image_budget_mb: collects_images.then_some(config.image_budget_mb),
        output_kept_mb: config.output_kept_mb,
        selinux_relabel,
    };
    let supervisor = Supervisor::new(
        runtime.clone(),
        store.clone(),
        registry.clone(),
        SupervisorSettings {
            engine_id: settings.engine_id.clone(),
            holder_image: config.holder_image.clone(),
            logs_dir: work.join("service-logs"),
            reconcile_every: Duration::from_secs(30),
            stop_grace: config.stop_grace,
        },
    );
    let checkouts = Checkouts::new(work, config.checkout_timeout)
        .with_max_mb(config.checkout_max_mb)
        .with_credentials(config.git_credentials.clone());
    let executor = ContainerExecutor::new(
        runtime,
        checkouts,
        registry.clone(),
        store.clone(),
        settings,
    );
    let runner = executor.runner();
    let workspaces = Workspaces::new(
        executor.runner(),
        WorkspaceSettings {
            max_open: config.workspaces_max_open,
            max_full_runs: config.workspaces_max_full_runs,
            step_timeout: config.workspaces_step_timeout,
            output_cap: 64 * 1024,
            logs_dir: work.join("workspace-logs"),
            policy: policy.clone(),
        },
    )
    .await;
    let scheduler_config = SchedulerConfig {
        // `<node>/<pid>`: a restarted replica takes over its node's attempts.
        worker: format!("{}/{}", config.node_id, std::process::id()),
        lease: config.lease,
        heartbeat: config.lease / 6,
        drain: config.drain,
        concurrency: config.concurrency,
        per_repository: config.per_repository,
        total: config.total_concurrency,
        policy: policy.clone(),
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(executor),
        logs.clone(),
        scheduler_config,
    );
    let deployments = Deployments::new(
        store.clone(),
        runner,
        supervisor.clone(),
        scheduler.clone(),
        work.join("deployment-logs"),
    );
    Ok(EngineParts {
        store,
        shared,
        scheduler,
        logs,
        policy,
        supervisor,
        workspaces,
        plugins,
        registry,
        deployments,
    })
}

/// Remove the checkouts in `dir` but those named in `kept` (of running
/// jobs, `job-<id>`, and of ready workspaces), which are taken over.
fn remove_stale_checkouts(dir: &Path, kept: &[String]) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // A deployment's checkouts hold the binds of its running services.
        if kept.iter().any(|k| name == k) || name.starts_with("deploy-") {
            continue;
        }
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("removing the stale checkout {}", path.display()))?;
    }
    Ok(())
}

/// A stable id for the engine of a state directory (a container label value).
fn engine_id_of(state_dir: &Path) -> String {
    use sha2::Digest;
    let path = state_dir
        .canonicalize()
        .unwrap_or_else(|_| state_dir.to_path_buf());
    format!(
        "serve-{}",
        hex::encode(&sha2::Sha256::digest(path.to_string_lossy().as_bytes())[..8])
    )
}

/// The API token: configured, from a file, or generated once into `<state>/token`.
fn token(config: &Config) -> anyhow::Result<(String, String)> {
    if let Some(t) = &config.token {
        return Ok((t.clone(), "SLIPWAY_TOKEN".into()));
    }
    let path = config
        .token_file
        .clone()
        .unwrap_or_else(|| config.state_dir.join("token"));
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => {
            return Ok((t.trim().to_owned(), path.display().to_string()));
        }
        Ok(_) => bail!("the token file {} is empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && config.token_file.is_none() => {}
        Err(e) => {
            return Err(e).with_context(|| format!("reading the token file {}", path.display()));
        }
    }
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("reading /dev/urandom")?;
    let token = hex::encode(bytes);
    std::fs::create_dir_all(&config.state_dir)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{token}")?;
    Ok((token, path.display().to_string()))
}

async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}

pub fn serve(config: &Config) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        // A certificate pair that does not load stops the start before anything else.
        let tls = config
            .tls
            .clone()
            .map(slipway::tls::CertResolver::load)
            .transpose()?;
        slipway::runtime::set_node(&config.node_id);
        let parts = engine(
            config,
            &config.state_dir,
            &config.store,
            config.allow_local_paths,
            engine_id_of(&config.state_dir),
        )
        .await?;
        let (token, from) = token(config)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| {
                format!("listening on {} (hint: set SLIPWAY_LISTEN)", config.listen)
            })?;
        eprintln!(
            "slipway: listening on {}://{}; state in {}; API token from {from}",
            if tls.is_some() { "https" } else { "http" },
            listener.local_addr()?,
            config.state_dir.display()
        );
        let shutdown = CancellationToken::new();
        // With a shared store: claim this node id (a second replica with it
        // is refused), wake the scheduler on NOTIFY, and do the duties
        // only while holding their lock.
        let replica = match &parts.shared {
            None => None,
            Some(pg) => {
                let lock = Arc::new(
                    pg.claim_node(&config.node_id, config.advertise_url.as_deref())
                        .await?,
                );
                eprintln!(
                    "slipway: replica {} of the store {} (advertised at {})",
                    config.node_id,
                    pg.target(),
                    config.advertise_url.as_deref().unwrap_or("nowhere: set SLIPWAY_ADVERTISE_URL so other replicas can forward to this one")
                );
                let (node, stop) = (config.node_id.clone(), shutdown.clone());
                tokio::spawn(async move { PostgresStore::keep_node_seen(&lock, &node, stop).await });
                let notify = Arc::new(tokio::sync::Notify::new());
                tokio::spawn({
                    let pg = pg.clone();
                    let (notify, stop) = (notify.clone(), shutdown.clone());
                    async move { pg.listen(notify, stop).await }
                });
                let scheduler = parts.scheduler.clone();
                tokio::spawn(async move {
                    loop {
                        notify.notified().await;
                        scheduler.wake();
                    }
                });
                // Other replicas may advertise https:// URLs: trust what
                // outbound TLS trusts, the configured CA bundle included.
                let roots = slipway::tls::trust_roots(config.ca_bundle.as_deref())
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "ca_bundle {}: {e}; replicas verify each other's https:// advertise URLs with it (a PEM bundle of certificates)",
                            config.ca_bundle.as_deref().unwrap_or(Path::new("")).display()
                        )
                    })?;
                Some(Replica::new(pg.clone(), config.node_id.clone(), roots))
            }
        };
        let scheduler = tokio::spawn(parts.scheduler.clone().run(shutdown.clone()));
        let key = SealingKey::load_or_create(&config.state_dir)?;
        let watcher = Watcher::new(
            parts.store.clone(),
            parts.scheduler.clone(),
            key,
            WatcherSettings {
                credentials: config.git_credentials.clone(),
                git_timeout: config.checkout_timeout,
            },
        );
        let sender = CallbackSender::new(
            parts.store.clone(),
            config.advertise_url.clone(),
            &config.outbound,
        );
        // What one engine of a store does at a time (all of it, with redb).
        let duties = {
            let (supervisor, watcher) = (parts.supervisor.clone(), watcher.clone());
            let (deployments, workspaces) = (parts.deployments.clone(), parts.workspaces.clone());
            move |token: CancellationToken| {
                let (supervisor, watcher, sender) =
                    (supervisor.clone(), watcher.clone(), sender.clone());
                let (deployments, workspaces) = (deployments.clone(), workspaces.clone());
                async move {
                    // Tasks of their own, as each was before: one slow
                    // loop never holds up the others.
                    let loops = [
                        tokio::spawn(supervisor.run(token.clone())),
                        tokio::spawn(watcher.run(token.clone())),
                        tokio::spawn(sender.run(token.clone())),
                        tokio::spawn(deployments.run(token.clone())),
                        tokio::spawn(workspaces.reap(token.clone())),
                    ];
                    for running in loops {
                        let _ = running.await;
                    }
                }
            }
        };
        let duty = match &replica {
            Some(r) => tokio::spawn(r.clone().run_duties(shutdown.clone(), duties)),
            None => tokio::spawn(duties(shutdown.clone())),
        };
        let self_update = slipway::selfupdate::SelfUpdate::new(
            slipway::runtime::docker::connect().await?,
            slipway::runtime::host::own_container(),
            engine_id_of(&config.state_dir),
            config.state_dir.clone(),
        );
        let state = AppState {
            store: parts.store.clone(),
            scheduler: parts.scheduler.clone(),
            logs: parts.logs.clone(),
            token: token.into(),
            policy: parts.policy.clone(),
            supervisor: Some(parts.supervisor.clone()),
            workspaces: Some(parts.workspaces.clone()),
            plugins: Some(parts.plugins.clone()),
            request_timeout: slipway::api::REQUEST_TIMEOUT,
            git_credentials: config.git_credentials.clone(),
            watcher: Some(watcher),
            deployments: Some(parts.deployments.clone()),
            self_update: Some(self_update.clone()),
            auth_guard: Arc::new(slipway::api::auth::AuthGuard::new(config.auth_failure_limit)),
            dashboard: Arc::new(slipway::dashboard::state::DashboardState::new(
                tls.is_some(),
                Some(parts.registry.clone()),
            )),
            replica,
        };
        let sampling = tokio::spawn(slipway::dashboard::state::sample_queue(
            state.dashboard.clone(),
            state.store.clone(),
            shutdown.clone(),
        ));
        let stop = shutdown.clone();
        tokio::spawn(async move {
            stop_signal().await;
            if self_update.handing_over() {
                // An update this engine started is replacing it: exit the way
                // a crash would, so that nothing is drained or closed. The
                // next engine (new, or this one put back) takes running jobs
                // over, keeps ready workspaces and adopts services and
                // deployments, as after a crash.
                eprintln!(
                    "slipway: handing over to the updated engine: running jobs, workspaces, services and deployments stay up"
                );
                std::process::exit(0);
            }
            eprintln!(
                "slipway: stopping: no new jobs; running ones get runner.drain_s to finish, then go back to the queue"
            );
            stop.cancel();
        });
        match tls {
            Some(resolver) => {
                if let Some(files) = &config.tls {
                    eprintln!(
                        "slipway: TLS with {} and {} (HTTPS only; the files are checked for changes every {} s)",
                        files.cert.display(),
                        files.key.display(),
                        slipway::tls::RELOAD_EVERY.as_secs()
                    );
                }
                tokio::spawn(resolver.clone().watch(slipway::tls::RELOAD_EVERY, shutdown.clone()));
                let listener =
                    slipway::tls::TlsListener::new(listener, slipway::tls::server_config(resolver))?;
                api::serve(listener, state, shutdown.clone()).await?;
            }
            None => api::serve(listener, state, shutdown.clone()).await?,
        }
        let _ = scheduler.await;
        let _ = duty.await;
        let _ = sampling.await;
        parts.workspaces.close_all("the engine stopped").await;
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A local directory (a git repository runs its HEAD) or a git URL.
    pub repository: String,
    /// Commit SHA or ref (default: HEAD).
    #[arg(long, default_value = "HEAD")]
    pub commit: String,
    /// `fast` or `full`.
    #[arg(long, default_value = "fast")]
    pub tier: String,
    /// A repo profile for this run (TOML or JSON, the fields of
    /// `/api/v1/profiles`; `name` optional): steps, services, env, limits.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Run a local repository's working tree as it is, uncommitted changes
    /// included (it runs as a directory snapshot, not a commit).
    #[arg(long, conflicts_with = "commit")]
    pub dirty: bool,
    /// Print one JSON object, the job's record, when it ends (and no log).
    #[arg(long)]
    pub json: bool,
    /// The log as stored: epoch milliseconds and stream names, no colour and
    /// no summary (the final state on stderr).
    #[arg(long, conflicts_with = "json")]
    pub raw: bool,
}

/// Read a profile file given to `run`; its name defaults to `run`.
pub fn profile_file(path: &Path) -> anyhow::Result<slipway::profile::Profile> {
    let mut value = super::read_document(path)?;
    if let Some(map) = value.as_object_mut() {
        map.entry("name").or_insert_with(|| "run".into());
    }
    let profile: slipway::profile::Profile =
        serde_json::from_value(value).with_context(|| format!("{}", path.display()))?;
    if let Some(p) = profile.validate().first() {
        bail!("{}: {}: {}", path.display(), p.field, p.message);
    }
    Ok(profile)
}

/// One job end to end without a server, through the same queue and runner;
/// `live`: a status line of the running phase on a terminal (not with
/// `--log-json`).
pub fn run(args: RunArgs, config: &Config, live: bool) -> anyhow::Result<ExitCode> {
    let repository = match PathBuf::from(&args.repository) {
        p if p.exists() => p.canonicalize()?.display().to_string(),
        _ => args.repository.clone(),
    };
    let profile = args.profile.as_deref().map(profile_file).transpose()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        // A store, logs and checkouts of its own, so `run` works beside a running `serve`.
        let work = config
            .state_dir
            .join("runs")
            .join(std::process::id().to_string());
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        let repository = if args.dirty {
            let source = Path::new(&repository);
            if !source.is_dir() {
                bail!("--dirty needs a local directory, not {repository}");
            }
            let copy = work.join("working-tree");
            slipway::checkout::copy_working_tree(source, &copy)?;
            eprintln!(
                "slipway: running the working tree of {repository}, uncommitted changes included"
            );
            copy.display().to_string()
        } else {
            repository
        };
        let parts = engine(
            config,
            &work,
            &StoreLocation::Redb,
            true,
            format!("run-{}", std::process::id()),
        )
        .await?;
        let mut spec =
            serde_json::json!({"repository": repository, "commit": args.commit, "tier": args.tier});
        if let Some(profile) = profile {
            spec["profile"] = profile.name.clone().into();
            parts.store.put_profile(profile, false).await?;
        }
        let spec: JobSpec = serde_json::from_value(spec)?;
        let problems = spec.validate(&parts.policy);
        if let Some(p) = problems.first() {
            bail!("{}: {}", p.field, p.message);
        }
        let job = parts.store.submit(spec).await?.record;
        let shutdown = CancellationToken::new();
        let scheduler = tokio::spawn(parts.scheduler.clone().run(shutdown.clone()));
        parts.scheduler.wake();
        let mut offset = 0;
        let style = super::render::Style::for_stdout();
        let mut render = super::render::LogRenderer::new(style, Some(job.created_ms));
        let status = super::render::StatusLine::new(live && !args.json && !args.raw);
        let mut show = |bytes: &[u8]| -> std::io::Result<()> {
            if args.json {
                return Ok(());
            }
            if args.raw {
                return std::io::stdout().write_all(bytes);
            }
            status.print(&render.feed(bytes));
            Ok(())
        };
        let record = loop {
            let (bytes, next) = parts.logs.read(job.id, offset, 1 << 20)?;
            offset = next;
            show(&bytes)?;
            let record = parts
                .store
                .get(job.id)
                .await?
                .context("the job disappeared")?;
            status.show(&record);
            if record.state.is_final() {
                let (bytes, _) = parts.logs.read(job.id, offset, 1 << 20)?;
                show(&bytes)?;
                status.clear();
                break record;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = tokio::signal::ctrl_c() => { parts.store.cancel(job.id).await?; }
            }
        };
        shutdown.cancel();
        let _ = scheduler.await;
        drop(parts);
        let _ = std::fs::remove_dir_all(&work);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&record)?);
        } else if args.raw {
            eprintln!(
                "job {}: {}{}",
                record.id,
                record.state.name(),
                record
                    .reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
        } else {
            print!("{}", render.finish());
            print!("\n{}", super::render::summary(&record, style));
        }
        Ok(if record.state == slipway::job::JobState::Succeeded {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}
