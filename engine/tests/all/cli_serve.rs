//! `slipway run` and `slipway serve` as users run them: the real binary, the
//! Docker runner, the local busybox image. Needs Docker; fails loudly without it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::serve::text;

fn slipway(state: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.env("SLIPWAY_STATE_DIR", state)
        .env_remove("SLIPWAY_CONFIG")
        .env_remove("SLIPWAY_TOKEN")
        .env_remove("SLIPWAY_PLUGINS_DIR");
    cmd
}

/// Remove the package caches jobs of `repo` left (caches outlive jobs on
/// purpose; a test's throwaway repository's should not).
fn remove_caches_of(repo: &Path) {
    let slug = slipway::runner::image::name_component(&repo.file_name().unwrap().to_string_lossy());
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker volume ls -q --filter label=io.slipway.role=cache | grep -- '-{slug}$' | xargs -r docker volume rm -f"
        ))
        .status();
}

/// A throwaway repository; its package caches go with it.
struct Repo(tempfile::TempDir);

impl Repo {
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        remove_caches_of(self.0.path());
    }
}

/// A repo with its own Dockerfile on the test image, and a package.json.
fn repo(scripts: &str) -> Repo {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM slipway-test/busybox:1\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("package.json"),
        format!("{{\"name\": \"x\", \"scripts\": {{{scripts}}}}}"),
    )
    .unwrap();
    Repo(dir)
}

