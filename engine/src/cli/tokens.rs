//! `slipway tokens create | list | revoke`: API tokens through the HTTP API
//! (authenticated with the configured token, or another valid one).

use std::process::ExitCode;

use clap::Subcommand;

use super::client::{Client, ServerArgs, handle};

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token and print it: it is shown this once.
    Create {
        /// What it is for, e.g. `ci-runner`.
        #[arg(long)]
        name: String,
    },
    /// Every token (never their values).
    List,
    /// Revoke a token by its id: it stops working at once.
    Revoke { id: String },
}

pub fn run(command: TokensCommand, server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    match command {
        TokensCommand::Create { name } => {
            let body = serde_json::json!({ "name": name });
            handle(
                client.send("POST", "/api/v1/tokens", Some(&body)),
                |_, v| {
                    eprintln!(
                        "token {} ({}) created; it is shown only now:",
                        v["id"].as_str().unwrap_or("?"),
                        v["name"].as_str().unwrap_or("?")
                    );
                    println!("{}", v["token"].as_str().unwrap_or_default());
                    Ok(ExitCode::SUCCESS)
                },
            )
        }
        TokensCommand::List => handle(client.send("GET", "/api/v1/tokens", None), |_, v| {
            println!("{:<18} {:<24} STATE", "ID", "NAME");
            let empty = Vec::new();
            for t in v["tokens"].as_array().unwrap_or(&empty) {
                println!(
                    "{:<18} {:<24} {}",
                    t["id"].as_str().unwrap_or("?"),
                    t["name"].as_str().unwrap_or("?"),
                    if t["revoked_ms"].is_null() {
                        "active"
                    } else {
                        "revoked"
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }),
        TokensCommand::Revoke { id } => handle(
            client.send("DELETE", &format!("/api/v1/tokens/{id}"), None),
            |_, _| {
                println!("token {id} revoked");
                Ok(ExitCode::SUCCESS)
            },
        ),
    }
}
