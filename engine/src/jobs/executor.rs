//! The Docker runner as the scheduler's [`Executor`]: prepare the job's
//! environment (see [`crate::runner::prepare`]), start its container with setup and
//! the tier's validation steps as its command (see [`super::batch`]),
//! follow it to its end, and remove the pod and the checkout whatever
//! happened. After an engine restart, [`Executor::resume`] finds the
//! container of an attempt that was running and follows it again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::batch::{self, Followed, Resume, Script};
use crate::checkout::Checkouts;
use crate::executor::{Attempt, ExecFuture, Executor};
use crate::job::{Outcome, Phase, RunRecord, StepRecord, Tier};
use crate::plan::Step;
use crate::plugins::Registry;
use crate::queue::JobStore;
use crate::runner::exec::StepEnd;
pub use crate::runner::prepare::RunnerSettings;
use crate::runner::prepare::{
    PrepareRequest, Progress, Runner, StepRun, runner_failure, step_output,
};
use crate::runner::{LABEL_ENGINE, LABEL_JOB, LABEL_MANAGED, Role};
use crate::runtime::{Mount, Runtime};

/// Cheap to clone: the state is shared.
#[derive(Clone)]
pub struct ContainerExecutor {
    runner: Arc<Runner>,
}

impl ContainerExecutor {
    /// An executor over these parts: one [`Runner`], which workspaces can
    /// share through [`ContainerExecutor::runner`].
    pub fn new(
        runtime: Runtime,
        checkouts: Checkouts,
        registry: Arc<Registry>,
        store: Arc<dyn JobStore>,
        settings: RunnerSettings,
    ) -> ContainerExecutor {
        ContainerExecutor {
            runner: Arc::new(Runner {
                runtime,
                checkouts,
                registry,
                store,
                settings,
            }),
        }
    }

    /// The shared runner (workspaces prepare through it too).
    pub fn runner(&self) -> Arc<Runner> {
        self.runner.clone()
    }
}

/// An attempt's progress goes to its job record (`status` shows it).
impl Progress for Attempt {
    fn phase(&self, step: u32, steps: u32, message: String) -> BoxFuture<'_, ()> {
        self.report(step, steps, message).boxed()
    }
}

/// The checkout folder of a job.
fn checkout_name(attempt: &Attempt) -> String {
    format!("job-{}", attempt.job.id)
}

/// The prefix of the names of an attempt's containers.
fn pod_name(engine_id: &str, attempt: &Attempt) -> String {
    format!(
        "slipway-{engine_id}-job{}-a{}",
        attempt.job.id, attempt.fence
    )
}

/// Run `body`, then remove the job's checkout.
async fn in_checkout(
    runner: Arc<Runner>,
    attempt: Attempt,
    body: impl AsyncFnOnce(&Runner, &Attempt) -> Outcome,
) -> Outcome {
    let outcome = body(&runner, &attempt).await;
    let (checkouts, name) = (runner.checkouts.clone(), checkout_name(&attempt));
    let cleanup = tokio::task::spawn_blocking(move || checkouts.remove(&name)).await;
    if let Ok(Err(e)) = cleanup {
        attempt.log.line(
            crate::logs::LogStream::Engine,
            &format!("could not remove the checkout: {e}"),
        );
    }
    outcome
}

