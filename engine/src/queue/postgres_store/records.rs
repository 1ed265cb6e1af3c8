//! Everything beside jobs on PostgreSQL: records kept by kind and name
//! (profiles, services, images, tokens, workspaces, watches,
//! deployments), watch deliveries, the callbacks outbox, the audit log and
//! dashboard sessions.

use deadpool_postgres::GenericClient;

use super::{PostgresStore, decode, encode, pg};
use crate::callbacks::OutboxEntry;
use crate::deployments::Deployment;
use crate::job::{JobId, now_ms};
use crate::profile::Profile;
use crate::queue::store::{
    AuditStore, DeploymentStore, ImageStore, ImageUse, OutboxStore, ProfileStore, ServiceStore,
    SessionStore, StoreError, StoreFuture, TokenStore, WatchStore, WorkspaceStore,
};
use crate::service::ManagedService;
use crate::token::{ApiToken, AuditEntry, SessionRecord};
use crate::watches::record::DELIVERIES_KEPT;
use crate::watches::{Delivery, Watch};
use crate::workspace::{WorkspaceRecord, WorkspaceRuntime};

/// The kinds of `slipway_records`, one per redb table of the same name.
mod kind {
    pub const PROFILE: &str = "profiles";
    pub const SERVICE: &str = "services";
    pub const IMAGE: &str = "images";
    pub const TOKEN: &str = "tokens";
    pub const WORKSPACE: &str = "workspaces";
    pub const WORKSPACE_RUNTIME: &str = "workspace_runtimes";
    pub const WATCH: &str = "watches";
    pub const DEPLOYMENT: &str = "deployments";
}

/// Insert an outbox message unless one with its key is there.
pub(super) async fn insert_callback_if_absent(
    tx: &impl GenericClient,
    entry: &OutboxEntry,
) -> Result<(), StoreError> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO slipway_outbox (key, due_ms, value) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO NOTHING",
        )
        .await
        .map_err(pg)?;
    tx.execute(
        &statement,
        &[
            &entry.key,
            &entry.next_attempt_ms.map(|d| d as i64),
            &encode(entry)?,
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// Upsert `value` as `kind`/`name`; `Ok(true)` when one was there. With
/// `create_only`, an existing one is left alone.
async fn put_named_in(
    client: &impl GenericClient,
    kind: &str,
    name: &str,
    bytes: &[u8],
    create_only: bool,
) -> Result<bool, StoreError> {
    if create_only {
        let inserted = client
            .execute(
                "INSERT INTO slipway_records (kind, name, value) VALUES ($1, $2, $3)
                 ON CONFLICT (kind, name) DO NOTHING",
                &[&kind, &name, &bytes],
            )
            .await
            .map_err(pg)?;
        return Ok(inserted == 0);
    }
    // `xmax` is 0 on a row this statement inserted, set on one it updated.
    let row = client
        .query_one(
            "INSERT INTO slipway_records (kind, name, value) VALUES ($1, $2, $3)
             ON CONFLICT (kind, name) DO UPDATE SET value = EXCLUDED.value
             RETURNING xmax <> 0",
            &[&kind, &name, &bytes],
        )
        .await
        .map_err(pg)?;
    Ok(row.get(0))
}

impl PostgresStore {
    fn put_named<T: serde::Serialize>(
        &self,
        kind: &'static str,
        name: String,
        value: &T,
        create_only: bool,
    ) -> StoreFuture<'_, bool> {
        let bytes = encode(value);
        Box::pin(async move {
            let client = self.client().await?;
            put_named_in(&client, kind, &name, &bytes?, create_only).await
        })
    }

    fn get_named<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        kind: &'static str,
        name: &str,
    ) -> StoreFuture<'_, Option<T>> {
        let name = name.to_owned();
        Box::pin(async move {
            self.client()
                .await?
                .query_opt(
                    "SELECT value FROM slipway_records WHERE kind = $1 AND name = $2",
                    &[&kind, &name],
                )
                .await
                .map_err(pg)?
                .map(|row| decode(row.get::<_, &[u8]>(0)))
                .transpose()
        })
    }

    fn list_named<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        kind: &'static str,
    ) -> StoreFuture<'_, Vec<T>> {
        Box::pin(async move {
            self.client()
                .await?
                .query(
                    "SELECT value FROM slipway_records WHERE kind = $1 ORDER BY name",
                    &[&kind],
                )
                .await
                .map_err(pg)?
                .iter()
                .map(|row| decode(row.get::<_, &[u8]>(0)))
                .collect()
        })
    }

    fn delete_named(&self, kind: &'static str, name: &str) -> StoreFuture<'_, bool> {
        let name = name.to_owned();
        Box::pin(async move {
            let n = self
                .client()
                .await?
                .execute(
                    "DELETE FROM slipway_records WHERE kind = $1 AND name = $2",
                    &[&kind, &name],
                )
                .await
                .map_err(pg)?;
            Ok(n > 0)
        })
    }

    fn outbox_query(
        &self,
        sql: &'static str,
        from: String,
        to: String,
    ) -> StoreFuture<'_, Vec<OutboxEntry>> {
        Box::pin(async move {
            self.client()
                .await?
                .query(sql, &[&from, &to])
                .await
                .map_err(pg)?
                .iter()
                .map(|row| decode(row.get::<_, &[u8]>(0)))
                .collect()
        })
    }
}

