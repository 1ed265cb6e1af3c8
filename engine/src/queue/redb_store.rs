//! The embedded job store: one redb file, records encoded with rmp-serde.
//!
//! All writes go through one writer thread. It takes every operation waiting
//! in its channel, applies them in one write transaction, commits once (one
//! fsync), and only then answers each caller: group commit. Under load the
//! batch grows while the previous commit is being flushed, so throughput is
//! not one fsync per change; with no load a change is committed at once.
//! Reads use redb's MVCC snapshots and never wait for the writer.
//!
//! Tables: `jobs` (id → record), index tables `ready` ((-priority, id)),
//! `delayed` ((not_before, id)) and `running` (id → lease expiry),
//! `idempotency` (key → id) and `meta` (schema version, id and fence
//! counters).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
};
use tokio::sync::oneshot;

use super::store::{
    DeploymentStore, EXPORT_KINDS, Exported, ImageStore, ImageUse, JobQueue, LeaseRequest,
    ListFilter, OutboxStore, ProfileStore, ServiceStore, SessionStore, StoreError, StoreFuture,
    Submitted, TokenStore, TransferStore, WatchStore, WorkspaceStore,
};
use crate::callbacks::OutboxEntry;
use crate::deployments::Deployment;
use crate::job::{
    JobId, JobRecord, JobSpec, JobState, Outcome, Progress, RunRecord, SpecPolicy, now_ms,
};
use crate::profile::Profile;
use crate::service::ManagedService;
use crate::token::{ApiToken, AuditEntry, SessionRecord};
use crate::watches::record::DELIVERIES_KEPT;
use crate::watches::{Delivery, Watch};
use crate::workspace::{WorkspaceRecord, WorkspaceRuntime};

const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
const READY: TableDefinition<(i64, u64), ()> = TableDefinition::new("ready");
const DELAYED: TableDefinition<(u64, u64), ()> = TableDefinition::new("delayed");
const RUNNING: TableDefinition<u64, u64> = TableDefinition::new("running");
const IDEMPOTENCY: TableDefinition<&str, u64> = TableDefinition::new("idempotency");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const PROFILES: TableDefinition<&str, &[u8]> = TableDefinition::new("profiles");
const SERVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("services");
const WORKSPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("workspaces");
const WORKSPACE_RUNTIMES: TableDefinition<&str, &[u8]> = TableDefinition::new("workspace_runtimes");
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
const WATCHES: TableDefinition<&str, &[u8]> = TableDefinition::new("watches");
const DEPLOYMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("deployments");
/// Callback messages by key (`<job>/<event>/<callback>`, see `callbacks::key`).
const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
/// The outbox messages still to send, by when they are due.
const OUTBOX_DUE: TableDefinition<(u64, &str), ()> = TableDefinition::new("outbox_due");
/// The audit log, by sequence number.
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Dashboard sessions by the hash of their id (not exported: a moved
/// store starts with no one logged in).
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// Keyed `<watch id>/<seq, 20 digits>`, so a watch's deliveries are one range.
const DELIVERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("deliveries");

/// The schema this build writes. Bump it with a migration in `migrate`.
pub const SCHEMA_VERSION: u64 = 1;

struct Tables<'t> {
    jobs: Table<'t, u64, &'static [u8]>,
    ready: Table<'t, (i64, u64), ()>,
    delayed: Table<'t, (u64, u64), ()>,
    running: Table<'t, u64, u64>,
    idempotency: Table<'t, &'static str, u64>,
    profiles: Table<'t, &'static str, &'static [u8]>,
    services: Table<'t, &'static str, &'static [u8]>,
    workspaces: Table<'t, &'static str, &'static [u8]>,
    workspace_runtimes: Table<'t, &'static str, &'static [u8]>,
    tokens: Table<'t, &'static str, &'static [u8]>,
    images: Table<'t, &'static str, &'static [u8]>,
    watches: Table<'t, &'static str, &'static [u8]>,
    deployments: Table<'t, &'static str, &'static [u8]>,
    deliveries: Table<'t, &'static str, &'static [u8]>,
    outbox: Table<'t, &'static str, &'static [u8]>,
    outbox_due: Table<'t, (u64, &'static str), ()>,
    audit: Table<'t, u64, &'static [u8]>,
    sessions: Table<'t, &'static str, &'static [u8]>,
}

/// The writer's view of derived state, rebuilt from the tables at open.
#[derive(Default)]
struct Mem {
    next_id: u64,
    next_fence: u64,
    running_by_repo: HashMap<String, usize>,
}

type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;
type Op =
    Box<dyn for<'a, 't> FnOnce(&'a mut Tables<'t>, &mut Mem, &Counts) -> (Deliver, bool) + Send>;

/// Jobs by state, shared with readers.
type Counts = Mutex<BTreeMap<JobState, u64>>;

/// The engine's state (jobs, profiles, services, workspaces, tokens, ...) in one redb
/// file: reads from snapshots, writes group-committed by one writer thread. One process
/// at a time may open a file.
pub struct RedbStore {
    db: Arc<Database>,
    ops: mpsc::Sender<Op>,
    counts: Arc<Counts>,
    path: PathBuf,
    policy: SpecPolicy,
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

fn encode(record: &JobRecord) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(record).map_err(io)
}