async fn run(runner: &Runner, attempt: &Attempt) -> Outcome {
    let job = &attempt.job;
    let engine_id = &runner.settings.engine_id;
    let name = checkout_name(attempt);
    let request = PrepareRequest {
        spec: &job.spec,
        checkout_name: &name,
        pod_name: pod_name(engine_id, attempt),
        labels: [
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_JOB.to_owned(), job.id.to_string()),
            (LABEL_ENGINE.to_owned(), engine_id.clone()),
        ]
        .into(),
        role: Role::Job,
        idle_workload: false,
        log: &attempt.log,
        cancel: &attempt.cancel,
    };
    let mut env = match runner.prepare(&request, attempt).await {
        Ok(env) => env,
        Err(outcome) => return outcome,
    };
    let mut steps = env.steps.setup.clone();
    let mut record = env.record.clone();
    let mut tiers = vec![("fast", &env.steps.fast)];
    if job.spec.tier == Tier::Full {
        tiers.push(("full", &env.steps.full));
    }
    for (tier, tier_steps) in tiers {
        if tier_steps.is_empty() {
            // Said in the record and the log: an empty tier is no pass.
            let note = crate::plan::empty_tier_note(tier);
            attempt.log.line(crate::logs::LogStream::Engine, &note);
            record.notes.push(note);
        }
        steps.extend(tier_steps.iter().cloned());
    }
    attempt.report(5, 5, format!("{} steps", steps.len())).await;
    record.attempt = job.attempt;
    record.fence = attempt.fence;
    let started = Instant::now();
    let result = if steps.is_empty() {
        Ok(())
    } else {
        let script = Script::new(steps.clone());
        batch::header(&attempt.log, 0, &steps);
        record.steps_log_start = attempt.log.size();
        let started_ms = crate::job::now_ms();
        let oom = batch::OomWatch::start(
            &runner.runtime,
            &env.pod.workload_name(Role::Job),
            started_ms,
        );
        // An adopting engine reads the cache budget back from the label.
        let mut labels = script.labels();
        labels.insert(
            LABEL_CACHE_BUDGET.to_owned(),
            env.cache_budget_bytes.to_string(),
        );
        match env
            .pod
            .start_workload_with(&env.workload, script.command(), labels)
            .await
        {
            Err(e) => Err(runner_failure("the job container", e)),
            Ok(id) => {
                env.container = id;
                let services = &env.services;
                let service_exit = async move {
                    let e = crate::runner::services::first_exit(services).await;
                    e.to_string()
                };
                let following = Following {
                    runner,
                    attempt,
                    container: &env.container,
                    image: &env.image,
                    user: &env.user,
                    script: &script,
                    memory_mb: job.spec.resources.memory_mb,
                    oom: &oom,
                };
                following
                    .run(started_ms, None, &mut record, service_exit)
                    .await
            }
        }
    };
    record.timed(Phase::Steps, started.elapsed());
    let caches = (env.caches, env.cache_budget_bytes);
    finish(
        runner,
        attempt,
        env.pod,
        &env.checkout.path,
        caches,
        record,
        &steps,
        result,
    )
    .await
}

