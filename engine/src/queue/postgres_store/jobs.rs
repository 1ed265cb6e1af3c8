//! The job queue on PostgreSQL: submit, lease, transitions, expiry, and
//! the `LISTEN` loop that wakes a replica's scheduler.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::GenericClient;
use futures_util::StreamExt;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use super::{JOBS_CHANNEL, PostgresStore, decode, encode, pg};
use crate::job::{
    JobId, JobRecord, JobSpec, JobState, Outcome, Progress, RunRecord, SpecPolicy, TransitionError,
    now_ms,
};
use crate::queue::store::{JobQueue, LeaseRequest, ListFilter, StoreError, StoreFuture, Submitted};

/// The key of the advisory lock leasing holds for its transaction ("lease").
const LEASE_LOCK: i64 = 0x006c_6561_7365;

/// `sql` prepared once per connection: a plain `execute(&str)` costs an
/// extra round trip (parse and describe) every time.
async fn prepared(
    client: &impl GenericClient,
    sql: &str,
) -> Result<tokio_postgres::Statement, StoreError> {
    client.prepare_cached(sql).await.map_err(pg)
}

/// `n` values of `sequence` in one round trip, ascending (so that what is
/// handed out in order gets increasing ids or fences).
async fn next_values(
    client: &impl GenericClient,
    sequence: &str,
    n: usize,
) -> Result<Vec<i64>, StoreError> {
    let statement = prepared(
        client,
        &format!("SELECT nextval('{sequence}') FROM generate_series(1, $1::bigint)"),
    )
    .await?;
    let mut values: Vec<i64> = client
        .query(&statement, &[&(n as i64)])
        .await
        .map_err(pg)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    values.sort_unstable();
    Ok(values)
}

/// Write `new` (over `old`, when it existed) and the outbox messages the
/// change owes; announce it when the job became leasable. The statements
/// are independent, so they are pipelined (one round trip, not three).
pub(super) async fn write_job(
    tx: &impl GenericClient,
    old: Option<&JobRecord>,
    new: &JobRecord,
) -> Result<(), StoreError> {
    let bytes = encode(new)?;
    let lease = new.lease.as_ref();
    let id = new.id as i64;
    let worker = lease.map(|l| l.worker.as_str());
    let not_before = new.not_before_ms as i64;
    let expires = lease.map(|l| l.expires_ms as i64);
    let upsert = async {
        let statement = prepared(
            tx,
            "INSERT INTO slipway_jobs
                (id, state, priority, repository, lease_worker, not_before_ms, lease_expires_ms,
                 idempotency_key, record)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (id) DO UPDATE SET
                state = EXCLUDED.state, priority = EXCLUDED.priority,
                lease_worker = EXCLUDED.lease_worker, not_before_ms = EXCLUDED.not_before_ms,
                lease_expires_ms = EXCLUDED.lease_expires_ms, record = EXCLUDED.record",
        )
        .await?;
        tx.execute(
            &statement,
            &[
                &id,
                &new.state.name(),
                &new.spec.priority,
                &new.spec.repository,
                &worker,
                &not_before,
                &expires,
                &new.spec.idempotency_key,
                &bytes,
            ],
        )
        .await
        .map_err(pg)
    };
    // The transactional outbox: written with the change it announces.
    let outbox = async {
        for entry in crate::callbacks::owed(old, new) {
            super::records::insert_callback_if_absent(tx, &entry).await?;
        }
        Ok::<_, StoreError>(())
    };
    let announce = async {
        let leasable = matches!(new.state, JobState::Queued | JobState::Retrying);
        if leasable && old.is_none_or(|o| o.state != new.state) {
            let statement = prepared(tx, "SELECT pg_notify($1, '')").await?;
            tx.execute(&statement, &[&JOBS_CHANNEL]).await.map_err(pg)?;
        }
        Ok::<_, StoreError>(())
    };
    tokio::try_join!(upsert, outbox, announce)?;
    Ok(())
}

