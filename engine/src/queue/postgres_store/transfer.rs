//! `slipway admin export|import` on PostgreSQL: every table as
//! [`Exported`] records, and an import that keeps ids, fences and
//! sequence numbers (the sequences are moved past them).

use super::{PostgresStore, decode, pg};
use crate::callbacks::OutboxEntry;
use crate::job::JobRecord;
use crate::queue::store::{EXPORT_KINDS, Exported, StoreError, StoreFuture, TransferStore};

impl TransferStore for PostgresStore {
    fn export_all(&self) -> StoreFuture<'_, Vec<Exported>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            // One snapshot for every table.
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(pg)?;
            let next = |sequence: &'static str| {
                let tx = &tx;
                async move {
                    let row = tx
                        .query_one(
                            &format!("SELECT last_value, is_called FROM {sequence}"),
                            &[],
                        )
                        .await
                        .map_err(pg)?;
                    let (last, called): (i64, bool) = (row.get(0), row.get(1));
                    Ok::<u64, StoreError>(if called { last as u64 + 1 } else { last as u64 })
                }
            };
            let mut out = vec![
                Exported::number("next_id", next("slipway_job_id").await?),
                Exported::number("next_fence", next("slipway_fence").await?),
            ];
            for row in tx
                .query("SELECT kind, name, value FROM slipway_records", &[])
                .await
                .map_err(pg)?
            {
                out.push(Exported::new(
                    row.get(0),
                    row.get::<_, String>(1),
                    row.get(2),
                ));
            }
            for row in tx
                .query("SELECT watch, seq, value FROM slipway_deliveries", &[])
                .await
                .map_err(pg)?
            {
                let key = format!("{}/{:020}", row.get::<_, String>(0), row.get::<_, i64>(1));
                out.push(Exported::new("deliveries", key, row.get(2)));
            }
            for row in tx
                .query("SELECT seq, value FROM slipway_audit ORDER BY seq", &[])
                .await
                .map_err(pg)?
            {
                out.push(Exported::new(
                    "audit",
                    row.get::<_, i64>(0).to_string(),
                    row.get(1),
                ));
            }
            for row in tx
                .query("SELECT key, value FROM slipway_outbox ORDER BY key", &[])
                .await
                .map_err(pg)?
            {
                out.push(Exported::new("outbox", row.get::<_, String>(0), row.get(1)));
            }
            for row in tx
                .query("SELECT id, record FROM slipway_jobs ORDER BY id", &[])
                .await
                .map_err(pg)?
            {
                out.push(Exported::new(
                    "jobs",
                    row.get::<_, i64>(0).to_string(),
                    row.get(1),
                ));
            }
            tx.commit().await.map_err(pg)?;
            out.sort_by_key(|e| EXPORT_KINDS.iter().position(|k| *k == e.kind));
            Ok(out)
        })
    }

    fn import_all(&self, records: Vec<Exported>) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            let held: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM slipway_jobs)
                         OR EXISTS (SELECT 1 FROM slipway_records)
                         OR EXISTS (SELECT 1 FROM slipway_outbox)",
                    &[],
                )
                .await
                .map_err(pg)?
                .get(0);
            if held {
                return Err(StoreError::NotEmpty {
                    target: self.target.clone(),
                    found: "jobs or records".into(),
                });
            }
            let (mut next_id, mut next_fence, mut next_audit) = (1u64, 1u64, 1u64);
            for record in &records {
                match record.kind.as_str() {
                    "meta" => match record.key.as_str() {
                        "next_id" => next_id = next_id.max(record.as_number()?),
                        "next_fence" => next_fence = next_fence.max(record.as_number()?),
                        _ => return Err(record.bad("unknown meta key")),
                    },
                    "deliveries" => {
                        let (watch, seq) = record
                            .key
                            .rsplit_once('/')
                            .and_then(|(w, s)| Some((w, s.parse::<i64>().ok()?)))
                            .ok_or_else(|| record.bad("the key is not <watch>/<seq>"))?;
                        tx.execute(
                            "INSERT INTO slipway_deliveries (watch, seq, value) VALUES ($1, $2, $3)",
                            &[&watch, &seq, &record.bytes()?],
                        )
                        .await
                        .map_err(pg)?;
                    }
                    "audit" => {
                        let seq = record.key_number()?;
                        next_audit = next_audit.max(seq + 1);
                        tx.execute(
                            "INSERT INTO slipway_audit (seq, value) VALUES ($1, $2)",
                            &[&(seq as i64), &record.bytes()?],
                        )
                        .await
                        .map_err(pg)?;
                    }
                    "outbox" => {
                        let entry: OutboxEntry = decode(&record.bytes()?)?;
                        super::records::insert_callback_if_absent(&tx, &entry).await?;
                    }
                    "jobs" => {
                        let job: JobRecord = decode(&record.bytes()?)?;
                        next_id = next_id.max(job.id + 1);
                        if let Some(lease) = &job.lease {
                            next_fence = next_fence.max(lease.fence + 1);
                        }
                        super::jobs::write_job(&tx, None, &job).await?;
                    }
                    kind if EXPORT_KINDS.contains(&kind) => {
                        tx.execute(
                            "INSERT INTO slipway_records (kind, name, value) VALUES ($1, $2, $3)",
                            &[&kind, &record.key, &record.bytes()?],
                        )
                        .await
                        .map_err(pg)?;
                    }
                    _ => return Err(record.bad("unknown kind")),
                }
            }
            // The next value each sequence hands out.
            for (sequence, next) in [
                ("slipway_job_id", next_id),
                ("slipway_fence", next_fence),
                ("slipway_audit_seq", next_audit),
            ] {
                tx.execute(
                    "SELECT setval($1::text::regclass, $2, false)",
                    &[&sequence, &(next as i64)],
                )
                .await
                .map_err(pg)?;
            }
            tx.commit().await.map_err(pg)?;
            Ok(records.len())
        })
    }
}
