//! `slipway workspace create | list | apply | validate | diff | reset | rm`:
//! workspaces through the HTTP API. Exit codes: 0 done (for `validate`:
//! every step passed), 1 refused or a step failed, 4 server unreachable.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use super::client::{Client, Reply, ServerArgs, handle};

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Prepare a workspace like a job (checkout, image, services, setup)
    /// and wait until it is ready; prints its id.
    Create {
        /// A local directory (where the server allows it) or a git URL.
        repository: String,
        #[arg(long, default_value = "HEAD")]
        commit: String,
        /// Repo profile to use (default: the one for the repository).
        #[arg(long)]
        profile: Option<String>,
        /// Close it after this long without a call.
        #[arg(long)]
        idle_timeout_s: Option<u64>,
        /// Close it after this long in any case.
        #[arg(long)]
        max_lifetime_s: Option<u64>,
        /// A step's timeout.
        #[arg(long)]
        timeout_s: Option<u64>,
        /// Return at once instead of waiting for `ready`.
        #[arg(long)]
        no_wait: bool,
    },
    /// Every workspace, newest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Apply a unified diff (a file, or `-` for stdin): all of it or nothing.
    Apply { id: String, patch: PathBuf },
    /// Run the fast (or fast, then full) steps; findings as `file:line:col severity message`.
    Validate {
        id: String,
        #[arg(long, default_value = "fast")]
        tier: String,
        #[arg(long)]
        json: bool,
    },
    /// The changes against the base commit.
    Diff { id: String },
    /// Files back to the base commit, services back to their state after setup.
    Reset { id: String },
    /// Close the workspace and remove its containers.
    Rm { id: String },
}

