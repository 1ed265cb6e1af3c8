//! Deployments as a team runs them: the bundled Compose example
//! (`examples/compose-app`: a web service built from the repository and
//! PostgreSQL) in a git repository of the test's own, followed by a real
//! `slipway serve` against the real Docker engine. A good commit rolls out;
//! a commit that breaks its health check rolls back by itself while the old
//! version keeps answering; a commit whose gate job fails is never deployed;
//! `down` stays down across an engine restart and a push, `up` deploys the
//! head, `rollback` brings the release before back and keeps it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::git;
use crate::support::serve::{
    Server, cli, free_port, get, post_json, request, start, start_with, text, wait_until,
};

const NAME: &str = "shop";

/// The example's files in a fresh git repository on branch `main`.
fn example_repo() -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/compose-app");
    copy_dir(&example, repo.path());
    git(repo.path(), &["init", "-q"]);
    commit(repo.path(), "v1");
    repo
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Commit everything; the new head.
fn commit(repo: &Path, message: &str) -> String {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}

fn deployment(server: &Server) -> Value {
    deployment_named(server, NAME)
}

fn deployment_named(server: &Server, name: &str) -> Value {
    let (code, body) = get(server, &format!("/api/v1/deployments/{name}"));
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// What the web service answers on its published port.
fn web(port: u16) -> Option<String> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut answer = agent
        .get(&format!("http://127.0.0.1:{port}/"))
        .call()
        .ok()?;
    answer.body_mut().read_to_string().ok()
}

/// The deployment's containers, by `docker ps`.
fn containers() -> Vec<String> {
    crate::support::serve::containers_labelled(&format!("io.slipway.deployment={NAME}"))
}

/// Containers of one commit of any deployment.
fn containers_of(commit: &str) -> Vec<String> {
    crate::support::serve::containers_labelled(&format!("io.slipway.commit={commit}"))
}

fn wait_for(server: &Server, what: &str, seconds: u64, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_until(what, seconds, || {
        last = deployment(server);
        done(&last)
    });
    last
}

