//! The job queue on PostgreSQL: submit, lease, transitions, expiry, and
//! the `LISTEN` loop that wakes a replica's scheduler.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::GenericClient;
use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use super::{JOBS_CHANNEL, PostgresStore, decode, encode, pg};
use crate::job::{
    JobId, JobRecord, JobSpec, JobState, Outcome, Progress, RunRecord, TransitionError, now_ms,
};
use crate::queue::store::{JobQueue, LeaseRequest, ListFilter, StoreError, StoreFuture, Submitted};

/// The key of the advisory lock leasing holds for its transaction ("lease").
const LEASE_LOCK: i64 = 0x006c_6561_7365;

/// Write `new` (over `old`, when it existed) and the outbox messages the
/// change owes; announce it when the job became leasable.
pub(super) async fn write_job(
    tx: &impl GenericClient,
    old: Option<&JobRecord>,
    new: &JobRecord,
) -> Result<(), StoreError> {
    let bytes = encode(new)?;
    let lease = new.lease.as_ref();
    tx.execute(
        "INSERT INTO slipway_jobs
            (id, state, priority, repository, lease_worker, not_before_ms, lease_expires_ms,
             idempotency_key, record)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (id) DO UPDATE SET
            state = EXCLUDED.state, priority = EXCLUDED.priority,
            lease_worker = EXCLUDED.lease_worker, not_before_ms = EXCLUDED.not_before_ms,
            lease_expires_ms = EXCLUDED.lease_expires_ms, record = EXCLUDED.record",
        &[
            &(new.id as i64),
            &new.state.name(),
            &new.spec.priority,
            &new.spec.repository,
            &lease.map(|l| l.worker.as_str()),
            &(new.not_before_ms as i64),
            &lease.map(|l| l.expires_ms as i64),
            &new.spec.idempotency_key,
            &bytes,
        ],
    )
    .await
    .map_err(pg)?;
    // The transactional outbox: written with the change it announces.
    for entry in crate::callbacks::owed(old, new) {
        super::records::insert_callback_if_absent(tx, &entry).await?;
    }
    let leasable = matches!(new.state, JobState::Queued | JobState::Retrying);
    if leasable && old.is_none_or(|o| o.state != new.state) {
        tx.execute("SELECT pg_notify($1, '')", &[&JOBS_CHANNEL])
            .await
            .map_err(pg)?;
    }
    Ok(())
}

/// Job `id`, locked for this transaction.
async fn load_for_update(tx: &impl GenericClient, id: JobId) -> Result<JobRecord, StoreError> {
    match tx
        .query_opt(
            "SELECT record FROM slipway_jobs WHERE id = $1 FOR UPDATE",
            &[&(id as i64)],
        )
        .await
        .map_err(pg)?
    {
        Some(row) => decode(row.get::<_, &[u8]>(0)),
        None => Err(StoreError::NotFound(id)),
    }
}

