//! The queue's storage seam. The scheduler and the API see only
//! [`JobStore`]; the embedded redb store ([`super::redb_store`]) is one
//! implementation, the PostgreSQL store that replicas share the other.
//!
//! Contract of every implementation: a method that changes state returns only
//! after the change is durable; transitions go through [`JobRecord`]'s
//! methods, so a stale fence is refused and a final state is written once.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use crate::callbacks::OutboxEntry;
use crate::deployments::Deployment;
use crate::executor::ReportRefused;
use crate::job::{
    JobId, JobRecord, JobSpec, JobState, Outcome, Progress, RunRecord, TransitionError,
};
use crate::profile::Profile;
use crate::service::ManagedService;
use crate::token::{ApiToken, AuditEntry, SessionRecord};
use crate::watches::{Delivery, Watch};
use crate::workspace::{WorkspaceRecord, WorkspaceRuntime};

/// A boxed future, so `JobStore` can be used as `dyn JobStore`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store file could not be created or opened (another process holds it,
    /// it is not writable, or it is damaged).
    #[error("cannot open the job store {path}: {message} (hint: {hint})")]
    Open {
        /// The store file, as given.
        path: String,
        /// The underlying error.
        message: String,
        /// What the operator can do about it.
        hint: &'static str,
    },
    /// The store was written by a newer Slipway: its schema is unknown here, so
    /// the file is left untouched.
    #[error(
        "the job store {path} was written by a newer Slipway (schema {found}, this one knows up to {known}); upgrade Slipway, or give this one another store (SLIPWAY_STATE_DIR for redb, SLIPWAY_STORE for PostgreSQL)"
    )]
    NewerSchema {
        /// The store file, as given.
        path: String,
        /// The file's schema version.
        found: u64,
        /// The newest schema version this build knows.
        known: u64,
    },
    /// Reading or writing the store failed; the underlying error's message.
    #[error("job store I/O failed: {0}")]
    Io(String),
    /// A stored record does not decode (a damaged file, or a format this build
    /// cannot read); the decoder's message.
    #[error("a stored record could not be decoded: {0}")]
    Corrupt(String),
    /// No job has this id.
    #[error("no job {0}")]
    NotFound(JobId),
    /// The job refused the change: a stale fence, or a state the change does not
    /// apply to (e.g. cancelling a finished job).
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// Another live replica of this store runs with the same node id.
    #[error(
        "another engine of the store {target} runs with node id `{node}`; give each replica its own (node_id, SLIPWAY_NODE_ID)"
    )]
    NodeTaken {
        /// The node id asked for.
        node: String,
        /// The store (its URL without the password).
        target: String,
    },
    /// An import into a store that already holds something.
    #[error("cannot import into {target}: it is not empty ({found}); import into a new store")]
    NotEmpty {
        /// The store.
        target: String,
        /// What it holds.
        found: String,
    },
    /// An export line that cannot be read.
    #[error("export record {kind}/{key}: {message}")]
    BadExport {
        /// Its table.
        kind: String,
        /// Its key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The store's writer has stopped (the engine is shutting down): nothing more
    /// is written.
    #[error("the job store is shut down")]
    Closed,
}

/// A runner image and when a job or workspace last used it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageUse {
    /// The image's tag (`name:tag`), as the runtime knows it.
    pub tag: String,
    /// When a job or workspace last used it, in ms since the Unix epoch.
    pub last_used_ms: u64,
}

/// The result of a submit: the job, and whether it was created now (false:
/// an earlier submit with the same idempotency key).
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The job as stored: the earlier submit's when `created` is false.
    pub record: JobRecord,
    /// `true` when this submit created the job.
    pub created: bool,
}

/// Which jobs a lease may take.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    /// Name of the worker taking the leases, recorded in each lease.
    pub worker: String,
    /// At most this many jobs.
    pub max: usize,
    /// How long each lease lasts unless a heartbeat extends it, in ms.
    pub lease_ms: u64,
    /// At most this many running jobs per repository (0: no limit).
    pub per_repository: usize,
    /// At most this many running jobs in the whole store, whichever engine
    /// runs them: with a shared store, across every replica (0: no limit).
    pub total: usize,
}

