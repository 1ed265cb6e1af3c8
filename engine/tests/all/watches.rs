//! Watches as users set them up: a real `slipway serve`, a git repository
//! of the test's own that commits are pushed to (a bare repository served
//! by path, as `ls-remote` sees any remote), and webhooks signed the way
//! GitHub, GitLab and Standard Webhooks sign them, posted over loopback.
//! Jobs run for exactly the commit the repository reports, through a
//! webhook and through polling; every delivery is explained.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::serve::{
    BUSYBOX, Server, agent, cli, get, job, post_json, start, text, wait_until,
};
use crate::support::{git, raw_post};

/// A bare repository (the "remote") and a clone that pushes to it.
struct Remote {
    _dir: tempfile::TempDir,
    bare: String,
    work: std::path::PathBuf,
}

impl Remote {
    fn new() -> Remote {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("origin.git");
        let work = dir.path().join("work");
        git(
            dir.path(),
            &["init", "-q", "--bare", bare.to_str().unwrap()],
        );
        git(dir.path(), &["init", "-q", work.to_str().unwrap()]);
        std::fs::write(work.join("Dockerfile"), format!("FROM {BUSYBOX}\n")).unwrap();
        git(&work, &["add", "."]);
        git(&work, &["commit", "-q", "-m", "first"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        git(&work, &["push", "-q", "origin", "main"]);
        Remote {
            _dir: dir,
            bare: bare.display().to_string(),
            work,
        }
    }

    /// Commit a change on `branch` and push it; the new commit.
    fn push(&self, branch: &str, text: &str) -> String {
        if git(&self.work, &["branch", "--list", branch]).is_empty() {
            git(&self.work, &["checkout", "-q", "-b", branch]);
        } else {
            git(&self.work, &["checkout", "-q", branch]);
        }
        std::fs::write(self.work.join("change.txt"), text).unwrap();
        git(&self.work, &["add", "."]);
        git(&self.work, &["commit", "-q", "-m", text]);
        git(&self.work, &["push", "-q", "origin", branch]);
        let sha = git(&self.work, &["rev-parse", "HEAD"]);
        git(&self.work, &["checkout", "-q", "main"]);
        sha
    }
}

/// Post `body` to the watch's hook with `headers`; status and answer.
fn hook(server: &Server, id: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
    let mut request = agent()
        .post(format!("{}/hooks/{id}", server.url))
        .header("Content-Type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let mut r = request.send(body).unwrap();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (
        r.status().as_u16(),
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

fn github_push(
    secret: &str,
    delivery: &str,
    reference: &str,
) -> (Vec<(&'static str, String)>, Vec<u8>) {
    // The body names a made-up commit: the watch must not believe it.
    let body = json!({"ref": reference, "after": "1234567890123456789012345678901234567890"})
        .to_string()
        .into_bytes();
    let headers = vec![
        ("X-GitHub-Event", "push".to_owned()),
        ("X-GitHub-Delivery", delivery.to_owned()),
        ("X-Hub-Signature-256", github_signature(secret, &body)),
    ];
    (headers, body)
}

fn watch(server: &Server, id: &str) -> Value {
    serde_json::from_str(&get(server, &format!("/api/v1/watches/{id}")).1).unwrap()
}

fn deliveries(server: &Server, id: &str) -> Vec<Value> {
    serde_json::from_str(&get(server, &format!("/api/v1/watches/{id}/deliveries")).1).unwrap()
}

fn wait_final(server: &Server, id: u64) -> Value {
    let mut last = Value::Null;
    wait_until("the watch's job ends", 120, || {
        last = job(server, id);
        matches!(
            last["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled" | "timed_out" | "dead")
        )
    });
    last
}

#[test]
fn a_push_runs_its_exact_commit_through_a_signed_webhook_and_through_polling() {
    let server = start(tempfile::tempdir().unwrap());
    let remote = Remote::new();
    let (code, created) = post_json(
        &server,
        "/api/v1/watches",
        &json!({"repository": remote.bare, "branch": "main", "poll_interval_s": 10,
                "sources": ["github", "gitlab", "standard"]}),
    );
    assert_eq!(code, 201, "{created}");
    let id = created["watch"]["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    // The first look records the head: nothing runs for what was there.
    let first = &created["watch"]["state"]["refs"]["refs/heads/main"];
    assert!(
        first["head"].is_string() && first["submitted"].is_null(),
        "{created}"
    );
    let shown = get(&server, &format!("/api/v1/watches/{id}")).1;
    assert!(
        !shown.contains(&secret),
        "the secret is shown once: {shown}"
    );

    // A push, then GitHub's webhook: a job for exactly the pushed commit.
    let pushed = remote.push("main", "second");
    let (headers, body) = github_push(&secret, "gh-1", "refs/heads/main");
    let (code, answer) = hook(&server, &id, &headers, &body);
    assert_eq!(code, 202, "{answer}");
    let job_id = answer["job"].as_u64().unwrap();
    assert!(
        answer["verdict"]
            .as_str()
            .unwrap()
            .starts_with(&format!("submitted job {job_id} for {}", &pushed[..12])),
        "{answer}"
    );
    let record = job(&server, job_id);
    assert_eq!(record["spec"]["commit"], pushed.as_str(), "{record}");
    assert_eq!(record["spec"]["labels"]["io.slipway.watch"], id.as_str());
    assert_eq!(record["spec"]["resolved_from"], "refs/heads/main");
    assert_eq!(
        record["trigger"],
        json!({"kind": "watch", "watch": id, "delivery": "gh-1"})
    );
    assert_eq!(wait_final(&server, job_id)["state"], "succeeded");

    // The same delivery again: nothing new.
    let (code, answer) = hook(&server, &id, &headers, &body);
    assert_eq!(
        (code, answer["verdict"].as_str().unwrap()),
        (200, "ignored: duplicate delivery gh-1")
    );

    // A wrong secret: refused, nothing submitted, the reason recorded.
    let (bad_headers, bad_body) = github_push("whsec_guessed", "gh-2", "refs/heads/main");
    let (code, answer) = hook(&server, &id, &bad_headers, &bad_body);
    assert_eq!(code, 401, "{answer}");
    assert!(
        answer["verdict"]
            .as_str()
            .unwrap()
            .starts_with("rejected: bad signature"),
        "{answer}"
    );

    // Another branch, a ping, a GitLab push of the watched branch with no new
    // commit, and a Standard Webhooks delivery ten minutes old.
    let other = remote.push("feature/x", "elsewhere");
    let (headers, body) = github_push(&secret, "gh-3", "refs/heads/feature/x");
    let (code, answer) = hook(&server, &id, &headers, &body);
    assert_eq!(
        (code, answer["verdict"].as_str().unwrap()),
        (200, "ignored: branch feature/x does not match main"),
        "{other}"
    );
    let ping = br#"{"zen":"Keep it logically awesome."}"#;
    let ping_headers = [
        ("X-GitHub-Event", "ping".to_owned()),
        ("X-GitHub-Delivery", "gh-4".to_owned()),
        ("X-Hub-Signature-256", github_signature(&secret, ping)),
    ];
    let (code, answer) = hook(&server, &id, &ping_headers, ping);
    assert_eq!(code, 200, "{answer}");
    assert!(
        answer["verdict"].as_str().unwrap().starts_with("pong"),
        "{answer}"
    );
    let gl_body = json!({"object_kind": "push", "ref": "refs/heads/main"}).to_string();
    let gl_headers = [
        ("X-Gitlab-Event", "Push Hook".to_owned()),
        ("X-Gitlab-Token", secret.clone()),
        ("X-Gitlab-Event-UUID", "gl-1".to_owned()),
    ];
    let (code, answer) = hook(&server, &id, &gl_headers, gl_body.as_bytes());
    assert_eq!(code, 200, "{answer}");
    assert!(
        answer["verdict"].as_str().unwrap().starts_with("unchanged"),
        "{answer}"
    );
    let stale_ts = (slipway::job::now_ms() / 1000 - 600) as i64;
    let sw_body = br#"{"type":"push","ref":"refs/heads/main"}"#;
    let sw_headers = [
        ("webhook-id", "msg-1".to_owned()),
        ("webhook-timestamp", stale_ts.to_string()),
        (
            "webhook-signature",
            slipway::watches::signature::standard_signature(&secret, "msg-1", stale_ts, sw_body),
        ),
    ];
    let (code, answer) = hook(&server, &id, &sw_headers, sw_body);
    assert_eq!(code, 401, "{answer}");
    assert!(
        answer["verdict"]
            .as_str()
            .unwrap()
            .contains("away from the engine's clock"),
        "{answer}"
    );
    // Malformed JSON with a good signature, and 10 MB.
    let junk = b"{not json";
    let junk_headers = [
        ("X-GitHub-Event", "push".to_owned()),
        ("X-GitHub-Delivery", "gh-5".to_owned()),
        ("X-Hub-Signature-256", github_signature(&secret, junk)),
    ];
    assert_eq!(hook(&server, &id, &junk_headers, junk).0, 400);
    let big = vec![b' '; 10 << 20];
    let status = raw_post(&server.url, "", &format!("/hooks/{id}"), big);
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    // Every delivery is listed with its verdict, newest first.
    let listed = deliveries(&server, &id);
    let verdicts: Vec<&str> = listed
        .iter()
        .map(|d| d["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 8, "{verdicts:#?}");
    assert!(
        verdicts[verdicts.len() - 1].starts_with("submitted job"),
        "{verdicts:#?}"
    );
    assert!(
        verdicts
            .iter()
            .any(|v| v.starts_with("rejected: bad signature")),
        "{verdicts:#?}"
    );

    // Polling alone: a push and no webhook runs within the interval.
    let polled = remote.push("main", "third");
    let mut seen = Value::Null;
    wait_until("the poll submits the new head", 30, || {
        seen = watch(&server, &id);
        seen["state"]["refs"]["refs/heads/main"]["submitted"][0] == polled.as_str()
    });
    let job_id = seen["state"]["refs"]["refs/heads/main"]["submitted"][1]
        .as_u64()
        .unwrap();
    let polled_job = job(&server, job_id);
    assert_eq!(polled_job["spec"]["commit"], polled.as_str());
    assert_eq!(polled_job["trigger"], json!({"kind": "watch", "watch": id}));
    // Only the engine says what triggered a job.
    let (code, refused) = post_json(
        &server,
        "/api/v1/jobs",
        &json!({"repository": remote.bare, "commit": polled, "trigger": {"kind": "watch"}}),
    );
    assert_eq!(code, 422, "{refused}");
    assert_eq!(wait_final(&server, job_id)["state"], "succeeded");

    // The CLI shows the same, and a paused watch starts nothing.
    let shown = text(&cli(&server, &["watch", "show", &id]));
    assert!(
        shown.contains("refs/heads/main: ") && shown.contains("rejected: bad signature"),
        "{shown}"
    );
    let listed = text(&cli(&server, &["watch", "list"]));
    assert!(
        listed.contains(&id) && listed.contains("branch main"),
        "{listed}"
    );
    assert!(cli(&server, &["watch", "pause", &id]).status.success());
    remote.push("main", "while paused");
    let (headers, body) = github_push(&secret, "gh-6", "refs/heads/main");
    let (code, answer) = hook(&server, &id, &headers, &body);
    assert_eq!(
        (code, answer["verdict"].as_str().unwrap()),
        (200, "ignored: the watch is paused")
    );
}

#[test]
fn fifty_pushes_during_a_job_run_only_the_newest_next_and_record_the_rest_as_skipped() {
    let server = start(tempfile::tempdir().unwrap());
    let remote = Remote::new();
    let (code, body) = post_json(
        &server,
        "/api/v1/profiles",
        &json!({"name": "slow-watch", "validation": {"fast": ["sleep 15"]}}),
    );
    assert_eq!(code, 201, "{body}");
    let (code, created) = post_json(
        &server,
        "/api/v1/watches",
        &json!({"repository": remote.bare, "branch": "main", "poll_interval_s": 0,
                "job": {"profile": "slow-watch"}}),
    );
    assert_eq!(code, 201, "{created}");
    let id = created["watch"]["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let mut shas = Vec::new();
    let mut answers = Vec::new();
    let burst = std::time::Instant::now();
    for n in 0..50 {
        shas.push(remote.push("main", &format!("push {n}")));
        let (headers, body) = github_push(&secret, &format!("burst-{n}"), "refs/heads/main");
        answers.push(hook(&server, &id, &headers, &body));
    }
    let took = burst.elapsed();
    assert_eq!(answers[0].0, 202, "{:?}", answers[0]);
    let first = answers[0].1["job"].as_u64().unwrap();
    for (code, answer) in &answers[1..] {
        assert_eq!(*code, 200, "{answer}");
        assert!(
            answer["verdict"]
                .as_str()
                .unwrap()
                .starts_with(&format!("waiting: job {first} still runs")),
            "{answer}"
        );
    }
    let state = &watch(&server, &id)["state"]["refs"]["refs/heads/main"];
    assert_eq!(state["pending"], shas[49].as_str(), "{state}");
    assert_eq!(
        state["skipped"],
        json!(shas[1..49]),
        "48 skipped, in order: {state}"
    );
    assert!(
        job(&server, first)["state"] == "running" || job(&server, first)["state"] == "queued",
        "the 50 pushes ({took:?}) all arrived while the first job ran"
    );
    // When the first job ends, the newest commit runs: two jobs for 50 pushes.
    wait_final(&server, first);
    let mut next = Value::Null;
    wait_until("the newest head runs", 30, || {
        next = watch(&server, &id)["state"]["refs"]["refs/heads/main"].clone();
        next["submitted"][0] == shas[49].as_str()
    });
    assert!(next["pending"].is_null(), "{next}");
    let second = next["submitted"][1].as_u64().unwrap();
    assert_eq!(job(&server, second)["spec"]["commit"], shas[49].as_str());
    assert_eq!(wait_final(&server, second)["state"], "succeeded");
}

#[test]
fn a_repository_that_stops_answering_is_shown_on_the_watch_until_it_recovers() {
    let server = start(tempfile::tempdir().unwrap());
    let remote = Remote::new();
    let (code, created) = post_json(
        &server,
        "/api/v1/watches",
        &json!({"repository": remote.bare, "branch": "main", "poll_interval_s": 0}),
    );
    assert_eq!(code, 201, "{created}");
    let id = created["watch"]["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let moved = format!("{}.away", remote.bare);
    std::fs::rename(&remote.bare, &moved).unwrap();
    let (headers, body) = github_push(&secret, "down-1", "refs/heads/main");
    let (code, answer) = hook(&server, &id, &headers, &body);
    assert_eq!(code, 502, "{answer}");
    assert!(
        answer["verdict"]
            .as_str()
            .unwrap()
            .starts_with("failed: looking at"),
        "{answer}"
    );
    let w = watch(&server, &id);
    assert_eq!(w["state"]["failures"], 1, "{w}");
    assert!(
        w["state"]["error"].is_string(),
        "the reason is on the watch: {w}"
    );
    let shown = text(&cli(&server, &["watch", "show", &id]));
    assert!(shown.contains("failing (1 looks in a row)"), "{shown}");
    // A rotated secret: the old one stops verifying at once.
    let (code, rotated) = post_json(&server, &format!("/api/v1/watches/{id}/secret"), &json!({}));
    assert_eq!(code, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert!(
        new_secret.starts_with("whsec_") && new_secret != secret,
        "{rotated}"
    );
    let (headers, body) = github_push(&secret, "down-old", "refs/heads/main");
    assert_eq!(hook(&server, &id, &headers, &body).0, 401, "the old secret");
    let secret = new_secret;
    // It answers again: the next look clears the failure and runs the push.
    std::fs::rename(&moved, &remote.bare).unwrap();
    let pushed = remote.push("main", "after the outage");
    let (headers, body) = github_push(&secret, "down-2", "refs/heads/main");
    let (code, answer) = hook(&server, &id, &headers, &body);
    assert_eq!(code, 202, "{answer}");
    let w = watch(&server, &id);
    assert!(
        w["state"]["error"].is_null() && w["state"]["failures"] == 0,
        "{w}"
    );
    let job_id = answer["job"].as_u64().unwrap();
    assert_eq!(job(&server, job_id)["spec"]["commit"], pushed.as_str());
}

#[test]
fn a_glob_follows_new_branches_and_a_deleted_branch_runs_nothing() {
    let server = start(tempfile::tempdir().unwrap());
    let remote = Remote::new();
    let (code, created) = post_json(
        &server,
        "/api/v1/watches",
        &json!({"repository": remote.bare, "branch": "release/*", "poll_interval_s": 0}),
    );
    assert_eq!(code, 201, "{created}");
    let id = created["watch"]["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    // A branch created after the watch is new: its head runs.
    let sha = remote.push("release/1", "cut");
    let (headers, body) = github_push(&secret, "rel-1", "refs/heads/release/1");
    let (code, answer) = hook(&server, &id, &headers, &body);
    assert_eq!(code, 202, "{answer}");
    let job_id = answer["job"].as_u64().unwrap();
    assert_eq!(job(&server, job_id)["spec"]["commit"], sha.as_str());
    // Deleted: GitHub sends `deleted: true` and an all-zero `after`.
    git(
        &remote.work,
        &["push", "-q", "origin", "--delete", "release/1"],
    );
    let body = json!({"ref": "refs/heads/release/1", "deleted": true,
                      "after": "0000000000000000000000000000000000000000"})
    .to_string()
    .into_bytes();
    let headers = vec![
        ("X-GitHub-Event", "push".to_owned()),
        ("X-GitHub-Delivery", "rel-2".to_owned()),
        ("X-Hub-Signature-256", github_signature(&secret, &body)),
    ];
    let (code, answer) = hook(&server, &id, &headers, &body);
    assert_eq!(
        (code, answer["verdict"].as_str().unwrap()),
        (200, "deleted: nothing to run"),
        "{answer}"
    );
    let state = &watch(&server, &id)["state"]["refs"]["refs/heads/release/1"];
    assert!(
        state["head"].is_null() && state["pending"].is_null(),
        "{state}"
    );
}
