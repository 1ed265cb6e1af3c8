//! The HTTP API on a real loopback socket, with a real redb store and the
//! scripted test executor: the contract's endpoints, auth, and every kind of
//! bad input getting its status and error shape.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{git, raw_post, spec_json};

const TOKEN: &str = "test-token-123";

struct Server {
    _inner: crate::support::TestServer,
    base: String,
    agent: ureq::Agent,
}

fn server() -> Server {
    let inner = crate::support::test_server(TOKEN);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    Server {
        base: inner.base.clone(),
        _inner: inner,
        agent,
    }
}

impl Server {
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        let builder = ureq::http::Request::builder().method(method).uri(&url);
        let builder = match token {
            Some(t) => builder.header("Authorization", format!("Bearer {t}")),
            None => builder,
        };
        let mut response = match body {
            Some(b) => self.agent.run(
                builder
                    .header("Content-Type", "application/json")
                    .body(b)
                    .unwrap(),
            ),
            None => self.agent.run(builder.body(()).unwrap()),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap_or_default();
        (status, text)
    }

    fn json(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text) = self.call(method, path, Some(TOKEN), body.map(|b| b.to_string()));
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn wait_final(&self, id: u64) -> Value {
        for _ in 0..200 {
            let (_, job) = self.json("GET", &format!("/api/v1/jobs/{id}"), None);
            if ["succeeded", "failed", "cancelled", "timed_out", "dead"]
                .contains(&job["state"].as_str().unwrap_or(""))
            {
                return job;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("job {id} did not finish");
    }
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error shape in {body}"))
}

#[test]
fn health_readiness_and_metrics_need_no_token() {
    let s = server();
    assert_eq!(s.call("GET", "/healthz", None, None), (200, "ok\n".into()));
    let (status, ready) = s.call("GET", "/readyz", None, None);
    assert_eq!(status, 200, "{ready}");
    let (status, metrics) = s.call("GET", "/metrics", None, None);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("# TYPE slipway_jobs gauge")
            && metrics.contains("slipway_jobs{state=\"queued\"} 0"),
        "{metrics}"
    );
    // Every sample line parses as `name{labels} value`.
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit_once(' ').map(|(_, v)| v).unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample: {line}");
    }
}

#[test]
fn api_refuses_missing_or_wrong_tokens() {
    let s = server();
    let (status, body) = s.call("GET", "/api/v1/jobs", None, None);
    assert_eq!(status, 401);
    assert!(
        body.contains("missing `Authorization: Bearer <token>`"),
        "{body}"
    );
    let (status, body) = s.call("GET", "/api/v1/jobs", Some("nope"), None);
    assert_eq!(status, 401);
    assert!(body.contains("\"code\":\"unauthorized\""), "{body}");
}

#[test]
fn submit_run_list_show_and_logs() {
    let s = server();
    let (status, job) = s.json("POST", "/api/v1/jobs", Some(spec_json("succeed")));
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_u64().unwrap();
    let done = s.wait_final(id);
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["attempt"], 1);

    let (_, metrics) = s.call("GET", "/metrics", None, None);
    for sample in [
        "slipway_jobs_submitted_total 1\n",
        "slipway_attempts_started_total 1\n",
        "slipway_attempt_duration_seconds_count 1\n",
        "slipway_jobs{state=\"succeeded\"} 1\n",
    ] {
        assert!(
            metrics.contains(sample),
            "missing `{}` in:\n{metrics}",
            sample.trim()
        );
    }

    let (status, list) = s.json("GET", "/api/v1/jobs?state=succeeded", None);
    assert_eq!(status, 200);
    assert_eq!(list["jobs"][0]["id"], id);

    let (status, log) = s.call("GET", &format!("/api/v1/jobs/{id}/logs"), Some(TOKEN), None);
    assert_eq!(status, 200);
    assert!(log.contains("stdout running succeed"), "{log}");
    let (_, tail) = s.call(
        "GET",
        &format!("/api/v1/jobs/{id}/logs?tail=1"),
        Some(TOKEN),
        None,
    );
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(tail.contains("attempt ended: succeeded"), "{tail}");
}

