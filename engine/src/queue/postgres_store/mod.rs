//! The shared job store: PostgreSQL, for several engine replicas on one
//! queue (config `store = "postgres://…"`).
//!
//! Records are encoded with rmp-serde exactly as the redb store encodes
//! them, so `slipway admin export | import` copies bytes. Beside each
//! job's record the `slipway_jobs` table keeps the columns leasing needs
//! (state, priority, repository, when a retry is due, when a lease
//! expires), indexed per state.
//!
//! Every transition applies [`JobRecord`](crate::job::JobRecord)'s method
//! (so fences and final states are checked by the same code as with
//! redb) and writes the record back with the outbox messages it owes, in
//! one transaction: first as a compare-and-swap (one `UPDATE … WHERE
//! record = <as read>`), and when that loses a race or owes more than the
//! row, with the row read `FOR UPDATE`. Keyless submits and attempts'
//! outcomes go through a group commit (`batch.rs`): those that arrive while
//! one batch commits share the next transaction. Leasing picks its rows
//! with `FOR UPDATE SKIP LOCKED`, so it never waits on a job another
//! transaction is changing; with a per-repository limit it also takes a
//! transaction-scoped advisory lock, so the limit holds across replicas.
//! A change that makes a job leasable sends `NOTIFY slipway_jobs`
//! (delivered at commit): replicas listening wake at once instead of
//! polling.

mod batch;
mod jobs;
mod records;
pub mod schema;
mod tls;
mod transfer;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_util::sync::CancellationToken;

use super::store::StoreError;
use crate::error_chain::with_causes;
use crate::job::SpecPolicy;

/// The channel a change that makes a job leasable is announced on.
pub const JOBS_CHANNEL: &str = "slipway_jobs";

/// Connections kept open per engine: requests, the scheduler and the
/// supervisors share them.
const POOL_SIZE: usize = 16;

/// The most writes one group commit takes (`batch.rs`).
const BATCH: usize = 256;

/// How long a request waits for a connection (or a new one to open)
/// before it fails: a database that is down answers as an error, not a hang.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// The engine's state in a PostgreSQL database. Cheap to share: the pool
/// is reference-counted.
pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
    /// TLS as the URL asks for it (plain when it does not).
    tls: tls::Connector,
    target: String,
    policy: SpecPolicy,
    /// Group commit of keyless submits and of attempts' outcomes.
    submits: batch::Batcher<crate::job::JobSpec, super::store::Submitted>,
    completions: batch::Batcher<jobs::Completion, crate::job::JobRecord>,
}