fn decode(bytes: &[u8]) -> Result<JobRecord, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl RedbStore {
    /// Open (or create) the store at `path`. A damaged file is an error, never
    /// silently replaced.
    pub fn open(path: &Path, policy: SpecPolicy) -> Result<RedbStore, StoreError> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: shown.clone(),
                message: format!("cannot create {}: {e}", dir.display()),
                hint: "make the state directory writable, or set SLIPWAY_STATE_DIR",
            })?;
        }
        let db = Database::create(path).map_err(|e| {
            let message = e.to_string();
            let hint = match e {
                redb::DatabaseError::DatabaseAlreadyOpen => "another Slipway process uses this state directory; stop it or set SLIPWAY_STATE_DIR",
                redb::DatabaseError::Storage(redb::StorageError::Io(ref io))
                    if matches!(io.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem) =>
                {
                    "the state directory is not writable; fix its permissions or set SLIPWAY_STATE_DIR"
                }
                _ => "the file may be damaged: restore it from a backup or move it aside; Slipway never resets it silently",
            };
            StoreError::Open { path: shown.clone(), message, hint }
        })?;
        let mem = Self::prepare(&db, &shown)?;
        let counts = Arc::new(Mutex::new(Self::count(&db)?));
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel::<Op>();
        let writer_db = db.clone();
        let writer_counts = counts.clone();
        std::thread::Builder::new()
            .name("slipway-store-writer".into())
            .spawn(move || writer(writer_db, rx, mem, writer_counts))
            .map_err(io)?;
        Ok(RedbStore {
            db,
            ops: tx,
            counts,
            path: path.to_path_buf(),
            policy,
        })
    }

    /// The store's redb file, as opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Check the schema, migrate, and rebuild the writer's derived state.
    fn prepare(db: &Database, path: &str) -> Result<Mem, StoreError> {
        let txn = db.begin_write().map_err(io)?;
        let mut mem = Mem::default();
        {
            let mut meta = txn.open_table(META).map_err(io)?;
            let found = meta.get("schema_version").map_err(io)?.map(|v| v.value());
            match found {
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION).map_err(io)?;
                }
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::NewerSchema {
                        path: path.to_owned(),
                        found: v,
                        known: SCHEMA_VERSION,
                    });
                }
                Some(v) => migrate(&mut meta, v)?,
            }
            mem.next_id = meta
                .get("next_id")
                .map_err(io)?
                .map(|v| v.value())
                .unwrap_or(1);
            mem.next_fence = meta
                .get("next_fence")
                .map_err(io)?
                .map(|v| v.value())
                .unwrap_or(1);
            // Create every table, so readers never meet a missing one.
            txn.open_table(JOBS).map_err(io)?;
            txn.open_table(READY).map_err(io)?;
            txn.open_table(DELAYED).map_err(io)?;
            txn.open_table(IDEMPOTENCY).map_err(io)?;
            txn.open_table(PROFILES).map_err(io)?;
            txn.open_table(SERVICES).map_err(io)?;
            txn.open_table(WORKSPACES).map_err(io)?;
            txn.open_table(WORKSPACE_RUNTIMES).map_err(io)?;
            txn.open_table(TOKENS).map_err(io)?;
            txn.open_table(IMAGES).map_err(io)?;
            txn.open_table(WATCHES).map_err(io)?;
            txn.open_table(DEPLOYMENTS).map_err(io)?;
            txn.open_table(DELIVERIES).map_err(io)?;
            txn.open_table(OUTBOX).map_err(io)?;
            txn.open_table(OUTBOX_DUE).map_err(io)?;
            txn.open_table(AUDIT).map_err(io)?;
            txn.open_table(SESSIONS).map_err(io)?;
            let running = txn.open_table(RUNNING).map_err(io)?;
            let jobs = txn.open_table(JOBS).map_err(io)?;
            for entry in running.iter().map_err(io)? {
                let (id, _) = entry.map_err(io)?;
                if let Some(bytes) = jobs.get(id.value()).map_err(io)? {
                    let record = decode(bytes.value())?;
                    *mem.running_by_repo
                        .entry(record.spec.repository.clone())
                        .or_default() += 1;
                }
            }
        }
        txn.commit().map_err(io)?;
        Ok(mem)
    }

    fn count(db: &Database) -> Result<BTreeMap<JobState, u64>, StoreError> {
        let txn = db.begin_read().map_err(io)?;
        let jobs = txn.open_table(JOBS).map_err(io)?;
        let mut counts: BTreeMap<JobState, u64> = JobState::ALL.iter().map(|s| (*s, 0)).collect();
        for entry in jobs.iter().map_err(io)? {
            let (_, bytes) = entry.map_err(io)?;
            *counts.entry(decode(bytes.value())?.state).or_default() += 1;
        }
        Ok(counts)
    }

    /// Queue `f` on the writer; resolve after its batch is committed.
    fn write<T: Send + 'static>(
        &self,
        f: impl for<'a, 't> FnOnce(&'a mut Tables<'t>, &mut Mem, &Counts) -> Result<T, StoreError>
        + Send
        + 'static,
    ) -> StoreFuture<'_, T> {
        let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
        let op: Op = Box::new(move |tables, mem, counts| {
            let result = f(tables, mem, counts);
            let failed = matches!(result, Err(StoreError::Io(_) | StoreError::Corrupt(_)));
            let deliver: Deliver = Box::new(move |commit: Result<(), String>| {
                let _ = tx.send(commit.map_err(StoreError::Io).and(result));
            });
            (deliver, failed)
        });
        let sent = self.ops.send(op).map_err(|_| StoreError::Closed);
        Box::pin(async move {
            sent?;
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }
}

/// Bring a store of schema `from` up to [`SCHEMA_VERSION`].
fn migrate(meta: &mut Table<'_, &'static str, u64>, from: u64) -> Result<(), StoreError> {
    // Schema 1 is the first; each later version adds a step here, e.g.
    // `if from < 2 { rewrite records … }`, then bumps the stored version.
    if from < SCHEMA_VERSION {
        meta.insert("schema_version", SCHEMA_VERSION).map_err(io)?;
    }
    Ok(())
}

