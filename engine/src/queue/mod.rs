//! The durable job queue: storage ([`store`], [`redb_store`]) and the
//! [`scheduler`] that leases due jobs to the executor, keeps their leases
//! alive, enforces timeouts and records outcomes under the attempt's fence.
//! Knows nothing of HTTP or Docker.

pub mod redb_store;
pub mod scheduler;
pub mod store;

pub use redb_store::RedbStore;
pub use scheduler::{Scheduler, SchedulerConfig};
pub use store::{
    AuditStore, DeploymentStore, ImageStore, JobQueue, JobStore, LeaseRequest, ListFilter,
    OutboxStore, ProfileStore, ServiceStore, StoreError, Submitted, TokenStore, WatchStore,
    WorkspaceStore,
};