/// Go on with an attempt whose engine stopped: its containers and checkout
/// were kept; follow its job container from where the log stops.
async fn resume(runner: &Runner, attempt: &Attempt) -> Outcome {
    let job = &attempt.job;
    let engine_id = &runner.settings.engine_id;
    let runtime = &runner.runtime;
    let log = &attempt.log;
    let pod_name = pod_name(engine_id, attempt);
    let owner = format!("{LABEL_JOB}={}", job.id);
    let (pod, services) = match crate::runner::Pod::find(
        runtime,
        engine_id,
        &owner,
        &pod_name,
        Role::Job,
    )
    .await
    {
        Ok(found) => found,
        Err(e) => {
            return Outcome::InfrastructureError {
                reason: format!(
                    "the engine restarted during attempt {} and the Docker daemon does not answer ({e})",
                    job.attempt
                ),
            };
        }
    };
    let give_up = async |pod: crate::runner::Pod, why: &str| {
        pod.remove().await;
        Outcome::InfrastructureError {
            reason: format!(
                "the engine restarted during attempt {} (fence {}) and {why}",
                job.attempt, attempt.fence
            ),
        }
    };
    let Some(checkout) = runner.checkouts.existing(&checkout_name(attempt)) else {
        return give_up(pod, "its checkout is gone").await;
    };
    let Some(mut record) = job.run.clone().filter(|r| r.fence == attempt.fence) else {
        return give_up(pod, "its steps had not started").await;
    };
    let container = format!("{pod_name}-job");
    let Ok(inspect) = runtime.inspect_container(&container).await else {
        return give_up(pod, "its job container is gone").await;
    };
    let labels = &inspect.labels;
    let caches = adopted_caches(&inspect.mounts, labels, runner);
    let Some(script) = Script::of_container(&inspect.cmd, labels) else {
        return give_up(pod, "its job container is not one this engine can follow").await;
    };
    // Nothing is written before the secrets' values are known again.
    match crate::secrets::resolve(&job.spec.secrets) {
        Ok(secrets) => log.redact(secrets.iter().map(|(_, v)| v.as_str())),
        Err(e) => return give_up(pod, &format!("its secrets: {e}")).await,
    }
    let steps = &script.steps;
    let done = record.steps.len().min(steps.len());
    let from = record
        .steps
        .last()
        .map(|s| s.log_end)
        .unwrap_or(record.steps_log_start);
    let resume = Resume::from_log(log.path(), from, done);
    log.line(
        crate::logs::LogStream::Engine,
        &format!(
            "following the job container again from step {}/{} (`{}`)",
            (done + 1).min(steps.len()),
            steps.len(),
            steps.get(done).map(|s| s.name.as_str()).unwrap_or("-")
        ),
    );
    let started_ms = inspect
        .started_at
        .as_deref()
        .and_then(batch::rfc3339_ms)
        .unwrap_or_else(crate::job::now_ms);
    let image = inspect.image.clone();
    let user = Some(inspect.user.clone())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let (uid, gid) = runner.settings.job_user;
            format!("{uid}:{gid}")
        });
    let service_exit = async {
        let waits = services.iter().map(|(name, id)| {
            Box::pin(async move { (name, crate::runner::container::wait_exit(runtime, id).await) })
        });
        if services.is_empty() {
            std::future::pending::<()>().await;
        }
        let ((name, code), _, _) = futures_util::future::select_all(waits).await;
        format!(
            "service `{name}` exited with code {} while the job was running",
            code.map(|c| c.to_string()).unwrap_or_else(|| "?".into())
        )
    };
    let oom = batch::OomWatch::start(runtime, &container, started_ms);
    let following = Following {
        runner,
        attempt,
        container: &container,
        image: &image,
        user: &user,
        script: &script,
        memory_mb: job.spec.resources.memory_mb,
        oom: &oom,
    };
    let started = Instant::now();
    let result = following
        .run(started_ms, Some(resume), &mut record, service_exit)
        .await;
    record.timed(Phase::Steps, started.elapsed());
    finish(
        runner,
        attempt,
        pod,
        &checkout,
        caches,
        record,
        &script.steps,
        result,
    )
    .await
}

/// The label that keeps a job container's cache budget (bytes).
const LABEL_CACHE_BUDGET: &str = "io.slipway.cache-budget";

/// The cache volumes an adopted job container mounts, and their budget,
/// so its end prunes them as a job this engine started would.
fn adopted_caches(
    mounts: &[Mount],
    labels: &std::collections::HashMap<String, String>,
    runner: &Runner,
) -> (Vec<crate::runner::cache::CacheVolume>, u64) {
    let caches = mounts
        .iter()
        .filter_map(|m| {
            let name = m.name.as_deref()?;
            name.starts_with(crate::runner::cache::VOLUME_PREFIX)
                .then(|| crate::runner::cache::CacheVolume {
                    name: name.to_owned(),
                    path: m.destination.clone(),
                })
        })
        .collect();
    let budget = labels
        .get(LABEL_CACHE_BUDGET)
        .and_then(|b| b.parse().ok())
        .unwrap_or(runner.settings.cache_budget_mb << 20);
    (caches, budget)
}

/// Following a started (or adopted) job container to its end.
struct Following<'a> {
    runner: &'a Runner,
    attempt: &'a Attempt,
    container: &'a str,
    image: &'a str,
    user: &'a str,
    script: &'a Script,
    memory_mb: Option<u64>,
    oom: &'a batch::OomWatch,
}

