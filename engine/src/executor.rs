//! The executor seam: the scheduler hands each leased job to an
//! [`Executor`], which runs it and reports how the attempt ended. The Docker
//! runner is the real implementation; a Kubernetes backend would be another;
//! tests use their own. The executor never writes job state itself: it
//! returns an [`Outcome`], and the scheduler records it under the attempt's
//! fence.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::job::{JobRecord, Outcome, Progress};
use crate::logs::JobLog;

/// One attempt of one job, as an executor receives it.
pub struct Attempt {
    /// The job's record as leased: spec, attempt number, and state when the attempt began.
    pub job: JobRecord,
    /// The attempt's fencing number: reports under an older one are refused.
    pub fence: u64,
    /// Cancelled when the job is cancelled, times out, or the engine stops;
    /// the executor stops its work and returns promptly.
    pub cancel: CancellationToken,
    /// The job's log.
    pub log: JobLog,
    progress: ProgressReporter,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Attempt {
    /// An attempt whose progress and run reports go to `store` under `fence`.
    pub fn new(
        job: JobRecord,
        fence: u64,
        cancel: CancellationToken,
        log: JobLog,
        store: Arc<dyn AttemptSink>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Attempt {
        let progress = ProgressReporter {
            store,
            id: job.id,
            fence,
        };
        Attempt {
            job,
            fence,
            cancel,
            log,
            progress,
            metrics,
        }
    }

    /// Count a step's duration in `/metrics`.
    pub fn observe_step(&self, duration: std::time::Duration) {
        self.metrics.step_duration.observe(duration.as_secs_f64());
    }

    /// Record what the attempt ran (image, plugins, steps, timings).
    pub async fn record(&self, run: crate::job::RunRecord) {
        if let Err(e) = self
            .progress
            .store
            .record_run(self.progress.id, self.progress.fence, run)
            .await
        {
            tracing::debug!(job = self.progress.id, error = %e, "run record not stored");
        }
    }

    /// Report what the attempt is doing (shown by `status`).
    pub async fn report(&self, step: u32, steps: u32, message: impl Into<String>) {
        let progress = Progress {
            step,
            steps,
            message: message.into(),
        };
        if let Err(e) = self
            .progress
            .store
            .progress(self.progress.id, self.progress.fence, progress)
            .await
        {
            tracing::debug!(job = self.progress.id, error = %e, "progress not recorded");
        }
    }
}

/// Where an attempt reports what it does and what it ran, under its fence
/// (the queue's store implements it; the executor needs nothing else of it).
pub trait AttemptSink: Send + Sync {
    /// Store the attempt's latest progress for job `id`; refused under a stale `fence`.
    fn progress(&self, id: u64, fence: u64, progress: Progress) -> SinkFuture<'_>;
    /// Store what the attempt ran for job `id`; refused under a stale `fence`.
    fn record_run(&self, id: u64, fence: u64, run: crate::job::RunRecord) -> SinkFuture<'_>;
}

/// A report's result.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ReportRefused>> + Send + 'a>>;

/// A report the sink refused (a stale fence, a closed store), with why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReportRefused(pub String);

struct ProgressReporter {
    store: Arc<dyn AttemptSink>,
    id: u64,
    fence: u64,
}

/// An attempt running to its end, yielding how it ended.
pub type ExecFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Runs the attempts the scheduler leases (the Docker runner, or a test double).
pub trait Executor: Send + Sync + 'static {
    /// Run one attempt to its end. Return `Outcome::Cancelled` (or
    /// `TimedOut`) promptly once `attempt.cancel` fires.
    fn execute(&self, attempt: Attempt) -> ExecFuture;

    /// Go on with an attempt an earlier process of this engine was running
    /// when it stopped (its lease taken over, same fence). An executor that
    /// cannot ends it as an infrastructure failure: it is retried.
    fn resume(&self, attempt: Attempt) -> ExecFuture {
        let reason = format!(
            "the engine restarted during attempt {} (fence {})",
            attempt.job.attempt, attempt.fence
        );
        Box::pin(async move { Outcome::InfrastructureError { reason } })
    }

    /// The attempt of job `job` did not stop within the grace period and
    /// was dropped mid-way: remove what it left (its containers), in the
    /// background. Nothing by default.
    fn abandoned(&self, job: crate::job::JobId) {
        let _ = job;
    }
}