/// The writer loop: batch, apply, commit once, answer.
fn writer(db: Arc<Database>, rx: mpsc::Receiver<Op>, mut mem: Mem, counts: Arc<Counts>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let snapshot = (mem.next_id, mem.next_fence, mem.running_by_repo.clone());
        let counts_before = counts.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (delivers, result) = apply_batch(&db, batch, &mut mem, &counts);
        if result.is_err() {
            // Nothing of this batch was committed: forget its derived changes.
            (mem.next_id, mem.next_fence, mem.running_by_repo) = snapshot;
            *counts.lock().unwrap_or_else(|p| p.into_inner()) = counts_before;
        }
        for deliver in delivers {
            deliver(result.clone());
        }
    }
}

fn apply_batch(
    db: &Database,
    batch: Vec<Op>,
    mem: &mut Mem,
    counts: &Counts,
) -> (Vec<Deliver>, Result<(), String>) {
    let mut delivers = Vec::with_capacity(batch.len());
    let txn = match db.begin_write() {
        Ok(t) => t,
        Err(e) => {
            let e = e.to_string();
            // Answer every caller: run nothing, fail all.
            return (
                batch
                    .into_iter()
                    .map(|_| Box::new(|_| {}) as Deliver)
                    .collect(),
                Err(e),
            );
        }
    };
    let mut failed = false;
    {
        let tables = (|| -> Result<Tables<'_>, redb::TableError> {
            Ok(Tables {
                jobs: txn.open_table(JOBS)?,
                ready: txn.open_table(READY)?,
                delayed: txn.open_table(DELAYED)?,
                running: txn.open_table(RUNNING)?,
                idempotency: txn.open_table(IDEMPOTENCY)?,
                profiles: txn.open_table(PROFILES)?,
                services: txn.open_table(SERVICES)?,
                workspaces: txn.open_table(WORKSPACES)?,
                workspace_runtimes: txn.open_table(WORKSPACE_RUNTIMES)?,
                tokens: txn.open_table(TOKENS)?,
                images: txn.open_table(IMAGES)?,
                watches: txn.open_table(WATCHES)?,
                deployments: txn.open_table(DEPLOYMENTS)?,
                deliveries: txn.open_table(DELIVERIES)?,
                outbox: txn.open_table(OUTBOX)?,
                outbox_due: txn.open_table(OUTBOX_DUE)?,
                audit: txn.open_table(AUDIT)?,
                sessions: txn.open_table(SESSIONS)?,
            })
        })();
        let mut tables = match tables {
            Ok(t) => t,
            Err(e) => return (Vec::new(), Err(e.to_string())),
        };
        for op in batch {
            let (deliver, op_failed) = op(&mut tables, mem, counts);
            failed |= op_failed;
            delivers.push(deliver);
        }
        let meta = (|| -> Result<(), redb::Error> {
            let mut meta = txn.open_table(META)?;
            meta.insert("next_id", mem.next_id)?;
            meta.insert("next_fence", mem.next_fence)?;
            Ok(())
        })();
        failed |= meta.is_err();
    }
    if failed {
        let _ = txn.abort();
        return (
            delivers,
            Err("a write of this batch failed; nothing was committed".into()),
        );
    }
    match txn.commit() {
        Ok(()) => (delivers, Ok(())),
        Err(e) => (delivers, Err(e.to_string())),
    }
}

fn load(tables: &Tables<'_>, id: JobId) -> Result<JobRecord, StoreError> {
    match tables.jobs.get(id).map_err(io)? {
        Some(bytes) => decode(bytes.value()),
        None => Err(StoreError::NotFound(id)),
    }
}