fn pg(e: impl std::error::Error) -> StoreError {
    StoreError::Io(with_causes(&e))
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
        let (config, tls) = tls::settings(url)?;
        let target = describe(&config);
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
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
        let submits = {
            let (pool, policy) = (pool.clone(), policy.clone());
            batch::Batcher::spawn(BATCH, move |specs| {
                jobs::submit_batch(pool.clone(), policy.clone(), specs)
            })
        };
        let completions = {
            let pool = pool.clone();
            batch::Batcher::spawn(BATCH, move |outcomes| {
                jobs::complete_batch(pool.clone(), outcomes)
            })
        };
        let store = PostgresStore {
            pool,
            config,
            tls,
            target,
            policy,
            submits,
            completions,
        };
        let mut client = store.pool.get().await.map_err(|e| StoreError::Open {
            path: store.target.clone(),
            message: with_causes(&e),
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

    /// Wake `notify` on every `NOTIFY slipway_jobs`, on a connection of its
    /// own, reconnecting after a failure; ends when `shutdown` is cancelled.
    /// A wake-up lost while reconnecting is covered by the scheduler's
    /// own periodic pass.
    pub async fn listen(
        &self,
        notify: std::sync::Arc<tokio::sync::Notify>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        jobs::listen(self.config.clone(), self.tls.clone(), notify, shutdown).await
    }
}

/// What `NodeLock`s lock: one advisory lock per node id, and one for the
/// duties a single replica performs at a time.
const LOCK_CLASS: i32 = 0x736c_7779; // "slwy"

/// A session-level advisory lock, held by a connection of its own for as
/// long as this value lives and the connection stays up ([`SessionLock::lost`]).
pub struct SessionLock {
    client: tokio_postgres::Client,
    lost: CancellationToken,
}

impl SessionLock {
    /// Cancelled when the lock's connection ends (the database restarted,
    /// the network broke): the lock is no longer held.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Run `sql` on the lock's connection (the node record's heartbeat).
    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.client.execute(sql, params).await.map_err(pg)
    }
}

impl PostgresStore {
    /// Try to take lock `name` of [`LOCK_CLASS`] on a connection of its own;
    /// `Ok(None)` when another session holds it.
    async fn try_session_lock(&self, name: &str) -> Result<Option<SessionLock>, StoreError> {
        let (client, connection) = self.config.connect(self.tls.clone()).await.map_err(pg)?;
        let lost = CancellationToken::new();
        let on_end = lost.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "store: a lock's connection ended");
            }
            on_end.cancel();
        });
        let taken: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&LOCK_CLASS, &name],
            )
            .await
            .map_err(pg)?
            .get(0);
        Ok(taken.then_some(SessionLock { client, lost }))
    }

    /// Claim node id `node` for this process, and record it (with the URL
    /// other replicas reach it at) in `slipway_nodes`. Refused while another
    /// live replica holds the same id ([`StoreError::NodeTaken`]).
    pub async fn claim_node(
        &self,
        node: &str,
        advertise_url: Option<&str>,
    ) -> Result<SessionLock, StoreError> {
        let lock = self
            .try_session_lock(&format!("node/{node}"))
            .await?
            .ok_or_else(|| StoreError::NodeTaken {
                node: node.to_owned(),
                target: self.target.clone(),
            })?;
        let now = crate::job::now_ms() as i64;
        lock.execute(
            "INSERT INTO slipway_nodes (node_id, instance, advertise_url, version, started_ms, seen_ms)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (node_id) DO UPDATE SET instance = EXCLUDED.instance,
                advertise_url = EXCLUDED.advertise_url, version = EXCLUDED.version,
                started_ms = EXCLUDED.started_ms, seen_ms = EXCLUDED.seen_ms",
            &[
                &node,
                &format!("{}", std::process::id()),
                &advertise_url,
                &env!("CARGO_PKG_VERSION"),
                &now,
            ],
        )
        .await?;
        Ok(lock)
    }

    /// Renew node `node`'s `seen_ms` through its lock, every 5 s until
    /// `shutdown` or the lock is lost.
    pub async fn keep_node_seen(lock: &SessionLock, node: &str, shutdown: CancellationToken) {
        let lost = lock.lost();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = lost.cancelled() => {
                    tracing::error!(node, "store: the node's lock connection ended; another process may now claim this node id");
                    return;
                }
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            let now = crate::job::now_ms() as i64;
            if let Err(e) = lock
                .execute(
                    "UPDATE slipway_nodes SET seen_ms = $2 WHERE node_id = $1",
                    &[&node, &now],
                )
                .await
            {
                tracing::warn!(error = %e, "store: renewing the node record failed");
            }
        }
    }

    /// Take the duties lock (what one replica does at a time: managed
    /// services, deployments, watches, callbacks, workspaces) when it is
    /// free; `Ok(None)` while another replica holds it.
    pub async fn try_duties(&self, node: &str) -> Result<Option<SessionLock>, StoreError> {
        let Some(lock) = self.try_session_lock("duties").await? else {
            return Ok(None);
        };
        lock.execute("UPDATE slipway_nodes SET duties = (node_id = $1)", &[&node])
            .await?;
        Ok(Some(lock))
    }

    /// The replica holding the duties, and the URL it is reached at (as
    /// it recorded them).
    pub async fn duties_holder(&self) -> Result<Option<(String, Option<String>)>, StoreError> {
        Ok(self
            .client()
            .await?
            .query_opt(
                "SELECT node_id, advertise_url FROM slipway_nodes WHERE duties",
                &[],
            )
            .await
            .map_err(pg)?
            .map(|row| (row.get(0), row.get(1))))
    }

    /// The URL replica `node` recorded (`None`: no such node, or no URL).
    pub async fn node_url(&self, node: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .client()
            .await?
            .query_opt(
                "SELECT advertise_url FROM slipway_nodes WHERE node_id = $1",
                &[&node],
            )
            .await
            .map_err(pg)?
            .and_then(|row| row.get(0)))
    }

    /// Every replica recorded in the store: node id, URL, version, when it
    /// was last seen (ms since the epoch, by its own clock).
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(NODE_COLUMNS, &[])
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(NodeRecord::from_row).collect())
    }
}