/// Which jobs [`JobQueue::list`] returns: one page, newest first.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only jobs in this state; `None`: every state.
    pub state: Option<JobState>,
    /// Only jobs with an id below this (pages go from newest to oldest).
    pub before: Option<JobId>,
    /// At most this many jobs; 0: the store's default page size (50 for redb).
    pub limit: usize,
}

/// The job queue: submits, leases under fencing numbers, progress and
/// outcomes, cancel, lease expiry.
pub trait JobQueue: Send + Sync {
    /// Store a new job (or return the one with the same idempotency key).
    fn submit(&self, spec: JobSpec) -> StoreFuture<'_, Submitted>;
    /// The job `id`; `Ok(None)` when there is none.
    fn get(&self, id: JobId) -> StoreFuture<'_, Option<JobRecord>>;
    /// Newest first.
    fn list(&self, filter: &ListFilter) -> StoreFuture<'_, Vec<JobRecord>>;
    /// Lease due jobs: highest priority first, FIFO within a priority.
    fn lease(&self, request: LeaseRequest) -> StoreFuture<'_, Vec<JobRecord>>;
    /// Extend a lease; `Ok(true)` means cancel was requested.
    fn heartbeat(&self, id: JobId, fence: u64, lease_ms: u64) -> StoreFuture<'_, bool>;
    /// Record what the attempt holding `fence` is doing, for `status` (refused
    /// under a stale fence).
    fn progress(&self, id: JobId, fence: u64, progress: Progress) -> StoreFuture<'_, ()>;
    /// What the attempt holding `fence` ran (refused under a stale fence).
    fn record_run(&self, id: JobId, fence: u64, run: RunRecord) -> StoreFuture<'_, ()>;
    /// End the attempt holding `fence` with `outcome`: a final state, or, for an
    /// infrastructure error, a retry after backoff (`dead` once attempts run out).
    /// Returns the record as written.
    fn complete(&self, id: JobId, fence: u64, outcome: Outcome) -> StoreFuture<'_, JobRecord>;
    /// Cancel job `id`: at once when waiting; a running job's holder is told on
    /// its next heartbeat. A finished job is refused. Returns the record as
    /// written.
    fn cancel(&self, id: JobId) -> StoreFuture<'_, JobRecord>;
    /// Put jobs whose lease has expired back (retrying) or to `dead`.
    fn expire_leases(&self) -> StoreFuture<'_, Vec<JobId>>;
    /// At start, before any lease: every running attempt belongs to a
    /// process that is gone (the store is opened by one process at a
    /// time); `worker` takes their leases over, fences unchanged, as
    /// [`JobRecord::take_over`] says.
    fn take_over_running(&self, worker: String, lease_ms: u64) -> StoreFuture<'_, Vec<JobRecord>>;
    /// Jobs by state.
    fn counts(&self) -> StoreFuture<'_, BTreeMap<JobState, u64>>;
}

/// Repo profiles (what a repository's jobs share).
pub trait ProfileStore: Send + Sync {
    /// Store a profile; `Ok(true)` when it replaced one of the same name.
    /// With `create_only`, an existing profile is left alone and `Ok(true)`
    /// is returned without writing.
    fn put_profile(&self, profile: Profile, create_only: bool) -> StoreFuture<'_, bool>;
    /// The profile `name`; `Ok(None)` when there is none.
    fn get_profile(&self, name: &str) -> StoreFuture<'_, Option<Profile>>;
    /// By name.
    fn list_profiles(&self) -> StoreFuture<'_, Vec<Profile>>;
    /// `Ok(false)` when there was none.
    fn delete_profile(&self, name: &str) -> StoreFuture<'_, bool>;
}