#[test]
fn run_streams_the_job_and_exits_by_its_outcome() {
    let state = tempfile::tempdir().unwrap();
    let red = repo(r#""lint": "eslint .""#);
    let out = slipway(state.path())
        .args(["run", red.path().to_str().unwrap()])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("step 1/1 `lint`: npm run lint") && t.contains("npm: not found"),
        "{t}"
    );
    // Times as a person reads them, then the summary: what a snapshot
    // holds once the times, ids and hashes are masked.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with("+") && l.contains(" slipway  step 1/1 `lint`")),
        "{stdout}"
    );
    assert!(!stdout.contains('\x1b'), "no colour into a pipe: {stdout}");
    let summary = &stdout[stdout.find("\njob ").expect("a summary") + 1..];
    insta::assert_snapshot!(mask(summary), @r"
job <id> failed in <t> (attempt 1)
  reason   step `lint` exited with 127
  image    slipway-runner/<tag> (<built or cache hit>)
  steps
    FAIL lint <t>  exit 127
");

    let green = repo("");
    let out = slipway(state.path())
        .args([
            "run",
            green.path().to_str().unwrap(),
            "--tier",
            "full",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--json prints one object ({e}): {}", text(&out)));
    assert_eq!(record["state"], "succeeded", "{record:#}");
    assert!(record["run"]["image"]["tag"].is_string(), "{record:#}");
    let runs = std::fs::read_dir(state.path().join("runs"))
        .unwrap()
        .count();
    assert_eq!(
        runs, 0,
        "each run removes its own store, logs and checkouts"
    );
}

/// The bundled example: its tests talk to PostgreSQL and Redis services
/// (the `postgres:15` and `redis:7` stand-ins from `scripts/images.sh`).
#[test]
fn the_services_example_runs_its_tests_against_postgres_and_redis() {
    let state = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/services-app");
    let out = slipway(state.path())
        .args([
            "run",
            example.to_str().unwrap(),
            "--tier",
            "full",
            "--profile",
        ])
        .arg(example.join("slipway.toml"))
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    for expected in [
        "readiness by postgres@1.0.0",
        "readiness by redis@1.0.0",
        "service `db` ready after",
        "service `cache` ready after",
        "test_postgres_answers_on_localhost (tests.test_services.ServicesTest.test_postgres_answers_on_localhost) ... ok",
        "test_visits_are_counted_in_both (tests.test_services.ServicesTest.test_visits_are_counted_in_both) ... ok",
        "Ran 3 tests",
    ] {
        assert!(t.contains(expected), "missing `{expected}` in:\n{t}");
    }

    // A profile file with a mistake is refused before anything runs.
    let bad = state.path().join("bad.toml");
    std::fs::write(&bad, "[validation]\nfast = [\"true\"]\nsurprise = 1\n").unwrap();
    let out = slipway(state.path())
        .args(["run", example.to_str().unwrap(), "--profile"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("unknown field `surprise`") && text(&out).contains("bad.toml"),
        "{}",
        text(&out)
    );
}

#[test]
fn serve_takes_jobs_from_the_client_commands_and_stops_on_sigterm() {
    let state = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = slipway(state.path())
        .arg("serve")
        .env("SLIPWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("SLIPWAY_ALLOW_LOCAL_PATHS", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    // No token configured: one was generated, private to the owner.
    let token_file = state.path().join("token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let client = |args: &[&str]| {
        slipway(state.path())
            .args(args)
            .env("SLIPWAY_URL", &url)
            .env("SLIPWAY_TOKEN_FILE", &token_file)
            .output()
            .unwrap()
    };
    let red = repo(r#""lint": "eslint .""#);
    let submitted = client(&["submit", red.path().to_str().unwrap()]);
    assert!(submitted.status.success(), "{}", text(&submitted));
    let mut code = None;
    for _ in 0..300 {
        code = client(&["status", "1"]).status.code();
        if code != Some(3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(code, Some(1), "the job failed (npm is not in the image)");
    let logs = client(&["logs", "1"]);
    assert!(text(&logs).contains("npm: not found"), "{}", text(&logs));

    // /metrics counts the job's step and the plugin calls that planned it.
    let metrics = ureq::get(format!("{url}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in:\n{metrics}"))
    };
    assert!(
        value("slipway_step_duration_seconds_count") >= 1.0,
        "{metrics}"
    );
    assert!(
        value("slipway_plugin_calls_total") >= 2.0,
        "detect and plan: {metrics}"
    );
    assert!(
        value("slipway_plugin_call_duration_seconds_count") >= 2.0,
        "{metrics}"
    );

    let pid = server.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let stopped = Instant::now();
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            assert!(
                status.success(),
                "serve exits cleanly on SIGTERM: {status:?}"
            );
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_takes_the_commit_or_with_dirty_the_working_tree() {
    let state = tempfile::tempdir().unwrap();
    let repo = Repo(tempfile::tempdir().unwrap());
    std::fs::write(
        repo.path().join("Dockerfile"),
        "FROM slipway-test/busybox:1\n",
    )
    .unwrap();
    std::fs::write(repo.path().join("app.txt"), "committed\n").unwrap();
    for args in [
        vec!["init", "-q"],
        vec!["add", "-A"],
        vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "c",
        ],
    ] {
        assert!(
            Command::new("git")
                .args(&args)
                .current_dir(repo.path())
                .status()
                .unwrap()
                .success()
        );
    }
    std::fs::write(repo.path().join("app.txt"), "uncommitted\n").unwrap();
    let profile = state.path().join("p.toml");
    std::fs::write(&profile, "[validation]\nfast = [\"cat app.txt\"]\n").unwrap();
    let run = |dirty: bool| {
        let mut cmd = slipway(state.path());
        cmd.args(["run", repo.path().to_str().unwrap(), "--profile"])
            .arg(&profile);
        if dirty {
            cmd.arg("--dirty");
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        text(&out)
    };
    let clean = run(false);
    assert!(
        clean.lines().any(|l| l.ends_with(" committed")) && !clean.contains("uncommitted"),
        "{clean}"
    );
    let dirty = run(true);
    assert!(
        dirty.lines().any(|l| l.ends_with(" uncommitted")),
        "{dirty}"
    );
    assert!(dirty.contains("uncommitted changes included"), "{dirty}");
}

/// `text` with what differs from run to run masked: durations, job ids and
/// image tags.
fn mask(text: &str) -> String {
    // A duration with the padding before it (its width varies).
    let time = regex::Regex::new(r" +\d+(\.\d+)?(ms|s|m\d\ds|h\d\dm)\b").unwrap();
    let id = regex::Regex::new(r"^job \d+").unwrap();
    let tag = regex::Regex::new(r"slipway-runner/\S+ \((built in \S+|cache hit)\)").unwrap();
    let text = time.replace_all(text, " <t>");
    let text = id.replace_all(&text, "job <id>");
    tag.replace_all(&text, "slipway-runner/<tag> (<built or cache hit>)")
        .into_owned()
}