#[test]
fn follow_streams_server_sent_events_and_resumes() {
    let s = server();
    let (_, job) = s.json("POST", "/api/v1/jobs", Some(spec_json("hang")));
    let id = job["id"].as_u64().unwrap();
    let base = s.base.clone();
    let canceller = s.agent.clone();
    // Cancel after a moment, so the stream sees the job end.
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(600));
        let _ = canceller
            .post(format!("{base}/api/v1/jobs/{id}/cancel"))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send_empty();
    });
    let mut response = s
        .agent
        .get(format!("{}/api/v1/jobs/{id}/logs?follow=true", s.base))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let reader = BufReader::new(response.body_mut().as_reader());
    let mut data = Vec::new();
    let mut last_id = None;
    let mut ended = false;
    for line in reader.lines() {
        let line = line.unwrap();
        if let Some(d) = line.strip_prefix("data: ") {
            data.push(d.to_owned());
        } else if let Some(i) = line.strip_prefix("id: ") {
            last_id = Some(i.parse::<u64>().unwrap());
        } else if line == "event: end" {
            ended = true;
            break;
        }
    }
    assert!(ended, "stream ended with the job: {data:?}");
    let all = data.join("\n");
    assert!(
        all.contains("running hang") && all.contains("cancel requested"),
        "{all}"
    );
    // Resuming from the last event id yields nothing already seen.
    let last = last_id.unwrap();
    let (_, rest) = s.call(
        "GET",
        &format!("/api/v1/jobs/{id}/logs?offset={last}"),
        Some(TOKEN),
        None,
    );
    assert!(!rest.contains("running hang"), "{rest}");
    assert_eq!(s.wait_final(id)["state"], "cancelled");
}

#[test]
fn bad_input_gets_specific_errors() {
    let s = server();
    let (status, body) = s.call(
        "POST",
        "/api/v1/jobs",
        Some(TOKEN),
        Some("{\"repository\": ".into()),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("malformed_json"), "{body}");

    let mut wrong_type = spec_json("succeed");
    wrong_type["timeout_s"] = json!("soon");
    let (status, body) = s.json("POST", "/api/v1/jobs", Some(wrong_type));
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timeout_s"),
        "{body}"
    );

    let mut unknown = spec_json("succeed");
    unknown["colour"] = json!("red");
    let (status, body) = s.json("POST", "/api/v1/jobs", Some(unknown));
    assert_eq!(status, 422);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `colour`"),
        "{body}"
    );

    let mut not_hex = spec_json("succeed");
    not_hex["commit"] = json!("g".repeat(40));
    not_hex["repository"] = json!("../../etc/passwd");
    let (status, body) = s.json("POST", "/api/v1/jobs", Some(not_hex));
    assert_eq!(status, 422);
    let fields: Vec<&str> = body["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        vec!["repository", "commit"],
        "every problem is listed: {body}"
    );

    let huge = format!(
        "{{\"repository\": \"{}\", \"commit\": \"main\"}}",
        "x".repeat(10 * 1024 * 1024)
    );
    let status_line = raw_post(&s.base, TOKEN, "/api/v1/jobs", huge.into_bytes());
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");

    let (status, body) = s.json("GET", "/api/v1/jobs/424242", None);
    assert_eq!((status, error_code(&body)), (404, "not_found"));

    let (status, body) = s.json("GET", "/api/v1/jobs?state=sleeping", None);
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("known: queued, running"),
        "{body}"
    );

    let (status, body) = s.json("GET", "/api/v1/jobs", None);
    assert_eq!(
        (status, body["jobs"].as_array().map(|a| a.len())),
        (200, Some(0)),
        "rejected requests stored nothing"
    );
}

