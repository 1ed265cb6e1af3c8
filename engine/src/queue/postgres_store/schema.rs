//! The PostgreSQL store's schema: numbered migrations, applied at start
//! under an advisory lock so that replicas starting together apply each
//! one once, and the check that refuses a database a newer Slipway wrote.

use tokio_postgres::Client;

use super::pg;
use crate::queue::store::StoreError;

/// The schema this build writes: the number of the last migration.
pub const SCHEMA_VERSION: u64 = MIGRATIONS.len() as u64;

/// The key of the advisory lock held while migrating (any fixed number
/// no other application on the database uses; "slipway" in ASCII).
const MIGRATION_LOCK: i64 = 0x0073_6c69_7077_6179;

/// Each migration, in order; migration `n` (1-based) brings the schema to
/// version `n`. Never edit a released one: add the next.
const MIGRATIONS: &[&str] = &[
    // 1: jobs with the columns leasing needs beside the encoded record
    // (rmp-serde, as redb stores it, so export and import copy bytes);
    // records kept by kind and name; deliveries; the outbox; the audit
    // log; the replicas.
    r#"
    CREATE SEQUENCE slipway_job_id;
    CREATE SEQUENCE slipway_fence;
    CREATE SEQUENCE slipway_audit_seq;
    CREATE TABLE slipway_jobs (
        id bigint PRIMARY KEY,
        state text NOT NULL,
        priority integer NOT NULL,
        repository text NOT NULL,
        lease_worker text,
        not_before_ms bigint NOT NULL,
        lease_expires_ms bigint,
        idempotency_key text UNIQUE,
        record bytea NOT NULL
    );
    CREATE INDEX slipway_jobs_queued ON slipway_jobs (priority DESC, id) WHERE state = 'queued';
    CREATE INDEX slipway_jobs_retrying ON slipway_jobs (not_before_ms, id) WHERE state = 'retrying';
    CREATE INDEX slipway_jobs_running ON slipway_jobs (lease_expires_ms) WHERE state = 'running';
    CREATE INDEX slipway_jobs_by_state ON slipway_jobs (state, id);
    CREATE TABLE slipway_records (
        kind text NOT NULL,
        name text COLLATE "C" NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (kind, name)
    );
    CREATE TABLE slipway_deliveries (
        watch text COLLATE "C" NOT NULL,
        seq bigint NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (watch, seq)
    );
    CREATE TABLE slipway_outbox (
        key text COLLATE "C" PRIMARY KEY,
        due_ms bigint,
        value bytea NOT NULL
    );
    CREATE INDEX slipway_outbox_due ON slipway_outbox (due_ms, key) WHERE due_ms IS NOT NULL;
    CREATE TABLE slipway_audit (
        seq bigint PRIMARY KEY,
        value bytea NOT NULL
    );
    CREATE TABLE slipway_nodes (
        node_id text PRIMARY KEY,
        instance text NOT NULL,
        advertise_url text,
        version text NOT NULL,
        started_ms bigint NOT NULL,
        seen_ms bigint NOT NULL,
        duties boolean NOT NULL DEFAULT false
    );
    "#,
    // 2: dashboard sessions, so every replica knows a login (the hash of
    // the cookie's id; its expiry beside it for the sweep).
    r#"
    CREATE TABLE slipway_sessions (
        id_hash text COLLATE "C" PRIMARY KEY,
        expires_ms bigint NOT NULL,
        value bytea NOT NULL
    );
    CREATE INDEX slipway_sessions_expiry ON slipway_sessions (expires_ms);
    "#,
];

/// Bring the database to [`SCHEMA_VERSION`], or refuse one that is newer.
/// `target` names the database in errors (its URL without the password).
pub async fn migrate(client: &mut Client, target: &str) -> Result<u64, StoreError> {
    let tx = client.transaction().await.map_err(pg)?;
    // Held until commit: a second replica waits here, then finds the work done.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS slipway_schema (
            version bigint PRIMARY KEY,
            applied_ms bigint NOT NULL
        )",
    )
    .await
    .map_err(pg)?;
    let found: i64 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM slipway_schema", &[])
        .await
        .map_err(pg)?
        .get(0);
    let found = found as u64;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: target.to_owned(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i64 + 1;
        tx.batch_execute(sql).await.map_err(pg)?;
        tx.execute(
            "INSERT INTO slipway_schema (version, applied_ms) VALUES ($1, $2)",
            &[&version, &(crate::job::now_ms() as i64)],
        )
        .await
        .map_err(pg)?;
        tracing::info!(version, "store: applied a schema migration");
    }
    tx.commit().await.map_err(pg)?;
    Ok(SCHEMA_VERSION)
}

/// The schema version the database holds (0: none yet).
pub async fn version(client: &Client) -> Result<u64, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('slipway_schema') IS NOT NULL", &[])
        .await
        .map_err(pg)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: i64 = client
        .query_one("SELECT coalesce(max(version), 0) FROM slipway_schema", &[])
        .await
        .map_err(pg)?
        .get(0);
    Ok(v as u64)
}
