//! `slipway admin export|import`: move a store's contents between the
//! embedded redb file and a PostgreSQL database (either way), history
//! included. Run against a store no engine has open (redb allows one
//! opener; on PostgreSQL, stop the replicas first).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use slipway::config::{Config, StoreLocation};
use slipway::job::SpecPolicy;
use slipway::queue::{Exported, JobStore, PostgresStore, RedbStore};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Write every record of the configured store (`store`: redb in the
    /// state directory, or PostgreSQL) as JSON lines.
    Export {
        /// Where to write (default: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Read an export into the configured store, which must be empty; job
    /// ids, fences and sequence numbers are kept.
    Import {
        /// The export (`-` or nothing: standard input).
        file: Option<PathBuf>,
    },
}

async fn open(config: &Config) -> anyhow::Result<Arc<dyn JobStore>> {
    let policy = SpecPolicy {
        allow_local_paths: config.allow_local_paths,
        ..SpecPolicy::default()
    };
    Ok(match config.store.postgres_url()? {
        None => {
            std::fs::create_dir_all(&config.state_dir).with_context(|| {
                format!(
                    "creating the state directory {}",
                    config.state_dir.display()
                )
            })?;
            Arc::new(RedbStore::open(
                &config.state_dir.join("store.redb"),
                policy,
            )?)
        }
        Some(url) => Arc::new(PostgresStore::open(&url, policy).await?),
    })
}

fn where_(config: &Config) -> String {
    match &config.store {
        StoreLocation::Redb => config.state_dir.join("store.redb").display().to_string(),
        StoreLocation::Postgres(_) => "the PostgreSQL store".into(),
    }
}

pub fn run(command: AdminCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let store = open(config).await?;
        match command {
            AdminCommand::Export { out } => {
                let records = store.export_all().await?;
                let mut sink: Box<dyn Write> = match &out {
                    Some(path) => Box::new(std::io::BufWriter::new(
                        std::fs::File::create(path)
                            .with_context(|| format!("creating {}", path.display()))?,
                    )),
                    None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                };
                for record in &records {
                    serde_json::to_writer(&mut sink, record)?;
                    sink.write_all(b"\n")?;
                }
                sink.flush()?;
                eprintln!(
                    "slipway: exported {} records of {}",
                    records.len(),
                    where_(config)
                );
            }
            AdminCommand::Import { file } => {
                let source: Box<dyn BufRead> = match file.as_deref() {
                    None => Box::new(std::io::stdin().lock()),
                    Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdin().lock()),
                    Some(p) => Box::new(std::io::BufReader::new(
                        std::fs::File::open(p)
                            .with_context(|| format!("opening {}", p.display()))?,
                    )),
                };
                let mut records = Vec::new();
                for (n, line) in source.lines().enumerate() {
                    let line = line?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let record: Exported = serde_json::from_str(&line).with_context(|| {
                        format!(
                            "line {} is not an export record (a `slipway admin export` line)",
                            n + 1
                        )
                    })?;
                    records.push(record);
                }
                // Written in table order whatever the file's order.
                records.sort_by_key(|r| {
                    slipway::queue::store::EXPORT_KINDS
                        .iter()
                        .position(|k| *k == r.kind)
                });
                let written = store.import_all(records).await?;
                eprintln!(
                    "slipway: imported {written} records into {}",
                    where_(config)
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