pub fn run(command: WorkspaceCommand, server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    match command {
        WorkspaceCommand::Create {
            repository,
            commit,
            profile,
            idle_timeout_s,
            max_lifetime_s,
            timeout_s,
            no_wait,
        } => {
            let repository = match std::path::Path::new(&repository).canonicalize() {
                Ok(p) if p.exists() => p.display().to_string(),
                _ => repository,
            };
            let mut body = serde_json::json!({"repository": repository, "commit": commit});
            for (key, value) in [
                ("profile", profile.map(Value::from)),
                ("idle_timeout_s", idle_timeout_s.map(Value::from)),
                ("max_lifetime_s", max_lifetime_s.map(Value::from)),
                ("timeout_s", timeout_s.map(Value::from)),
            ] {
                if let Some(v) = value {
                    body[key] = v;
                }
            }
            let reply = client.send("POST", "/api/v1/workspaces", Some(&body));
            handle(reply, |_, created| {
                let id = created["id"].as_str().unwrap_or_default().to_owned();
                if no_wait {
                    println!("{id}");
                    return Ok(ExitCode::SUCCESS);
                }
                wait_ready(&client, &id)
            })
        }
        WorkspaceCommand::List { json } => {
            handle(client.send("GET", "/api/v1/workspaces", None), |_, v| {
                if json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    return Ok(ExitCode::SUCCESS);
                }
                let empty = Vec::new();
                let list = v["workspaces"].as_array().unwrap_or(&empty);
                println!("{:<18} {:<10} {:<12} REPOSITORY", "ID", "STATE", "BASE");
                for w in list {
                    println!(
                        "{:<18} {:<10} {:<12} {}{}",
                        w["id"].as_str().unwrap_or("?"),
                        w["state"].as_str().unwrap_or("?"),
                        w["base_sha"]
                            .as_str()
                            .map(|s| &s[..s.len().min(12)])
                            .unwrap_or("-"),
                        w["repository"].as_str().unwrap_or("?"),
                        w["reason"]
                            .as_str()
                            .map(|r| format!("  ({r})"))
                            .unwrap_or_default()
                    );
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        WorkspaceCommand::Apply { id, patch } => {
            let text = if patch.as_os_str() == "-" {
                let mut t = String::new();
                std::io::stdin().read_to_string(&mut t)?;
                t
            } else {
                std::fs::read_to_string(&patch)
                    .with_context(|| format!("reading {}", patch.display()))?
            };
            let reply = client.send_text("POST", &format!("/api/v1/workspaces/{id}/patch"), &text);
            handle(reply, |_, _| {
                println!("applied");
                Ok(ExitCode::SUCCESS)
            })
        }
        WorkspaceCommand::Validate { id, tier, json } => {
            let body = serde_json::json!({ "tier": tier });
            let reply = client.send(
                "POST",
                &format!("/api/v1/workspaces/{id}/validate"),
                Some(&body),
            );
            handle(reply, |_, v| {
                if json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    print_validation(&v);
                }
                Ok(if v["ok"] == true {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                })
            })
        }
        WorkspaceCommand::Diff { id } => handle(
            client.send("GET", &format!("/api/v1/workspaces/{id}/diff"), None),
            |_, v| {
                print!("{}", v.as_str().unwrap_or_default());
                Ok(ExitCode::SUCCESS)
            },
        ),
        WorkspaceCommand::Reset { id } => handle(
            client.send("POST", &format!("/api/v1/workspaces/{id}/reset"), None),
            |_, _| {
                println!("reset to the base commit");
                Ok(ExitCode::SUCCESS)
            },
        ),
        WorkspaceCommand::Rm { id } => handle(
            client.send("DELETE", &format!("/api/v1/workspaces/{id}"), None),
            |_, _| {
                println!("workspace {id} closed");
                Ok(ExitCode::SUCCESS)
            },
        ),
    }
}

/// Poll until the workspace is ready (exit 0, prints its id) or failed (1).
fn wait_ready(client: &Client, id: &str) -> anyhow::Result<ExitCode> {
    let mut last = String::new();
    loop {
        let reply = client.send("GET", &format!("/api/v1/workspaces/{id}"), None)?;
        let Reply::Ok(_, w) = reply else {
            return handle(Ok(reply), |_, _| Ok(ExitCode::from(1)));
        };
        match w["state"].as_str() {
            Some("ready") => {
                println!("{id}");
                return Ok(ExitCode::SUCCESS);
            }
            Some("preparing") => {
                let progress = w["progress"].as_str().unwrap_or("").to_owned();
                if progress != last {
                    eprintln!("{id}: {progress}");
                    last = progress;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            other => {
                eprintln!(
                    "error: workspace {id} is {}: {}",
                    other.unwrap_or("?"),
                    w["reason"].as_str().unwrap_or("no reason given")
                );
                return Ok(ExitCode::from(1));
            }
        }
    }
}

/// Steps, then findings like a compiler: `file:line:col severity message`.
fn print_validation(v: &Value) {
    let empty = Vec::new();
    for step in v["steps"].as_array().unwrap_or(&empty) {
        let status = match (step["exit_code"].as_i64(), step["timed_out"].as_bool()) {
            (Some(0), _) => "passed".to_owned(),
            (_, Some(true)) => "timed out".to_owned(),
            (Some(code), _) => format!("failed (exit {code})"),
            (None, _) => "stopped".to_owned(),
        };
        println!(
            "{} `{}` {status} in {} ms",
            if step["exit_code"] == 0 { "✓" } else { "✗" },
            step["name"].as_str().unwrap_or("?"),
            step["duration_ms"]
        );
        for f in step["findings"].as_array().unwrap_or(&empty) {
            let place = [
                f["file"].as_str().map(str::to_owned),
                f["line"].as_u64().map(|n| n.to_string()),
                f["column"].as_u64().map(|n| n.to_string()),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(":");
            println!(
                "{}{} {}{}",
                if place.is_empty() {
                    String::new()
                } else {
                    format!("{place}: ")
                },
                f["severity"].as_str().unwrap_or("error"),
                f["message"].as_str().unwrap_or(""),
                f["rule"]
                    .as_str()
                    .map(|r| format!(" [{r}]"))
                    .unwrap_or_default()
            );
        }
        if let Some(e) = step["findings_error"].as_str() {
            println!("  (no findings: {e})");
        }
        if step["exit_code"] != 0 && step["findings"].as_array().is_none_or(|f| f.is_empty()) {
            // Without findings, the output's end says what went wrong.
            let output = step["output"].as_str().unwrap_or("");
            let tail: Vec<&str> = output.lines().rev().take(20).collect();
            for line in tail.into_iter().rev() {
                println!("  | {line}");
            }
        }
    }
    if let Some(note) = v["note"].as_str() {
        println!("note: {note}");
    }
    println!(
        "{} in {} ms",
        if v["ok"] == true { "ok" } else { "failed" },
        v["duration_ms"]
    );
}
