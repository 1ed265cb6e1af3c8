//! The queue's storage seam. The scheduler and the API see only
//! [`JobStore`]; the embedded redb store ([`super::redb_store`]) is one
//! implementation, a shared PostgreSQL store can be another.
//!
//! Contract of every implementation: a method that changes state returns only
//! after the change is durable; transitions go through [`JobRecord`]'s
//! methods, so a stale fence is refused and a final state is written once.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use crate::executor::ReportRefused;
use crate::job::{
    JobId, JobRecord, JobSpec, JobState, Outcome, Progress, RunRecord, TransitionError,
};
use crate::profile::Profile;
use crate::service::ManagedService;
use crate::token::ApiToken;
use crate::watches::{Delivery, Watch};
use crate::workspace::{WorkspaceRecord, WorkspaceRuntime};

/// A boxed future, so `JobStore` can be used as `dyn JobStore`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the job store {path}: {message} (hint: {hint})")]
    Open {
        path: String,
        message: String,
        hint: &'static str,
    },
    #[error(
        "the job store {path} was written by a newer Slipway (schema {found}, this one knows up to {known}); upgrade Slipway or point SLIPWAY_STATE_DIR elsewhere"
    )]
    NewerSchema {
        path: String,
        found: u64,
        known: u64,
    },
    #[error("job store I/O failed: {0}")]
    Io(String),
    #[error("a stored record could not be decoded: {0}")]
    Corrupt(String),
    #[error("no job {0}")]
    NotFound(JobId),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("the job store is shut down")]
    Closed,
}

/// A runner image and when a job or workspace last used it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageUse {
    pub tag: String,
    pub last_used_ms: u64,
}

/// The result of a submit: the job, and whether it was created now (false:
/// an earlier submit with the same idempotency key).
#[derive(Debug, Clone)]
pub struct Submitted {
    pub record: JobRecord,
    pub created: bool,
}

/// Which jobs a lease may take.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    pub worker: String,
    /// At most this many jobs.
    pub max: usize,
    pub lease_ms: u64,
    /// At most this many running jobs per repository (0: no limit).
    pub per_repository: usize,
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub state: Option<JobState>,
    /// Only jobs with an id below this (pages go from newest to oldest).
    pub before: Option<JobId>,
    pub limit: usize,
}

/// The job queue: submits, leases under fencing numbers, progress and
/// outcomes, cancel, lease expiry.
pub trait JobQueue: Send + Sync {
    /// Store a new job (or return the one with the same idempotency key).
    fn submit(&self, spec: JobSpec) -> StoreFuture<'_, Submitted>;
    fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError>;
    /// Newest first.
    fn list(&self, filter: &ListFilter) -> Result<Vec<JobRecord>, StoreError>;
    /// Lease due jobs: highest priority first, FIFO within a priority.
    fn lease(&self, request: LeaseRequest) -> StoreFuture<'_, Vec<JobRecord>>;
    /// Extend a lease; `Ok(true)` means cancel was requested.
    fn heartbeat(&self, id: JobId, fence: u64, lease_ms: u64) -> StoreFuture<'_, bool>;
    fn progress(&self, id: JobId, fence: u64, progress: Progress) -> StoreFuture<'_, ()>;
    /// What the attempt holding `fence` ran (refused under a stale fence).
    fn record_run(&self, id: JobId, fence: u64, run: RunRecord) -> StoreFuture<'_, ()>;
    fn complete(&self, id: JobId, fence: u64, outcome: Outcome) -> StoreFuture<'_, JobRecord>;
    fn cancel(&self, id: JobId) -> StoreFuture<'_, JobRecord>;
    /// Put jobs whose lease has expired back (retrying) or to `dead`.
    fn expire_leases(&self) -> StoreFuture<'_, Vec<JobId>>;
    /// At start, before any lease: every running attempt belongs to a
    /// process that is gone (the store is opened by one process at a
    /// time); `worker` takes their leases over, fences unchanged, as
    /// [`JobRecord::take_over`] says.
    fn take_over_running(&self, worker: String, lease_ms: u64) -> StoreFuture<'_, Vec<JobRecord>>;
    /// Jobs by state.
    fn counts(&self) -> Result<BTreeMap<JobState, u64>, StoreError>;
}