impl Following<'_> {
    /// Follow the steps; each one's end is stored in `record` as it comes
    /// (an adopting engine starts from there). A cancel, the job's bound
    /// or a service's exit stops them.
    async fn run(
        &self,
        started_ms: u64,
        resume: Option<Resume>,
        record: &mut RunRecord,
        service_exit: impl Future<Output = String>,
    ) -> Result<(), Outcome> {
        let runner = self.runner;
        let attempt = self.attempt;
        let log = &attempt.log;
        // The job's own timeout arrives as a cancel from the scheduler;
        // this bound only guards against a lost cancel.
        let bound = Duration::from_secs(attempt.job.spec.timeout_s.unwrap_or(6 * 3600) + 60);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<StepRun>();
        // What an engine adopting this attempt after a restart starts
        // from (stored while the output is already being read); each
        // step's end is added as it comes.
        let persist = async {
            attempt.record(record.clone()).await;
            while let Some(run) = rx.recv().await {
                attempt.observe_step(run.duration);
                record.steps.push(step_record(&run));
                attempt.record(record.clone()).await;
            }
        };
        let follow = async move {
            let mut each = |r: &StepRun| {
                let _ = tx.send(r.clone());
            };
            let follow = batch::follow(
                &runner.runtime,
                self.container,
                self.script,
                log,
                (started_ms, resume),
                &mut each,
            );
            tokio::pin!(follow);
            let stop = tokio::select! {
                followed = &mut follow => return Ok(followed),
                _ = attempt.cancel.cancelled() => Err(Outcome::Cancelled),
                _ = tokio::time::sleep(bound) => Err(Outcome::TimedOut),
                why = service_exit => Err(Outcome::Failed { reason: why }),
            };
            let grace = runner.settings.stop_grace;
            log.line(
                crate::logs::LogStream::Engine,
                &format!(
                    "stopping the steps: SIGTERM, then SIGKILL after {} s",
                    grace.as_secs()
                ),
            );
            let stopping = batch::stop(&runner.runtime, self.container, self.user, grace);
            let drained = tokio::time::timeout(grace + Duration::from_secs(5), &mut follow);
            let (_, followed) = tokio::join!(stopping, drained);
            if let Ok(Followed::Ended { partial, .. }) = followed {
                // The step that was stopped, with no exit code.
                let _ = tx.send(partial);
            }
            stop
        };
        let (followed, ()) = tokio::join!(follow, persist);
        match followed? {
            Followed::Passed => Ok(()),
            Followed::Failed { step, code } => {
                let name = &self.script.steps[step].name;
                // 137: SIGKILL, which is what the OOM killer sends.
                if code == 137 && self.oom.killed().await {
                    return Err(Outcome::Failed {
                        reason: self.out_of_memory(name, Some(code)),
                    });
                }
                Err(Outcome::Failed {
                    reason: format!("step `{name}` exited with {code}"),
                })
            }
            Followed::Ended { step, error, .. } => Err(self.ended_early(step, error).await),
        }
    }

    fn out_of_memory(&self, step: &str, code: Option<i64>) -> String {
        let limit = match self.memory_mb {
            Some(mb) => format!("{mb} MiB"),
            None => "no job limit; the host's".into(),
        };
        let code = code.map(|c| format!(" ({c})")).unwrap_or_default();
        format!(
            "step `{step}` was killed{code}: out of memory (memory limit: {limit}; hint: raise `resources.memory_mb`)"
        )
    }

    /// The output stopped during step `step` without its end: why.
    async fn ended_early(&self, step: usize, error: Option<String>) -> Outcome {
        let name = &self.script.steps[step].name;
        let state = match self.runner.runtime.inspect_container(self.container).await {
            Ok(c) => c,
            Err(e) => {
                return Outcome::InfrastructureError {
                    reason: format!("step `{name}`: the Docker daemon does not answer ({e})"),
                };
            }
        };
        if state.oom_killed || self.oom.killed().await {
            return Outcome::Failed {
                reason: self.out_of_memory(name, state.exit_code),
            };
        }
        let code = state.exit_code.unwrap_or(-1);
        if step == 0 && code == 127 {
            // `--init` started, and could not start `sh`.
            return Outcome::Failed {
                reason: crate::runner::RunnerError::NoShell {
                    image: self.image.to_owned(),
                }
                .to_string(),
            };
        }
        let detail = error
            .map(|e| format!("; reading its output: {e}"))
            .unwrap_or_default();
        Outcome::InfrastructureError {
            reason: format!(
                "step `{name}`: the job's container stopped before the step ended (exit code {code}; stopped or killed from outside, or the Docker daemon restarted){detail}"
            ),
        }
    }
}