/// Remove (`present = false`) or add the index entries of `record`'s state.
fn index(
    tables: &mut Tables<'_>,
    mem: &mut Mem,
    record: &JobRecord,
    present: bool,
) -> Result<(), StoreError> {
    let id = record.id;
    match record.state {
        JobState::Queued => {
            let key = (-(record.spec.priority as i64), id);
            if present {
                tables.ready.insert(key, ()).map(drop)
            } else {
                tables.ready.remove(key).map(drop)
            }
            .map_err(io)?;
        }
        JobState::Retrying => {
            let key = (record.not_before_ms, id);
            if present {
                tables.delayed.insert(key, ()).map(drop)
            } else {
                tables.delayed.remove(key).map(drop)
            }
            .map_err(io)?;
            // A due retry may have been promoted to `ready`.
            if !present {
                tables
                    .ready
                    .remove((-(record.spec.priority as i64), id))
                    .map_err(io)?;
            }
        }
        JobState::Running => {
            let expires = record.lease.as_ref().map(|l| l.expires_ms).unwrap_or(0);
            let repo = mem
                .running_by_repo
                .entry(record.spec.repository.clone())
                .or_default();
            if present {
                tables.running.insert(id, expires).map_err(io)?;
                *repo += 1;
            } else {
                tables.running.remove(id).map_err(io)?;
                *repo = repo.saturating_sub(1);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Write `new` over `old` (if any), keeping indexes and counts in step.
fn put(
    tables: &mut Tables<'_>,
    mem: &mut Mem,
    counts: &Counts,
    old: Option<&JobRecord>,
    new: &JobRecord,
) -> Result<(), StoreError> {
    if let Some(old) = old {
        index(tables, mem, old, false)?;
    }
    index(tables, mem, new, true)?;
    tables
        .jobs
        .insert(new.id, encode(new)?.as_slice())
        .map_err(io)?;
    // The transactional outbox: what this change owes its callbacks is
    // written with it, so no crash can lose a message.
    for entry in crate::callbacks::owed(old, new) {
        if tables.outbox.get(entry.key.as_str()).map_err(io)?.is_some() {
            continue;
        }
        put_callback(tables, None, &entry)?;
    }
    let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(old) = old
        && let Some(n) = c.get_mut(&old.state)
    {
        *n = n.saturating_sub(1);
    }
    *c.entry(new.state).or_default() += 1;
    Ok(())
}

/// Write an outbox message, moving its due-index entry from `old`'s time.
fn put_callback(
    tables: &mut Tables<'_>,
    old_due: Option<u64>,
    entry: &OutboxEntry,
) -> Result<(), StoreError> {
    if let Some(due) = old_due {
        tables
            .outbox_due
            .remove((due, entry.key.as_str()))
            .map_err(io)?;
    }
    if let Some(due) = entry.next_attempt_ms {
        tables
            .outbox_due
            .insert((due, entry.key.as_str()), ())
            .map_err(io)?;
    }
    let bytes = rmp_serde::to_vec_named(entry).map_err(io)?;
    tables
        .outbox
        .insert(entry.key.as_str(), bytes.as_slice())
        .map_err(io)?;
    Ok(())
}

/// Apply a transition to job `id` and store the result.
fn transition<T>(
    tables: &mut Tables<'_>,
    mem: &mut Mem,
    counts: &Counts,
    id: JobId,
    f: impl FnOnce(&mut JobRecord) -> Result<T, crate::job::TransitionError>,
) -> Result<(T, JobRecord), StoreError> {
    let old = load(tables, id)?;
    let mut new = old.clone();
    let out = f(&mut new)?;
    if new != old {
        put(tables, mem, counts, Some(&old), &new)?;
    }
    Ok((out, new))
}

/// Picks one of the name-keyed tables (profiles, services).
type NamedTable =
    for<'a, 't> fn(&'a mut Tables<'t>) -> &'a mut Table<'t, &'static str, &'static [u8]>;

/// Records kept by name: profiles and managed services.
impl RedbStore {
    fn put_named<T: serde::Serialize>(
        &self,
        table: NamedTable,
        name: String,
        value: &T,
        create_only: bool,
    ) -> StoreFuture<'_, bool> {
        let bytes = rmp_serde::to_vec_named(value).map_err(io);
        self.write(move |tables, _mem, _counts| {
            let bytes = bytes?;
            let table = table(tables);
            let exists = table.get(name.as_str()).map_err(io)?.is_some();
            if exists && create_only {
                return Ok(true);
            }
            table.insert(name.as_str(), bytes.as_slice()).map_err(io)?;
            Ok(exists)
        })
    }

    /// A read answered at once, in its own read transaction.
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError>,
    ) -> StoreFuture<'static, T> {
        ready(self.db.begin_read().map_err(io).and_then(|txn| f(&txn)))
    }

    fn get_named<T: serde::de::DeserializeOwned>(
        &self,
        definition: TableDefinition<&str, &[u8]>,
        name: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(definition).map_err(io)?;
        let value = table.get(name).map_err(io)?;
        value.map(|v| decode_named(v.value())).transpose()
    }

    fn list_named<T: serde::de::DeserializeOwned>(
        &self,
        definition: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(definition).map_err(io)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(io)? {
            let (_, v) = entry.map_err(io)?;
            out.push(decode_named(v.value())?);
        }
        Ok(out)
    }

    fn delete_named(&self, table: NamedTable, name: &str) -> StoreFuture<'_, bool> {
        let name = name.to_owned();
        self.write(move |tables, _mem, _counts| {
            Ok(table(tables).remove(name.as_str()).map_err(io)?.is_some())
        })
    }
}

/// A read answered at once: redb reads are quick and need no writer.
fn ready<'a, T: Send + 'a>(result: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(result))
}

