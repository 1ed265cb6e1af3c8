//! Workspaces as users drive them: the real `slipway serve`, its HTTP API
//! and `slipway workspace` commands, against the real Docker engine, with
//! real pytest in a Python image and the bundled junit-xml validator.
//! Needs Docker; fails loudly without it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::serve::{Server, cli, request, start_with, text};

/// A git repository with `files` and `links` (path → target), committed.
fn git_repo(files: &[(&str, &str)], links: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    for (path, target) in links {
        std::os::unix::fs::symlink(target, dir.path().join(path)).unwrap();
    }
    for args in [
        vec!["init", "-q"],
        vec!["add", "-A"],
        vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "base",
        ],
    ] {
        let out = Command::new("git")
            .args(&args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    dir
}

/// A Python project with pytest (from Debian, so no registry is needed).
fn python_repo() -> tempfile::TempDir {
    git_repo(
        &[
            (
                "Dockerfile",
                "FROM python:3.11-slim\n\
             RUN apt-get update && apt-get install -y --no-install-recommends python3-pytest \
             && rm -rf /var/lib/apt/lists/*\n\
             RUN useradd --uid 1000 --create-home app\n\
             WORKDIR /workspace\n",
            ),
            (
                "pyproject.toml",
                "[project]\nname = \"calc\"\nversion = \"0.1.0\"\nrequires-python = \">=3.10\"\n\n[tool.pytest.ini_options]\ntestpaths = [\"tests\"]\n",
            ),
            ("requirements.txt", "pytest\n"),
            ("calc.py", "def add(a, b):\n    return a + b\n"),
            (
                "tests/test_calc.py",
                "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n",
            ),
        ],
        &[("etc-link", "/etc")],
    )
}

const BREAK_ADD: &str = "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a + b\n+    return a - b\n";

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::Null)
}

fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let bytes = body.to_string();
    let (code, text) = request(
        server,
        "POST",
        path,
        Some(("application/json", bytes.as_bytes())),
    );
    (code, json(&text))
}

fn workspace(server: &Server, id: &str) -> Value {
    json(&request(server, "GET", &format!("/api/v1/workspaces/{id}"), None).1)
}

