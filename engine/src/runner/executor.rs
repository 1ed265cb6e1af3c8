//! The Docker runner as the scheduler's [`Executor`]: prepare the job's
//! environment (see [`super::prepare`]), run setup, then the validation
//! steps of its tier, and remove the pod and the checkout whatever happened.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::exec::StepEnd;
pub use super::prepare::RunnerSettings;
use super::prepare::{PrepareRequest, Progress, Runner, step_output};
use super::{LABEL_ENGINE, LABEL_JOB, LABEL_MANAGED};
use crate::checkout::Checkouts;
use crate::executor::{Attempt, ExecFuture, Executor};
use crate::job::{Outcome, StepRecord, Tier};
use crate::plugins::Registry;
use crate::queue::JobStore;

/// Cheap to clone: the state is shared.
#[derive(Clone)]
pub struct DockerExecutor {
    runner: Arc<Runner>,
}

impl DockerExecutor {
    pub fn new(
        docker: Docker,
        checkouts: Checkouts,
        registry: Arc<Registry>,
        store: Arc<dyn JobStore>,
        settings: RunnerSettings,
    ) -> DockerExecutor {
        DockerExecutor {
            runner: Arc::new(Runner {
                docker,
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

async fn run(runner: Arc<Runner>, attempt: Attempt) -> Outcome {
    let name = format!("job-{}", attempt.job.id);
    let outcome = run_in_checkout(&runner, &attempt, &name).await;
    let checkouts = runner.checkouts.clone();
    let cleanup = tokio::task::spawn_blocking(move || checkouts.remove(&name)).await;
    if let Ok(Err(e)) = cleanup {
        attempt
            .log
            .line("slipway", &format!("could not remove the checkout: {e}"));
    }
    outcome
}

async fn run_in_checkout(runner: &Runner, attempt: &Attempt, name: &str) -> Outcome {
    let job = &attempt.job;
    let engine_id = &runner.settings.engine_id;
    let request = PrepareRequest {
        spec: &job.spec,
        checkout_name: name,
        pod_name: format!("slipway-{engine_id}-job{}-a{}", job.id, attempt.fence),
        labels: [
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_JOB.to_owned(), job.id.to_string()),
            (LABEL_ENGINE.to_owned(), engine_id.clone()),
        ]
        .into(),
        role: "job",
        log: &attempt.log,
        cancel: &attempt.cancel,
    };
    let env = match runner.prepare(&request, attempt).await {
        Ok(env) => env,
        Err(outcome) => return outcome,
    };
    let mut steps = env.steps.setup.clone();
    steps.extend(env.steps.fast.clone());
    if job.spec.tier == Tier::Full {
        steps.extend(env.steps.full.clone());
    }
    attempt.report(5, 5, format!("{} steps", steps.len())).await;
    // The job's own timeout arrives as a cancel from the scheduler; this
    // bound only guards against a lost cancel.
    let bound = Duration::from_secs(job.spec.timeout_s.unwrap_or(6 * 3600) + 60);
    let started = Instant::now();
    let mut ran = Vec::new();
    let result = runner
        .run_steps(&env, &steps, &attempt.log, &attempt.cancel, bound, |r| {
            attempt.observe_step(r.duration);
            ran.push(r.clone())
        })
        .await;
    let mut record = env.record.clone();
    record.attempt = job.attempt;
    record.fence = attempt.fence;
    record
        .phases_ms
        .insert("steps".into(), started.elapsed().as_millis() as u64);
    for (run, step) in ran.iter().zip(&steps) {
        let (findings, findings_error) = match &step.report {
            None => (Vec::new(), None),
            Some(report) => {
                let (stdout, _) = step_output(attempt.log.path(), run.log_start, run.log_end);
                match runner.findings(&env.checkout.path, report, &stdout).await {
                    Ok(f) => (f, None),
                    Err(e) => (Vec::new(), Some(e)),
                }
            }
        };
        record.steps.push(StepRecord {
            name: run.name.clone(),
            command: run.command.clone(),
            exit_code: match run.end {
                StepEnd::Exited(code) => Some(code),
                _ => None,
            },
            duration_ms: run.duration.as_millis() as u64,
            log_start: run.log_start,
            log_end: run.log_end,
            findings,
            findings_error,
        });
    }
    let cleanup = Instant::now();
    env.pod.remove().await;
    let pruned = super::cache::prune(
        &runner.docker,
        &env.caches,
        env.cache_budget_bytes,
        &runner.settings.holder_image,
        &runner.settings.engine_id,
    )
    .await;
    for name in pruned {
        attempt.log.line(
            "slipway",
            &format!(
                "cache volume {name} grew past its budget: removed (the next job fills it again)"
            ),
        );
    }
    record
        .phases_ms
        .insert("cleanup".into(), cleanup.elapsed().as_millis() as u64);
    attempt.record(record).await;
    if let Some(budget) = runner.settings.image_budget_mb {
        match super::image_gc::collect(&runner.docker, &runner.store, budget << 20).await {
            Ok(removed) => {
                for tag in removed {
                    attempt.log.line(
                        "slipway",
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

impl Executor for DockerExecutor {
    fn execute(&self, attempt: Attempt) -> ExecFuture {
        Box::pin(run(self.runner.clone(), attempt))
    }
}