/// One page of jobs, newest first (see [`JobQueue::list`]).
fn list_jobs(db: &Database, filter: &ListFilter) -> Result<Vec<JobRecord>, StoreError> {
    let txn = db.begin_read().map_err(io)?;
    let jobs = txn.open_table(JOBS).map_err(io)?;
    let limit = if filter.limit == 0 { 50 } else { filter.limit };
    let mut out = Vec::new();
    for entry in jobs
        .range(..filter.before.unwrap_or(u64::MAX))
        .map_err(io)?
        .rev()
    {
        let (_, bytes) = entry.map_err(io)?;
        let record = decode(bytes.value())?;
        if filter.state.is_none_or(|s| s == record.state) {
            out.push(record);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

fn decode_named<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl JobQueue for RedbStore {
    fn submit(&self, spec: JobSpec) -> StoreFuture<'_, Submitted> {
        let policy = self.policy.clone();
        self.write(move |tables, mem, counts| {
            if let Some(key) = spec.idempotency_key.clone() {
                if let Some(id) = tables
                    .idempotency
                    .get(key.as_str())
                    .map_err(io)?
                    .map(|v| v.value())
                {
                    return Ok(Submitted {
                        record: load(tables, id)?,
                        created: false,
                    });
                }
                tables
                    .idempotency
                    .insert(key.as_str(), mem.next_id)
                    .map_err(io)?;
            }
            let id = mem.next_id;
            mem.next_id += 1;
            let record = JobRecord::new(id, spec, &policy, now_ms());
            put(tables, mem, counts, None, &record)?;
            Ok(Submitted {
                record,
                created: true,
            })
        })
    }

    fn get(&self, id: JobId) -> StoreFuture<'_, Option<JobRecord>> {
        self.read(|txn| {
            let jobs = txn.open_table(JOBS).map_err(io)?;
            jobs.get(id)
                .map_err(io)?
                .map(|b| decode(b.value()))
                .transpose()
        })
    }

    fn list(&self, filter: &ListFilter) -> StoreFuture<'_, Vec<JobRecord>> {
        // A filtered page may scan many records: off the async threads.
        let (db, filter) = (Arc::clone(&self.db), filter.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || list_jobs(&db, &filter))
                .await
                .map_err(io)?
        })
    }

    fn lease(&self, request: LeaseRequest) -> StoreFuture<'_, Vec<JobRecord>> {
        self.write(move |tables, mem, counts| {
            let now = now_ms();
            // Retries whose backoff is over become ready.
            let due: Vec<(u64, u64)> = tables
                .delayed
                .range(..(now + 1, 0))
                .map_err(io)?
                .map(|e| e.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()
                .map_err(io)?;
            for (not_before, id) in due {
                tables.delayed.remove((not_before, id)).map_err(io)?;
                let record = load(tables, id)?;
                tables
                    .ready
                    .insert((-(record.spec.priority as i64), id), ())
                    .map_err(io)?;
            }
            let candidates: Vec<(i64, u64)> = tables
                .ready
                .iter()
                .map_err(io)?
                .take(request.max.saturating_mul(16).max(64))
                .map(|e| e.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()
                .map_err(io)?;
            // What the store-wide limit leaves.
            let running: usize = mem.running_by_repo.values().sum();
            let max = match request.total {
                0 => request.max,
                total => request.max.min(total.saturating_sub(running)),
            };
            let mut leased = Vec::new();
            for (_, id) in candidates {
                if leased.len() >= max {
                    break;
                }
                let record = load(tables, id)?;
                let busy = mem
                    .running_by_repo
                    .get(&record.spec.repository)
                    .copied()
                    .unwrap_or(0);
                if request.per_repository > 0 && busy >= request.per_repository {
                    continue;
                }
                let fence = mem.next_fence;
                mem.next_fence += 1;
                let (_, new) = transition(tables, mem, counts, id, |r| {
                    r.lease(&request.worker, fence, request.lease_ms, now)
                })?;
                leased.push(new);
            }
            Ok(leased)
        })
    }

    fn heartbeat(&self, id: JobId, fence: u64, lease_ms: u64) -> StoreFuture<'_, bool> {
        self.write(move |tables, mem, counts| {
            let (cancel, _) = transition(tables, mem, counts, id, |r| {
                r.heartbeat(fence, lease_ms, now_ms())
            })?;
            Ok(cancel)
        })
    }

    fn progress(&self, id: JobId, fence: u64, progress: Progress) -> StoreFuture<'_, ()> {
        self.write(move |tables, mem, counts| {
            transition(tables, mem, counts, id, |r| {
                r.report_progress(fence, progress, now_ms())
            })?;
            Ok(())
        })
    }

    fn record_run(&self, id: JobId, fence: u64, run: RunRecord) -> StoreFuture<'_, ()> {
        self.write(move |tables, mem, counts| {
            transition(tables, mem, counts, id, |r| {
                r.record_run(fence, run, now_ms())
            })?;
            Ok(())
        })
    }

    fn complete(&self, id: JobId, fence: u64, outcome: Outcome) -> StoreFuture<'_, JobRecord> {
        self.write(move |tables, mem, counts| {
            let jitter = fastrand::f64();
            Ok(transition(tables, mem, counts, id, |r| {
                r.complete(fence, outcome, jitter, now_ms())
            })?
            .1)
        })
    }

    fn cancel(&self, id: JobId) -> StoreFuture<'_, JobRecord> {
        self.write(move |tables, mem, counts| {
            Ok(transition(tables, mem, counts, id, |r| r.cancel(now_ms()))?.1)
        })
    }

    fn expire_leases(&self) -> StoreFuture<'_, Vec<JobId>> {
        self.write(move |tables, mem, counts| {
            let now = now_ms();
            let expired: Vec<u64> = tables
                .running
                .iter()
                .map_err(io)?
                .filter_map(|e| match e {
                    Ok((id, expires)) if expires.value() <= now => Some(Ok(id.value())),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<_, _>>()
                .map_err(io)?;
            for id in &expired {
                let jitter = fastrand::f64();
                transition(tables, mem, counts, *id, |r| r.expire_lease(jitter, now))?;
            }
            Ok(expired)
        })
    }

    fn take_over_running(&self, worker: String, lease_ms: u64) -> StoreFuture<'_, Vec<JobRecord>> {
        self.write(move |tables, mem, counts| {
            let now = now_ms();
            let ids: Vec<u64> = tables
                .running
                .iter()
                .map_err(io)?
                .map(|e| e.map(|(id, _)| id.value()))
                .collect::<Result<_, _>>()
                .map_err(io)?;
            let mut taken = Vec::new();
            for id in ids {
                let (_, record) = transition(tables, mem, counts, id, |r| {
                    r.take_over(&worker, lease_ms, now)
                })?;
                taken.push(record);
            }
            Ok(taken)
        })
    }

    fn counts(&self) -> StoreFuture<'_, BTreeMap<JobState, u64>> {
        ready(Ok(self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()))
    }
}

impl ProfileStore for RedbStore {
    fn put_profile(&self, profile: Profile, create_only: bool) -> StoreFuture<'_, bool> {
        let name = profile.name.clone();
        self.put_named(|t| &mut t.profiles, name, &profile, create_only)
    }

    fn get_profile(&self, name: &str) -> StoreFuture<'_, Option<Profile>> {
        ready(self.get_named(PROFILES, name))
    }

    fn list_profiles(&self) -> StoreFuture<'_, Vec<Profile>> {
        ready(self.list_named(PROFILES))
    }

    fn delete_profile(&self, name: &str) -> StoreFuture<'_, bool> {
        self.delete_named(|t| &mut t.profiles, name)
    }
}