/// Job `id`, locked for this transaction.
async fn load_for_update(tx: &impl GenericClient, id: JobId) -> Result<JobRecord, StoreError> {
    let statement = prepared(
        tx,
        "SELECT record FROM slipway_jobs WHERE id = $1 FOR UPDATE",
    )
    .await?;
    match tx
        .query_opt(&statement, &[&(id as i64)])
        .await
        .map_err(pg)?
    {
        Some(row) => decode(row.get::<_, &[u8]>(0)),
        None => Err(StoreError::NotFound(id)),
    }
}

/// Insert new job `record` (no idempotency key, no outbox messages) in
/// one autocommit statement, announcing it when it is leasable.
async fn insert_alone(client: &impl GenericClient, record: &JobRecord) -> Result<(), StoreError> {
    const INSERT: &str = "INSERT INTO slipway_jobs
        (id, state, priority, repository, lease_worker, not_before_ms, lease_expires_ms, record)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    let bytes = encode(record)?;
    let lease = record.lease.as_ref();
    let id = record.id as i64;
    let worker = lease.map(|l| l.worker.as_str());
    let not_before = record.not_before_ms as i64;
    let expires = lease.map(|l| l.expires_ms as i64);
    let name = record.state.name();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
        &id,
        &name,
        &record.spec.priority,
        &record.spec.repository,
        &worker,
        &not_before,
        &expires,
        &bytes,
    ];
    let statement = if matches!(record.state, JobState::Queued | JobState::Retrying) {
        // The notification commits with the row.
        params.push(&JOBS_CHANNEL);
        prepared(client, &format!("{INSERT} RETURNING pg_notify($9, '')")).await?
    } else {
        prepared(client, INSERT).await?
    };
    client.execute(&statement, &params).await.map_err(pg)?;
    Ok(())
}

/// [`PostgresStore::transition`]'s compare-and-swap attempt; `None` when
/// the locking path must decide.
async fn optimistic<T>(
    client: &impl GenericClient,
    id: JobId,
    f: &impl Fn(&mut JobRecord) -> Result<T, TransitionError>,
) -> Result<Option<(T, JobRecord)>, StoreError> {
    let Ok(key) = i64::try_from(id) else {
        return Ok(None);
    };
    let statement = prepared(client, "SELECT record FROM slipway_jobs WHERE id = $1").await?;
    let Some(row) = client.query_opt(&statement, &[&key]).await.map_err(pg)? else {
        return Ok(None);
    };
    let stored: &[u8] = row.get(0);
    let old: JobRecord = decode(stored)?;
    let mut new = old.clone();
    let Ok(out) = f(&mut new) else {
        return Ok(None);
    };
    if new == old {
        // Nothing to write; the read was a committed state.
        return Ok(Some((out, new)));
    }
    let leasable = matches!(new.state, JobState::Queued | JobState::Retrying);
    if (leasable && old.state != new.state) || !crate::callbacks::owed(Some(&old), &new).is_empty()
    {
        return Ok(None);
    }
    let lease = new.lease.as_ref();
    let statement = prepared(
        client,
        "UPDATE slipway_jobs SET state = $2, priority = $3, lease_worker = $4,
            not_before_ms = $5, lease_expires_ms = $6, record = $7
         WHERE id = $1 AND record = $8",
    )
    .await?;
    let written = client
        .execute(
            &statement,
            &[
                &key,
                &new.state.name(),
                &new.spec.priority,
                &lease.map(|l| l.worker.as_str()),
                &(new.not_before_ms as i64),
                &lease.map(|l| l.expires_ms as i64),
                &encode(&new)?,
                &stored,
            ],
        )
        .await
        .map_err(pg)?;
    Ok((written == 1).then_some((out, new)))
}