#[test]
fn cancel_of_a_finished_job_conflicts_and_idempotent_submit_returns_the_first() {
    let s = server();
    let mut keyed = spec_json("succeed");
    keyed["idempotency_key"] = json!("release-7");
    keyed["secrets"] = json!({"DEPLOY_TOKEN": "env:DEPLOY_TOKEN"});
    let (first_status, first) = s.json("POST", "/api/v1/jobs", Some(keyed.clone()));
    let (second_status, second) = s.json("POST", "/api/v1/jobs", Some(keyed));
    assert_eq!((first_status, second_status), (201, 200));
    assert_eq!(first["id"], second["id"]);
    assert_eq!(
        first["spec"]["secrets"],
        json!(["DEPLOY_TOKEN"]),
        "secret names only"
    );
    assert!(
        !first.to_string().contains("env:DEPLOY_TOKEN"),
        "a secret reference is never echoed back"
    );

    let id = first["id"].as_u64().unwrap();
    s.wait_final(id);
    let (status, body) = s.json("POST", &format!("/api/v1/jobs/{id}/cancel"), None);
    assert_eq!((status, error_code(&body)), (409, "conflict"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is succeeded, so it cannot be cancelled"),
        "{body}"
    );
}

#[test]
fn profiles_crud_and_jobs_naming_them() {
    let s = server();
    let profile = json!({
        "name": "web",
        "repository": "https://example.com/repo.git",
        "dockerfile": "ci/Dockerfile",
        "validation": {"fast": ["npm run lint"], "full": ["npm test"]},
        "services": [{"name": "db", "image": "postgres:15", "ports": [5432], "readiness": {"plugin": "postgres"}}],
    });
    let (status, created) = s.json("POST", "/api/v1/profiles", Some(profile.clone()));
    assert_eq!(status, 201, "{created}");
    let (status, body) = s.json("POST", "/api/v1/profiles", Some(profile.clone()));
    assert_eq!((status, error_code(&body)), (409, "conflict"));

    let (status, shown) = s.json("GET", "/api/v1/profiles/web", None);
    assert_eq!(status, 200);
    assert_eq!(shown["dockerfile"], "ci/Dockerfile");
    assert_eq!(shown["cache"]["enabled"], true, "defaults are filled in");

    let mut changed = profile.clone();
    changed["dockerfile"] = json!("Dockerfile.ci");
    let (status, _) = s.json("PUT", "/api/v1/profiles/web", Some(changed.clone()));
    assert_eq!(status, 200, "PUT replaces");
    let (status, body) = s.json("PUT", "/api/v1/profiles/other", Some(changed));
    assert_eq!(status, 422, "{body}");
    let (_, list) = s.json("GET", "/api/v1/profiles", None);
    assert_eq!(list["profiles"].as_array().unwrap().len(), 1);
    assert_eq!(list["profiles"][0]["dockerfile"], "Dockerfile.ci");

    let mut bad = profile.clone();
    bad["name"] = json!("Not Valid");
    bad["dockerfile"] = json!("../../Dockerfile");
    let (status, body) = s.json("POST", "/api/v1/profiles", Some(bad));
    assert_eq!((status, error_code(&body)), (422, "invalid_profile"));
    let fields: Vec<&str> = body["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["name", "dockerfile"]);

    let mut job = spec_json("succeed");
    job["profile"] = json!("missing");
    let (status, body) = s.json("POST", "/api/v1/jobs", Some(job.clone()));
    assert_eq!(status, 422);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown profile `missing` (known: web)"),
        "{body}"
    );
    job["profile"] = json!("web");
    let (status, _) = s.json("POST", "/api/v1/jobs", Some(job));
    assert_eq!(status, 201);

    let (status, _) = s.call("DELETE", "/api/v1/profiles/web", Some(TOKEN), None);
    assert_eq!(status, 204);
    let (status, body) = s.json("DELETE", "/api/v1/profiles/web", None);
    assert_eq!((status, error_code(&body)), (404, "not_found"));
}

#[test]
fn openapi_document_describes_the_api() {
    let s = server();
    let (status, doc) = s.json("GET", "/api/v1/openapi.json", None);
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    for (path, method) in [
        ("/api/v1/jobs", "post"),
        ("/api/v1/jobs", "get"),
        ("/api/v1/jobs/{id}", "get"),
        ("/api/v1/jobs/{id}/cancel", "post"),
        ("/api/v1/jobs/{id}/logs", "get"),
        ("/api/v1/profiles/{name}", "put"),
        ("/healthz", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    let spec = &doc["components"]["schemas"]["JobSpec"];
    assert_eq!(
        spec["additionalProperties"], false,
        "unknown fields are refused: {spec}"
    );
    assert!(
        spec["required"]
            .as_array()
            .unwrap()
            .contains(&json!("repository"))
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let (status, _) = s.call("GET", "/api/v1/openapi.json", None, None);
    assert_eq!(status, 401, "under /api/, so behind the token");
}

/// `git daemon` serving `base` on a free loopback port; killed on drop.
struct GitDaemon {
    child: std::process::Child,
    port: u16,
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        // `git daemon` runs `git-daemon` as its child: stop the whole group,
        // or the child lives on (holding the test's output pipe).
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

fn git_daemon(base: &std::path::Path) -> GitDaemon {
    use std::os::unix::process::CommandExt as _;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("git")
        .args([
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", base.display()))
        .arg(base)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .expect("git daemon (part of Debian's git) starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "git daemon never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    GitDaemon { child, port }
}

#[test]
fn refs_are_resolved_and_recorded_at_submit() {
    let s = server();
    // A repository served by a real git daemon on loopback: `main` moves
    // on after a tag, and a branch and a tag share the name `same`.
    let base = tempfile::tempdir().unwrap();
    let repo = base.path().join("app.git");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "one"]);
    let first = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["tag", "-a", "v1", "-m", "release one"]);
    git(&repo, &["branch", "same"]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "two"]);
    let second = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["tag", "same"]);
    let daemon = git_daemon(base.path());
    let url = format!("git://127.0.0.1:{}/app.git", daemon.port);

    let submit = |commit: &str| {
        let (status, body) = s.json(
            "POST",
            "/api/v1/jobs",
            Some(json!({"repository": url, "commit": commit})),
        );
        (status, body)
    };
    for (reference, want) in [
        ("main", &second),
        ("v1", &first),
        ("same", &first),
        ("HEAD", &second),
    ] {
        let (status, body) = submit(reference);
        assert_eq!(status, 201, "{reference}: {body}");
        assert_eq!(
            body["spec"]["commit"],
            json!(want),
            "{reference} resolved wrongly: {body}"
        );
        assert_eq!(body["spec"]["resolved_from"], json!(reference));
        // What was recorded is what `show` returns later.
        let (_, shown) = s.json("GET", &format!("/api/v1/jobs/{}", body["id"]), None);
        assert_eq!(shown["spec"]["commit"], json!(want));
    }
    // A full SHA is taken as given, without asking the repository.
    let (status, body) = submit(&first);
    assert_eq!(status, 201, "{body}");
    assert!(body["spec"].get("resolved_from").is_none(), "{body}");

    let (status, body) = submit("no-such-branch");
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "commit");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`no-such-branch` names no branch, tag or commit"),
        "{message}"
    );

    // Nothing listens on loopback port 1: the repository does not answer.
    let (status, body) = s.json(
        "POST",
        "/api/v1/jobs",
        Some(json!({"repository": "git://127.0.0.1:1/app.git", "commit": "main"})),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "repository");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not ask git://127.0.0.1"),
        "{body}"
    );

    // Clients do not get to claim a resolution, nor to reach local paths
    // through `file://` when local paths are not allowed.
    let (status, body) = s.json(
        "POST",
        "/api/v1/jobs",
        Some(json!({"repository": url, "commit": first, "resolved_from": "main"})),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "resolved_from");
    let (status, body) = s.json(
        "POST",
        "/api/v1/jobs",
        Some(json!({"repository": format!("file://{}", repo.display()), "commit": "main"})),
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("local paths are not allowed"),
        "{body}"
    );
    let (_, list) = s.json("GET", "/api/v1/jobs", None);
    assert_eq!(
        list["jobs"].as_array().unwrap().len(),
        5,
        "only the accepted jobs are stored"
    );
}

