//! `slipway deploy add | list | status | up | down | rollback | history |
//! logs`: Compose stacks kept at a branch's head, through the HTTP API.
//! Exit codes as for the other clients: 0 done, 1 refused, 4 server
//! unreachable.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::{Client, ServerArgs, handle};

#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Deploy a repository's Compose stack and keep it at its branch's head.
    Add(Box<AddArgs>),
    /// Every deployment: sync, health, the commit running.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One deployment: states, reason, services, last rollouts.
    Status {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Deploy the branch's head now (also a commit that failed), and follow
    /// the branch again after `down`.
    Up { name: String },
    /// Stop the stack; it stays down, restarts included, until `up`.
    Down { name: String },
    /// Bring back the release before the running one.
    Rollback { name: String },
    /// Rollouts, newest first.
    History {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// The last lines of each running service.
    Logs { name: String },
}

/// `slipway deploy add`: a deployment's spec from flags.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The deployment's name (lowercase letters, digits, `-`).
    name: String,
    /// The repository (a git URL the engine can reach).
    repository: String,
    /// The branch to follow.
    #[arg(long, default_value = "main")]
    branch: String,
    /// The Compose file in the repository (default: compose.yaml, then
    /// docker-compose.yaml and their .yml spellings).
    #[arg(long)]
    file: Option<String>,
    /// A job tier (`fast` or `full`) that must succeed on a commit first.
    #[arg(long)]
    gate: Option<String>,
    /// The profile the gate job runs with.
    #[arg(long)]
    gate_profile: Option<String>,
    /// Seconds the services have to become healthy before a rollback.
    #[arg(long)]
    health_timeout: Option<u64>,
    /// Seconds between looks at the branch (default 30).
    #[arg(long)]
    poll: Option<u64>,
    /// `NAME=value` for `${NAME}` in the Compose file (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// `NAME=env:VARIABLE` or `NAME=file:/path`: a secret by reference,
    /// used as a whole `environment` value (`KEY: ${NAME}`) and read by
    /// the engine when it starts the container (repeatable).
    #[arg(long = "secret", value_name = "NAME=REFERENCE")]
    secret: Vec<String>,
    /// Remove services that left the Compose file.
    #[arg(long)]
    prune: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(command: DeployCommand, server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let path = |name: &str, rest: &str| format!("/api/v1/deployments/{name}{rest}");
    match command {
        DeployCommand::Add(args) => {
            let AddArgs {
                name,
                repository,
                branch,
                file,
                gate,
                gate_profile,
                health_timeout,
                poll,
                env,
                secret,
                prune,
                json,
            } = *args;
            let mut body =
                json!({"name": name, "repository": repository, "branch": branch, "prune": prune});
            if let Some(file) = file {
                body["file"] = file.into();
            }
            if let Some(gate) = gate {
                body["gate"] = gate.into();
            }
            if let Some(p) = gate_profile {
                body["gate_profile"] = p.into();
            }
            if let Some(t) = health_timeout {
                body["health_timeout_s"] = t.into();
            }
            if let Some(p) = poll {
                body["poll_s"] = p.into();
            }
            body["env"] = pairs(&env, "--env", "NAME=value")?.into();
            body["secrets"] =
                pairs(&secret, "--secret", "NAME=env:VARIABLE or NAME=file:/path")?.into();
            handle(
                client.send("POST", "/api/v1/deployments", Some(&body)),
                |_, v| {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&v)?);
                    } else {
                        println!(
                            "deployment {name} created: it follows {branch} and deploys its head at the first look"
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                },
            )
        }
        DeployCommand::List { json } => {
            handle(client.send("GET", "/api/v1/deployments", None), |_, v| {
                if json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    print_list(&v);
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        DeployCommand::Status { name, json } => {
            handle(client.send("GET", &path(&name, ""), None), |_, v| {
                if json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    print_status(&v);
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        DeployCommand::Up { name } => {
            handle(client.send("POST", &path(&name, "/up"), None), |_, _| {
                println!("deployment {name}: rolling out the branch's head");
                Ok(ExitCode::SUCCESS)
            })
        }
        DeployCommand::Down { name } => {
            handle(client.send("POST", &path(&name, "/down"), None), |_, _| {
                println!("deployment {name} is down; `slipway deploy up {name}` starts it again");
                Ok(ExitCode::SUCCESS)
            })
        }
        DeployCommand::Rollback { name } => handle(
            client.send("POST", &path(&name, "/rollback"), None),
            |_, v| {
                let to = v["previous"]["commit"].as_str().unwrap_or("?");
                println!("deployment {name}: rolling back to {}", short(to));
                Ok(ExitCode::SUCCESS)
            },
        ),
        DeployCommand::History { name, json } => handle(
            client.send("GET", &path(&name, "/history"), None),
            |_, v| {
                if json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    print_history(&v);
                }
                Ok(ExitCode::SUCCESS)
            },
        ),
        DeployCommand::Logs { name } => {
            handle(client.send("GET", &path(&name, "/logs"), None), |_, v| {
                for s in v.as_array().into_iter().flatten() {
                    let service = s["service"].as_str().unwrap_or("?");
                    for line in s["log"].as_str().unwrap_or("").lines() {
                        println!("{service:<12} | {line}");
                    }
                }
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

fn print_list(v: &Value) {
    let list = v.as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        println!("no deployments (add one with `slipway deploy add <name> <repository>`)");
        return;
    }
    println!(
        "{:<20} {:<12} {:<12} {:<13} BRANCH",
        "NAME", "SYNC", "HEALTH", "RUNNING"
    );
    for d in list {
        println!(
            "{:<20} {:<12} {:<12} {:<13} {}",
            d["spec"]["name"].as_str().unwrap_or("?"),
            d["sync"].as_str().unwrap_or("?"),
            d["health"].as_str().unwrap_or("?"),
            short(d["running"]["commit"].as_str().unwrap_or("-")),
            d["spec"]["branch"].as_str().unwrap_or("?"),
        );
    }
}

fn print_status(d: &Value) {
    let spec = &d["spec"];
    println!(
        "deployment {}: {} of {} ({})",
        spec["name"].as_str().unwrap_or("?"),
        spec["branch"].as_str().unwrap_or("?"),
        spec["repository"].as_str().unwrap_or("?"),
        spec["file"].as_str().unwrap_or("compose.yaml"),
    );
    println!(
        "  sync {}, health {}{}",
        d["sync"].as_str().unwrap_or("?"),
        d["health"].as_str().unwrap_or("?"),
        if d["down"].as_bool() == Some(true) {
            ", down"
        } else {
            ""
        }
    );
    println!(
        "  running: {}",
        short(d["running"]["commit"].as_str().unwrap_or("nothing"))
    );
    if let Some(w) = d["wanted"].as_str() {
        println!("  wanted:  {}", short(w));
    }
    if let Some(r) = d["reason"].as_str() {
        println!("  reason:  {r}");
    }
    for s in d["running"]["services"].as_array().into_iter().flatten() {
        println!(
            "  service {:<16} {} ({})",
            s["name"].as_str().unwrap_or("?"),
            s["spec"]["name"].as_str().unwrap_or("?"),
            s["spec"]["image"].as_str().unwrap_or("?"),
        );
    }
    print_history(&Value::Array(
        d["history"]
            .as_array()
            .map(|h| h.iter().take(5).cloned().collect())
            .unwrap_or_default(),
    ));
}

fn print_history(v: &Value) {
    for r in v.as_array().into_iter().flatten() {
        println!(
            "  {:<13} {:<12} {:<8} {:>6} ms  {}",
            short(r["commit"].as_str().unwrap_or("?")),
            r["result"].as_str().unwrap_or("?"),
            r["cause"].as_str().unwrap_or("?"),
            r["duration_ms"].as_u64().unwrap_or(0),
            r["reason"].as_str().unwrap_or(""),
        );
    }
}

/// `NAME=value` arguments of `flag` as a JSON object.
fn pairs(
    args: &[String],
    flag: &str,
    form: &str,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let mut map = serde_json::Map::new();
    for pair in args {
        let Some((k, v)) = pair.split_once('=') else {
            anyhow::bail!("{flag} `{pair}`: write {form}");
        };
        map.insert(k.to_owned(), v.into());
    }
    Ok(map)
}