impl ProfileStore for PostgresStore {
    fn put_profile(&self, profile: Profile, create_only: bool) -> StoreFuture<'_, bool> {
        self.put_named(kind::PROFILE, profile.name.clone(), &profile, create_only)
    }

    fn get_profile(&self, name: &str) -> StoreFuture<'_, Option<Profile>> {
        self.get_named(kind::PROFILE, name)
    }

    fn list_profiles(&self) -> StoreFuture<'_, Vec<Profile>> {
        self.list_named(kind::PROFILE)
    }

    fn delete_profile(&self, name: &str) -> StoreFuture<'_, bool> {
        self.delete_named(kind::PROFILE, name)
    }
}

impl ServiceStore for PostgresStore {
    fn put_service(&self, service: ManagedService, create_only: bool) -> StoreFuture<'_, bool> {
        self.put_named(
            kind::SERVICE,
            service.spec.name.clone(),
            &service,
            create_only,
        )
    }

    fn get_service(&self, name: &str) -> StoreFuture<'_, Option<ManagedService>> {
        self.get_named(kind::SERVICE, name)
    }

    fn list_services(&self) -> StoreFuture<'_, Vec<ManagedService>> {
        self.list_named(kind::SERVICE)
    }

    fn delete_service(&self, name: &str) -> StoreFuture<'_, bool> {
        self.delete_named(kind::SERVICE, name)
    }
}

impl ImageStore for PostgresStore {
    fn touch_image(&self, tag: &str) -> StoreFuture<'_, bool> {
        let record = ImageUse {
            tag: tag.to_owned(),
            last_used_ms: now_ms(),
        };
        self.put_named(kind::IMAGE, tag.to_owned(), &record, false)
    }

    fn image_uses(&self) -> StoreFuture<'_, Vec<ImageUse>> {
        self.list_named(kind::IMAGE)
    }

    fn forget_image(&self, tag: &str) -> StoreFuture<'_, bool> {
        self.delete_named(kind::IMAGE, tag)
    }
}

impl TokenStore for PostgresStore {
    fn put_token(&self, token: ApiToken) -> StoreFuture<'_, bool> {
        self.put_named(kind::TOKEN, token.hash.clone(), &token, false)
    }

    fn get_token(&self, hash: &str) -> StoreFuture<'_, Option<ApiToken>> {
        self.get_named(kind::TOKEN, hash)
    }

    fn list_tokens(&self) -> StoreFuture<'_, Vec<ApiToken>> {
        self.list_named(kind::TOKEN)
    }
}

