//! Shared by the queue and API tests: an executor that runs no host
//! commands and does what the job's `behaviour` label says.
#![allow(dead_code)] // each test binary uses part of it

pub mod postgres;
pub mod serve;
pub mod stores;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use slipway::api::{self, AppState};
use slipway::executor::{Attempt, ExecFuture, Executor};
use slipway::job::{JobId, JobSpec, Outcome, SpecPolicy};
use slipway::logs::JobLogs;
use slipway::queue::{RedbStore, Scheduler, SchedulerConfig};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct ScriptedExecutor {
    /// Job ids in the order attempts started.
    pub started: Mutex<Vec<JobId>>,
}

impl Executor for ScriptedExecutor {
    fn execute(&self, attempt: Attempt) -> ExecFuture {
        self.started.lock().unwrap().push(attempt.job.id);
        Box::pin(async move {
            let behaviour = attempt
                .job
                .spec
                .labels
                .get("behaviour")
                .cloned()
                .unwrap_or_default();
            attempt.log.line(
                slipway::logs::LogStream::Stdout,
                &format!("running {behaviour}"),
            );
            attempt.report(1, 1, behaviour.clone()).await;
            match behaviour.as_str() {
                "fail" => Outcome::Failed {
                    reason: "tests failed".into(),
                },
                "infra" => Outcome::InfrastructureError {
                    reason: "infrastructure unavailable".into(),
                },
                "crash" => panic!("executor crashed on purpose"),
                "slow" => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(800)) => Outcome::Succeeded,
                        _ = attempt.cancel.cancelled() => Outcome::Cancelled,
                    }
                }
                "hang" => {
                    attempt.cancel.cancelled().await;
                    Outcome::Cancelled
                }
                _ => Outcome::Succeeded,
            }
        })
    }
}

pub fn spec_json(behaviour: &str) -> serde_json::Value {
    serde_json::json!({
        "repository": "https://example.com/repo.git",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "labels": { "behaviour": behaviour },
    })
}

pub fn spec(behaviour: &str) -> JobSpec {
    serde_json::from_value(spec_json(behaviour)).unwrap()
}

/// An engine (real redb store, scheduler with the scripted executor, HTTP
/// API) on 127.0.0.1:<free port>, on its own runtime thread; stopped on drop.
pub struct TestServer {
    pub base: String,
    pub dir: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The repository hosts the tests name, allowed by name (so no DNS lookup
/// is made for them), and loopback, where tests serve repositories.
pub fn test_credentials() -> slipway::git_auth::GitCredentials {
    slipway::git_auth::GitCredentials::default().with_outbound(Arc::new(
        slipway::outbound::OutboundPolicy {
            allow_hosts: vec!["example.com".into(), "127.0.0.1".into()],
            ..Default::default()
        },
    ))
}

pub fn test_server(token: &str) -> TestServer {
    test_server_with(token, test_credentials())
}

/// [`test_server`] reaching repositories with `git_credentials` (and its
/// outbound policy).
pub fn test_server_with(
    token: &str,
    git_credentials: slipway::git_auth::GitCredentials,
) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(RedbStore::open(&dir.path().join("store.redb"), SpecPolicy::default()).unwrap());
    let logs = JobLogs::new(dir.path().join("logs")).unwrap();
    let config = SchedulerConfig {
        heartbeat: Duration::from_millis(100),
        lease: Duration::from_secs(2),
        poll: Duration::from_millis(50),
        stop_grace: Duration::from_millis(500),
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(ScriptedExecutor::default()),
        logs.clone(),
        config,
    );
    let state = AppState {
        store,
        scheduler: scheduler.clone(),
        logs,
        token: token.into(),
        policy: SpecPolicy::default(),
        supervisor: None,
        workspaces: None,
        plugins: None,
        request_timeout: Duration::from_secs(2),
        git_credentials,
        watcher: None,
        deployments: None,
        self_update: None,
        auth_guard: Default::default(),
        dashboard: Default::default(),
        replica: None,
    };
    let shutdown = CancellationToken::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = shutdown.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            tokio::spawn(scheduler.run(stop.clone()));
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            api::serve(listener, state, stop).await.unwrap();
        });
    });
    TestServer {
        base,
        dir,
        shutdown,
    }
}

/// Run git in `dir` as a test user (no global configuration, `main` as the
/// first branch); its trimmed stdout. A failure fails the test.
pub fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The container runtime (Docker); fails the test loudly without one.
pub async fn docker() -> slipway::runner::Runtime {
    slipway::runner::connect().await.unwrap_or_else(|e| {
        panic!("these tests need a Docker engine (run `bash scripts/setup.sh`): {e}")
    })
}

/// POST a body (with bearer `token`) over a raw socket, writing and reading at once: the server
/// may answer (413) before it has read the whole body, and a normal client
/// would then fail on a broken pipe before seeing the answer.
pub fn raw_post(base: &str, token: &str, path: &str, body: Vec<u8>) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer
            .write_all(head.as_bytes())
            .and_then(|_| writer.write_all(&body));
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !response.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}
