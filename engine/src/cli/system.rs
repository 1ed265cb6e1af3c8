//! `slipway self-update` (a client of `POST /api/v1/system/update`) and
//! `slipway update-worker` (the worker the engine starts from the new
//! image; not for people).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};

use super::client::{Client, Reply, ServerArgs, handle};

#[derive(Debug, Args)]
pub struct SelfUpdateArgs {
    /// The image to update to (default: the image reference the engine was
    /// started from, as it is tagged now).
    #[arg(long)]
    pub image: Option<String>,
    /// Seconds the new engine has to become ready before the old one is
    /// put back.
    #[arg(long, default_value_t = slipway::selfupdate::DEFAULT_READY_TIMEOUT_S)]
    pub timeout: u32,
    /// Return once the update has started instead of waiting for its end.
    #[arg(long)]
    pub no_wait: bool,
}

/// Exit codes: 0 updated (or started, with `--no-wait`), 1 refused, rolled
/// back or failed, 4 server unreachable.
pub fn self_update(args: SelfUpdateArgs, server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let mut body = json!({ "ready_timeout_s": args.timeout });
    if let Some(image) = &args.image {
        body["image"] = json!(image);
    }
    let mut started = None;
    let code = handle(
        client.send("POST", "/api/v1/system/update", Some(&body)),
        |_, v| {
            println!(
                "updating {} from {} to {}; the old image is kept as {}",
                v["container"].as_str().unwrap_or("?"),
                v["from_image"].as_str().unwrap_or("?"),
                v["to_image"].as_str().unwrap_or("?"),
                v["backup"].as_str().unwrap_or("?"),
            );
            started = v["started_ms"].as_u64();
            Ok(ExitCode::SUCCESS)
        },
    )?;
    let Some(started) = started.filter(|_| !args.no_wait) else {
        return Ok(code);
    };
    // The engine goes away and comes back (new or old): unreachable for a
    // while is expected. The stop, the new engine's start and a rollback.
    let deadline = Instant::now() + Duration::from_secs(u64::from(args.timeout) * 2 + 120);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let Ok(Reply::Ok(_, v)) = client.send("GET", "/api/v1/system/update", None) else {
            continue;
        };
        if v["started_ms"].as_u64() != Some(started) || v["state"] == "updating" {
            continue;
        }
        return Ok(outcome(&v));
    }
    eprintln!(
        "error: the update did not end within the wait; `slipway self-update --no-wait` and GET /api/v1/system/update show where it stands"
    );
    Ok(ExitCode::from(1))
}

fn outcome(v: &Value) -> ExitCode {
    let reason = v["reason"].as_str().unwrap_or("");
    match v["state"].as_str() {
        Some("updated") => {
            println!(
                "updated: the engine runs {}",
                v["to_image"].as_str().unwrap_or("?")
            );
            ExitCode::SUCCESS
        }
        Some("rolled_back") => {
            eprintln!(
                "rolled back: the engine runs {} again; {reason}",
                v["from_image"].as_str().unwrap_or("?")
            );
            ExitCode::from(1)
        }
        _ => {
            eprintln!("failed: {reason}");
            ExitCode::from(1)
        }
    }
}

#[derive(Debug, Args)]
pub struct UpdateWorkerArgs {
    /// The engine container's id.
    #[arg(long)]
    pub engine: String,
    /// The image to run it on.
    #[arg(long)]
    pub image: String,
    /// Seconds the new engine has to become ready.
    #[arg(long)]
    pub ready_timeout: u64,
    /// The engine's state directory.
    #[arg(long)]
    pub state_dir: PathBuf,
}

pub fn update_worker(args: UpdateWorkerArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let docker = slipway::runtime::docker::connect().await?;
        let args = slipway::selfupdate::worker::WorkerArgs {
            engine: args.engine,
            image: args.image,
            ready_timeout: Duration::from_secs(args.ready_timeout),
            state_dir: args.state_dir,
        };
        let status = slipway::selfupdate::worker::run(&docker, &args).await;
        eprintln!(
            "slipway update-worker: {}",
            serde_json::to_string(&status).unwrap_or_default()
        );
        Ok(match status.state {
            slipway::selfupdate::UpdateState::Updated => ExitCode::SUCCESS,
            _ => ExitCode::from(1),
        })
    })
}