impl SessionStore for PostgresStore {
    fn open_session(
        &self,
        id_hash: String,
        session: SessionRecord,
        keep: usize,
    ) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let value = encode(&session)?;
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            tx.execute(
                "DELETE FROM slipway_sessions WHERE expires_ms <= $1",
                &[&(now_ms() as i64)],
            )
            .await
            .map_err(pg)?;
            // Room for this one: the sessions that end soonest go.
            tx.execute(
                "DELETE FROM slipway_sessions WHERE id_hash IN (
                     SELECT id_hash FROM slipway_sessions WHERE id_hash <> $1
                     ORDER BY expires_ms, id_hash
                     LIMIT greatest(0, (SELECT count(*) FROM slipway_sessions WHERE id_hash <> $1) + 1 - $2))",
                &[&id_hash, &(keep as i64)],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                "INSERT INTO slipway_sessions (id_hash, expires_ms, value) VALUES ($1, $2, $3)
                 ON CONFLICT (id_hash) DO UPDATE SET expires_ms = EXCLUDED.expires_ms, value = EXCLUDED.value",
                &[&id_hash, &(session.expires_ms as i64), &value],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)
        })
    }

    fn get_session(&self, id_hash: &str, now_ms: u64) -> StoreFuture<'_, Option<SessionRecord>> {
        let id_hash = id_hash.to_owned();
        Box::pin(async move {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT value FROM slipway_sessions WHERE id_hash = $1 AND expires_ms > $2",
                )
                .await
                .map_err(pg)?;
            client
                .query_opt(&statement, &[&id_hash, &(now_ms as i64)])
                .await
                .map_err(pg)?
                .map(|row| decode(row.get::<_, &[u8]>(0)))
                .transpose()
        })
    }

    fn close_session(&self, id_hash: &str) -> StoreFuture<'_, bool> {
        let id_hash = id_hash.to_owned();
        Box::pin(async move {
            let removed = self
                .client()
                .await?
                .execute(
                    "DELETE FROM slipway_sessions WHERE id_hash = $1",
                    &[&id_hash],
                )
                .await
                .map_err(pg)?;
            Ok(removed > 0)
        })
    }
}

impl AuditStore for PostgresStore {
    fn append_audit(&self, entry: AuditEntry) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            let seq: i64 = tx
                .query_one("SELECT nextval('slipway_audit_seq')", &[])
                .await
                .map_err(pg)?
                .get(0);
            let entry = AuditEntry {
                seq: seq as u64,
                ..entry
            };
            tx.execute(
                "INSERT INTO slipway_audit (seq, value) VALUES ($1, $2)",
                &[&seq, &encode(&entry)?],
            )
            .await
            .map_err(pg)?;
            // Keep the newest.
            tx.execute(
                "DELETE FROM slipway_audit WHERE seq <= $1",
                &[&(seq - crate::token::AUDIT_KEPT as i64)],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(seq as u64)
        })
    }

    fn list_audit(&self, before: Option<u64>, limit: usize) -> StoreFuture<'_, Vec<AuditEntry>> {
        Box::pin(async move {
            let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            self.client()
                .await?
                .query(
                    "SELECT value FROM slipway_audit WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
                    &[&before, &limit],
                )
                .await
                .map_err(pg)?
                .iter()
                .map(|row| decode(row.get::<_, &[u8]>(0)))
                .collect()
        })
    }
}

impl WorkspaceStore for PostgresStore {
    fn put_workspace(&self, record: WorkspaceRecord) -> StoreFuture<'_, bool> {
        self.put_named(kind::WORKSPACE, record.id.clone(), &record, false)
    }

    fn get_workspace(&self, id: &str) -> StoreFuture<'_, Option<WorkspaceRecord>> {
        self.get_named(kind::WORKSPACE, id)
    }

    fn list_workspaces(&self) -> StoreFuture<'_, Vec<WorkspaceRecord>> {
        self.list_named(kind::WORKSPACE)
    }

    fn put_workspace_runtime(
        &self,
        id: &str,
        runtime: Option<WorkspaceRuntime>,
    ) -> StoreFuture<'_, bool> {
        match runtime {
            Some(r) => self.put_named(kind::WORKSPACE_RUNTIME, id.to_owned(), &r, false),
            None => self.delete_named(kind::WORKSPACE_RUNTIME, id),
        }
    }

    fn get_workspace_runtime(&self, id: &str) -> StoreFuture<'_, Option<WorkspaceRuntime>> {
        self.get_named(kind::WORKSPACE_RUNTIME, id)
    }
}