impl DeploymentStore for RedbStore {
    fn put_deployment(&self, deployment: Deployment) -> StoreFuture<'_, bool> {
        let name = deployment.spec.name.clone();
        self.put_named(|t| &mut t.deployments, name, &deployment, false)
    }

    fn put_deployment_announcing(
        &self,
        deployment: Deployment,
        messages: Vec<OutboxEntry>,
    ) -> StoreFuture<'_, bool> {
        let bytes = rmp_serde::to_vec_named(&deployment).map_err(io);
        let name = deployment.spec.name.clone();
        self.write(move |tables, _mem, _counts| {
            let bytes = bytes?;
            let existed = tables.deployments.get(name.as_str()).map_err(io)?.is_some();
            tables
                .deployments
                .insert(name.as_str(), bytes.as_slice())
                .map_err(io)?;
            for entry in messages {
                if tables.outbox.get(entry.key.as_str()).map_err(io)?.is_none() {
                    put_callback(tables, None, &entry)?;
                }
            }
            Ok(existed)
        })
    }

    fn put_deployment_new(&self, deployment: Deployment) -> StoreFuture<'_, bool> {
        let name = deployment.spec.name.clone();
        self.put_named(|t| &mut t.deployments, name, &deployment, true)
    }

    fn get_deployment(&self, name: &str) -> StoreFuture<'_, Option<Deployment>> {
        ready(self.get_named(DEPLOYMENTS, name))
    }

    fn list_deployments(&self) -> StoreFuture<'_, Vec<Deployment>> {
        ready(self.list_named(DEPLOYMENTS))
    }

    fn delete_deployment(&self, name: &str) -> StoreFuture<'_, bool> {
        self.delete_named(|t| &mut t.deployments, name)
    }
}

impl ServiceStore for RedbStore {
    fn put_service(&self, service: ManagedService, create_only: bool) -> StoreFuture<'_, bool> {
        let name = service.spec.name.clone();
        self.put_named(|t| &mut t.services, name, &service, create_only)
    }

    fn get_service(&self, name: &str) -> StoreFuture<'_, Option<ManagedService>> {
        ready(self.get_named(SERVICES, name))
    }

    fn list_services(&self) -> StoreFuture<'_, Vec<ManagedService>> {
        ready(self.list_named(SERVICES))
    }

    fn delete_service(&self, name: &str) -> StoreFuture<'_, bool> {
        self.delete_named(|t| &mut t.services, name)
    }
}

impl ImageStore for RedbStore {
    fn touch_image(&self, tag: &str) -> StoreFuture<'_, bool> {
        let record = ImageUse {
            tag: tag.to_owned(),
            last_used_ms: now_ms(),
        };
        self.put_named(|t| &mut t.images, tag.to_owned(), &record, false)
    }

    fn image_uses(&self) -> StoreFuture<'_, Vec<ImageUse>> {
        ready(self.list_named(IMAGES))
    }

    fn forget_image(&self, tag: &str) -> StoreFuture<'_, bool> {
        self.delete_named(|t| &mut t.images, tag)
    }
}

impl TokenStore for RedbStore {
    fn put_token(&self, token: ApiToken) -> StoreFuture<'_, bool> {
        let key = token.hash.clone();
        self.put_named(|t| &mut t.tokens, key, &token, false)
    }

    fn get_token(&self, hash: &str) -> StoreFuture<'_, Option<ApiToken>> {
        ready(self.get_named(TOKENS, hash))
    }

    fn list_tokens(&self) -> StoreFuture<'_, Vec<ApiToken>> {
        ready(self.list_named(TOKENS))
    }
}

impl crate::queue::store::AuditStore for RedbStore {
    fn append_audit(&self, entry: AuditEntry) -> StoreFuture<'_, u64> {
        self.write(move |tables, _mem, _counts| {
            let seq = match tables.audit.last().map_err(io)? {
                Some((k, _)) => k.value() + 1,
                None => 1,
            };
            let entry = AuditEntry { seq, ..entry };
            let bytes = rmp_serde::to_vec_named(&entry).map_err(io)?;
            tables.audit.insert(seq, bytes.as_slice()).map_err(io)?;
            // Keep the newest: one entry in, at most one old one out.
            if seq > crate::token::AUDIT_KEPT {
                tables
                    .audit
                    .retain_in(..=seq - crate::token::AUDIT_KEPT, |_, _| false)
                    .map_err(io)?;
            }
            Ok(seq)
        })
    }

    fn list_audit(&self, before: Option<u64>, limit: usize) -> StoreFuture<'_, Vec<AuditEntry>> {
        self.read(|txn| {
            let table = txn.open_table(AUDIT).map_err(io)?;
            let range = table.range(..before.unwrap_or(u64::MAX)).map_err(io)?;
            let mut out = Vec::new();
            for entry in range.rev().take(limit) {
                let (_, v) = entry.map_err(io)?;
                out.push(decode_named(v.value())?);
            }
            Ok(out)
        })
    }
}

impl SessionStore for RedbStore {
    fn open_session(
        &self,
        id_hash: String,
        session: SessionRecord,
        keep: usize,
    ) -> StoreFuture<'_, ()> {
        let bytes = rmp_serde::to_vec_named(&session).map_err(io);
        self.write(move |tables, _mem, _counts| {
            let bytes = bytes?;
            let now = now_ms();
            let mut gone = Vec::new();
            let mut live = Vec::new();
            for entry in tables.sessions.iter().map_err(io)? {
                let (key, value) = entry.map_err(io)?;
                let other: SessionRecord = decode_named(value.value())?;
                let key = key.value().to_owned();
                if other.expires_ms <= now {
                    gone.push(key);
                } else if key != id_hash {
                    live.push((other.expires_ms, key));
                }
            }
            live.sort();
            let over = (live.len() + 1).saturating_sub(keep);
            gone.extend(live.into_iter().take(over).map(|(_, key)| key));
            for key in gone {
                tables.sessions.remove(key.as_str()).map_err(io)?;
            }
            tables
                .sessions
                .insert(id_hash.as_str(), bytes.as_slice())
                .map_err(io)?;
            Ok(())
        })
    }

    fn get_session(&self, id_hash: &str, now_ms: u64) -> StoreFuture<'_, Option<SessionRecord>> {
        ready(
            self.get_named::<SessionRecord>(SESSIONS, id_hash)
                .map(|found| found.filter(|s| s.expires_ms > now_ms)),
        )
    }

    fn close_session(&self, id_hash: &str) -> StoreFuture<'_, bool> {
        self.delete_named(|t| &mut t.sessions, id_hash)
    }
}

