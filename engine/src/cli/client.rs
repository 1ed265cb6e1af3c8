//! `slipway submit | jobs | status | logs | cancel`: clients of the HTTP API.
//!
//! Exit codes scripts can rely on: 0 success (for `status`: the job
//! succeeded); 1 the job failed, timed out, was cancelled or is dead (for
//! `status`), or the server refused the request; 3 the job has not finished
//! yet (`status`); 4 the server could not be reached.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

/// Where the server is and how to authenticate.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Server URL.
    #[arg(
        long,
        env = "SLIPWAY_URL",
        default_value = "http://127.0.0.1:7878",
        global = true
    )]
    pub url: String,
    /// API token (prefer SLIPWAY_TOKEN or --token-file: flags show in `ps`).
    #[arg(long, env = "SLIPWAY_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// File holding the API token.
    #[arg(long, env = "SLIPWAY_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Git URL of the repository (or a local path, where the server allows it).
    pub repository: String,
    /// Full commit SHA, or a ref the server resolves and records.
    #[arg(long, default_value = "HEAD")]
    pub commit: String,
    /// `fast` (lint, typecheck) or `full` (fast, then tests).
    #[arg(long, default_value = "fast")]
    pub tier: String,
    /// Environment variable for the job, `NAME=value` (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Label, `key=value` (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    #[arg(long)]
    pub timeout_s: Option<u64>,
    #[arg(long)]
    pub priority: Option<i32>,
    /// Submitting again with the same key returns the first job.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// A full job spec as JSON (`-` for stdin); the other flags override its fields.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs in this state (queued, running, retrying, succeeded, failed, cancelled, timed_out, dead).
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub id: u64,
    /// Print the whole job record as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub id: u64,
    /// Keep streaming until the job ends (reconnects and resumes by itself).
    #[arg(long, short)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    /// The lines as stored: epoch milliseconds and stream names, no colour
    /// (for scripts); by default times read as elapsed since the first line.
    #[arg(long)]
    pub raw: bool,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    pub id: u64,
}

/// Exit code when the server cannot be reached.
const UNREACHABLE: u8 = 4;

pub(super) struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
}

pub(super) enum Reply {
    Ok(u16, Value),
    Refused(u16, String),
}