#[test]
fn a_request_whose_body_never_arrives_is_answered_408_and_the_server_carries_on() {
    use std::io::{Read, Write};
    let s = server();
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Half a body, then nothing: the test server's limit is 2 s.
    write!(
        stream,
        "POST /api/v1/jobs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"repository\": "
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut response = String::new();
    let mut buf = [0u8; 4096];
    while !response.contains("request_timeout") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("took longer than 2 s"), "{response}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Nothing was stored, and other requests were served all along.
    let (status, list) = s.json("GET", "/api/v1/jobs", None);
    assert_eq!(status, 200);
    assert_eq!(list["jobs"].as_array().unwrap().len(), 0, "{list}");
}

/// The outbound policy as shipped: repository URLs that are or resolve to
/// loopback, link-local (cloud metadata) or private addresses are refused
/// at submit, before any git call, with the setting that would allow them.
/// Only IP literals and `localhost` are used: nothing is sent anywhere,
/// and the loopback listener proves it.
#[test]
fn repository_urls_of_internal_addresses_are_refused_before_any_git_call() {
    let inner =
        crate::support::test_server_with(TOKEN, slipway::git_auth::GitCredentials::default());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let s = Server {
        base: inner.base.clone(),
        _inner: inner,
        agent,
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let sha = "0123456789abcdef0123456789abcdef01234567";
    for (repository, commit, address) in [
        (
            format!("http://127.0.0.1:{port}/app.git"),
            "main",
            "127.0.0.1",
        ),
        (
            format!("http://localhost:{port}/app.git"),
            "main",
            "127.0.0.1",
        ),
        (format!("git://127.0.0.1:{port}/app.git"), sha, "127.0.0.1"),
        (
            "http://169.254.169.254/latest/app.git".into(),
            sha,
            "169.254.169.254",
        ),
        ("https://10.0.0.1/team/app.git".into(), "main", "10.0.0.1"),
        ("git@10.0.0.1:team/app.git".into(), sha, "10.0.0.1"),
        ("http://[::ffff:127.0.0.1]/app.git".into(), sha, "127.0.0.1"),
    ] {
        let (status, body) = s.json(
            "POST",
            "/api/v1/jobs",
            Some(json!({"repository": repository, "commit": commit})),
        );
        assert_eq!(status, 422, "{repository}: {body}");
        assert_eq!(error_code(&body), "invalid_job_spec", "{body}");
        assert_eq!(body["error"]["field"], "repository", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(address) && message.contains("outbound.allow_hosts"),
            "{repository}: the refusal names the address and the setting: {message}"
        );
    }
    let (_, list) = s.json("GET", "/api/v1/jobs", None);
    assert_eq!(list["jobs"], json!([]), "nothing was stored");
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "no git call reached the loopback listener"
    );
}

impl Server {
    /// `call` with `token`, the body parsed.
    fn as_token(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text) = self.call(method, path, Some(token), body.map(|b| b.to_string()));
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A new token of `scope` (with `extra` fields); its value and id.
    fn token(&self, name: &str, scope: &str, extra: Value) -> (String, String) {
        let mut body = json!({"name": name, "scope": scope});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (status, created) = self.json("POST", "/api/v1/tokens", Some(body));
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["scope"], scope, "{created}");
        (
            created["token"].as_str().unwrap().to_owned(),
            created["id"].as_str().unwrap().to_owned(),
        )
    }
}

