//! A real `slipway serve` for end-to-end tests: a free loopback port, its
//! own state directory, a known token; HTTP and command-line helpers.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const TOKEN: &str = "end-to-end-test-token";
pub const BUSYBOX: &str = "slipway-test/busybox:1";

/// A `slipway serve` on a free loopback port with its own state directory.
pub struct Server {
    child: Child,
    state: Option<tempfile::TempDir>,
    pub url: String,
}

impl Server {
    /// A server started by the caller: `child`, its `state` directory and URL.
    pub fn adopt(child: Child, state: tempfile::TempDir, url: String) -> Server {
        Server {
            child,
            state: Some(state),
            url,
        }
    }

    pub fn state(&self) -> &Path {
        self.state.as_ref().unwrap().path()
    }

    /// What the server wrote to stderr (its log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state().join("serve.log")).unwrap_or_default()
    }

    /// `kill -9`: no shutdown code runs. The state directory survives.
    pub fn crash(mut self) -> tempfile::TempDir {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.state.take().unwrap()
    }
}

impl Drop for Server {
    /// SIGTERM, as a service manager stops it, so it cleans up; SIGKILL
    /// after 20 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.remove_cache_volumes();
    }
}

impl Server {
    /// The engine id `serve` derives from its state directory (the
    /// `io.slipway.engine` label of what it creates).
    pub fn engine_id(&self) -> String {
        engine_id_of(self.state())
    }

    /// Package caches outlive an engine on purpose; a test engine's go with it.
    fn remove_cache_volumes(&self) {
        let Some(state) = self.state.as_ref() else {
            return;
        };
        let engine = engine_id_of(state.path());
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker volume ls -q --filter label=io.slipway.engine={engine} | xargs -r docker volume rm -f"
            ))
            .status();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn slipway(state: &Path, url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.env("SLIPWAY_STATE_DIR", state)
        .env("SLIPWAY_TOKEN", TOKEN)
        .env("SLIPWAY_URL", url)
        .env_remove("SLIPWAY_CONFIG")
        .env_remove("SLIPWAY_PLUGINS_DIR");
    cmd
}

pub fn start(state: tempfile::TempDir) -> Server {
    start_with(state, &[])
}

/// `start` with more environment (configuration) for the server.
pub fn start_with(state: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
    start_until(state, env, "http", |server| {
        get(server, "/healthz").0 == 200
    })
}

/// `start_with` for a server whose URL has `scheme` and that is up once
/// `up` says so (an HTTPS one: the test's own client checks it).
pub fn start_until(
    state: tempfile::TempDir,
    env: &[(&str, &str)],
    scheme: &str,
    up: impl Fn(&Server) -> bool,
) -> Server {
    let port = free_port();
    let url = format!("{scheme}://127.0.0.1:{port}");
    let child = slipway(state.path(), &url)
        .arg("serve")
        .env("SLIPWAY_ALLOW_LOCAL_PATHS", "true")
        .envs(env.iter().copied())
        .env("SLIPWAY_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(state.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        state: Some(state),
        url,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if up(&server) {
            return server;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("slipway serve did not come up; its log:\n{}", server.log());
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

pub fn get(server: &Server, path: &str) -> (u16, String) {
    match agent()
        .get(format!("{}{path}", server.url))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
    {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(_) => (0, String::new()),
    }
}

pub fn post_json(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let mut r = agent()
        .post(format!("{}{path}", server.url))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (
        r.status().as_u16(),
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

pub fn cli(server: &Server, args: &[&str]) -> Output {
    slipway(server.state(), &server.url)
        .args(args)
        .output()
        .unwrap()
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Any request with an optional body; status and body text.
pub fn request(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> (u16, String) {
    let url = format!("{}{path}", server.url);
    let auth = format!("Bearer {TOKEN}");
    let result = match (method, body) {
        ("GET", _) => agent().get(&url).header("Authorization", &auth).call(),
        ("DELETE", _) => agent().delete(&url).header("Authorization", &auth).call(),
        ("POST", None) => agent()
            .post(&url)
            .header("Authorization", &auth)
            .send_empty(),
        ("POST", Some((kind, bytes))) => agent()
            .post(&url)
            .header("Authorization", &auth)
            .header("Content-Type", kind)
            .send(bytes),
        ("PUT", Some((kind, bytes))) => agent()
            .put(&url)
            .header("Authorization", &auth)
            .header("Content-Type", kind)
            .send(bytes),
        _ => panic!("unsupported request {method} {path}"),
    };
    let mut r = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// A directory whose only file is `Dockerfile` with `text`.
pub fn dockerfile_repo(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), text).unwrap();
    dir
}

/// Declare profile `name` with these fast steps, then submit a job of
/// `repo` under it, with `extra` fields of the spec; the job's id.
pub fn submit_profiled(
    server: &Server,
    repo: &Path,
    name: &str,
    fast: &[&str],
    extra: Value,
) -> u64 {
    let (code, body) = post_json(
        server,
        "/api/v1/profiles",
        &serde_json::json!({"name": name, "validation": {"fast": fast}}),
    );
    assert_eq!(code, 201, "{body}");
    let mut spec = serde_json::json!({"repository": repo, "commit": "HEAD", "profile": name});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (code, body) = post_json(server, "/api/v1/jobs", &spec);
    assert_eq!(code, 201, "{body}");
    body["id"].as_u64().unwrap()
}

/// A job as `GET /api/v1/jobs/{id}` shows it (`Null` when it cannot be read).
pub fn job(server: &Server, id: u64) -> Value {
    serde_json::from_str(&get(server, &format!("/api/v1/jobs/{id}")).1).unwrap_or(Value::Null)
}

/// The first chunk of a job's log (`?tail=N` for its end).
pub fn job_log(server: &Server, id: u64) -> String {
    get(server, &format!("/api/v1/jobs/{id}/logs")).1
}

pub fn engine_id_of(state: &Path) -> String {
    use sha2::Digest;
    let path = state.canonicalize().unwrap_or_else(|_| state.to_path_buf());
    format!(
        "serve-{}",
        hex::encode(&sha2::Sha256::digest(path.to_string_lossy().as_bytes())[..8])
    )
}

/// The containers of job `id` of the engine of `state` (job ids start at 1
/// in every test's store, so the engine label tells them apart).
pub fn job_containers(state: &Path, id: u64) -> Vec<String> {
    containers_labelled(&format!("io.slipway.job={id}"))
        .into_iter()
        .filter(|c| {
            containers_labelled(&format!("io.slipway.engine={}", engine_id_of(state))).contains(c)
        })
        .collect()
}

/// Ids of the containers (running or not) carrying `label` (`key=value`), sorted.
pub fn containers_labelled(label: &str) -> Vec<String> {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let docker = slipway::runtime::docker::connect()
            .await
            .expect("Docker")
            .client()
            .clone();
        let filters =
            std::collections::HashMap::from([("label".to_owned(), vec![label.to_owned()])]);
        let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let mut ids: Vec<String> = docker
            .list_containers(Some(options))
            .await
            .unwrap()
            .into_iter()
            .filter_map(|c| c.id)
            .collect();
        ids.sort();
        ids
    })
}

/// Poll `done` every 100 ms; panic naming `what` after `seconds`.
pub fn wait_until(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