#[test]
fn a_compose_stack_follows_its_branch_rolls_back_bad_commits_and_stays_down() {
    let repo = example_repo();
    let c1 = git(repo.path(), &["rev-parse", "HEAD"]);
    let server = start(tempfile::tempdir().unwrap());
    let port = free_port();
    // The gate's profile, as the example ships it.
    let profile = std::fs::read_to_string(repo.path().join("slipway.toml")).unwrap();
    let mut profile: Value =
        serde_json::to_value(toml::from_str::<toml::Table>(&profile).unwrap()).unwrap();
    profile["name"] = "compose-app".into();
    let (code, body) = post_json(&server, "/api/v1/profiles", &profile);
    assert_eq!(code, 201, "{body}");

    let out = cli(
        &server,
        &[
            "deploy",
            "add",
            NAME,
            repo.path().to_str().unwrap(),
            "--branch",
            "main",
            "--gate",
            "fast",
            "--gate-profile",
            "compose-app",
            "--poll",
            "1",
            "--health-timeout",
            "90",
            "--env",
            &format!("WEB_PORT={port}"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    // The first commit: gate passes, PostgreSQL becomes healthy, then web.
    let d = wait_for(&server, "the first release healthy", 600, |d| {
        d["sync"] == "synced" && d["health"] == "healthy"
    });
    assert_eq!(d["running"]["commit"], c1.as_str(), "{d:#}");
    assert_eq!(d["history"][0]["result"], "deployed", "{d:#}");
    assert!(d["history"][0]["gate_job"].is_u64(), "{d:#}");
    assert_eq!(web(port).as_deref(), Some("shop 1.0.0\n"));
    let services: Vec<&str> = d["running"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["db", "web"], "dependencies start first");
    // Two pods (holder + service each), labelled with the deployment and commit.
    assert_eq!(containers().len(), 4, "{:?}", containers());
    let status = text(&cli(&server, &["deploy", "status", NAME]));
    assert!(status.contains("sync synced, health healthy"), "{status}");

    // The web container killed from outside: the supervisor brings it back.
    let listed = std::process::Command::new("docker")
        .args([
            "ps",
            "--filter",
            &format!("label=io.slipway.deployment={NAME}"),
            "--filter",
            "label=io.slipway.role=deployment",
            "--format",
            "{{.ID}} {{.Label \"io.slipway.service\"}}",
        ])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let web_id = listed
        .lines()
        .find(|l| l.contains(&format!(" {NAME}-web-")))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("the web container: {listed}"))
        .to_owned();
    let killed = std::process::Command::new("docker")
        .args(["kill", &web_id])
        .output()
        .unwrap();
    assert!(killed.status.success(), "{killed:?}");
    wait_until("web answering again after the kill", 180, || {
        web(port).as_deref() == Some("shop 1.0.0\n")
    });
    let d = wait_for(&server, "healthy again after the kill", 120, |d| {
        d["health"] == "healthy"
    });
    assert_eq!(
        d["running"]["commit"],
        c1.as_str(),
        "the same release: {d:#}"
    );

    // A commit that breaks the web service's health check: rolled back by
    // itself; the old version answers throughout where it could stay up
    // (web publishes a port, so it is stopped first and brought back).
    std::fs::write(repo.path().join("web/BROKEN"), "").unwrap();
    std::fs::write(repo.path().join("web/VERSION"), "1.1.0\n").unwrap();
    let c2 = commit(repo.path(), "v1.1 with a broken health check");
    let d = wait_for(&server, "the broken commit rolled back", 600, |d| {
        d["history"][0]["commit"] == c2.as_str() && d["sync"] == "failed"
    });
    assert_eq!(d["history"][0]["result"], "rolled_back", "{d:#}");
    assert_eq!(d["running"]["commit"], c1.as_str());
    assert_eq!(d["failed_commit"], c2.as_str());
    let reason = d["reason"].as_str().unwrap();
    assert!(
        reason.contains("rolled back to") && reason.contains("web"),
        "{reason}"
    );
    wait_until("the old version answering again", 120, || {
        web(port).as_deref() == Some("shop 1.0.0\n")
    });
    wait_for(&server, "healthy again", 120, |d| d["health"] == "healthy");
    // One attempt per commit: polling on does not try it again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(deployment(&server)["history"].as_array().unwrap().len(), 2);

    // A commit whose tests fail: its gate job fails, nothing is touched.
    std::fs::remove_file(repo.path().join("web/BROKEN")).unwrap();
    std::fs::write(repo.path().join("web/VERSION"), "not-a-version\n").unwrap();
    let c3 = commit(repo.path(), "a version the tests refuse");
    let d = wait_for(&server, "the gate failing", 600, |d| {
        d["history"][0]["commit"] == c3.as_str() && d["sync"] == "failed"
    });
    assert_eq!(d["history"][0]["result"], "gate_failed", "{d:#}");
    assert_eq!(d["running"]["commit"], c1.as_str());
    assert_eq!(web(port).as_deref(), Some("shop 1.0.0\n"));
    let history = text(&cli(&server, &["deploy", "history", NAME]));
    assert!(
        history.contains("gate_failed") && history.contains("rolled_back"),
        "{history}"
    );

    // down: everything stops, and stays stopped across an engine restart.
    let out = cli(&server, &["deploy", "down", NAME]);
    assert!(out.status.success(), "{}", text(&out));
    wait_until("the stack's containers gone", 120, || {
        containers().is_empty()
    });
    let state = server.crash();
    let server = start(state);
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        containers().is_empty(),
        "a stopped stack stays down: {:?}",
        containers()
    );
    let d = deployment(&server);
    assert_eq!(
        (d["down"].as_bool(), d["health"].as_str()),
        (Some(true), Some("missing"))
    );

    // A fixed commit is not deployed while down; `up` deploys it.
    std::fs::write(repo.path().join("web/VERSION"), "1.2.0\n").unwrap();
    let c4 = commit(repo.path(), "1.2.0");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        containers().is_empty(),
        "down stays down when the branch moves"
    );
    let out = cli(&server, &["deploy", "up", NAME]);
    assert!(out.status.success(), "{}", text(&out));
    let d = wait_for(&server, "the fixed commit deployed by `up`", 600, |d| {
        d["running"]["commit"] == c4.as_str() && d["health"] == "healthy"
    });
    assert_eq!(d["previous"]["commit"], c1.as_str(), "{d:#}");
    assert_eq!(web(port).as_deref(), Some("shop 1.2.0\n"));

    // `rollback` brings 1.0.0 back, and the branch's head is not rolled out again.
    let out = cli(&server, &["deploy", "rollback", NAME]);
    assert!(out.status.success(), "{}", text(&out));
    let d = wait_for(&server, "rolled back by hand", 600, |d| {
        d["running"]["commit"] == c1.as_str() && d["history"][0]["cause"] == "rollback"
    });
    assert_eq!(d["history"][0]["result"], "deployed", "{d:#}");
    wait_until("1.0.0 answering after the rollback", 120, || {
        web(port).as_deref() == Some("shop 1.0.0\n")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        deployment(&server)["running"]["commit"],
        c1.as_str(),
        "the head is pinned out"
    );

    // Old checkouts go: the running and previous releases' stay.
    let deploy_checkouts = |server: &Server| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(server.state().join("checkouts"))
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(&format!("deploy-{NAME}-")))
            .collect();
        names.sort();
        names
    };
    let mut kept = vec![
        format!("deploy-{NAME}-{}", &c1[..12]),
        format!("deploy-{NAME}-{}", &c4[..12]),
    ];
    kept.sort();
    assert_eq!(deploy_checkouts(&server), kept);

    // Removing it removes its services and checkouts; bad input is refused
    // with its field.
    let (code, _) = request(
        &server,
        "DELETE",
        &format!("/api/v1/deployments/{NAME}"),
        None,
    );
    assert_eq!(code, 204);
    assert_eq!(deploy_checkouts(&server), Vec::<String>::new());
    let (code, body) = post_json(
        &server,
        "/api/v1/deployments",
        &json!({"name": "Bad_Name", "repository": "", "branch": "main"}),
    );
    assert_eq!(code, 422, "{body}");
    assert!(body.to_string().contains("\"field\":\"name\""), "{body}");
    let _: PathBuf = repo.path().to_owned();
}

