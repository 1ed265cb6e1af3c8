//! The shared job store: PostgreSQL, for several engine replicas on one
//! queue (config `store = "postgres://…"`).
//!
//! Records are encoded with rmp-serde exactly as the redb store encodes
//! them, so `slipway admin export | import` copies bytes. Beside each
//! job's record the `slipway_jobs` table keeps the columns leasing needs
//! (state, priority, repository, when a retry is due, when a lease
//! expires), indexed per state.
//!
//! Every transition reads the job `FOR UPDATE`, applies [`JobRecord`](crate::job::JobRecord)'s
//! method (so fences and final states are checked by the same code as
//! with redb), and writes it back with the outbox messages it owes, in
//! one transaction. Leasing takes a transaction-scoped advisory lock, so
//! per-repository limits hold across replicas, and picks its rows with
//! `FOR UPDATE SKIP LOCKED`, so it never waits on a job another
//! transaction is changing. A change that makes a job leasable sends
//! `NOTIFY slipway_jobs` (delivered at commit): replicas listening wake at
//! once instead of polling.

mod jobs;
mod records;
pub mod schema;

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::store::StoreError;
use crate::job::SpecPolicy;

/// The channel a change that makes a job leasable is announced on.
pub const JOBS_CHANNEL: &str = "slipway_jobs";

/// Connections kept open per engine: requests, the scheduler and the
/// supervisors share them.
const POOL_SIZE: usize = 16;

/// How long a request waits for a connection (or a new one to open)
/// before it fails: a database that is down answers as an error, not a hang.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// The engine's state in a PostgreSQL database. Cheap to share: the pool
/// is reference-counted.
pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
    target: String,
    policy: SpecPolicy,
}

fn pg(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(value).map_err(pg)
}

/// `url` as it may be shown: user, hosts, port and database, never the
/// password.
pub fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config
        .get_ports()
        .first()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    format!(
        "postgres://{}@{}{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        port,
        config.get_dbname().unwrap_or("")
    )
}

impl PostgresStore {
    /// Connect to the database at `url` (a libpq URL or key=value string),
    /// apply the migrations this build has, and refuse a database a newer
    /// Slipway wrote.
    pub async fn open(url: &str, policy: SpecPolicy) -> Result<PostgresStore, StoreError> {
        let config = tokio_postgres::Config::from_str(url).map_err(|e| StoreError::Open {
            path: "the PostgreSQL URL in `store`".into(),
            message: e.to_string(),
            hint: "write it as postgres://user:password@host:port/database",
        })?;
        let target = describe(&config);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_WAIT))
            .create_timeout(Some(CONNECT_WAIT))
            .recycle_timeout(Some(CONNECT_WAIT))
            .build()
            .map_err(|e| StoreError::Open {
                path: target.clone(),
                message: e.to_string(),
                hint: "check the `store` URL",
            })?;
        let store = PostgresStore {
            pool,
            config,
            target,
            policy,
        };
        let mut client = store.pool.get().await.map_err(|e| StoreError::Open {
            path: store.target.clone(),
            message: e.to_string(),
            hint: "check that PostgreSQL runs and accepts this user and database",
        })?;
        schema::migrate(&mut client, &store.target).await?;
        Ok(store)
    }

    /// The database, as it may be shown (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The connection settings, for a listener of its own
    /// ([`PostgresStore::listen`]).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// A pooled connection.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pg)
    }

    /// The schema version the database holds now.
    pub async fn schema_version(&self) -> Result<u64, StoreError> {
        schema::version(&*self.client().await?).await
    }

    /// The database's clock, in ms since the Unix epoch (for `doctor`'s
    /// skew check between this host and the database).
    pub async fn database_time_ms(&self) -> Result<u64, StoreError> {
        let ms: f64 = self
            .client()
            .await?
            .query_one("SELECT extract(epoch FROM clock_timestamp()) * 1000", &[])
            .await
            .map_err(pg)?
            .get(0);
        Ok(ms as u64)
    }

    /// Wake `notify` on every `NOTIFY slipway_jobs`, on a connection of its
    /// own, reconnecting after a failure; ends when `shutdown` is cancelled.
    /// A wake-up lost while reconnecting is covered by the scheduler's
    /// own periodic pass.
    pub async fn listen(
        &self,
        notify: std::sync::Arc<tokio::sync::Notify>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        jobs::listen(self.config.clone(), notify, shutdown).await
    }
}