impl PostgresStore {
    /// Apply a transition to job `id` in a transaction of its own.
    async fn transition<T>(
        &self,
        id: JobId,
        f: impl FnOnce(&mut JobRecord) -> Result<T, TransitionError>,
    ) -> Result<(T, JobRecord), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let old = load_for_update(&tx, id).await?;
        let mut new = old.clone();
        let out = f(&mut new)?;
        if new != old {
            write_job(&tx, Some(&old), &new).await?;
        }
        tx.commit().await.map_err(pg)?;
        Ok((out, new))
    }

    /// Apply `f` to each job of `ids` that is still there, in one
    /// transaction (rows another transaction holds are skipped: it is
    /// changing them).
    async fn transition_each(
        &self,
        ids_sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        mut f: impl FnMut(&mut JobRecord) -> Result<(), TransitionError>,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let rows = tx.query(ids_sql, params).await.map_err(pg)?;
        let mut changed = Vec::with_capacity(rows.len());
        for row in rows {
            let old: JobRecord = decode(row.get::<_, &[u8]>(0))?;
            let mut new = old.clone();
            f(&mut new)?;
            if new != old {
                write_job(&tx, Some(&old), &new).await?;
            }
            changed.push(new);
        }
        tx.commit().await.map_err(pg)?;
        Ok(changed)
    }

    async fn submit_now(&self, spec: JobSpec) -> Result<Submitted, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        if let Some(key) = &spec.idempotency_key {
            // Two submits with one key at once: the second waits for the
            // first's commit on this lock, then finds its job.
            tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[key])
                .await
                .map_err(pg)?;
            if let Some(row) = tx
                .query_opt(
                    "SELECT record FROM slipway_jobs WHERE idempotency_key = $1",
                    &[key],
                )
                .await
                .map_err(pg)?
            {
                return Ok(Submitted {
                    record: decode(row.get::<_, &[u8]>(0))?,
                    created: false,
                });
            }
        }
        let id: i64 = tx
            .query_one("SELECT nextval('slipway_job_id')", &[])
            .await
            .map_err(pg)?
            .get(0);
        let record = JobRecord::new(id as u64, spec, &self.policy, now_ms());
        write_job(&tx, None, &record).await?;
        tx.commit().await.map_err(pg)?;
        Ok(Submitted {
            record,
            created: true,
        })
    }

    async fn lease_now(&self, request: LeaseRequest) -> Result<Vec<JobRecord>, StoreError> {
        if request.max == 0 {
            return Ok(Vec::new());
        }
        let now = now_ms() as i64;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // One leaser at a time across replicas: the per-repository counts
        // below stay true until this transaction commits.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LEASE_LOCK])
            .await
            .map_err(pg)?;
        let scan = request.max.saturating_mul(16).max(64) as i64;
        // Each half walks its own partial index in order; rows another
        // transaction holds (a cancel, a submit's commit) are skipped.
        let rows = tx
            .query(
                "SELECT record, priority, id FROM (
                    (SELECT id, priority FROM slipway_jobs WHERE state = 'queued'
                      ORDER BY priority DESC, id LIMIT $1)
                    UNION ALL
                    (SELECT id, priority FROM slipway_jobs
                      WHERE state = 'retrying' AND not_before_ms <= $2
                      ORDER BY not_before_ms, id LIMIT $1)
                 ) AS due JOIN slipway_jobs USING (id, priority)
                 ORDER BY priority DESC, id
                 LIMIT $1
                 FOR UPDATE OF slipway_jobs SKIP LOCKED",
                &[&scan, &now],
            )
            .await
            .map_err(pg)?;
        let mut busy: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        if request.per_repository > 0 {
            for row in tx
                .query(
                    "SELECT repository, count(*) FROM slipway_jobs WHERE state = 'running'
                     GROUP BY repository",
                    &[],
                )
                .await
                .map_err(pg)?
            {
                busy.insert(row.get(0), row.get::<_, i64>(1) as usize);
            }
        }
        let mut leased = Vec::new();
        for row in rows {
            if leased.len() >= request.max {
                break;
            }
            let old: JobRecord = decode(row.get::<_, &[u8]>(0))?;
            let running = busy.entry(old.spec.repository.clone()).or_default();
            if request.per_repository > 0 && *running >= request.per_repository {
                continue;
            }
            let fence: i64 = tx
                .query_one("SELECT nextval('slipway_fence')", &[])
                .await
                .map_err(pg)?
                .get(0);
            let mut new = old.clone();
            new.lease(&request.worker, fence as u64, request.lease_ms, now as u64)?;
            write_job(&tx, Some(&old), &new).await?;
            *running += 1;
            leased.push(new);
        }
        tx.commit().await.map_err(pg)?;
        Ok(leased)
    }

    async fn counts_now(&self) -> Result<BTreeMap<JobState, u64>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT state, count(*) FROM slipway_jobs GROUP BY state",
                &[],
            )
            .await
            .map_err(pg)?;
        let mut counts: BTreeMap<JobState, u64> = JobState::ALL.iter().map(|s| (*s, 0)).collect();
        for row in rows {
            let name: &str = row.get(0);
            let state = JobState::parse(name)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown job state {name:?}")))?;
            counts.insert(state, row.get::<_, i64>(1) as u64);
        }
        Ok(counts)
    }

    async fn list_now(&self, filter: ListFilter) -> Result<Vec<JobRecord>, StoreError> {
        let limit = if filter.limit == 0 { 50 } else { filter.limit };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let before = filter
            .before
            .map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let client = self.client().await?;
        let rows = match filter.state {
            Some(state) => client
                .query(
                    "SELECT record FROM slipway_jobs WHERE state = $1 AND id < $2
                     ORDER BY id DESC LIMIT $3",
                    &[&state.name(), &before, &limit],
                )
                .await
                .map_err(pg)?,
            None => client
                .query(
                    "SELECT record FROM slipway_jobs WHERE id < $1 ORDER BY id DESC LIMIT $2",
                    &[&before, &limit],
                )
                .await
                .map_err(pg)?,
        };
        rows.iter().map(|r| decode(r.get::<_, &[u8]>(0))).collect()
    }

    async fn get_now(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        self.client()
            .await?
            .query_opt("SELECT record FROM slipway_jobs WHERE id = $1", &[&id])
            .await
            .map_err(pg)?
            .map(|row| decode(row.get::<_, &[u8]>(0)))
            .transpose()
    }
}

