//! Deployment benchmarks against a real `slipway serve` and Docker; prints
//! its figures. `cargo bench -p slipway --bench deployments`.
//!
//! - push → new version healthy, for `examples/compose-app` (a web service
//!   built from the repository, and PostgreSQL) with both versions' images
//!   already built: the commit alternates between two contents, so every
//!   rollout after the first two is a cache hit; polling every second;
//! - a push whose health check fails: when the old version serves again,
//!   against the health timeout that decides it;
//! - the engine's memory (RSS of the `serve` process) with 10 deployments of
//!   3 services each (busybox), against the same engine idle.

#[path = "common/git.rs"]
mod git;
use git::git;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TOKEN: &str = "bench-token";

struct Serve {
    child: Child,
    url: String,
    _state: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn serve() -> Serve {
    let state = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("serve")
        .env("SLIPWAY_STATE_DIR", state.path())
        .env("SLIPWAY_TOKEN", TOKEN)
        .env("SLIPWAY_ALLOW_LOCAL_PATHS", "true")
        .env("SLIPWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("SLIPWAY_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(state.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let s = Serve {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _state: state,
    };
    wait("serve up", Duration::from_secs(60), || {
        ureq::get(&format!("{}/healthz", s.url)).call().is_ok()
    });
    s
}

fn call(s: &Serve, method: &str, path: &str, body: Option<Value>) -> Value {
    let url = format!("{}{path}", s.url);
    let auth = format!("Bearer {TOKEN}");
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut answer = match (method, body) {
        ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
        (_, Some(b)) => agent.post(&url).header("Authorization", &auth).send_json(b),
        ("DELETE", None) => agent.delete(&url).header("Authorization", &auth).call(),
        (_, None) => agent.post(&url).header("Authorization", &auth).send_empty(),
    }
    .unwrap();
    let text = answer.body_mut().read_to_string().unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {limit:?}");
}

fn commit(dir: &Path, message: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "--allow-empty", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn containers(label: &str) -> usize {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={label}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn remove_containers(label: &str) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker ps -aq --filter label={label} | xargs -r docker rm -f >/dev/null"
        ))
        .status();
}

fn push_to_healthy() {
    let s = serve();
    let repo = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/compose-app");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", example.display()))
        .arg(repo.path())
        .status()
        .unwrap();
    assert!(copied.success());
    git(repo.path(), &["init", "-q"]);
    commit(repo.path(), "1.0.0");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    call(
        &s,
        "POST",
        "/api/v1/deployments",
        Some(json!({
            "name": "bench", "repository": repo.path().to_str().unwrap(), "branch": "main",
            "poll_s": 1, "health_timeout_s": 20, "env": {"WEB_PORT": port.to_string()},
        })),
    );
    let deployed = |commit: &str| {
        let d = call(&s, "GET", "/api/v1/deployments/bench", None);
        d["running"]["commit"] == commit && d["health"] == "healthy" && d["sync"] == "synced"
    };
    let mut samples = Vec::new();
    let version = repo.path().join("web/VERSION");
    for round in 0..8 {
        std::fs::write(&version, if round % 2 == 0 { "1.0.1\n" } else { "1.0.2\n" }).unwrap();
        let sha = commit(repo.path(), &format!("round {round}"));
        let pushed = Instant::now();
        wait("rollout healthy", Duration::from_secs(600), || {
            deployed(&sha)
        });
        // The first two build their images; the rest reuse them.
        if round >= 2 {
            samples.push(pushed.elapsed().as_secs_f64());
        }
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "push → new version healthy, compose-app (web rebuilt from cache + PostgreSQL kept), poll 1 s, {} rollouts: p50 {:.2} s, max {:.2} s",
        samples.len(),
        percentile(&samples, 0.5),
        samples[samples.len() - 1]
    );

    // A broken health check: the old version serves again after the timeout.
    let before = call(&s, "GET", "/api/v1/deployments/bench", None)["running"]["commit"].clone();
    std::fs::write(repo.path().join("web/BROKEN"), "").unwrap();
    let sha = commit(repo.path(), "broken");
    let pushed = Instant::now();
    wait("rolled back", Duration::from_secs(600), || {
        let d = call(&s, "GET", "/api/v1/deployments/bench", None);
        d["history"][0]["commit"] == sha.as_str() && d["sync"] == "failed"
    });
    let decided = pushed.elapsed().as_secs_f64();
    wait("old version serving", Duration::from_secs(120), || {
        ureq::get(&format!("http://127.0.0.1:{port}/"))
            .call()
            .is_ok_and(|mut r| {
                r.body_mut()
                    .read_to_string()
                    .is_ok_and(|t| t.starts_with("shop 1.0."))
            })
    });
    let serving = pushed.elapsed().as_secs_f64();
    let d = call(&s, "GET", "/api/v1/deployments/bench", None);
    assert_eq!(d["running"]["commit"], before);
    println!(
        "broken health check (timeout 20 s): rolled back {:.1} s after the push; old version serving again {:.1} s after the push ({:.1} s after the decision)",
        decided,
        serving,
        serving - decided
    );
    call(&s, "POST", "/api/v1/deployments/bench/down", None);
    wait("down", Duration::from_secs(120), || {
        containers("io.slipway.deployment=bench") == 0
    });
}

fn memory_with_ten_deployments() {
    let s = serve();
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss_kib(s.child.id());
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(
        repo.path().join("compose.yaml"),
        "services:\n  a:\n    image: slipway-test/busybox:1\n    command: sleep 100000\n  b:\n    image: slipway-test/busybox:1\n    command: sleep 100000\n    depends_on: [a]\n  c:\n    image: slipway-test/busybox:1\n    command: sleep 100000\n    depends_on: [b]\n",
    )
    .unwrap();
    git(repo.path(), &["init", "-q"]);
    commit(repo.path(), "three services");
    for n in 0..10 {
        call(
            &s,
            "POST",
            "/api/v1/deployments",
            Some(
                json!({"name": format!("mem{n}"), "repository": repo.path().to_str().unwrap(), "branch": "main", "poll_s": 5}),
            ),
        );
    }
    wait("10 deployments healthy", Duration::from_secs(600), || {
        let list = call(&s, "GET", "/api/v1/deployments", None);
        list.as_array()
            .is_some_and(|l| l.len() == 10 && l.iter().all(|d| d["health"] == "healthy"))
    });
    std::thread::sleep(Duration::from_secs(3));
    let busy = rss_kib(s.child.id());
    println!(
        "engine memory: RSS {:.1} MiB with 10 deployments of 3 services each (30 services, 60 containers), {:.1} MiB idle",
        busy as f64 / 1024.0,
        idle as f64 / 1024.0
    );
    for n in 0..10 {
        call(
            &s,
            "POST",
            &format!("/api/v1/deployments/mem{n}/down"),
            None,
        );
    }
    let engine_label = "io.slipway.role=deployment";
    wait("down", Duration::from_secs(300), || {
        (0..10).all(|n| containers(&format!("io.slipway.deployment=mem{n}")) == 0)
    });
    remove_containers(engine_label);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    push_to_healthy();
    memory_with_ten_deployments();
}