fn step_record(run: &StepRun) -> StepRecord {
    StepRecord {
        name: run.name.clone(),
        command: run.command.clone(),
        exit_code: match run.end {
            StepEnd::Exited(code) => Some(code),
            _ => None,
        },
        duration_ms: run.duration.as_millis() as u64,
        log_start: run.log_start,
        log_end: run.log_end,
        findings: Vec::new(),
        findings_error: None,
    }
}

/// After the steps: findings from their reports, the pod removed, caches
/// pruned, the record stored, images collected.
#[allow(clippy::too_many_arguments)]
async fn finish(
    runner: &Runner,
    attempt: &Attempt,
    pod: crate::runner::Pod,
    checkout: &std::path::Path,
    (caches, cache_budget_bytes): (Vec<crate::runner::cache::CacheVolume>, u64),
    mut record: RunRecord,
    steps: &[Step],
    result: Result<(), Outcome>,
) -> Outcome {
    for (run, step) in record.steps.iter_mut().zip(steps) {
        if let Some(report) = &step.report {
            let (stdout, _) = step_output(attempt.log.path(), run.log_start, run.log_end);
            match runner.findings(checkout, report, &stdout).await {
                Ok(f) => run.findings = f,
                Err(e) => run.findings_error = Some(e),
            }
        }
    }
    let cleanup = Instant::now();
    pod.remove().await;
    let pruned = crate::runner::cache::prune(
        &runner.runtime,
        &caches,
        cache_budget_bytes,
        &runner.settings.holder_image,
        &runner.settings.engine_id,
        runner
            .settings
            .selinux_relabel
            .then_some(crate::runner::container::SelinuxLabel::Shared),
    )
    .await;
    for name in pruned {
        attempt.log.line(
            crate::logs::LogStream::Engine,
            &format!(
                "cache volume {name} grew past its budget: removed (the next job fills it again)"
            ),
        );
    }
    record.timed(Phase::Cleanup, cleanup.elapsed());
    attempt.record(record).await;
    if let Some(budget) = runner.settings.image_budget_mb {
        match crate::runner::image_gc::collect(&runner.runtime, &runner.store, budget << 20).await {
            Ok(removed) => {
                for tag in removed {
                    attempt.log.line(
                        crate::logs::LogStream::Engine,
                        &format!("image {tag}: removed by image GC (least recently used, past the {budget} MiB budget)"),
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "image GC failed"),
        }
    }
    match result {
        Ok(()) => Outcome::Succeeded,
        Err(outcome) => outcome,
    }
}

impl Executor for ContainerExecutor {
    fn execute(&self, attempt: Attempt) -> ExecFuture {
        Box::pin(in_checkout(self.runner.clone(), attempt, run))
    }

    fn resume(&self, attempt: Attempt) -> ExecFuture {
        Box::pin(in_checkout(self.runner.clone(), attempt, resume))
    }

    fn abandoned(&self, job: crate::job::JobId) {
        let runner = self.runner.clone();
        tokio::spawn(async move {
            let label = format!("{}={job}", crate::runner::LABEL_JOB);
            let left = crate::runner::engine_containers(
                &runner.runtime,
                &runner.settings.engine_id,
                &[label],
            )
            .await
            .unwrap_or_default();
            for c in left {
                crate::runner::container::remove(&runner.runtime, &c.id).await;
            }
        });
    }
}
