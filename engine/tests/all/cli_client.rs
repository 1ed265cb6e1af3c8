//! `slipway submit | jobs | status | logs | cancel` against a real engine
//! on loopback (in-process server with the scripted test executor).

use std::process::{Command, Output};
use std::time::Duration;

use crate::support::serve::text;

const TOKEN: &str = "cli-token";
/// A full SHA: the server takes it as given and never asks the (fake) repository.
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn slipway(base: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.args(args)
        .env("SLIPWAY_URL", base)
        .env(
            "SLIPWAY_STATE_DIR",
            std::env::temp_dir().join("slipway-cli-client-state"),
        )
        .env_remove("SLIPWAY_TOKEN")
        .env_remove("SLIPWAY_TOKEN_FILE");
    if let Some(t) = token {
        cmd.env("SLIPWAY_TOKEN", t);
    }
    let out = cmd.output().unwrap();
    eprintln!(
        "$ slipway {}\nexit {:?}\n{}{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `status` until it stops answering 3 (not finished); its final exit code.
fn final_status(base: &str, id: &str) -> Option<i32> {
    for _ in 0..200 {
        let code = slipway(base, Some(TOKEN), &["status", id]).status.code();
        if code != Some(3) {
            return code;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn submit_status_jobs_and_logs() {
    let server = crate::support::test_server(TOKEN);
    let base = server.base.as_str();
    let out = slipway(
        base,
        Some(TOKEN),
        &[
            "submit",
            "https://example.com/repo.git",
            "--commit",
            SHA,
            "--label",
            "behaviour=succeed",
        ],
    );
    assert!(out.status.success());
    assert!(
        text(&out).starts_with("submitted: job 1 ("),
        "{}",
        text(&out)
    );
    assert_eq!(
        final_status(base, "1"),
        Some(0),
        "status exits 0 for a succeeded job"
    );

    let jobs = slipway(base, Some(TOKEN), &["jobs"]);
    let listing = text(&jobs);
    assert!(
        listing.lines().any(|l| l.starts_with("1 ")
            && l.contains("succeeded")
            && l.contains("https://example.com/repo.git")),
        "{listing}"
    );

    // Stored lines as they are with --raw; for a person, elapsed times.
    let raw = slipway(base, Some(TOKEN), &["logs", "1", "--raw"]);
    assert!(
        text(&raw).contains("stdout running succeed"),
        "{}",
        text(&raw)
    );
    let logs = slipway(base, Some(TOKEN), &["logs", "1"]);
    assert!(
        text(&logs)
            .lines()
            .any(|l| l.trim_start().starts_with("+0ms ")),
        "{}",
        text(&logs)
    );
    let follow = slipway(base, Some(TOKEN), &["logs", "1", "--follow"]);
    assert!(follow.status.success());
    assert!(
        text(&follow).contains("attempt ended: succeeded"),
        "{}",
        text(&follow)
    );

    let json = slipway(base, Some(TOKEN), &["status", "1", "--json"]);
    let record: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(record["state"], "succeeded");
}

#[test]
fn exit_codes_for_failed_pending_and_cancelled_jobs() {
    let server = crate::support::test_server(TOKEN);
    let base = server.base.as_str();
    slipway(
        base,
        Some(TOKEN),
        &[
            "submit",
            "https://example.com/r.git",
            "--commit",
            SHA,
            "--label",
            "behaviour=fail",
        ],
    );
    assert_eq!(
        final_status(base, "1"),
        Some(1),
        "a failed job makes status exit 1"
    );

    slipway(
        base,
        Some(TOKEN),
        &[
            "submit",
            "https://example.com/r.git",
            "--commit",
            SHA,
            "--label",
            "behaviour=hang",
        ],
    );
    assert_eq!(
        slipway(base, Some(TOKEN), &["status", "2"]).status.code(),
        Some(3),
        "a running job: 3"
    );
    let cancel = slipway(base, Some(TOKEN), &["cancel", "2"]);
    assert!(cancel.status.success());
    assert_eq!(
        final_status(base, "2"),
        Some(1),
        "a cancelled job makes status exit 1"
    );
    let again = slipway(base, Some(TOKEN), &["cancel", "2"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again).contains("so it cannot be cancelled (HTTP 409)"),
        "{}",
        text(&again)
    );
}

#[test]
fn token_and_connection_errors_say_what_to_do() {
    let server = crate::support::test_server(TOKEN);
    let base = server.base.as_str();
    let none = slipway(base, None, &["jobs"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        text(&none).contains("no API token: set SLIPWAY_TOKEN"),
        "{}",
        text(&none)
    );
    let wrong = slipway(base, Some("wrong"), &["jobs"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        text(&wrong).contains("the bearer token is not valid"),
        "{}",
        text(&wrong)
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = slipway(&format!("http://127.0.0.1:{port}"), Some(TOKEN), &["jobs"]);
    assert_eq!(unreachable.status.code(), Some(4));
    assert!(
        text(&unreachable).contains("cannot reach Slipway at http://127.0.0.1:"),
        "{}",
        text(&unreachable)
    );

    let bad = slipway(
        base,
        Some(TOKEN),
        &[
            "submit",
            "https://example.com/r.git",
            "--commit",
            SHA,
            "--env",
            "NOEQUALS",
        ],
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("--env `NOEQUALS` is not NAME=VALUE"),
        "{}",
        text(&bad)
    );
    let invalid = slipway(
        base,
        Some(TOKEN),
        &["submit", "../etc", "--commit", &"z".repeat(40)],
    );
    assert_eq!(invalid.status.code(), Some(1));
    assert!(
        text(&invalid).contains("commit:") && text(&invalid).contains("HTTP 422"),
        "{}",
        text(&invalid)
    );
}

#[test]
fn tokens_are_created_once_listed_without_values_and_revoked() {
    let server = crate::support::test_server(TOKEN);
    let base = &server.base;
    let out = slipway(
        base,
        Some(TOKEN),
        &["tokens", "create", "--name", "ci-runner"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let issued = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(issued.starts_with("slw_") && issued.len() == 68, "{issued}");

    // The new token works within its scope (`run`, the default): it lists
    // jobs, not tokens. The list never shows a token's value.
    let out = slipway(base, Some(&issued), &["jobs"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = slipway(base, Some(&issued), &["tokens", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("scope `run`"), "{}", text(&out));
    let out = slipway(base, Some(TOKEN), &["tokens", "list"]);
    let listed = text(&out);
    assert!(
        listed.contains("ci-runner") && listed.contains("active") && listed.contains(" run "),
        "{listed}"
    );
    assert!(
        !listed.contains(&issued[4..]),
        "the value is shown only once: {listed}"
    );
    let id = listed
        .lines()
        .find(|l| l.contains("ci-runner"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let stored = std::fs::read(server.dir.path().join("store.redb")).unwrap();
    assert!(
        !stored.windows(issued.len()).any(|w| w == issued.as_bytes()),
        "the store keeps only the hash"
    );

    // Revoked: refused at once.
    let out = slipway(base, Some(TOKEN), &["tokens", "revoke", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = slipway(base, Some(&issued), &["jobs"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the bearer token is not valid"),
        "{}",
        text(&out)
    );
    let out = slipway(
        base,
        Some(TOKEN),
        &["tokens", "create", "--name", "bad name"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}
