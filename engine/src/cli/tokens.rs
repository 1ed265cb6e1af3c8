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
        /// What it may do: `read`, `run` (jobs and workspaces) or `admin`.
        #[arg(long, default_value = "run")]
        scope: String,
        /// How long it works: `3600s`, `90m`, `12h`, `30d`; default: until revoked.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Every token (never their values).
    List,
    /// Revoke a token by its id: it stops working at once.
    Revoke { id: String },
}

pub fn run(command: TokensCommand, server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    match command {
        TokensCommand::Create {
            name,
            scope,
            expires,
        } => {
            let mut body = serde_json::json!({ "name": name, "scope": scope });
            if let Some(text) = expires {
                body["expires_in_s"] = duration_s(&text)?.into();
            }
            handle(
                client.send("POST", "/api/v1/tokens", Some(&body)),
                |_, v| {
                    eprintln!(
                        "token {} ({}, scope {}) created; it is shown only now:",
                        v["id"].as_str().unwrap_or("?"),
                        v["name"].as_str().unwrap_or("?"),
                        v["scope"].as_str().unwrap_or("?")
                    );
                    println!("{}", v["token"].as_str().unwrap_or_default());
                    Ok(ExitCode::SUCCESS)
                },
            )
        }
        TokensCommand::List => handle(client.send("GET", "/api/v1/tokens", None), |_, v| {
            println!("{:<18} {:<24} {:<6} STATE", "ID", "NAME", "SCOPE");
            let empty = Vec::new();
            for t in v["tokens"].as_array().unwrap_or(&empty) {
                let expired = t["expires_ms"]
                    .as_u64()
                    .is_some_and(|at| at <= slipway::job::now_ms());
                println!(
                    "{:<18} {:<24} {:<6} {}",
                    t["id"].as_str().unwrap_or("?"),
                    t["name"].as_str().unwrap_or("?"),
                    t["scope"].as_str().unwrap_or("?"),
                    if !t["revoked_ms"].is_null() {
                        "revoked"
                    } else if expired {
                        "expired"
                    } else {
                        "active"
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

/// `30d`, `12h`, `90m`, `3600s` (or bare seconds) as seconds.
fn duration_s(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = digits.parse().map_err(|_| {
        anyhow::anyhow!("--expires `{text}`: give a number and a unit, e.g. 30d, 12h, 90m")
    })?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => anyhow::bail!("--expires `{text}`: unknown unit `{other}` (s, m, h or d)"),
    };
    Ok(n.saturating_mul(factor))
}

#[cfg(test)]
mod tests {
    #[test]
    fn expiry_durations_read_as_seconds() {
        assert_eq!(super::duration_s("30d").unwrap(), 2_592_000);
        assert_eq!(super::duration_s("12h").unwrap(), 43_200);
        assert_eq!(super::duration_s("90m").unwrap(), 5_400);
        assert_eq!(super::duration_s("3600").unwrap(), 3_600);
        assert!(super::duration_s("1w").is_err());
        assert!(super::duration_s("d").is_err());
    }
}