/// Managed service declarations.
pub trait ServiceStore: Send + Sync {
    /// Managed services, with the same semantics as profiles.
    fn put_service(&self, service: ManagedService, create_only: bool) -> StoreFuture<'_, bool>;
    /// The managed service `name`; `Ok(None)` when there is none.
    fn get_service(&self, name: &str) -> StoreFuture<'_, Option<ManagedService>>;
    /// By name.
    fn list_services(&self) -> StoreFuture<'_, Vec<ManagedService>>;
    /// Remove the managed service `name`; `Ok(false)` when there was none.
    fn delete_service(&self, name: &str) -> StoreFuture<'_, bool>;
}

/// Runner images and their last use (for image GC).
pub trait ImageStore: Send + Sync {
    /// When each runner image was last used (for image GC).
    fn touch_image(&self, tag: &str) -> StoreFuture<'_, bool>;
    /// Every runner image with a recorded use, in tag order.
    fn image_uses(&self) -> StoreFuture<'_, Vec<ImageUse>>;
    /// Forget an image's use (after image GC removed it); `Ok(false)` when none
    /// was recorded.
    fn forget_image(&self, tag: &str) -> StoreFuture<'_, bool>;
}

/// API tokens.
pub trait TokenStore: Send + Sync {
    /// API tokens, keyed by the hash of the token.
    fn put_token(&self, token: ApiToken) -> StoreFuture<'_, bool>;
    /// The token whose hex SHA-256 is `hash`; `Ok(None)` when there is none.
    fn get_token(&self, hash: &str) -> StoreFuture<'_, Option<ApiToken>>;
    /// Every token (revoked ones included), in hash order.
    fn list_tokens(&self) -> StoreFuture<'_, Vec<ApiToken>>;
}

/// Dashboard sessions, by the hex SHA-256 of their cookie's id (the store
/// holds no usable cookie). Kept in the store so that every replica knows
/// a login and a restart keeps it.
pub trait SessionStore: Send + Sync {
    /// Store session `id_hash`. First the expired sessions go, then, to
    /// keep at most `keep` sessions, the ones that end soonest.
    fn open_session(
        &self,
        id_hash: String,
        session: SessionRecord,
        keep: usize,
    ) -> StoreFuture<'_, ()>;
    /// The session `id_hash`, if it is there and has not expired at `now_ms`.
    fn get_session(&self, id_hash: &str, now_ms: u64) -> StoreFuture<'_, Option<SessionRecord>>;
    /// End session `id_hash`; `Ok(false)` when there was none.
    fn close_session(&self, id_hash: &str) -> StoreFuture<'_, bool>;
}

/// The audit log: every state-changing API request.
pub trait AuditStore: Send + Sync {
    /// Append `entry` (its `seq` is assigned here); the oldest entries
    /// beyond [`crate::token::AUDIT_KEPT`] are dropped.
    fn append_audit(&self, entry: AuditEntry) -> StoreFuture<'_, u64>;
    /// Up to `limit` entries older than `before` (`None`: from the newest),
    /// newest first.
    fn list_audit(&self, before: Option<u64>, limit: usize) -> StoreFuture<'_, Vec<AuditEntry>>;
}

/// Workspace records, and what a restarted engine needs to take a ready
/// workspace over.
pub trait WorkspaceStore: Send + Sync {
    /// Workspace records (create or replace), by id.
    fn put_workspace(&self, record: WorkspaceRecord) -> StoreFuture<'_, bool>;
    /// The workspace `id`; `Ok(None)` when there is none.
    fn get_workspace(&self, id: &str) -> StoreFuture<'_, Option<WorkspaceRecord>>;
    /// Every workspace record, open and closed, by id.
    fn list_workspaces(&self) -> StoreFuture<'_, Vec<WorkspaceRecord>>;
    /// How to reach a ready workspace's containers again after a restart
    /// (`None` deletes it: the workspace closed).
    fn put_workspace_runtime(
        &self,
        id: &str,
        runtime: Option<WorkspaceRuntime>,
    ) -> StoreFuture<'_, bool>;
    /// How to reach workspace `id`'s containers again; `Ok(None)` when it has
    /// none stored (not ready, or closed).
    fn get_workspace_runtime(&self, id: &str) -> StoreFuture<'_, Option<WorkspaceRuntime>>;
}

