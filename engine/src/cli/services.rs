//! `slipway services list | add | rm | restart | logs`: managed services
//! through the HTTP API. Exit codes as for the other clients: 0 done, 1
//! refused, 4 server unreachable.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use super::client::{Client, ServerArgs, handle};

#[derive(Debug, Subcommand)]
pub enum ServicesCommand {
    /// Every declared service with its state and restarts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Declare a service from a file (TOML, or JSON by extension): the
    /// fields of `POST /api/v1/services`. `--replace` updates an existing one.
    Add {
        file: PathBuf,
        #[arg(long)]
        replace: bool,
    },
    /// Remove a service and its containers (its named volumes stay).
    Rm { name: String },
    /// Restart now; a `failed` service starts over with a fresh budget.
    Restart { name: String },
    /// The service's output and the engine's events about it.
    Logs {
        name: String,
        #[arg(long, default_value_t = 100)]
        tail: usize,
    },
}

pub fn run(command: ServicesCommand, server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    match command {
        ServicesCommand::List { json } => {
            handle(client.send("GET", "/api/v1/services", None), |_, v| {
                if json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    print_list(&v);
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        ServicesCommand::Add { file, replace } => {
            let body = super::read_document(&file)?;
            let name = body["name"].as_str().unwrap_or_default().to_owned();
            let reply = if replace {
                client.send("PUT", &format!("/api/v1/services/{name}"), Some(&body))
            } else {
                client.send("POST", "/api/v1/services", Some(&body))
            };
            handle(reply, |status, _| {
                println!(
                    "service `{name}` {}",
                    if status == 200 {
                        "replaced"
                    } else {
                        "declared"
                    }
                );
                Ok(ExitCode::SUCCESS)
            })
        }
        ServicesCommand::Rm { name } => handle(
            client.send("DELETE", &format!("/api/v1/services/{name}"), None),
            |_, _| {
                println!("service `{name}` removed");
                Ok(ExitCode::SUCCESS)
            },
        ),
        ServicesCommand::Restart { name } => handle(
            client.send("POST", &format!("/api/v1/services/{name}/restart"), None),
            |_, _| {
                println!("service `{name}` restarting");
                Ok(ExitCode::SUCCESS)
            },
        ),
        ServicesCommand::Logs { name, tail } => handle(
            client.send(
                "GET",
                &format!("/api/v1/services/{name}/logs?tail={tail}"),
                None,
            ),
            |_, v| {
                print!("{}", v.as_str().unwrap_or_default());
                Ok(ExitCode::SUCCESS)
            },
        ),
    }
}

fn print_list(v: &Value) {
    let empty = Vec::new();
    let services = v["services"].as_array().unwrap_or(&empty);
    if services.is_empty() {
        println!("no managed services (add one with `slipway services add <file>`)");
        return;
    }
    println!(
        "{:<24} {:<11} {:>8}  {:<28} REASON",
        "NAME", "STATE", "RESTARTS", "IMAGE"
    );
    for s in services {
        let status = &s["status"];
        println!(
            "{:<24} {:<11} {:>8}  {:<28} {}",
            s["service"]["spec"]["name"].as_str().unwrap_or("?"),
            status["state"].as_str().unwrap_or("pending"),
            status["restarts"].as_u64().unwrap_or(0),
            s["service"]["spec"]["image"].as_str().unwrap_or("?"),
            status["reason"].as_str().unwrap_or("")
        );
    }
}