impl WorkspaceStore for RedbStore {
    fn put_workspace(&self, record: WorkspaceRecord) -> StoreFuture<'_, bool> {
        let id = record.id.clone();
        self.put_named(|t| &mut t.workspaces, id, &record, false)
    }

    fn get_workspace(&self, id: &str) -> StoreFuture<'_, Option<WorkspaceRecord>> {
        ready(self.get_named(WORKSPACES, id))
    }

    fn list_workspaces(&self) -> StoreFuture<'_, Vec<WorkspaceRecord>> {
        ready(self.list_named(WORKSPACES))
    }

    fn put_workspace_runtime(
        &self,
        id: &str,
        runtime: Option<WorkspaceRuntime>,
    ) -> StoreFuture<'_, bool> {
        match runtime {
            Some(r) => self.put_named(|t| &mut t.workspace_runtimes, id.to_owned(), &r, false),
            None => self.delete_named(|t| &mut t.workspace_runtimes, id),
        }
    }

    fn get_workspace_runtime(&self, id: &str) -> StoreFuture<'_, Option<WorkspaceRuntime>> {
        ready(self.get_named(WORKSPACE_RUNTIMES, id))
    }
}

/// The key of delivery `seq` of watch `id`.
fn delivery_key(id: &str, seq: u64) -> String {
    format!("{id}/{seq:020}")
}

impl WatchStore for RedbStore {
    fn put_watch(&self, watch: Watch) -> StoreFuture<'_, bool> {
        let id = watch.id.clone();
        self.put_named(|t| &mut t.watches, id, &watch, false)
    }

    fn get_watch(&self, id: &str) -> StoreFuture<'_, Option<Watch>> {
        ready(self.get_named(WATCHES, id))
    }

    fn list_watches(&self) -> StoreFuture<'_, Vec<Watch>> {
        ready(self.list_named(WATCHES))
    }

    fn delete_watch(&self, id: &str) -> StoreFuture<'_, bool> {
        let id = id.to_owned();
        self.write(move |tables, _mem, _counts| {
            let existed = tables.watches.remove(id.as_str()).map_err(io)?.is_some();
            let (from, to) = (delivery_key(&id, 0), delivery_key(&id, u64::MAX));
            tables
                .deliveries
                .retain_in(from.as_str()..=to.as_str(), |_, _| false)
                .map_err(io)?;
            Ok(existed)
        })
    }

    fn add_delivery(&self, id: &str, delivery: Delivery) -> StoreFuture<'_, Delivery> {
        let id = id.to_owned();
        self.write(move |tables, _mem, _counts| {
            let (from, to) = (delivery_key(&id, 0), delivery_key(&id, u64::MAX));
            let last = tables
                .deliveries
                .range(from.as_str()..=to.as_str())
                .map_err(io)?
                .next_back()
                .transpose()
                .map_err(io)?
                .and_then(|(k, _)| k.value().rsplit('/').next()?.parse::<u64>().ok())
                .unwrap_or(0);
            let delivery = Delivery {
                seq: last + 1,
                ..delivery
            };
            let bytes = rmp_serde::to_vec_named(&delivery).map_err(io)?;
            let key = delivery_key(&id, delivery.seq);
            tables
                .deliveries
                .insert(key.as_str(), bytes.as_slice())
                .map_err(io)?;
            // Keep the newest: drop what fell out of the window.
            if delivery.seq > DELIVERIES_KEPT as u64 {
                let below = delivery_key(&id, delivery.seq - DELIVERIES_KEPT as u64);
                tables
                    .deliveries
                    .retain_in(from.as_str()..below.as_str(), |_, _| false)
                    .map_err(io)?;
            }
            Ok(delivery)
        })
    }

    fn list_deliveries(&self, id: &str) -> StoreFuture<'_, Vec<Delivery>> {
        self.read(|txn| {
            let table = txn.open_table(DELIVERIES).map_err(io)?;
            let (from, to) = (delivery_key(id, 0), delivery_key(id, u64::MAX));
            let mut out = Vec::new();
            for entry in table.range(from.as_str()..=to.as_str()).map_err(io)?.rev() {
                let (_, v) = entry.map_err(io)?;
                out.push(decode_named(v.value())?);
            }
            Ok(out)
        })
    }
}

impl OutboxStore for RedbStore {
    fn due_callbacks(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        self.read(|txn| {
            let due = txn.open_table(OUTBOX_DUE).map_err(io)?;
            let outbox = txn.open_table(OUTBOX).map_err(io)?;
            let mut out = Vec::new();
            for entry in due.range((0, "")..=(now_ms, "~")).map_err(io)?.take(limit) {
                let (k, _) = entry.map_err(io)?;
                let (_, key) = k.value();
                if let Some(v) = outbox.get(key).map_err(io)? {
                    out.push(decode_named(v.value())?);
                }
            }
            Ok(out)
        })
    }