/// Each request a receiver got: its path and JSON body.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>;

/// A receiver on loopback answering 201: its URL and what it got.
fn receiver() -> (String, Received) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let path = line.split(' ').nth(1).unwrap_or("").to_owned();
            let mut len = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            seen.lock()
                .unwrap()
                .push((path, serde_json::from_slice(&body).unwrap_or(Value::Null)));
            let _ = stream.write_all(
                b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (url, got)
}

/// Loopback receivers are allowed by name, as an operator would allow them.
const ENGINE_ENV: &[(&str, &str)] = &[
    ("SLIPWAY_OUTBOUND__ALLOW_HOSTS", "[\"127.0.0.1\"]"),
    (
        "SLIPWAY_TEST_DEPLOY_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ),
];

#[test]
fn a_rollout_cut_short_by_a_crash_is_undone_by_the_next_engine() {
    let name = "crashy";
    let repo = example_repo();
    let c1 = git(repo.path(), &["rev-parse", "HEAD"]);
    let server = start_with(tempfile::tempdir().unwrap(), ENGINE_ENV);
    let port = free_port();
    // Its rollouts are announced to a callback receiver and, as commit
    // statuses, to a fake forge.
    let (hook, hooked) = receiver();
    let (forge, statuses) = receiver();
    let (code, body) = post_json(
        &server,
        "/api/v1/deployments",
        &json!({
            "name": name, "repository": repo.path().to_str().unwrap(), "branch": "main",
            "poll_s": 1, "health_timeout_s": 300, "env": {"WEB_PORT": port.to_string()},
            "callbacks": [{"url": format!("{hook}/deploys"), "secret": "env:SLIPWAY_TEST_DEPLOY_SECRET"}],
            "forge": {"kind": "github", "api_url": forge, "token": "env:SLIPWAY_TEST_DEPLOY_SECRET", "repo": "acme/shop"},
        }),
    );
    assert_eq!(code, 201, "{body}");
    let healthy = |server: &Server| {
        let d = deployment_named(server, name);
        d["sync"] == "synced" && d["health"] == "healthy"
    };
    wait_until("the first release healthy", 600, || healthy(&server));
    wait_until("the first rollout announced", 60, || {
        hooked.lock().unwrap().len() >= 2 && statuses.lock().unwrap().len() >= 2
    });
    {
        let hooked = hooked.lock().unwrap();
        let types: Vec<&str> = hooked
            .iter()
            .map(|(_, b)| b["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["deployment.deploying", "deployment.deployed"],
            "{hooked:?}"
        );
        assert_eq!(hooked[1].1["data"]["commit"], c1.as_str());
        assert_eq!(hooked[1].0, "/deploys");
        let statuses = statuses.lock().unwrap();
        assert_eq!(statuses[0].0, format!("/repos/acme/shop/statuses/{c1}"));
        let states: Vec<&str> = statuses
            .iter()
            .map(|(_, b)| b["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["pending", "success"], "{statuses:?}");
        assert_eq!(statuses[1].1["context"], format!("slipway/deploy/{name}"));
    }

    // A broken web: its rollout waits (up to 300 s) for a health that never
    // comes; the engine dies meanwhile, the new web running.
    std::fs::write(repo.path().join("web/BROKEN"), "").unwrap();
    let c2 = commit(repo.path(), "broken, then a crash");
    wait_until("the broken web started", 300, || {
        deployment_named(&server, name)["sync"] == "deploying" && containers_of(&c2).len() == 2
    });
    let state = server.crash();
    let server = start_with(state, ENGINE_ENV);

    // The next engine undoes it: the new version goes, the old one is back,
    // never both; and the commit is not tried again.
    let d = wait_until_value(&server, name, "the interrupted rollout undone", 300, |d| {
        d["sync"] == "failed" && d["health"] == "healthy"
    });
    assert_eq!(d["running"]["commit"], c1.as_str(), "{d:#}");
    assert_eq!(d["failed_commit"], c2.as_str(), "{d:#}");
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .contains("interrupted by an engine restart"),
        "{d:#}"
    );
    wait_until("the broken version's containers gone", 120, || {
        containers_of(&c2).is_empty()
    });
    wait_until("1.0.0 answering again", 120, || {
        web(port).as_deref() == Some("shop 1.0.0\n")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(containers_of(&c2).is_empty(), "not tried again");
    // Its receivers heard it begin, and how it ended.
    wait_until("the interrupted rollout announced", 60, || {
        hooked
            .lock()
            .unwrap()
            .iter()
            .any(|(_, b)| b["type"] == "deployment.failed" && b["data"]["commit"] == c2.as_str())
    });
    let hooked = hooked.lock().unwrap().clone();
    assert!(
        hooked.iter().any(|(_, b)| b["type"] == "deployment.deploying" && b["data"]["commit"] == c2.as_str()),
        "{hooked:?}"
    );
    let (code, _) = request(
        &server,
        "DELETE",
        &format!("/api/v1/deployments/{name}"),
        None,
    );
    assert_eq!(code, 204);
}

fn wait_until_value(
    server: &Server,
    name: &str,
    what: &str,
    seconds: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    wait_until(what, seconds, || {
        last = deployment_named(server, name);
        done(&last)
    });
    last
}

/// Compose files the engine must refuse, each as a new commit of one
/// deployment's branch, against the live engine: the rollout of each fails
/// with the file, its line and what is wrong, and nothing is started.
#[test]
fn bad_compose_files_are_refused_before_anything_starts() {
    let name = "refused";
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir(repo.path().join("app")).unwrap();
    let app = "services:\n  app:\n    image: slipway-test/busybox:1\n    command: [\"sleep\", \"3600\"]\n";
    let cases = [
        // An unknown key, by name and line.
        (
            format!("{app}    privileged: true\n"),
            ["compose.yaml:5:", "`privileged` is not supported"],
        ),
        // YAML that does not parse (libyaml sees the missing `]` a line later).
        (
            "services:\n  app:\n    image: [busybox\n  db:\n".to_owned(),
            ["compose.yaml:4:", "flow sequence"],
        ),
        // A bind mount of a host path outside the checkout.
        (
            format!("{app}    volumes:\n      - /etc:/host-etc\n"),
            ["compose.yaml:6:", "absolute path"],
        ),
        // A build context that escapes the repository.
        (
            "services:\n  app:\n    build: ../elsewhere\n".to_owned(),
            ["compose.yaml:3:", "leads outside"],
        ),
        // A service that depends on itself.
        (
            format!("{app}    depends_on:\n      - app\n"),
            ["compose.yaml:6:", "`app` depends on itself"],
        ),
    ];
    std::fs::write(repo.path().join("compose.yaml"), &cases[0].0).unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    let mut head = commit(repo.path(), "case 0");
    let server = start(tempfile::tempdir().unwrap());
    let (code, body) = post_json(
        &server,
        "/api/v1/deployments",
        &json!({"name": name, "repository": repo.path().to_str().unwrap(), "branch": "main", "poll_s": 1}),
    );
    assert_eq!(code, 201, "{body}");
    for (i, (text, words)) in cases.iter().enumerate() {
        if i > 0 {
            std::fs::write(repo.path().join("compose.yaml"), text).unwrap();
            head = commit(repo.path(), &format!("case {i}"));
        }
        let d = wait_until_value(&server, name, &format!("case {i} refused"), 120, |d| {
            d["history"][0]["commit"] == head.as_str() && d["history"][0]["result"] == "failed"
        });
        assert_eq!(d["sync"], "failed", "{d:#}");
        let reason = d["reason"].as_str().unwrap();
        for w in words {
            assert!(reason.contains(w), "case {i}: `{w}` in: {reason}");
        }
        assert!(
            crate::support::serve::containers_labelled(&format!("io.slipway.deployment={name}"))
                .is_empty(),
            "case {i}: nothing started"
        );
    }
    // 409 while a poll's rollout attempt is under way: the API's "try again".
    let mut code = 0;
    for _ in 0..50 {
        code = request(
            &server,
            "DELETE",
            &format!("/api/v1/deployments/{name}"),
            None,
        )
        .0;
        if code != 409 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(code, 204);
}

/// A deployment's secret, named by reference, reaches the service that uses
/// it as an `environment` value, and nothing else: not the deployment or
/// the service as the API shows them, not the engine's state on disk, not
/// the service's log (where the service prints it, it reads `[redacted]`).
#[test]
fn a_deployment_secret_reaches_its_service_and_nowhere_else() {
    let name = "secretive";
    let value = "s3cr3t-Value-7f9a21";
    let secret_dir = tempfile::tempdir().unwrap();
    let secret_file = secret_dir.path().join("api-token");
    std::fs::write(&secret_file, value).unwrap();
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(
        repo.path().join("compose.yaml"),
        "services:\n  app:\n    image: slipway-test/busybox:1\n    environment:\n      TOKEN: ${API_TOKEN}\n      PLAIN: visible\n    command: [\"sh\", \"-c\", \"echo token=$$TOKEN plain=$$PLAIN; sleep 3600\"]\n",
    )
    .unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    commit(repo.path(), "app with a secret");
    let state = tempfile::tempdir().unwrap();
    let state_path = state.path().to_owned();
    let server = start(state);
    let out = cli(
        &server,
        &[
            "deploy",
            "add",
            name,
            repo.path().to_str().unwrap(),
            "--poll",
            "1",
            "--secret",
            &format!("API_TOKEN=file:{}", secret_file.display()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let d = wait_until_value(&server, name, "the service healthy", 180, |d| {
        d["sync"] == "synced" && d["health"] == "healthy"
    });
    let service = d["running"]["services"][0]["spec"]["name"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("the managed service's name: {d:#}"));

    // It reached the container.
    let id = crate::support::serve::containers_labelled(&format!("io.slipway.deployment={name}"))
        .into_iter()
        .find(|id| {
            let out = std::process::Command::new("docker")
                .args(["exec", id, "sh", "-c", "echo $TOKEN"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim() == value
        });
    assert!(id.is_some(), "a container of the deployment has TOKEN set");

    // The log has the line, redacted.
    let mut log = String::new();
    wait_until("the service's line in its log", 30, || {
        let (_, body) = get(&server, &format!("/api/v1/services/{service}/logs"));
        log = body;
        log.contains("plain=visible")
    });
    assert!(log.contains("token=[redacted]"), "{log}");

    // Nowhere else.
    for path in [
        format!("/api/v1/deployments/{name}"),
        "/api/v1/services".to_owned(),
        format!("/api/v1/services/{service}"),
        format!("/api/v1/services/{service}/logs"),
        format!("/api/v1/deployments/{name}/logs"),
    ] {
        let (code, body) = get(&server, &path);
        assert_eq!(code, 200, "{path}: {body}");
        assert!(!body.contains(value), "{path} shows the secret: {body}");
    }
    assert!(
        d["spec"]["secrets"]["API_TOKEN"]
            .as_str()
            .is_some_and(|r| r.starts_with("file:")),
        "the reference is kept: {d:#}"
    );
    let mut stack = vec![state_path];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                assert!(
                    !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                    "{} holds the secret",
                    path.display()
                );
            }
        }
    }
    let (code, _) = request(
        &server,
        "DELETE",
        &format!("/api/v1/deployments/{name}"),
        None,
    );
    assert_eq!(code, 204);
}

/// Service names of a deployment's running containers (holders left out).
fn services_running(name: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "--filter",
            &format!("label=io.slipway.deployment={name}"),
            "--filter",
            "label=io.slipway.role=deployment",
            "--format",
            "{{.Label \"io.slipway.service\"}}",
        ])
        .output()
        .unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('-').nth(1).unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

/// A service that leaves the Compose file keeps running (and stays in the
/// release) until the deployment says `prune = true`; the next rollout then
/// removes it.
#[test]
fn a_service_removed_from_the_file_stays_until_prune() {
    let name = "pruned";
    let repo = tempfile::tempdir().unwrap();
    let service = |svc: &str| {
        format!("  {svc}:\n    image: slipway-test/busybox:1\n    command: [\"sleep\", \"3600\"]\n")
    };
    std::fs::write(
        repo.path().join("compose.yaml"),
        format!("services:\n{}{}", service("app"), service("extra")),
    )
    .unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    commit(repo.path(), "app and extra");
    let server = start(tempfile::tempdir().unwrap());
    let spec = json!({"name": name, "repository": repo.path().to_str().unwrap(), "branch": "main", "poll_s": 1});
    let (code, body) = post_json(&server, "/api/v1/deployments", &spec);
    assert_eq!(code, 201, "{body}");
    wait_until_value(&server, name, "both services running", 180, |d| {
        d["sync"] == "synced" && d["health"] == "healthy"
    });
    assert_eq!(services_running(name), ["app", "extra"]);

    // `extra` leaves the file: it keeps running, and stays in the release.
    std::fs::write(
        repo.path().join("compose.yaml"),
        format!("services:\n{}", service("app")),
    )
    .unwrap();
    let c2 = commit(repo.path(), "extra goes");
    let d = wait_until_value(&server, name, "the second commit deployed", 180, |d| {
        d["running"]["commit"] == c2.as_str() && d["sync"] == "synced"
    });
    let released: Vec<&str> = d["running"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(released, ["app", "extra"], "{d:#}");
    assert_eq!(services_running(name), ["app", "extra"]);

    // With prune, the next rollout removes it.
    let mut pruning = spec.clone();
    pruning["prune"] = true.into();
    let (code, body) = request(
        &server,
        "PUT",
        &format!("/api/v1/deployments/{name}"),
        Some(("application/json", pruning.to_string().as_bytes())),
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = request(
        &server,
        "POST",
        &format!("/api/v1/deployments/{name}/up"),
        None,
    );
    assert!(code == 200 || code == 202, "{code} {body}");
    let d = wait_until_value(&server, name, "extra pruned", 180, |d| {
        d["running"]["services"]
            .as_array()
            .is_some_and(|s| s.len() == 1)
            && d["sync"] == "synced"
    });
    assert_eq!(d["running"]["services"][0]["name"], "app", "{d:#}");
    wait_until("extra's container gone", 60, || {
        services_running(name) == ["app"]
    });
    let (code, _) = request(
        &server,
        "DELETE",
        &format!("/api/v1/deployments/{name}"),
        None,
    );
    assert_eq!(code, 204);
}
