//! The durable job queue: storage ([`store`]; [`redb_store`], embedded, the
//! default; [`postgres_store`], shared by replicas) and the
//! [`scheduler`] that leases due jobs to the executor, keeps their leases
//! alive, enforces timeouts and records outcomes under the attempt's fence.
//! Knows nothing of HTTP or Docker.

pub mod postgres_store;
pub mod redb_store;
pub mod scheduler;
pub mod store;

pub use postgres_store::PostgresStore;
pub use redb_store::RedbStore;
pub use scheduler::{Scheduler, SchedulerConfig};
pub use store::{
    AuditStore, DeploymentStore, Exported, ImageStore, JobQueue, JobStore, LeaseRequest,
    ListFilter, OutboxStore, ProfileStore, ServiceStore, SessionStore, StoreError, Submitted,
    TokenStore, TransferStore, WatchStore, WorkspaceStore,
};