/// Repo profiles (what a repository's jobs share).
pub trait ProfileStore: Send + Sync {
    /// Store a profile; `Ok(true)` when it replaced one of the same name.
    /// With `create_only`, an existing profile is left alone and `Ok(true)`
    /// is returned without writing.
    fn put_profile(&self, profile: Profile, create_only: bool) -> StoreFuture<'_, bool>;
    fn get_profile(&self, name: &str) -> Result<Option<Profile>, StoreError>;
    /// By name.
    fn list_profiles(&self) -> Result<Vec<Profile>, StoreError>;
    /// `Ok(false)` when there was none.
    fn delete_profile(&self, name: &str) -> StoreFuture<'_, bool>;
}

/// Managed service declarations.
pub trait ServiceStore: Send + Sync {
    /// Managed services, with the same semantics as profiles.
    fn put_service(&self, service: ManagedService, create_only: bool) -> StoreFuture<'_, bool>;
    fn get_service(&self, name: &str) -> Result<Option<ManagedService>, StoreError>;
    /// By name.
    fn list_services(&self) -> Result<Vec<ManagedService>, StoreError>;
    fn delete_service(&self, name: &str) -> StoreFuture<'_, bool>;
}

/// Runner images and their last use (for image GC).
pub trait ImageStore: Send + Sync {
    /// When each runner image was last used (for image GC).
    fn touch_image(&self, tag: &str) -> StoreFuture<'_, bool>;
    fn image_uses(&self) -> Result<Vec<ImageUse>, StoreError>;
    fn forget_image(&self, tag: &str) -> StoreFuture<'_, bool>;
}

/// API tokens.
pub trait TokenStore: Send + Sync {
    /// API tokens, keyed by the hash of the token.
    fn put_token(&self, token: ApiToken) -> StoreFuture<'_, bool>;
    fn get_token(&self, hash: &str) -> Result<Option<ApiToken>, StoreError>;
    fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError>;
}

/// Workspace records, and what a restarted engine needs to take a ready
/// workspace over.
pub trait WorkspaceStore: Send + Sync {
    /// Workspace records (create or replace), by id.
    fn put_workspace(&self, record: WorkspaceRecord) -> StoreFuture<'_, bool>;
    fn get_workspace(&self, id: &str) -> Result<Option<WorkspaceRecord>, StoreError>;
    fn list_workspaces(&self) -> Result<Vec<WorkspaceRecord>, StoreError>;
    /// How to reach a ready workspace's containers again after a restart
    /// (`None` deletes it: the workspace closed).
    fn put_workspace_runtime(
        &self,
        id: &str,
        runtime: Option<WorkspaceRuntime>,
    ) -> StoreFuture<'_, bool>;
    fn get_workspace_runtime(&self, id: &str) -> Result<Option<WorkspaceRuntime>, StoreError>;
}

/// Watches and the webhook deliveries they were sent.
pub trait WatchStore: Send + Sync {
    /// Create or replace a watch (by id); `Ok(true)` when it replaced one.
    fn put_watch(&self, watch: Watch) -> StoreFuture<'_, bool>;
    fn get_watch(&self, id: &str) -> Result<Option<Watch>, StoreError>;
    /// By id.
    fn list_watches(&self) -> Result<Vec<Watch>, StoreError>;
    /// Remove a watch and its deliveries; `Ok(false)` when there was none.
    fn delete_watch(&self, id: &str) -> StoreFuture<'_, bool>;
    /// Record a delivery of watch `id`, numbered here (`seq`); the newest
    /// [`crate::watches::record::DELIVERIES_KEPT`] are kept.
    fn add_delivery(&self, id: &str, delivery: Delivery) -> StoreFuture<'_, Delivery>;
    /// The deliveries of watch `id`, newest first.
    fn list_deliveries(&self, id: &str) -> Result<Vec<Delivery>, StoreError>;
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
    + WorkspaceStore
    + WatchStore
    + 'static
{
}

impl<T> JobStore for T where
    T: JobQueue
        + ProfileStore
        + ServiceStore
        + ImageStore
        + TokenStore
        + WorkspaceStore
        + WatchStore
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