impl Client {
    pub(super) fn new(server: &ServerArgs) -> anyhow::Result<Client> {
        let token = match (&server.token, &server.token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .with_context(|| format!("reading the token file {}", file.display()))?
                .trim()
                .to_owned(),
            (None, None) => bail!(
                "no API token: set SLIPWAY_TOKEN or SLIPWAY_TOKEN_FILE (the server prints where its token is)"
            ),
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .build()
            .into();
        Ok(Client {
            agent,
            base: server.url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// The server's base URL (`http://host:port`).
    pub(super) fn base(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!(
            "cannot reach Slipway at {}: {e} (hint: start `slipway serve`, or set SLIPWAY_URL)",
            self.base
        )
    }

    /// Send a text body (a patch).
    pub(super) fn send_text(
        &self,
        method: &str,
        path: &str,
        text: &str,
    ) -> Result<Reply, anyhow::Error> {
        debug_assert_eq!(method, "POST");
        let url = format!("{}{path}", self.base);
        let result = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "text/x-diff")
            .send(text);
        self.reply(result)
    }

    pub(super) fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, anyhow::Error> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let result = match (method, body) {
            ("POST", Some(b)) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(b.to_string()),
            ("POST", None) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .send_empty(),
            ("PUT", Some(b)) => self
                .agent
                .put(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(b.to_string()),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            _ => self.agent.get(&url).header("Authorization", &auth).call(),
        };
        self.reply(result)
    }

    fn reply(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Reply, anyhow::Error> {
        let mut response = result.map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        if (200..300).contains(&status) {
            let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            return Ok(Reply::Ok(status, value));
        }
        let message = match serde_json::from_str::<Value>(&text) {
            Ok(v) => {
                let e = &v["error"];
                let mut m = e["message"].as_str().unwrap_or(&text).to_owned();
                if let Some(h) = e["hint"].as_str() {
                    m.push_str(&format!(" (hint: {h})"));
                }
                m
            }
            Err(_) => text,
        };
        Ok(Reply::Refused(status, message))
    }
}

/// Run `f` unless the server is unreachable (exit 4) or refuses (exit 1).
pub(super) fn handle(
    result: anyhow::Result<Reply>,
    f: impl FnOnce(u16, Value) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(Reply::Ok(status, value)) => f(status, value),
        Ok(Reply::Refused(status, message)) => {
            eprintln!("error: {message} (HTTP {status})");
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(UNREACHABLE))
        }
    }
}

fn pairs(items: &[String], what: &str) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut map = serde_json::Map::new();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .with_context(|| format!("{what} `{item}` is not NAME=VALUE"))?;
        map.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Ok(map)
}

pub fn submit(args: SubmitArgs, server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let mut spec = match &args.spec {
        Some(path) if path.as_os_str() == "-" => {
            serde_json::from_reader(std::io::stdin()).context("reading the job spec from stdin")?
        }
        Some(path) => serde_json::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{} is not JSON", path.display()))?,
        None => serde_json::json!({}),
    };
    let obj = spec
        .as_object_mut()
        .context("the job spec must be a JSON object")?;
    obj.insert("repository".into(), Value::String(args.repository.clone()));
    obj.insert("commit".into(), Value::String(args.commit.clone()));
    obj.insert("tier".into(), Value::String(args.tier.clone()));
    if !args.env.is_empty() {
        obj.insert("env".into(), Value::Object(pairs(&args.env, "--env")?));
    }
    if !args.labels.is_empty() {
        obj.insert(
            "labels".into(),
            Value::Object(pairs(&args.labels, "--label")?),
        );
    }
    if let Some(t) = args.timeout_s {
        obj.insert("timeout_s".into(), t.into());
    }
    if let Some(p) = args.priority {
        obj.insert("priority".into(), p.into());
    }
    if let Some(k) = &args.idempotency_key {
        obj.insert("idempotency_key".into(), Value::String(k.clone()));
    }
    handle(
        client.send("POST", "/api/v1/jobs", Some(&spec)),
        |status, job| {
            if args.json {
                println!("{job}");
            } else {
                let verb = if status == 201 {
                    "submitted"
                } else {
                    "already submitted (same idempotency key)"
                };
                println!(
                    "{verb}: job {} ({})",
                    job["id"],
                    job["state"].as_str().unwrap_or("?")
                );
            }
            Ok(ExitCode::SUCCESS)
        },
    )
}

pub fn jobs(args: JobsArgs, server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let mut path = format!("/api/v1/jobs?limit={}", args.limit);
    if let Some(s) = &args.state {
        path.push_str(&format!("&state={s}"));
    }
    handle(client.send("GET", &path, None), |_, list| {
        if args.json {
            println!("{list}");
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "{:<8} {:<10} {:<8} {:<12} REPOSITORY",
            "ID", "STATE", "ATTEMPT", "COMMIT"
        );
        for job in list["jobs"].as_array().into_iter().flatten() {
            let commit = job["spec"]["commit"].as_str().unwrap_or("");
            println!(
                "{:<8} {:<10} {:<8} {:<12} {}",
                job["id"],
                job["state"].as_str().unwrap_or("?"),
                format!("{}/{}", job["attempt"], job["max_attempts"]),
                &commit[..commit.len().min(12)],
                job["spec"]["repository"].as_str().unwrap_or("")
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn state_exit(state: &str) -> ExitCode {
    match state {
        "succeeded" => ExitCode::SUCCESS,
        "queued" | "running" | "retrying" => ExitCode::from(3),
        _ => ExitCode::from(1),
    }
}

pub fn status(args: StatusArgs, server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    handle(
        client.send("GET", &format!("/api/v1/jobs/{}", args.id), None),
        |_, job| {
            let state = job["state"].as_str().unwrap_or("?").to_owned();
            if args.json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                println!(
                    "job {}: {state} (attempt {}/{})",
                    job["id"], job["attempt"], job["max_attempts"]
                );
                println!(
                    "  repository: {} @ {}",
                    job["spec"]["repository"].as_str().unwrap_or(""),
                    job["spec"]["commit"].as_str().unwrap_or("")
                );
                if let Some(p) = job["progress"].as_object() {
                    println!(
                        "  progress:   step {}/{}: {}",
                        p["step"],
                        p["steps"],
                        p["message"].as_str().unwrap_or("")
                    );
                }
                if let Some(r) = job["reason"].as_str() {
                    println!("  reason:     {r}");
                }
            }
            Ok(state_exit(&state))
        },
    )
}

pub fn cancel(args: CancelArgs, server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    handle(
        client.send("POST", &format!("/api/v1/jobs/{}/cancel", args.id), None),
        |_, job| {
            let state = job["state"].as_str().unwrap_or("?");
            if state == "running" {
                println!(
                    "job {}: cancel requested; it stops at its next heartbeat",
                    args.id
                );
            } else {
                println!("job {}: {state}", args.id);
            }
            Ok(ExitCode::SUCCESS)
        },
    )
}

pub fn logs(args: LogsArgs, server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let mut query = String::new();
    if let Some(n) = args.tail {
        query.push_str(&format!("&tail={n}"));
    }
    if !args.follow {
        return handle(
            client.send(
                "GET",
                &format!("/api/v1/jobs/{}/logs?{query}", args.id),
                None,
            ),
            |_, text| {
                let text = text.as_str().unwrap_or_default();
                if args.raw {
                    print!("{text}");
                } else {
                    let mut render =
                        super::render::LogRenderer::new(super::render::Style::for_stdout(), None);
                    print!("{}{}", render.feed(text.as_bytes()), render.finish());
                }
                Ok(ExitCode::SUCCESS)
            },
        );
    }
    // Follow: server-sent events; on a dropped connection, resume from the
    // last event id so no line is lost or repeated.
    let mut last_id: Option<String> = None;
    let mut failures = 0;
    let mut render = super::render::LogRenderer::new(super::render::Style::for_stdout(), None);
    loop {
        let url = format!(
            "{}/api/v1/jobs/{}/logs?follow=true{query}",
            client.base, args.id
        );
        let mut request = client
            .agent
            .get(&url)
            .header("Authorization", format!("Bearer {}", client.token));
        if let Some(id) = &last_id {
            request = request.header("Last-Event-ID", id);
        }
        let mut response = match request.call() {
            Ok(r) if r.status() == 200 => r,
            Ok(mut r) => {
                eprintln!(
                    "error: HTTP {}: {}",
                    r.status(),
                    r.body_mut().read_to_string().unwrap_or_default()
                );
                return Ok(ExitCode::from(1));
            }
            Err(e) if failures < 5 => {
                failures += 1;
                eprintln!("connection lost ({e}); resuming");
                std::thread::sleep(Duration::from_millis(500 * failures));
                continue;
            }
            Err(e) => {
                eprintln!("error: {:#}", client.unreachable(e));
                return Ok(ExitCode::from(UNREACHABLE));
            }
        };
        failures = 0;
        let reader = BufReader::new(response.body_mut().as_reader());
        let mut event = String::new();
        let stdout = std::io::stdout();
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let Some(data) = line
                .strip_prefix("data: ")
                .or_else(|| line.strip_prefix("data:"))
            {
                if event.is_empty() {
                    let mut out = stdout.lock();
                    if args.raw {
                        let _ = writeln!(out, "{data}");
                    } else {
                        let _ = writeln!(out, "{}", render.line(data));
                    }
                }
            } else if let Some(id) = line.strip_prefix("id: ") {
                last_id = Some(id.to_owned());
            } else if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_owned();
                if event == "end" {
                    return Ok(ExitCode::SUCCESS);
                }
            } else if line.is_empty() {
                event.clear();
            }
        }
        // The stream ended without `end`: reconnect and resume.
    }
}