/// Create over the API and wait until it is no longer preparing.
fn create(server: &Server, body: Value) -> (String, Value) {
    let (code, created) = post(server, "/api/v1/workspaces", &body);
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let w = workspace(server, &id);
        if w["state"] != "preparing" || Instant::now() > deadline {
            return (id, w);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn containers_of(id: &str) -> usize {
    crate::support::serve::containers_labelled(&format!("io.slipway.workspace={id}")).len()
}

fn server(env: &[(&str, &str)]) -> Server {
    start_with(tempfile::tempdir().unwrap(), env)
}

#[test]
fn edit_validate_reset_loop_with_findings_from_the_junit_report() {
    let server = server(&[]);
    let repo = python_repo();

    // Create with the CLI: it waits for `ready` and prints the id.
    let out = cli(
        &server,
        &["workspace", "create", repo.path().to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let w = workspace(&server, &id);
    assert_eq!(w["state"], "ready", "{w}");
    assert!(
        w["planned_by"]
            .as_str()
            .unwrap()
            .starts_with("dockerfile@1.0.0@"),
        "{w}"
    );
    assert_eq!(w["base_sha"].as_str().map(str::len), Some(40), "{w}");
    let path = |rest: &str| format!("/api/v1/workspaces/{id}{rest}");

    // Green at the base commit.
    let (code, green) = post(
        &server,
        &path("/validate"),
        &serde_json::json!({"tier": "full"}),
    );
    assert_eq!(code, 200, "{green}");
    assert_eq!(green["ok"], true, "{green}");
    // No linter configured: the python plugin's syntax check runs first.
    assert_eq!(green["steps"][0]["name"], "compile", "{green}");
    assert_eq!(green["steps"][1]["name"], "pytest");
    assert!(
        green["steps"][1]["output"]
            .as_str()
            .unwrap()
            .contains("2 passed"),
        "{green}"
    );

    // A patch that breaks a test: red, and the findings name it.
    let (code, body) = request(
        &server,
        "POST",
        &path("/patch"),
        Some(("text/x-diff", BREAK_ADD.as_bytes())),
    );
    assert_eq!(code, 200, "{body}");
    let (_, diff) = request(&server, "GET", &path("/diff"), None);
    assert!(
        diff.contains("-    return a + b\n+    return a - b"),
        "{diff}"
    );
    let out = cli(&server, &["workspace", "validate", &id, "--tier", "full"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("tests/test_calc.py:5"),
        "compiler-style findings: {shown}"
    );
    let history = json(&request(&server, "GET", &path("/history"), None).1);
    let red = &history["history"][1];
    assert_eq!(red["ok"], false, "{red}");
    let findings = red["steps"][1]["findings"].as_array().unwrap();
    let failing: Vec<&Value> = findings
        .iter()
        .filter(|f| f["severity"] == "error")
        .collect();
    assert_eq!(failing.len(), 1, "one failing test: {findings:?}");
    assert_eq!(failing[0]["file"], "tests/test_calc.py");
    assert_eq!(failing[0]["line"], 5);
    assert_ne!(red["diff_sha256"], history["history"][0]["diff_sha256"]);

    // A patch that does not apply: 409 naming the hunk, nothing changed.
    let stale = BREAK_ADD.replace("return a + b", "return a * b");
    let (code, body) = request(
        &server,
        "POST",
        &path("/patch"),
        Some(("text/x-diff", stale.as_bytes())),
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("calc.py"), "{body}");
    assert_eq!(
        request(&server, "GET", &path("/diff"), None).1,
        diff,
        "unchanged"
    );

    // Files: write, read, delete; paths that leave the checkout are refused.
    let put = |p: &str, bytes: &[u8]| {
        request(
            &server,
            "PUT",
            &path(&format!("/files/{p}")),
            Some(("application/octet-stream", bytes)),
        )
    };
    assert_eq!(put("notes/todo.txt", b"fix add\n").0, 201);
    assert_eq!(put("notes/todo.txt", b"fix add!\n").0, 204);
    assert_eq!(
        request(&server, "GET", &path("/files/notes/todo.txt"), None),
        (200, "fix add!\n".into())
    );
    assert_eq!(
        request(&server, "DELETE", &path("/files/notes/todo.txt"), None).0,
        204
    );
    assert_eq!(
        request(&server, "GET", &path("/files/notes/todo.txt"), None).0,
        404
    );
    for (bad, why) in [
        ("%2E%2E/outside.txt", "`..`"),
        ("%2Fetc%2Fpasswd", "absolute"),
        ("etc-link/passwd", "symlink"),
        (".git/config", "`.git`"),
    ] {
        let (code, body) = put(bad, b"x");
        assert_eq!(code, 422, "{bad}: {body}");
        assert!(body.contains(why), "{bad}: {body}");
    }
    // A body past 1 MiB, sent as curl sends large bodies (`Expect:
    // 100-continue`): the server refuses it from its length without reading
    // it. (A client that sends it all at once may see the connection close
    // under its write, after the 413.)
    let big = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(big.path(), vec![b'x'; 2 << 20]).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .args([
            "-H",
            &format!("Authorization: Bearer {}", crate::support::serve::TOKEN),
        ])
        .args(["-H", "Content-Type: application/octet-stream"])
        .args(["-H", "Expect: 100-continue"])
        .arg("--data-binary")
        .arg(format!("@{}", big.path().display()))
        .arg(format!("{}{}", server.url, path("/files/big.bin")))
        .output()
        .unwrap();
    assert_eq!(
        text(&out).trim(),
        "413",
        "a body past 1 MiB: {}",
        text(&out)
    );

    // Reset: back to the base commit, green again.
    let out = cli(&server, &["workspace", "reset", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(request(&server, "GET", &path("/diff"), None).1, "");
    let (_, again) = post(
        &server,
        &path("/validate"),
        &serde_json::json!({"tier": "full"}),
    );
    assert_eq!(again["ok"], true, "{again}");
    assert_eq!(again["diff_sha256"], history["history"][0]["diff_sha256"]);

    // Full runs are capped (3 by default); the fast tier is not.
    let (code, body) = post(
        &server,
        &path("/validate"),
        &serde_json::json!({"tier": "full"}),
    );
    assert_eq!(code, 429, "{body}");
    let (code, fast) = post(
        &server,
        &path("/validate"),
        &serde_json::json!({"tier": "fast"}),
    );
    assert_eq!((code, &fast["ok"]), (200, &Value::Bool(true)), "{fast}");

    let list = text(&cli(&server, &["workspace", "list"]));
    assert!(list.contains(&id) && list.contains("ready"), "{list}");
    let out = cli(&server, &["workspace", "rm", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (code, body) = post(&server, &path("/validate"), &serde_json::json!({}));
    assert_eq!(code, 410, "{body}");
    assert_eq!(containers_of(&id), 0, "nothing of the workspace is left");
    assert_eq!(
        request(&server, "GET", "/api/v1/workspaces/ws-nope", None).0,
        404
    );
}

/// A busybox repo whose steps the profile names: quick to prepare.
fn busybox_repo(server: &Server, profile: &str, fast: &[&str], full: &[&str]) -> tempfile::TempDir {
    let repo = git_repo(
        &[
            (
                "Dockerfile",
                "FROM slipway-test/busybox:1\nWORKDIR /workspace\n",
            ),
            ("app.txt", "app\n"),
        ],
        &[],
    );
    let body = serde_json::json!({"name": profile, "validation": {"fast": fast, "full": full}})
        .to_string();
    let (code, text) = request(
        server,
        "POST",
        "/api/v1/profiles",
        Some(("application/json", body.as_bytes())),
    );
    assert_eq!(code, 201, "{text}");
    repo
}

#[test]
fn faults_busy_timeouts_caps_outside_kills_and_engine_restarts() {
    let server = server(&[("SLIPWAY_WORKSPACES__MAX_OPEN", "2")]);
    let repo = busybox_repo(
        &server,
        "slow",
        &["sleep 1; echo fast-done"],
        &["echo started; sleep 600"],
    );
    let spec = serde_json::json!({
        "repository": repo.path().to_str().unwrap(), "commit": "HEAD", "profile": "slow", "timeout_s": 2,
    });
    let (id, w) = create(&server, spec.clone());
    assert_eq!(w["state"], "ready", "{w}");
    let path = |rest: &str| format!("/api/v1/workspaces/{id}{rest}");

    // Two validate calls at once: one runs, the other is refused.
    let (a, b) = std::thread::scope(|s| {
        let first = s.spawn(|| {
            post(
                &server,
                &path("/validate"),
                &serde_json::json!({"tier": "fast"}),
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        let second = post(
            &server,
            &path("/validate"),
            &serde_json::json!({"tier": "fast"}),
        );
        (first.join().unwrap(), second)
    });
    assert_eq!(a.0, 200, "{}", a.1);
    assert_eq!(b.0, 409, "{}", b.1);
    assert!(b.1.to_string().contains("never interleave"), "{}", b.1);

    // A step that never ends is stopped at its timeout; the workspace stays usable.
    let (code, stuck) = post(
        &server,
        &path("/validate"),
        &serde_json::json!({"tier": "full"}),
    );
    assert_eq!(code, 200, "{stuck}");
    let step = &stuck["steps"][1];
    assert_eq!(
        (step["timed_out"].as_bool(), step["exit_code"].is_null()),
        (Some(true), true),
        "{stuck}"
    );
    assert!(
        step["output"].as_str().unwrap().contains("started"),
        "{stuck}"
    );
    let (code, fine) = post(
        &server,
        &path("/validate"),
        &serde_json::json!({"tier": "fast"}),
    );
    assert_eq!((code, &fine["ok"]), (200, &Value::Bool(true)), "{fine}");

    // The cap on open workspaces.
    let (second, w) = create(&server, spec.clone());
    assert_eq!(w["state"], "ready", "{w}");
    let (code, body) = post(&server, "/api/v1/workspaces", &spec);
    assert_eq!(code, 429, "{body}");

    // Killed from outside: failed with the reason, nothing left.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker kill $(docker ps -q --filter label=io.slipway.workspace={second} --filter label=io.slipway.role=workspace)"
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut w = workspace(&server, &second);
    while w["state"] != "failed" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        w = workspace(&server, &second);
    }
    assert_eq!(w["state"], "failed", "{w}");
    assert!(
        w["reason"]
            .as_str()
            .unwrap()
            .contains("killed from outside"),
        "{w}"
    );
    assert_eq!(containers_of(&second), 0);

    // kill -9 of the engine with two workspaces open. One keeps its
    // containers: the next engine takes it over with its files, history
    // and containers as they were. The other's container is removed while
    // no engine runs: it fails with the reason and nothing of it is left.
    let (gone, w) = create(&server, spec.clone());
    assert_eq!(w["state"], "ready", "{w}");
    let (code, _) = request(
        &server,
        "PUT",
        &path("/files/notes/kept.txt"),
        Some(("application/octet-stream", b"written before the crash\n")),
    );
    assert_eq!(code, 201);
    let containers = |id: &str| {
        let mut ids =
            crate::support::serve::containers_labelled(&format!("io.slipway.workspace={id}"));
        ids.sort();
        ids
    };
    let before = containers(&id);
    let history_before = json(&request(&server, "GET", &path("/history"), None).1)["history"]
        .as_array()
        .map(Vec::len)
        .unwrap_or_default();
    assert!(
        history_before >= 3,
        "validate results so far: {history_before}"
    );
    let state = server.crash();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker rm -f $(docker ps -aq --filter label=io.slipway.workspace={gone} --filter label=io.slipway.role=workspace)"
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let server = crate::support::serve::start_with(state, &[("SLIPWAY_WORKSPACES__MAX_OPEN", "2")]);
    let w = workspace(&server, &id);
    assert_eq!(w["state"], "ready", "{w}\n{}", server.log());
    assert_eq!(containers(&id), before, "the same containers go on");
    let diff = request(&server, "GET", &path("/diff"), None).1;
    assert!(
        diff.contains("+written before the crash"),
        "the edit made before the crash is in the diff: {diff}"
    );
    let (code, again) = post(
        &server,
        &path("/validate"),
        &serde_json::json!({"tier": "fast"}),
    );
    assert_eq!((code, &again["ok"]), (200, &Value::Bool(true)), "{again}");
    assert!(
        again["steps"][0]["output"]
            .as_str()
            .unwrap()
            .contains("fast-done"),
        "{again}"
    );
    let history = json(&request(&server, "GET", &path("/history"), None).1)["history"]
        .as_array()
        .map(Vec::len)
        .unwrap_or_default();
    assert_eq!(history, history_before + 1, "the history goes on");
    let g = workspace(&server, &gone);
    assert_eq!(g["state"], "failed", "{g}");
    assert!(
        g["reason"]
            .as_str()
            .unwrap()
            .contains("the engine restarted and its workspace container is gone"),
        "{g}"
    );
    assert_eq!(containers_of(&gone), 0, "nothing of it is left");
    let (code, body) = post(
        &server,
        &format!("/api/v1/workspaces/{gone}/validate"),
        &serde_json::json!({}),
    );
    assert_eq!(code, 410, "{body}");

    // SIGTERM: the engine closes its open workspaces before it exits.
    let (last, w) = create(&server, spec);
    assert_eq!(w["state"], "ready", "{w}");
    drop(server);
    assert_eq!(
        (containers_of(&last), containers_of(&id)),
        (0, 0),
        "a stopping engine leaves nothing behind"
    );
}

/// A workspace still preparing when the engine is killed cannot be taken
/// over half-made: the next engine fails it with the reason, and nothing of
/// it (containers, checkout) is left.
#[test]
fn a_workspace_preparing_when_the_engine_dies_fails_with_the_reason() {
    let server = server(&[]);
    let repo = git_repo(
        &[
            (
                "Dockerfile",
                "FROM slipway-test/busybox:1\nWORKDIR /workspace\n",
            ),
            ("app.txt", "app\n"),
        ],
        &[],
    );
    let profile = serde_json::json!({
        "name": "slow-setup", "setup": ["echo setting-up; sleep 300"], "validation": {"fast": ["true"]},
    });
    let (code, text) = post(&server, "/api/v1/profiles", &profile);
    assert_eq!(code, 201, "{text}");
    let (code, created) = post(
        &server,
        "/api/v1/workspaces",
        &serde_json::json!({"repository": repo.path().to_str().unwrap(), "commit": "HEAD", "profile": "slow-setup"}),
    );
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    while workspace(&server, &id)["progress"] != "setup" {
        assert!(Instant::now() < deadline, "{}", workspace(&server, &id));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(containers_of(&id) > 0, "its setup runs in its container");
    let state = server.crash();
    assert!(state.path().join("checkouts").join(&id).is_dir());
    let server = crate::support::serve::start(state);
    let w = workspace(&server, &id);
    assert_eq!(w["state"], "failed", "{w}");
    assert!(
        w["reason"]
            .as_str()
            .unwrap()
            .contains("the engine restarted and it was still preparing"),
        "{w}"
    );
    assert_eq!(
        containers_of(&id),
        0,
        "its containers were removed at start"
    );
    assert!(
        !server.state().join("checkouts").join(&id).exists(),
        "its checkout was removed at start"
    );
}

/// The services example in a workspace: its tests count visits in
/// PostgreSQL and Redis, so a second run without a reset fails; `reset`
/// brings both back to their state right after setup.
#[test]
fn reset_brings_postgres_and_redis_back_to_their_state_after_setup() {
    let server = server(&[]);
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/services-app")
        .canonicalize()
        .unwrap();
    let profile = support_profile(&example.join("slipway.toml"), "services-app");
    let (code, body) = request(
        &server,
        "POST",
        "/api/v1/profiles",
        Some(("application/json", profile.as_bytes())),
    );
    assert_eq!(code, 201, "{body}");
    let (id, w) = create(
        &server,
        serde_json::json!({"repository": example.to_str().unwrap(), "commit": "HEAD", "profile": "services-app"}),
    );
    assert_eq!(w["state"], "ready", "{w}");
    let validate = |server: &Server| {
        post(
            server,
            &format!("/api/v1/workspaces/{id}/validate"),
            &serde_json::json!({"tier": "full"}),
        )
        .1
    };
    let first = validate(&server);
    assert_eq!(first["ok"], true, "{first}");
    let second = validate(&server);
    assert_eq!(
        second["ok"], false,
        "the counters kept the first run's visits: {second}"
    );
    assert!(
        second["steps"][1]["output"]
            .as_str()
            .unwrap()
            .contains("test_visits_are_counted_in_both"),
        "{second}"
    );
    // The engine is killed and started again: the workspace is taken
    // over with its services, their reset commands and their watchers.
    let server = crate::support::serve::start(server.crash());
    let w = workspace(&server, &id);
    assert_eq!(w["state"], "ready", "{w}\n{}", server.log());
    let (code, body) = request(
        &server,
        "POST",
        &format!("/api/v1/workspaces/{id}/reset"),
        None,
    );
    assert_eq!(code, 200, "{body}\n{}", server.log());
    let third = validate(&server);
    assert_eq!(
        third["ok"], true,
        "PostgreSQL and Redis are back to their post-setup state: {third}"
    );
    assert_eq!(
        request(&server, "DELETE", &format!("/api/v1/workspaces/{id}"), None).0,
        204
    );
    assert_eq!(containers_of(&id), 0);
}

/// A profile file (TOML) as the JSON body of `POST /api/v1/profiles`.
fn support_profile(path: &Path, name: &str) -> String {
    let table: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut value = serde_json::to_value(table).unwrap();
    value["name"] = name.into();
    value.to_string()
}

#[test]
fn a_malformed_report_keeps_the_output_and_says_why_there_are_no_findings() {
    let server = server(&[]);
    let repo = python_repo();
    let (id, w) = create(
        &server,
        serde_json::json!({"repository": repo.path().to_str().unwrap(), "commit": "HEAD"}),
    );
    assert_eq!(w["state"], "ready", "{w}");
    // pytest writes its JUnit report, then this hook spoils it.
    let conftest = "import pathlib\n\n\ndef pytest_unconfigure(config):\n    report = pathlib.Path('.slipway/junit.xml')\n    if report.exists():\n        report.write_text('<testsuite><testcase name=\"x\"><failure')\n";
    let (code, _) = request(
        &server,
        "PUT",
        &format!("/api/v1/workspaces/{id}/files/conftest.py"),
        Some(("text/x-python", conftest.as_bytes())),
    );
    assert_eq!(code, 201);
    let (code, result) = post(
        &server,
        &format!("/api/v1/workspaces/{id}/validate"),
        &serde_json::json!({"tier": "full"}),
    );
    assert_eq!(code, 200, "{result}");
    let step = &result["steps"][1];
    assert_eq!(step["name"], "pytest", "{result}");
    assert_eq!(step["exit_code"], 0, "{result}");
    assert!(
        step["output"].as_str().unwrap().contains("2 passed"),
        "{result}"
    );
    assert_eq!(step["findings"], serde_json::json!([]));
    let why = step["findings_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("`junit-xml` report could not be read") && why.contains("junit-xml@"),
        "{result}"
    );
    assert_eq!(
        request(&server, "DELETE", &format!("/api/v1/workspaces/{id}"), None).0,
        204
    );
}

#[test]
fn idle_workspaces_are_reclaimed() {
    let server = server(&[]);
    let repo = busybox_repo(&server, "quick", &["true"], &[]);
    let (id, w) = create(
        &server,
        serde_json::json!({
            "repository": repo.path().to_str().unwrap(), "commit": "HEAD", "profile": "quick",
            "idle_timeout_s": 1, "max_lifetime_s": 60,
        }),
    );
    assert_eq!(w["state"], "ready", "{w}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut w = workspace(&server, &id);
    while w["state"] == "ready" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        w = workspace(&server, &id);
    }
    assert_eq!(w["state"], "closed", "{w}");
    assert!(
        w["reason"]
            .as_str()
            .unwrap()
            .contains("idle for more than 1 s"),
        "{w}"
    );
    assert_eq!(containers_of(&id), 0);
    let (code, _) = post(
        &server,
        "/api/v1/workspaces",
        &serde_json::json!({
            "repository": repo.path().to_str().unwrap(), "commit": "HEAD", "idle_timeout_s": 120, "max_lifetime_s": 60,
        }),
    );
    assert_eq!(
        code, 422,
        "an idle timeout longer than the lifetime is refused"
    );
}

/// The loop on the bundled Python example (generated image: pytest
/// comes from PyPI, trusted through the configured CA bundle).
#[test]
fn the_example_python_repo_loop() {
    let bundle = "/etc/ssl/certs/ca-certificates.crt";
    assert!(
        Path::new(bundle).is_file(),
        "{bundle} is missing (Debian's ca-certificates; scripts/setup.sh installs it)"
    );
    let server = server(&[("SLIPWAY_CA_BUNDLE", bundle)]);
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/python-app")
        .canonicalize()
        .unwrap();
    let out = cli(&server, &["workspace", "create", example.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out),
        server.log()
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let validate = |expect: i32| {
        let out = cli(&server, &["workspace", "validate", &id, "--tier", "full"]);
        assert_eq!(out.status.code(), Some(expect), "{}", text(&out));
        text(&out)
    };
    validate(0);
    let patch = "--- a/src/app/__init__.py\n+++ b/src/app/__init__.py\n@@ -1,2 +1,2 @@\n def add(a: int, b: int) -> int:\n-    return a + b\n+    return a * b\n";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), patch).unwrap();
    let out = cli(
        &server,
        &["workspace", "apply", &id, file.path().to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let red = validate(1);
    assert!(
        red.contains("tests/test_add.py:9: error assert 6 == 5"),
        "{red}"
    );
    let out = cli(&server, &["workspace", "reset", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    validate(0);
    let out = cli(&server, &["workspace", "rm", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(containers_of(&id), 0);
}

/// A tier with no steps passes vacuously and says so: an agent's loop must
/// not read `ok: true, steps: []` as a green check.
#[test]
fn an_empty_tier_says_it_checked_nothing() {
    let server = server(&[]);
    let repo = busybox_repo(&server, "no-fast", &[], &["echo full-ran"]);
    let (id, w) = create(
        &server,
        serde_json::json!({
            "repository": repo.path().to_str().unwrap(), "commit": "HEAD", "profile": "no-fast",
        }),
    );
    assert_eq!(w["state"], "ready", "{w}");
    let validate = format!("/api/v1/workspaces/{id}/validate");
    let (code, fast) = post(&server, &validate, &serde_json::json!({"tier": "fast"}));
    assert_eq!(code, 200, "{fast}");
    assert_eq!(fast["steps"], serde_json::json!([]), "{fast}");
    assert_eq!(
        fast["note"], "the fast tier has no steps: running it checks nothing",
        "{fast}"
    );
    let (code, full) = post(&server, &validate, &serde_json::json!({"tier": "full"}));
    assert_eq!(code, 200, "{full}");
    assert_eq!(full["ok"], true, "{full}");
    assert_eq!(full["steps"].as_array().unwrap().len(), 1, "{full}");
    assert_eq!(
        full["note"], "the fast tier has no steps: running it checks nothing",
        "the full tier has its step; the fast one it starts with has none: {full}"
    );
    let out = cli(&server, &["workspace", "validate", &id, "--tier", "fast"]);
    assert!(
        text(&out).contains("note: the fast tier has no steps"),
        "{}",
        text(&out)
    );
    let out = cli(&server, &["workspace", "rm", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// Validation judges the code as it is: a step that rewrites a tracked
/// file and creates another (a linter fixing what it should report) fails,
/// each file is a finding, and the tree is put back as it was; ignored
/// files (build outputs) may be written freely; the next steps do not run.
#[test]
fn a_step_that_changes_files_fails_with_findings_and_its_changes_are_undone() {
    let server = server(&[]);
    let repo = busybox_repo(
        &server,
        "fixer",
        &[
            "mkdir -p build && echo cache > build/out && echo fixed > app.txt && echo new > added.txt",
            "echo never runs",
        ],
        &[],
    );
    std::fs::write(repo.path().join(".gitignore"), "build/\n").unwrap();
    crate::support::git(repo.path(), &["add", ".gitignore"]);
    crate::support::git(repo.path(), &["commit", "-q", "-m", "ignore build"]);
    let (id, w) = create(
        &server,
        serde_json::json!({"repository": repo.path().to_str().unwrap(), "commit": "HEAD", "profile": "fixer"}),
    );
    assert_eq!(w["state"], "ready", "{w}");
    let (code, result) = post(
        &server,
        &format!("/api/v1/workspaces/{id}/validate"),
        &serde_json::json!({"tier": "fast"}),
    );
    assert_eq!(code, 200, "{result}");
    assert_eq!(result["ok"], false, "{result}");
    let steps = result["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "the next step does not run: {result}");
    assert_eq!(
        steps[0]["exit_code"], 0,
        "the step itself exited 0: {result}"
    );
    assert_eq!(
        steps[0]["changed_files"],
        serde_json::json!(["added.txt", "app.txt"]),
        "{result}"
    );
    let findings = steps[0]["findings"].as_array().unwrap();
    assert!(
        findings.iter().any(|f| f["file"] == "app.txt"
            && f["rule"] == "slipway/changed-files"
            && f["message"].as_str().unwrap().contains("was undone")),
        "{result}"
    );
    // Put back: the tracked file as committed, the new one gone.
    let (code, app) = request(
        &server,
        "GET",
        &format!("/api/v1/workspaces/{id}/files/app.txt"),
        None,
    );
    assert_eq!((code, app.as_str()), (200, "app\n"));
    let (code, _) = request(
        &server,
        "GET",
        &format!("/api/v1/workspaces/{id}/files/added.txt"),
        None,
    );
    assert_eq!(code, 404);
    let (_, diff) = request(
        &server,
        "GET",
        &format!("/api/v1/workspaces/{id}/diff"),
        None,
    );
    assert_eq!(diff, "", "nothing differs from the base commit");
    assert_eq!(
        request(&server, "DELETE", &format!("/api/v1/workspaces/{id}"), None).0,
        204
    );
}