/// Apply a transition to job `id` on `client`. First optimistically: read
/// the record, and write the change in one autocommit statement only if
/// the stored record is still the one read (two round trips instead of
/// four with BEGIN/COMMIT). A change that owes outbox messages or a
/// notification, a record changed meanwhile, or an error takes the
/// locking path, so its outcome is the one the lock would give.
async fn transition_on<T>(
    client: &mut deadpool_postgres::Object,
    id: JobId,
    f: impl Fn(&mut JobRecord) -> Result<T, TransitionError>,
) -> Result<(T, JobRecord), StoreError> {
    if let Some(done) = optimistic(&*client, id, &f).await? {
        return Ok(done);
    }
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

/// An attempt's outcome, waiting to be committed with others.
pub(super) struct Completion {
    id: JobId,
    fence: u64,
    outcome: Outcome,
}

/// Commit `batch` (the group commit behind [`JobQueue::complete`]): the
/// jobs locked in id order (as any other batch locks them: no deadlock),
/// each outcome applied by [`JobRecord::complete`] as alone, the changed
/// rows written pipelined, one commit. One outcome alone takes the
/// compare-and-swap path.
pub(super) async fn complete_batch(
    pool: deadpool_postgres::Pool,
    batch: Vec<Completion>,
) -> Result<Vec<Result<JobRecord, StoreError>>, StoreError> {
    let mut client = pool.get().await.map_err(pg)?;
    if let [one] = &batch[..] {
        let jitter = fastrand::f64();
        let done = transition_on(&mut client, one.id, |r| {
            r.complete(one.fence, one.outcome.clone(), jitter, now_ms())
        })
        .await;
        return Ok(vec![done.map(|(_, record)| record)]);
    }
    let tx = client.transaction().await.map_err(pg)?;
    let ids: Vec<i64> = batch.iter().map(|c| c.id as i64).collect();
    let statement = prepared(
        &tx,
        "SELECT id, record FROM slipway_jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .await?;
    // Per job: as read, and as changed so far in this batch.
    let mut jobs: BTreeMap<JobId, (JobRecord, JobRecord)> = BTreeMap::new();
    for row in tx.query(&statement, &[&ids]).await.map_err(pg)? {
        let record: JobRecord = decode(row.get::<_, &[u8]>(1))?;
        jobs.insert(row.get::<_, i64>(0) as JobId, (record.clone(), record));
    }
    let now = now_ms();
    let answers = batch
        .into_iter()
        .map(|c| {
            let (_, current) = jobs.get_mut(&c.id).ok_or(StoreError::NotFound(c.id))?;
            let mut new = current.clone();
            new.complete(c.fence, c.outcome, fastrand::f64(), now)?;
            *current = new.clone();
            Ok(new)
        })
        .collect();
    futures_util::future::try_join_all(
        jobs.values()
            .filter(|(old, new)| old != new)
            .map(|(old, new)| write_job(&tx, Some(old), new)),
    )
    .await?;
    tx.commit().await.map_err(pg)?;
    Ok(answers)
}

/// Commit `batch` (the group commit behind [`JobQueue::submit`] for jobs
/// without an idempotency key): ids drawn in one statement and given in
/// submit order, the rows and their outbox messages written pipelined,
/// one commit. One job alone is inserted in one autocommit statement.
pub(super) async fn submit_batch(
    pool: deadpool_postgres::Pool,
    policy: SpecPolicy,
    batch: Vec<JobSpec>,
) -> Result<Vec<Result<Submitted, StoreError>>, StoreError> {
    let mut client = pool.get().await.map_err(pg)?;
    let ids = next_values(&client, "slipway_job_id", batch.len()).await?;
    let now = now_ms();
    let records: Vec<JobRecord> = batch
        .into_iter()
        .zip(ids)
        .map(|(spec, id)| JobRecord::new(id as u64, spec, &policy, now))
        .collect();
    match &records[..] {
        [one] if crate::callbacks::owed(None, one).is_empty() => {
            insert_alone(&client, one).await?;
        }
        _ => {
            let tx = client.transaction().await.map_err(pg)?;
            futures_util::future::try_join_all(
                records.iter().map(|record| write_job(&tx, None, record)),
            )
            .await?;
            tx.commit().await.map_err(pg)?;
        }
    }
    Ok(records
        .into_iter()
        .map(|record| {
            Ok(Submitted {
                record,
                created: true,
            })
        })
        .collect())
}

impl PostgresStore {
    /// Apply a transition to job `id` on a pooled connection.
    async fn transition<T>(
        &self,
        id: JobId,
        f: impl Fn(&mut JobRecord) -> Result<T, TransitionError>,
    ) -> Result<(T, JobRecord), StoreError> {
        transition_on(&mut self.client().await?, id, f).await
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
        if spec.idempotency_key.is_none() {
            return self.submits.call(spec).await;
        }
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
        let id = next_values(&tx, "slipway_job_id", 1).await?[0];
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
        let mut max = request.max;
        if request.per_repository > 0 || request.total > 0 {
            // One leaser at a time across replicas: the running counts below
            // stay true until this transaction commits. Without a limit to
            // count, `SKIP LOCKED` alone keeps leasers apart.
            let statement = prepared(&tx, "SELECT pg_advisory_xact_lock($1)").await?;
            tx.execute(&statement, &[&LEASE_LOCK]).await.map_err(pg)?;
        }
        if request.total > 0 {
            let statement = prepared(
                &tx,
                "SELECT count(*) FROM slipway_jobs WHERE state = 'running'",
            )
            .await?;
            let running: i64 = tx.query_one(&statement, &[]).await.map_err(pg)?.get(0);
            max = max.min(request.total.saturating_sub(running as usize));
            if max == 0 {
                tx.commit().await.map_err(pg)?;
                return Ok(Vec::new());
            }
        }
        // Without a per-repository limit every row found is leased: lock
        // no more than that (each locked row is a heap write).
        let scan = if request.per_repository == 0 {
            max.min(i64::MAX as usize) as i64
        } else {
            max.saturating_mul(16).max(64) as i64
        };
        // Each half walks its own partial index in order; rows another
        // transaction holds (a cancel, a submit's commit) are skipped.
        let statement = prepared(
            &tx,
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
        )
        .await?;
        let rows = tx.query(&statement, &[&scan, &now]).await.map_err(pg)?;
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
        let mut chosen = Vec::new();
        for row in rows {
            if chosen.len() >= max {
                break;
            }
            let old: JobRecord = decode(row.get::<_, &[u8]>(0))?;
            let running = busy.entry(old.spec.repository.clone()).or_default();
            if request.per_repository > 0 && *running >= request.per_repository {
                continue;
            }
            *running += 1;
            chosen.push(old);
        }
        if chosen.is_empty() {
            tx.commit().await.map_err(pg)?;
            return Ok(Vec::new());
        }
        // All the fences in one round trip, in lease order.
        let fences = next_values(&tx, "slipway_fence", chosen.len()).await?;
        let mut leased = Vec::with_capacity(chosen.len());
        for (old, fence) in chosen.iter().zip(fences) {
            let mut new = old.clone();
            new.lease(&request.worker, fence as u64, request.lease_ms, now as u64)?;
            leased.push(new);
        }
        // One transaction, many rows: the writes are pipelined.
        futures_util::future::try_join_all(
            chosen
                .iter()
                .zip(&leased)
                .map(|(old, new)| write_job(&tx, Some(old), new)),
        )
        .await?;
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
            self.transition(id, |r| r.report_progress(fence, progress.clone(), now_ms()))
                .await?;
            Ok(())
        })
    }

    fn record_run(&self, id: JobId, fence: u64, run: RunRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.transition(id, |r| r.record_run(fence, run.clone(), now_ms()))
                .await?;
            Ok(())
        })
    }

    fn complete(&self, id: JobId, fence: u64, outcome: Outcome) -> StoreFuture<'_, JobRecord> {
        Box::pin(self.completions.call(Completion { id, fence, outcome }))
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
    tls: super::tls::Connector,
    notify: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        match config.connect(tls.clone()).await {
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