/// Watches and the webhook deliveries they were sent.
pub trait WatchStore: Send + Sync {
    /// Create or replace a watch (by id); `Ok(true)` when it replaced one.
    fn put_watch(&self, watch: Watch) -> StoreFuture<'_, bool>;
    /// The watch `id`; `Ok(None)` when there is none.
    fn get_watch(&self, id: &str) -> StoreFuture<'_, Option<Watch>>;
    /// By id.
    fn list_watches(&self) -> StoreFuture<'_, Vec<Watch>>;
    /// Remove a watch and its deliveries; `Ok(false)` when there was none.
    fn delete_watch(&self, id: &str) -> StoreFuture<'_, bool>;
    /// Record a delivery of watch `id`, numbered here (`seq`); the newest
    /// [`crate::watches::record::DELIVERIES_KEPT`] are kept.
    fn add_delivery(&self, id: &str, delivery: Delivery) -> StoreFuture<'_, Delivery>;
    /// The deliveries of watch `id`, newest first.
    fn list_deliveries(&self, id: &str) -> StoreFuture<'_, Vec<Delivery>>;
}

/// Deployments (by name) with their state and history.
pub trait DeploymentStore: Send + Sync {
    /// Create or replace a deployment.
    fn put_deployment(&self, deployment: Deployment) -> StoreFuture<'_, bool>;
    /// Replace a deployment and add the outbox messages its change owes,
    /// in one transaction (a message already there is left as it is).
    fn put_deployment_announcing(
        &self,
        deployment: Deployment,
        messages: Vec<OutboxEntry>,
    ) -> StoreFuture<'_, bool>;
    /// Create a deployment unless one has its name; `Ok(true)` when the name was taken.
    fn put_deployment_new(&self, deployment: Deployment) -> StoreFuture<'_, bool>;
    /// The deployment `name`; `Ok(None)` when there is none.
    fn get_deployment(&self, name: &str) -> StoreFuture<'_, Option<Deployment>>;
    /// By name.
    fn list_deployments(&self) -> StoreFuture<'_, Vec<Deployment>>;
    /// Remove a deployment; `Ok(false)` when there was none.
    fn delete_deployment(&self, name: &str) -> StoreFuture<'_, bool>;
}

/// The callbacks outbox: messages owed to receivers, written in the same
/// transaction as the job's state change they announce.
pub trait OutboxStore: Send + Sync {
    /// Messages due by `now_ms` (neither delivered nor given up), soonest
    /// first, at most `limit`.
    fn due_callbacks(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>>;
    /// Store a message's attempts and its next schedule.
    fn update_callback(&self, entry: OutboxEntry) -> StoreFuture<'_, ()>;
    /// Job `id`'s messages, in the order of its events.
    fn job_callbacks(&self, id: JobId) -> StoreFuture<'_, Vec<OutboxEntry>>;
    /// The messages whose key starts with `prefix` (a deployment's:
    /// `d/<name>/`), in key order.
    fn callbacks_with_prefix(&self, prefix: &str) -> StoreFuture<'_, Vec<OutboxEntry>>;
}

/// One record of a store as `slipway admin export` writes it and `import`
/// reads it: its table, its key, and its bytes as both stores keep them
/// (rmp-serde), base64 in the JSON line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exported {
    /// The table: `jobs`, `profiles`, `services`, `images`, `tokens`,
    /// `workspaces`, `workspace_runtimes`, `watches`, `deployments`,
    /// `deliveries`, `outbox`, `audit`, or `meta` (the next job id and fence).
    pub kind: String,
    /// The record's key in that table (a job id, a name, `<watch>/<seq>`, ...).
    pub key: String,
    /// The encoded record, base64 (`meta`: the number in decimal).
    pub value: String,
}