    fn update_callback(&self, entry: OutboxEntry) -> StoreFuture<'_, ()> {
        self.write(move |tables, _mem, _counts| {
            let old: Option<OutboxEntry> = tables
                .outbox
                .get(entry.key.as_str())
                .map_err(io)?
                .map(|v| decode_named(v.value()))
                .transpose()?;
            put_callback(tables, old.and_then(|o| o.next_attempt_ms), &entry)
        })
    }

    fn job_callbacks(&self, id: JobId) -> StoreFuture<'_, Vec<OutboxEntry>> {
        self.callbacks_with_prefix(&format!("{id:020}/"))
    }

    fn callbacks_with_prefix(&self, prefix: &str) -> StoreFuture<'_, Vec<OutboxEntry>> {
        self.read(|txn| {
            let outbox = txn.open_table(OUTBOX).map_err(io)?;
            let (from, to) = (prefix.to_owned(), format!("{prefix}~"));
            let mut out = Vec::new();
            for entry in outbox.range(from.as_str()..to.as_str()).map_err(io)? {
                let (_, v) = entry.map_err(io)?;
                out.push(decode_named(v.value())?);
            }
            Ok(out)
        })
    }
}

/// The name-keyed tables, by export kind.
const NAMED: &[(&str, TableDefinition<&str, &[u8]>)] = &[
    ("profiles", PROFILES),
    ("services", SERVICES),
    ("images", IMAGES),
    ("tokens", TOKENS),
    ("workspaces", WORKSPACES),
    ("workspace_runtimes", WORKSPACE_RUNTIMES),
    ("watches", WATCHES),
    ("deployments", DEPLOYMENTS),
    ("deliveries", DELIVERIES),
    ("outbox", OUTBOX),
];

fn named_table<'a, 't>(
    tables: &'a mut Tables<'t>,
    kind: &str,
) -> Option<&'a mut Table<'t, &'static str, &'static [u8]>> {
    Some(match kind {
        "profiles" => &mut tables.profiles,
        "services" => &mut tables.services,
        "images" => &mut tables.images,
        "tokens" => &mut tables.tokens,
        "workspaces" => &mut tables.workspaces,
        "workspace_runtimes" => &mut tables.workspace_runtimes,
        "watches" => &mut tables.watches,
        "deployments" => &mut tables.deployments,
        "deliveries" => &mut tables.deliveries,
        _ => return None,
    })
}

impl TransferStore for RedbStore {
    fn export_all(&self) -> StoreFuture<'_, Vec<Exported>> {
        let next = {
            // The writer's counters as last committed.
            let txn = self.db.begin_read().map_err(io);
            txn.and_then(|txn| {
                let meta = txn.open_table(META).map_err(io)?;
                let get = |k: &str| -> Result<u64, StoreError> {
                    Ok(meta.get(k).map_err(io)?.map(|v| v.value()).unwrap_or(1))
                };
                Ok((get("next_id")?, get("next_fence")?))
            })
        };
        self.read(move |txn| {
            let (next_id, next_fence) = next?;
            let mut out = vec![
                Exported::number("next_id", next_id),
                Exported::number("next_fence", next_fence),
            ];
            for (kind, definition) in NAMED {
                let table = txn.open_table(*definition).map_err(io)?;
                for entry in table.iter().map_err(io)? {
                    let (k, v) = entry.map_err(io)?;
                    out.push(Exported::new(kind, k.value(), v.value()));
                }
            }
            let audit = txn.open_table(AUDIT).map_err(io)?;
            for entry in audit.iter().map_err(io)? {
                let (k, v) = entry.map_err(io)?;
                out.push(Exported::new("audit", k.value().to_string(), v.value()));
            }
            let jobs = txn.open_table(JOBS).map_err(io)?;
            for entry in jobs.iter().map_err(io)? {
                let (k, v) = entry.map_err(io)?;
                out.push(Exported::new("jobs", k.value().to_string(), v.value()));
            }
            out.sort_by_key(|e| EXPORT_KINDS.iter().position(|k| *k == e.kind));
            Ok(out)
        })
    }

    fn import_all(&self, records: Vec<Exported>) -> StoreFuture<'_, usize> {
        let target = self.path.display().to_string();
        self.write(move |tables, mem, counts| {
            let mut holds = !tables.jobs.is_empty().map_err(io)?;
            for (kind, _) in NAMED {
                if let Some(table) = named_table(tables, kind) {
                    holds |= !table.is_empty().map_err(io)?;
                }
            }
            if holds {
                return Err(StoreError::NotEmpty {
                    target,
                    found: "jobs or records".into(),
                });
            }
            let mut written = 0;
            for record in &records {
                match record.kind.as_str() {
                    "meta" => match record.key.as_str() {
                        "next_id" => mem.next_id = mem.next_id.max(record.as_number()?),
                        "next_fence" => mem.next_fence = mem.next_fence.max(record.as_number()?),
                        _ => return Err(record.bad("unknown meta key")),
                    },
                    "audit" => {
                        tables
                            .audit
                            .insert(record.key_number()?, record.bytes()?.as_slice())
                            .map_err(io)?;
                    }
                    "outbox" => {
                        let entry: OutboxEntry = decode_named(&record.bytes()?)?;
                        put_callback(tables, None, &entry)?;
                    }
                    "jobs" => {
                        let job = decode(&record.bytes()?)?;
                        mem.next_id = mem.next_id.max(job.id + 1);
                        if let Some(lease) = &job.lease {
                            mem.next_fence = mem.next_fence.max(lease.fence + 1);
                        }
                        if let Some(key) = &job.spec.idempotency_key {
                            tables
                                .idempotency
                                .insert(key.as_str(), job.id)
                                .map_err(io)?;
                        }
                        put(tables, mem, counts, None, &job)?;
                    }
                    kind => {
                        let bytes = record.bytes()?;
                        let table =
                            named_table(tables, kind).ok_or_else(|| record.bad("unknown kind"))?;
                        table
                            .insert(record.key.as_str(), bytes.as_slice())
                            .map_err(io)?;
                    }
                }
                written += 1;
            }
            Ok(written)
        })
    }
}