/// Scopes: `read` sees and changes nothing, `run` drives jobs only, the
/// configured token and `admin` tokens do everything; an expired token is
/// refused; every change (refused ones included) is in the audit log,
/// which only `admin` reads.
#[test]
fn token_scopes_expiry_and_the_audit_log() {
    let s = server();
    let (read, _) = s.token("dashboard", "read", json!({}));
    let (run, run_id) = s.token("ci", "run", json!({}));
    let (admin, admin_id) = s.token("ops", "admin", json!({}));

    // read: sees jobs, submits nothing (and nothing is stored).
    let (status, _) = s.as_token(&read, "GET", "/api/v1/jobs", None);
    assert_eq!(status, 200);
    let (status, body) = s.as_token(&read, "POST", "/api/v1/jobs", Some(spec_json("ok")));
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_code(&body), "forbidden");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("scope `read`") && message.contains("needs `run`"),
        "{message}"
    );
    let (_, list) = s.json("GET", "/api/v1/jobs", None);
    assert_eq!(list["jobs"], json!([]), "a refused submit stores nothing");
    let (status, _) = s.as_token(&read, "GET", "/api/v1/tokens", None);
    assert_eq!(status, 403, "the token list is admin's");

    // run: submits and cancels jobs; manages nothing else.
    let (status, job) = s.as_token(&run, "POST", "/api/v1/jobs", Some(spec_json("ok")));
    assert_eq!(status, 201, "{job}");
    let profile = json!({"name": "p", "validation": {"fast": ["true"]}});
    let (status, body) = s.as_token(&run, "POST", "/api/v1/profiles", Some(profile.clone()));
    assert_eq!(status, 403, "{body}");
    let (status, _) = s.as_token(&run, "GET", "/api/v1/audit", None);
    assert_eq!(status, 403);

    // admin: everything.
    let (status, body) = s.as_token(&admin, "POST", "/api/v1/profiles", Some(profile));
    assert_eq!(status, 201, "{body}");

    // An expired token is refused like a revoked one.
    let (short, _) = s.token("short", "admin", json!({"expires_in_s": 1}));
    let (status, _) = s.as_token(&short, "GET", "/api/v1/jobs", None);
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(1100));
    let (status, body) = s.as_token(&short, "GET", "/api/v1/jobs", None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = s.json(
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "x", "scope": "root"})),
    );
    assert_eq!(status, 422, "an unknown scope: {body}");

    // The audit log, newest first: who, what, the answer.
    let (status, log) = s.as_token(&admin, "GET", "/api/v1/audit?limit=50", None);
    assert_eq!(status, 200, "{log}");
    let entries = log.as_array().unwrap();
    let find = |token: &str, route: &str, status: u64| {
        entries.iter().any(|e| {
            e["token"] == token
                && e["route"] == route
                && e["status"] == status
                && e["method"] == "POST"
        })
    };
    assert!(find(&run_id, "/api/v1/jobs", 201), "{log}");
    assert!(
        find(&run_id, "/api/v1/profiles", 403),
        "refused changes too: {log}"
    );
    assert!(find(&admin_id, "/api/v1/profiles", 201), "{log}");
    assert!(find("configured", "/api/v1/tokens", 201), "{log}");
    assert!(
        entries.iter().all(|e| e["method"] != "GET"),
        "reads are not audited: {log}"
    );
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    let (_, older) = s.as_token(
        &admin,
        "GET",
        &format!("/api/v1/audit?before={}", seqs[0]),
        None,
    );
    assert_eq!(
        older.as_array().unwrap().len(),
        entries.len() - 1,
        "paged by seq"
    );
}