/// The tables an export holds, in the order an import writes them
/// (the outbox before the jobs that owe its messages).
pub const EXPORT_KINDS: &[&str] = &[
    "meta",
    "profiles",
    "services",
    "images",
    "tokens",
    "workspaces",
    "workspace_runtimes",
    "watches",
    "deployments",
    "deliveries",
    "audit",
    "outbox",
    "jobs",
];

/// Moving a store's contents to another store (redb ↔ PostgreSQL).
pub trait TransferStore: Send + Sync {
    /// Every record, table by table in [`EXPORT_KINDS`] order.
    fn export_all(&self) -> StoreFuture<'_, Vec<Exported>>;
    /// Write `records` (an export) into this store, which must hold no job
    /// and no record yet; keeps job ids, fences and sequence numbers, so
    /// jobs submitted after go on from them. Returns how many were written.
    fn import_all(&self, records: Vec<Exported>) -> StoreFuture<'_, usize>;
}

/// The whole store, every part of it: what the engine opens. Each part is a
/// trait of its own, so a second store (PostgreSQL) implements and is tested
/// part by part, and code that needs one part can say so.
pub trait JobStore:
    JobQueue
    + ProfileStore
    + ServiceStore
    + ImageStore
    + TokenStore
    + SessionStore
    + AuditStore
    + WorkspaceStore
    + WatchStore
    + DeploymentStore
    + OutboxStore
    + TransferStore
    + 'static
{
}

impl<T> JobStore for T where
    T: JobQueue
        + ProfileStore
        + ServiceStore
        + ImageStore
        + TokenStore
        + SessionStore
        + AuditStore
        + WorkspaceStore
        + WatchStore
        + DeploymentStore
        + OutboxStore
        + TransferStore
        + 'static
{
}

/// A store as the executor sees it: where an attempt reports (the
/// executor's port on the queue, so it needs nothing else of it).
pub struct AttemptReports(pub std::sync::Arc<dyn JobStore>);

impl crate::executor::AttemptSink for AttemptReports {
    fn progress(
        &self,
        id: JobId,
        fence: u64,
        progress: Progress,
    ) -> crate::executor::SinkFuture<'_> {
        let f = self.0.progress(id, fence, progress);
        Box::pin(async move { f.await.map_err(|e| ReportRefused(e.to_string())) })
    }

    fn record_run(&self, id: JobId, fence: u64, run: RunRecord) -> crate::executor::SinkFuture<'_> {
        let f = self.0.record_run(id, fence, run);
        Box::pin(async move { f.await.map_err(|e| ReportRefused(e.to_string())) })
    }
}

impl Exported {
    /// A record of table `kind` under `key`.
    pub fn new(kind: &str, key: impl Into<String>, bytes: &[u8]) -> Exported {
        use base64::Engine as _;
        Exported {
            kind: kind.to_owned(),
            key: key.into(),
            value: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    /// A `meta` number.
    pub fn number(key: &str, n: u64) -> Exported {
        Exported {
            kind: "meta".into(),
            key: key.to_owned(),
            value: n.to_string(),
        }
    }

    /// The record's bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, StoreError> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&self.value)
            .map_err(|e| self.bad(e))
    }

    /// A `meta` number's value.
    pub fn as_number(&self) -> Result<u64, StoreError> {
        self.value.parse().map_err(|e| self.bad(e))
    }

    /// The key as a number (job ids, audit sequence numbers).
    pub fn key_number(&self) -> Result<u64, StoreError> {
        self.key.parse().map_err(|e| self.bad(e))
    }

    /// An error about this record.
    pub fn bad(&self, message: impl std::fmt::Display) -> StoreError {
        StoreError::BadExport {
            kind: self.kind.clone(),
            key: self.key.clone(),
            message: message.to_string(),
        }
    }
}
