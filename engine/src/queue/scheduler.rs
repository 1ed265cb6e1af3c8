//! Leases due jobs to the executor and sees each attempt through.
//!
//! Per attempt: a heartbeat task keeps the lease alive and learns of a
//! cancel; a timer enforces the job's timeout; the executor's [`Outcome`] is
//! recorded with the attempt's fence, so an attempt that lost its lease (a
//! slow worker, a paused process) can never overwrite a newer attempt's
//! result. Expired leases are swept back to the queue. Every loop exits on
//! the shutdown token.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::store::{AttemptReports, JobStore, LeaseRequest, StoreError};
use crate::executor::{Attempt, Executor};
use crate::job::{JobRecord, Outcome, SpecPolicy, TransitionError};
use crate::logs::{JobLogs, LogStream};
use crate::metrics::Metrics;

/// How a [`Scheduler`] leases and runs jobs (from the configuration; the
/// default suits tests).
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// This engine's name in leases.
    pub worker: String,
    /// Jobs running at once.
    pub concurrency: usize,
    /// Jobs of one repository running at once (0: no limit).
    pub per_repository: usize,
    /// Jobs running at once in the whole store, across replicas (0: no
    /// limit beyond `concurrency`).
    pub total: usize,
    /// How long a lease lasts without a heartbeat; past it the job is swept
    /// back to the queue (and may run again elsewhere).
    pub lease: Duration,
    /// How often a running attempt renews its lease and checks for a cancel;
    /// well under `lease`.
    pub heartbeat: Duration,
    /// How often to look for due retries and expired leases without a wake-up.
    pub poll: Duration,
    /// After a cancel or timeout, how long the executor gets to stop.
    pub stop_grace: Duration,
    /// On shutdown, how long running attempts may go on to finish before
    /// they are stopped and requeued.
    pub drain: Duration,
    /// Spec limits; the scheduler reads the default and maximum job timeouts.
    pub policy: SpecPolicy,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            worker: format!("slipway-{}", std::process::id()),
            concurrency: 4,
            per_repository: 2,
            total: 0,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            poll: Duration::from_millis(500),
            stop_grace: Duration::from_secs(10),
            drain: Duration::ZERO,
            policy: SpecPolicy::default(),
        }
    }
}

/// Leases due jobs to one [`Executor`] and sees each attempt through:
/// heartbeats, cancels, timeouts, the fenced outcome. Run it with [`Scheduler::run`].
pub struct Scheduler {
    store: Arc<dyn JobStore>,
    executor: Arc<dyn Executor>,
    logs: JobLogs,
    config: SchedulerConfig,
    wake: Notify,
    metrics: Arc<Metrics>,
}