/// 500 wrong tokens in a burst from one client: past the limit they are
/// answered 429, and the right token still works in the middle of it.
#[test]
fn failed_authentications_are_rate_limited_and_the_right_token_still_works() {
    let s = server();
    let mut limited = 0;
    for i in 0..500 {
        let (status, _) = s.call("GET", "/api/v1/jobs", Some(&format!("wrong-{i}")), None);
        assert!(status == 401 || status == 429, "{status}");
        if status == 429 {
            limited += 1;
        }
        if i == 250 {
            let (status, _) = s.call("GET", "/api/v1/jobs", Some(TOKEN), None);
            assert_eq!(status, 200, "the right token works during the flood");
        }
    }
    assert!(
        limited >= 400,
        "most of the flood is limited: {limited} of 500"
    );
    let (status, body) = s.call("GET", "/api/v1/jobs", Some("wrong"), None);
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too_many_failures"), "{body}");
}

/// One token holds at most 64 log streams; the 65th is refused with 429,
/// another token's stream still opens.
#[test]
fn log_streams_are_capped_per_token() {
    let s = server();
    let (status, job) = s.json("POST", "/api/v1/jobs", Some(spec_json("hang")));
    assert_eq!(status, 201, "{job}");
    let path = format!("{}/api/v1/jobs/{}/logs?follow=true", s.base, job["id"]);
    let open = |token: &str| {
        s.agent
            .get(&path)
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .unwrap()
    };
    let streams: Vec<_> = (0..slipway::api::auth::STREAMS_PER_TOKEN)
        .map(|_| {
            let r = open(TOKEN);
            assert_eq!(r.status().as_u16(), 200);
            r
        })
        .collect();
    let mut refused = open(TOKEN);
    assert_eq!(refused.status().as_u16(), 429);
    let text = refused.body_mut().read_to_string().unwrap();
    assert!(text.contains("too_many_streams"), "{text}");
    let (other, _) = s.token("viewer", "read", json!({}));
    assert_eq!(
        open(&other).status().as_u16(),
        200,
        "another token's own streams"
    );
    drop(streams);
    let _ = s.json("POST", &format!("/api/v1/jobs/{}/cancel", job["id"]), None);
}

/// Rejections by the framework itself (a path parameter that does not
/// parse, a method a route does not take, an unknown route) come in the
/// one JSON error shape too, and the OpenAPI document declares them.
#[test]
fn every_rejection_uses_the_error_shape_and_is_documented() {
    let s = server();
    for (method, path, status, code) in [
        ("GET", "/api/v1/jobs/not-a-number", 400, "bad_request"),
        ("POST", "/api/v1/jobs/x/cancel", 400, "bad_request"),
        ("DELETE", "/api/v1/jobs", 405, "method_not_allowed"),
        ("GET", "/api/v1/no-such-route", 404, "not_found"),
    ] {
        let (got, text) = s.call(method, path, Some(TOKEN), None);
        assert_eq!(got, status, "{method} {path}: {text}");
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        assert_eq!(error_code(&body), code, "{method} {path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    let (_, doc) = s.json("GET", "/api/v1/openapi.json", None);
    let show = &doc["paths"]["/api/v1/jobs/{id}"]["get"]["responses"];
    for status in ["400", "401", "403", "404", "408", "429"] {
        assert!(
            show.get(status).is_some(),
            "GET /jobs/{{id}} documents {status}: {show}"
        );
    }
    let submit = &doc["paths"]["/api/v1/jobs"]["post"]["responses"];
    for status in ["400", "413", "415", "422"] {
        assert!(
            submit.get(status).is_some(),
            "POST /jobs documents {status}: {submit}"
        );
    }
    let follow = &doc["paths"]["/api/v1/jobs/{id}/logs"]["get"]["responses"];
    assert!(
        follow.get("408").is_none(),
        "streams have no request timeout: {follow}"
    );
}