/// Every replica's record, in node order.
const NODE_COLUMNS: &str =
    "SELECT node_id, advertise_url, version, seen_ms, duties FROM slipway_nodes ORDER BY node_id";

/// One replica, as `slipway_nodes` records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeRecord {
    /// Its `node_id`.
    pub node_id: String,
    /// The URL other replicas forward to (`advertise_url`).
    pub advertise_url: Option<String>,
    /// Its Slipway version.
    pub version: String,
    /// When it last renewed its record (ms since the epoch, its clock).
    pub seen_ms: u64,
    /// Whether it holds the duties.
    pub duties: bool,
}

impl NodeRecord {
    /// A row of [`NODE_COLUMNS`].
    fn from_row(r: &tokio_postgres::Row) -> NodeRecord {
        NodeRecord {
            node_id: r.get(0),
            advertise_url: r.get(1),
            version: r.get(2),
            seen_ms: r.get::<_, i64>(3) as u64,
            duties: r.get(4),
        }
    }
}

/// What `slipway doctor` reads of a shared store, without migrating it.
#[derive(Debug)]
pub struct Inspection {
    /// The database, as it may be shown.
    pub target: String,
    /// The schema version found (0: none yet).
    pub schema: u64,
    /// The database's clock, ms since the epoch.
    pub database_ms: u64,
    /// The replicas recorded (none before the first `serve`).
    pub nodes: Vec<NodeRecord>,
}

/// Connect to `url` and read its schema version, clock and replicas;
/// changes nothing.
pub async fn inspect(url: &str) -> Result<Inspection, StoreError> {
    let (config, tls) = tls::settings(url)?;
    let target = describe(&config);
    let open_error = |e: tokio_postgres::Error| StoreError::Open {
        path: target.clone(),
        message: with_causes(&e),
        hint: "check that PostgreSQL runs and accepts this user and database",
    };
    let (client, connection) = tokio::time::timeout(CONNECT_WAIT, config.connect(tls))
        .await
        .map_err(|_| StoreError::Open {
            path: target.clone(),
            message: format!("no answer within {} s", CONNECT_WAIT.as_secs()),
            hint: "check the host and port, and that PostgreSQL listens there",
        })?
        .map_err(open_error)?;
    let driving = tokio::spawn(connection);
    let schema = schema::version(&client).await?;
    let ms: f64 = client
        .query_one(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8",
            &[],
        )
        .await
        .map_err(pg)?
        .get(0);
    let nodes = if schema > 0 {
        client
            .query(NODE_COLUMNS, &[])
            .await
            .map_err(pg)?
            .iter()
            .map(NodeRecord::from_row)
            .collect()
    } else {
        Vec::new()
    };
    drop(client);
    let _ = driving.await;
    Ok(Inspection {
        target,
        schema,
        database_ms: ms as u64,
        nodes,
    })
}