/// The node part of a worker name (`<node>/<pid>`): the replica whose
/// attempts a restarted process may take over.
fn node_of(worker: &str) -> &str {
    worker.split('/').next().unwrap_or(worker)
}

impl JobQueue for PostgresStore {
    fn submit(&self, spec: JobSpec) -> StoreFuture<'_, Submitted> {
        Box::pin(self.submit_now(spec))
    }

    fn get(&self, id: JobId) -> StoreFuture<'_, Option<JobRecord>> {
        Box::pin(self.get_now(id))
    }

    fn list(&self, filter: &ListFilter) -> StoreFuture<'_, Vec<JobRecord>> {
        Box::pin(self.list_now(filter.clone()))
    }

    fn lease(&self, request: LeaseRequest) -> StoreFuture<'_, Vec<JobRecord>> {
        Box::pin(self.lease_now(request))
    }

    fn heartbeat(&self, id: JobId, fence: u64, lease_ms: u64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let (cancel, _) = self
                .transition(id, |r| r.heartbeat(fence, lease_ms, now_ms()))
                .await?;
            Ok(cancel)
        })
    }

    fn progress(&self, id: JobId, fence: u64, progress: Progress) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.transition(id, |r| r.report_progress(fence, progress, now_ms()))
                .await?;
            Ok(())
        })
    }

    fn record_run(&self, id: JobId, fence: u64, run: RunRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.transition(id, |r| r.record_run(fence, run, now_ms()))
                .await?;
            Ok(())
        })
    }

    fn complete(&self, id: JobId, fence: u64, outcome: Outcome) -> StoreFuture<'_, JobRecord> {
        Box::pin(async move {
            let jitter = fastrand::f64();
            let (_, record) = self
                .transition(id, |r| r.complete(fence, outcome, jitter, now_ms()))
                .await?;
            Ok(record)
        })
    }

    fn cancel(&self, id: JobId) -> StoreFuture<'_, JobRecord> {
        Box::pin(async move { Ok(self.transition(id, |r| r.cancel(now_ms())).await?.1) })
    }

    fn expire_leases(&self) -> StoreFuture<'_, Vec<JobId>> {
        Box::pin(async move {
            let now = now_ms();
            // Any replica sweeps; a lease being renewed right now is locked
            // by its heartbeat and skipped.
            let expired = self
                .transition_each(
                    "SELECT record FROM slipway_jobs
                     WHERE state = 'running' AND lease_expires_ms <= $1
                     FOR UPDATE SKIP LOCKED",
                    &[&(now as i64)],
                    |r| r.expire_lease(fastrand::f64(), now),
                )
                .await?;
            Ok(expired.iter().map(|r| r.id).collect())
        })
    }

    fn take_over_running(&self, worker: String, lease_ms: u64) -> StoreFuture<'_, Vec<JobRecord>> {
        Box::pin(async move {
            let now = now_ms();
            // Only this node's attempts: another replica's are its own (or
            // expire and are swept by anyone).
            let node = node_of(&worker).to_owned();
            let prefix = format!("{node}/%");
            self.transition_each(
                "SELECT record FROM slipway_jobs
                 WHERE state = 'running' AND (lease_worker = $1 OR lease_worker LIKE $2)
                 FOR UPDATE",
                &[&node, &prefix],
                |r| r.take_over(&worker, lease_ms, now),
            )
            .await
        })
    }

    fn counts(&self) -> StoreFuture<'_, BTreeMap<JobState, u64>> {
        Box::pin(self.counts_now())
    }
}

/// The `LISTEN` loop behind [`PostgresStore::listen`].
pub(super) async fn listen(
    config: tokio_postgres::Config,
    notify: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                backoff = Duration::from_millis(100);
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                // The connection makes progress only while polled: drive it
                // while the LISTEN statement is sent.
                let statement = format!("LISTEN {JOBS_CHANNEL}");
                let ok = {
                    let listening = client.batch_execute(&statement);
                    tokio::pin!(listening);
                    loop {
                        tokio::select! {
                            done = &mut listening => break done.is_ok(),
                            message = messages.next() => if message.is_none() { break false },
                        }
                    }
                };
                if ok {
                    // Wake once: a change while disconnected was not heard.
                    notify.notify_one();
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            message = messages.next() => match message {
                                Some(Ok(AsyncMessage::Notification(_))) => notify.notify_one(),
                                Some(Ok(_)) => {}
                                Some(Err(e)) => {
                                    tracing::warn!(error = %e, "store: the LISTEN connection failed; reconnecting");
                                    break;
                                }
                                None => break,
                            },
                        }
                    }
                }
                drop(client);
            }
            Err(e) => {
                tracing::warn!(error = %e, "store: cannot open the LISTEN connection; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