impl Scheduler {
    /// A scheduler over this store and executor; nothing runs until
    /// [`Scheduler::run`].
    pub fn new(
        store: Arc<dyn JobStore>,
        executor: Arc<dyn Executor>,
        logs: JobLogs,
        config: SchedulerConfig,
    ) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            store,
            executor,
            logs,
            config,
            wake: Notify::new(),
            metrics: Arc::default(),
        })
    }

    /// What this scheduler (and the API in front of it) counts.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Look for work now (after a submit).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Lease and run jobs until `shutdown`; then stop leasing, give running
    /// attempts `drain` to finish, and stop the rest (they are requeued).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        // What attempts watch: fired `drain` after `shutdown`.
        let stop_attempts = CancellationToken::new();
        let slots = Arc::new(Semaphore::new(self.config.concurrency));
        let attempts = tokio_util::task::TaskTracker::new();
        // Attempts the previous process of this engine was running when it
        // stopped: taken over, the executor follows them again or ends them.
        let lease_ms = self.config.lease.as_millis() as u64;
        match self
            .store
            .take_over_running(self.config.worker.clone(), lease_ms)
            .await
        {
            Ok(jobs) => {
                for job in jobs {
                    // Past the concurrency only if it was lowered meanwhile.
                    let permit = slots.clone().try_acquire_owned().ok();
                    let me = self.clone();
                    let token = stop_attempts.child_token();
                    attempts.spawn(async move {
                        me.clone().attempt(job, token, true).await;
                        drop(permit);
                        me.wake();
                    });
                }
            }
            Err(e) => tracing::error!(error = %e, "taking over earlier attempts failed"),
        }
        let mut sweep = tokio::time::interval(self.config.poll);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let free = slots.available_permits();
            if free > 0 {
                let request = LeaseRequest {
                    worker: self.config.worker.clone(),
                    max: free,
                    lease_ms: self.config.lease.as_millis() as u64,
                    per_repository: self.config.per_repository,
                    total: self.config.total,
                };
                match self.store.lease(request).await {
                    Ok(jobs) => {
                        let got = jobs.len();
                        for job in jobs {
                            let Ok(permit) = slots.clone().try_acquire_owned() else {
                                break;
                            };
                            let me = self.clone();
                            let token = stop_attempts.child_token();
                            attempts.spawn(async move {
                                me.clone().attempt(job, token, false).await;
                                drop(permit);
                                // A slot is free: queued work need not wait
                                // for the next poll. Wakes while the loop is
                                // busy leasing coalesce into one.
                                me.wake();
                            });
                        }
                        if got == free {
                            continue; // there may be more due work
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "leasing jobs failed"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = sweep.tick() => {
                    match self.store.expire_leases().await {
                        Ok(expired) if !expired.is_empty() => {
                            Metrics::add(&self.metrics.lease_expiries, expired.len() as u64);
                            tracing::warn!(?expired, "leases expired; jobs go back to the queue");
                        }
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "sweeping expired leases failed"),
                    }
                }
            }
        }
        attempts.close();
        if !attempts.is_empty() && !self.config.drain.is_zero() {
            tracing::info!(
                running = attempts.len(),
                drain_s = self.config.drain.as_secs(),
                "shutting down: running jobs may finish first"
            );
            let _ = tokio::time::timeout(self.config.drain, attempts.wait()).await;
        }
        stop_attempts.cancel();
        attempts.wait().await;
    }

    /// One attempt: execute (or, `resumed`, go on with one an earlier
    /// process began) with heartbeats and a timeout, record the outcome.
    #[tracing::instrument(skip_all, fields(job = job.id, attempt = job.attempt))]
    async fn attempt(self: Arc<Self>, job: JobRecord, shutdown: CancellationToken, resumed: bool) {
        let Some(fence) = job.lease.as_ref().map(|l| l.fence) else {
            tracing::error!("leased job has no lease");
            return;
        };
        let id = job.id;
        let mut timeout = Duration::from_secs(job.timeout_s(&self.config.policy));
        let cancel = shutdown.child_token();
        let log = self.logs.writer(id);
        if resumed {
            // The job's time counts from the attempt's start, not from now.
            let since = job.running_since().unwrap_or_else(crate::job::now_ms);
            let spent = crate::job::now_ms().saturating_sub(since);
            timeout = timeout.saturating_sub(Duration::from_millis(spent));
            log.line(
                LogStream::Engine,
                &format!(
                    "the engine restarted: attempt {} (fence {fence}) taken over, {} s of its time left",
                    job.attempt,
                    timeout.as_secs()
                ),
            );
        } else {
            log.line(
                LogStream::Engine,
                &format!("attempt {} started (fence {fence})", job.attempt),
            );
        }
        Metrics::add(&self.metrics.attempts_started, 1);
        let started = std::time::Instant::now();
        let attempt = Attempt::new(
            job,
            fence,
            cancel.clone(),
            log.clone(),
            Arc::new(AttemptReports(self.store.clone())),
            self.metrics.clone(),
        );
        let run = if resumed {
            self.executor.resume(attempt)
        } else {
            self.executor.execute(attempt)
        };
        let mut execution = tokio::spawn(run);

        let mut beat = tokio::time::interval(self.config.heartbeat);
        beat.tick().await; // the first tick is immediate
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        // Why the attempt was asked to stop, if it was; once asked, the stop
        // reason is the outcome, whatever the executor returns.
        let mut stop: Option<Outcome> = None;
        let mut lost_lease = false;
        let outcome = loop {
            tokio::select! {
                result = &mut execution => {
                    let outcome = result.unwrap_or_else(|e| Outcome::InfrastructureError { reason: format!("the executor crashed: {e}") });
                    // The executor saw the shutdown (its token is a child of
                    // it) before this loop did: the job is not cancelled, its
                    // attempt was stopped, and it goes back to the queue.
                    if shutdown.is_cancelled() && outcome == Outcome::Cancelled {
                        break shut_down();
                    }
                    break outcome;
                }
                _ = beat.tick() => {
                    match self.store.heartbeat(id, fence, self.config.lease.as_millis() as u64).await {
                        Ok(true) => {
                            log.line(LogStream::Engine, "cancel requested");
                            stop = Some(Outcome::Cancelled);
                        }
                        Ok(false) => {}
                        Err(StoreError::Transition(TransitionError::StaleFence { .. })) => {
                            // Another attempt owns the job now: stop, and report nothing.
                            Metrics::add(&self.metrics.stale_reports, 1);
                            lost_lease = true;
                            stop = Some(Outcome::Cancelled);
                        }
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                    }
                }
                _ = &mut deadline => {
                    log.line(LogStream::Engine, &format!("timed out after {} s", timeout.as_secs()));
                    stop = Some(Outcome::TimedOut);
                }
                _ = shutdown.cancelled() => {
                    stop = Some(shut_down());
                }
            }
            if let Some(reason) = stop.take() {
                cancel.cancel();
                if tokio::time::timeout(self.config.stop_grace, &mut execution)
                    .await
                    .is_err()
                {
                    execution.abort();
                    log.line(
                        LogStream::Engine,
                        "the executor did not stop within the grace period; abandoned (its containers are removed in the background)",
                    );
                    self.executor.abandoned(id);
                }
                break reason;
            }
        };
        if lost_lease {
            log.line(
                LogStream::Engine,
                &format!("attempt with fence {fence} lost its lease; its outcome is discarded"),
            );
            return;
        }
        self.metrics
            .attempt_duration
            .observe(started.elapsed().as_secs_f64());
        match self.store.complete(id, fence, outcome.clone()).await {
            Ok(record) => {
                if record.state == crate::job::JobState::Retrying {
                    Metrics::add(&self.metrics.retries, 1);
                }
                log.line(
                    LogStream::Engine,
                    &format!("attempt ended: {}", record.state.name()),
                );
            }
            Err(e) => {
                log.line(
                    LogStream::Engine,
                    &format!("outcome {outcome:?} not recorded: {e}"),
                );
                tracing::warn!(error = %e, "outcome not recorded");
            }
        }
    }
}

/// The outcome of an attempt the engine's shutdown stopped: retried.
fn shut_down() -> Outcome {
    Outcome::InfrastructureError {
        reason: "the engine shut down during the attempt".into(),
    }
}