impl WatchStore for PostgresStore {
    fn put_watch(&self, watch: Watch) -> StoreFuture<'_, bool> {
        self.put_named(kind::WATCH, watch.id.clone(), &watch, false)
    }

    fn get_watch(&self, id: &str) -> StoreFuture<'_, Option<Watch>> {
        self.get_named(kind::WATCH, id)
    }

    fn list_watches(&self) -> StoreFuture<'_, Vec<Watch>> {
        self.list_named(kind::WATCH)
    }

    fn delete_watch(&self, id: &str) -> StoreFuture<'_, bool> {
        let id = id.to_owned();
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            let n = tx
                .execute(
                    "DELETE FROM slipway_records WHERE kind = $1 AND name = $2",
                    &[&kind::WATCH, &id],
                )
                .await
                .map_err(pg)?;
            tx.execute("DELETE FROM slipway_deliveries WHERE watch = $1", &[&id])
                .await
                .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(n > 0)
        })
    }

    fn add_delivery(&self, id: &str, delivery: Delivery) -> StoreFuture<'_, Delivery> {
        let id = id.to_owned();
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            // One numberer per watch at a time, across replicas.
            tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&id])
                .await
                .map_err(pg)?;
            let last: i64 = tx
                .query_one(
                    "SELECT coalesce(max(seq), 0) FROM slipway_deliveries WHERE watch = $1",
                    &[&id],
                )
                .await
                .map_err(pg)?
                .get(0);
            let delivery = Delivery {
                seq: last as u64 + 1,
                ..delivery
            };
            tx.execute(
                "INSERT INTO slipway_deliveries (watch, seq, value) VALUES ($1, $2, $3)",
                &[&id, &(last + 1), &encode(&delivery)?],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                "DELETE FROM slipway_deliveries WHERE watch = $1 AND seq <= $2",
                &[&id, &(last + 1 - DELIVERIES_KEPT as i64)],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(delivery)
        })
    }

    fn list_deliveries(&self, id: &str) -> StoreFuture<'_, Vec<Delivery>> {
        let id = id.to_owned();
        Box::pin(async move {
            self.client()
                .await?
                .query(
                    "SELECT value FROM slipway_deliveries WHERE watch = $1 ORDER BY seq DESC",
                    &[&id],
                )
                .await
                .map_err(pg)?
                .iter()
                .map(|row| decode(row.get::<_, &[u8]>(0)))
                .collect()
        })
    }
}

impl DeploymentStore for PostgresStore {
    fn put_deployment(&self, deployment: Deployment) -> StoreFuture<'_, bool> {
        self.put_named(
            kind::DEPLOYMENT,
            deployment.spec.name.clone(),
            &deployment,
            false,
        )
    }

    fn put_deployment_announcing(
        &self,
        deployment: Deployment,
        messages: Vec<OutboxEntry>,
    ) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let bytes = encode(&deployment)?;
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            let existed =
                put_named_in(&tx, kind::DEPLOYMENT, &deployment.spec.name, &bytes, false).await?;
            for entry in &messages {
                insert_callback_if_absent(&tx, entry).await?;
            }
            tx.commit().await.map_err(pg)?;
            Ok(existed)
        })
    }

    fn put_deployment_new(&self, deployment: Deployment) -> StoreFuture<'_, bool> {
        self.put_named(
            kind::DEPLOYMENT,
            deployment.spec.name.clone(),
            &deployment,
            true,
        )
    }

    fn get_deployment(&self, name: &str) -> StoreFuture<'_, Option<Deployment>> {
        self.get_named(kind::DEPLOYMENT, name)
    }

    fn list_deployments(&self) -> StoreFuture<'_, Vec<Deployment>> {
        self.list_named(kind::DEPLOYMENT)
    }

    fn delete_deployment(&self, name: &str) -> StoreFuture<'_, bool> {
        self.delete_named(kind::DEPLOYMENT, name)
    }
}

impl OutboxStore for PostgresStore {
    fn due_callbacks(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        Box::pin(async move {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            self.client()
                .await?
                .query(
                    "SELECT value FROM slipway_outbox WHERE due_ms <= $1
                     ORDER BY due_ms, key LIMIT $2",
                    &[&(now_ms as i64), &limit],
                )
                .await
                .map_err(pg)?
                .iter()
                .map(|row| decode(row.get::<_, &[u8]>(0)))
                .collect()
        })
    }

    fn update_callback(&self, entry: OutboxEntry) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.client()
                .await?
                .execute(
                    "INSERT INTO slipway_outbox (key, due_ms, value) VALUES ($1, $2, $3)
                     ON CONFLICT (key) DO UPDATE SET due_ms = EXCLUDED.due_ms, value = EXCLUDED.value",
                    &[
                        &entry.key,
                        &entry.next_attempt_ms.map(|d| d as i64),
                        &encode(&entry)?,
                    ],
                )
                .await
                .map_err(pg)?;
            Ok(())
        })
    }

    fn job_callbacks(&self, id: JobId) -> StoreFuture<'_, Vec<OutboxEntry>> {
        self.callbacks_with_prefix(&format!("{id:020}/"))
    }

    fn callbacks_with_prefix(&self, prefix: &str) -> StoreFuture<'_, Vec<OutboxEntry>> {
        self.outbox_query(
            "SELECT value FROM slipway_outbox WHERE key >= $1 AND key < $2 ORDER BY key",
            prefix.to_owned(),
            format!("{prefix}~"),
        )
    }
}
