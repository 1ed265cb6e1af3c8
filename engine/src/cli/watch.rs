//! `slipway watch add | list | show | rm | pause | resume`: watched
//! branches and tags through the HTTP API. Exit codes as for the other
//! clients: 0 done, 1 refused, 4 server unreachable.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};

use super::client::{Client, ServerArgs, handle};

#[derive(Debug, Subcommand)]
pub enum WatchCommand {
    /// Watch a repository's branch (or tags): each new commit runs a job.
    /// Prints the webhook URL path and its secret, shown this once.
    Add {
        /// The repository (any git URL the engine can reach).
        repository: String,
        /// The branch to follow, or a glob (`release/*`).
        #[arg(long, conflicts_with = "tag")]
        branch: Option<String>,
        /// Follow tags matching this glob (`v*`) instead of a branch.
        #[arg(long)]
        tag: Option<String>,
        /// Seconds between polls (default 60, at least 10); 0: webhooks only.
        #[arg(long)]
        poll: Option<u64>,
        /// The tier each new commit runs.
        #[arg(long)]
        tier: Option<String>,
        /// The profile its jobs use.
        #[arg(long)]
        profile: Option<String>,
        /// Accept webhooks from these forges only (github, gitlab, gitea,
        /// forgejo, standard), comma-separated; default: all.
        #[arg(long, value_delimiter = ',')]
        sources: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Every watch with its refs and the last job of each.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One watch, and its last deliveries with their verdicts.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop watching (its jobs stay).
    Rm { id: String },
    /// No polls; deliveries are recorded but start nothing.
    Pause { id: String },
    /// Watch again (it looks at once).
    Resume { id: String },
}

pub fn run(command: WatchCommand, server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    match command {
        WatchCommand::Add {
            repository,
            branch,
            tag,
            poll,
            tier,
            profile,
            sources,
            json,
        } => {
            let mut job = serde_json::Map::new();
            if let Some(tier) = tier {
                job.insert("tier".into(), tier.into());
            }
            if let Some(profile) = profile {
                job.insert("profile".into(), profile.into());
            }
            let mut body = json!({"repository": repository, "job": job});
            match (branch, tag) {
                (_, Some(tag)) => body["tag"] = tag.into(),
                (Some(branch), None) => body["branch"] = branch.into(),
                (None, None) => body["branch"] = "main".into(),
            }
            if let Some(poll) = poll {
                body["poll_interval_s"] = poll.into();
            }
            if !sources.is_empty() {
                body["sources"] = sources.into();
            }
            handle(
                client.send("POST", "/api/v1/watches", Some(&body)),
                |_, v| {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&v)?);
                        return Ok(ExitCode::SUCCESS);
                    }
                    let w = &v["watch"];
                    println!("watch {} created", w["id"].as_str().unwrap_or("?"));
                    println!(
                        "  webhook: POST {}{}",
                        client.base(),
                        w["hook_path"].as_str().unwrap_or("")
                    );
                    println!(
                        "  secret:  {} (shown this once)",
                        v["secret"].as_str().unwrap_or("?")
                    );
                    print_refs(w);
                    Ok(ExitCode::SUCCESS)
                },
            )
        }
        WatchCommand::List { json } => {
            handle(client.send("GET", "/api/v1/watches", None), |_, v| {
                if json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    print_list(&v);
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        WatchCommand::Show { id, json } => handle(
            client.send("GET", &format!("/api/v1/watches/{id}"), None),
            |_, w| {
                let deliveries =
                    match client.send("GET", &format!("/api/v1/watches/{id}/deliveries"), None) {
                        Ok(super::client::Reply::Ok(_, v)) => v,
                        _ => Value::Null,
                    };
                if json {
                    let both = json!({"watch": w, "deliveries": deliveries});
                    println!("{}", serde_json::to_string_pretty(&both)?);
                    return Ok(ExitCode::SUCCESS);
                }
                print_watch(&w);
                print_deliveries(&deliveries);
                Ok(ExitCode::SUCCESS)
            },
        ),
        WatchCommand::Rm { id } => handle(
            client.send("DELETE", &format!("/api/v1/watches/{id}"), None),
            |_, _| {
                println!("watch {id} removed");
                Ok(ExitCode::SUCCESS)
            },
        ),
        WatchCommand::Pause { id } => handle(
            client.send("POST", &format!("/api/v1/watches/{id}/pause"), None),
            |_, _| {
                println!("watch {id} paused");
                Ok(ExitCode::SUCCESS)
            },
        ),
        WatchCommand::Resume { id } => handle(
            client.send("POST", &format!("/api/v1/watches/{id}/resume"), None),
            |_, _| {
                println!("watch {id} resumed");
                Ok(ExitCode::SUCCESS)
            },
        ),
    }
}

fn followed(w: &Value) -> String {
    let spec = &w["spec"];
    match (spec["branch"].as_str(), spec["tag"].as_str()) {
        (_, Some(tag)) => format!("tags {tag}"),
        (Some(branch), _) => format!("branch {branch}"),
        _ => "branch main".into(),
    }
}

fn print_list(v: &Value) {
    let empty = Vec::new();
    let watches = v.as_array().unwrap_or(&empty);
    if watches.is_empty() {
        println!("no watches (add one with `slipway watch add <repository> --branch main`)");
        return;
    }
    println!("{:<14} {:<8} {:<24} REPOSITORY", "ID", "STATE", "FOLLOWS");
    for w in watches {
        let state = if w["paused"].as_bool() == Some(true) {
            "paused"
        } else if w["state"]["error"].is_string() {
            "failing"
        } else {
            "watching"
        };
        println!(
            "{:<14} {:<8} {:<24} {}",
            w["id"].as_str().unwrap_or("?"),
            state,
            followed(w),
            w["spec"]["repository"].as_str().unwrap_or("?")
        );
    }
}

fn print_refs(w: &Value) {
    let empty = serde_json::Map::new();
    for (name, r) in w["state"]["refs"].as_object().unwrap_or(&empty) {
        let head = r["head"]
            .as_str()
            .map(|s| &s[..s.len().min(12)])
            .unwrap_or("(deleted)");
        let job = match (r["submitted"][1].as_u64(), r["pending"].as_str()) {
            (Some(job), Some(p)) => format!("job {job}; {} waits", &p[..p.len().min(12)]),
            (Some(job), None) => format!("job {job}"),
            (None, _) => "nothing run yet".into(),
        };
        println!("  {name}: {head}, {job}");
    }
}

fn print_watch(w: &Value) {
    println!(
        "watch {} ({}) of {}: {}",
        w["id"].as_str().unwrap_or("?"),
        if w["paused"].as_bool() == Some(true) {
            "paused"
        } else {
            "watching"
        },
        w["spec"]["repository"].as_str().unwrap_or("?"),
        followed(w)
    );
    println!("  webhook: POST {}", w["hook_path"].as_str().unwrap_or(""));
    if let Some(e) = w["state"]["error"].as_str() {
        println!(
            "  failing ({} looks in a row): {e}",
            w["state"]["failures"].as_u64().unwrap_or(0)
        );
    }
    print_refs(w);
}

fn print_deliveries(v: &Value) {
    let empty = Vec::new();
    let list = v.as_array().unwrap_or(&empty);
    if list.is_empty() {
        println!("  no deliveries yet");
        return;
    }
    println!("  last deliveries:");
    for d in list.iter().take(10) {
        println!(
            "  #{:<4} {:<8} {:<10} {} {}",
            d["seq"].as_u64().unwrap_or(0),
            d["forge"].as_str().unwrap_or("-"),
            d["event"].as_str().unwrap_or(""),
            d["status"].as_u64().unwrap_or(0),
            d["verdict"].as_str().unwrap_or("")
        );
    }
}
