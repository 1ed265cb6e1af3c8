//! Signed callbacks as a receiver sees them: a real `slipway serve` posts a
//! job's final state to an HTTP server of the test's own on loopback,
//! signed with the Standard Webhooks scheme; the test checks the signature
//! with the secret, a receiver that fails before it answers 200, and an
//! engine killed with messages still in its outbox.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::serve::{
    BUSYBOX, Server, dockerfile_repo, get, job, post_json, start_with, wait_until,
};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECRET_VAR: &str = "SLIPWAY_TEST_CALLBACK_SECRET";
/// Receivers and the fake forge listen on loopback, which the outbound
/// policy refuses unless allowed: allowed by name, as an operator would.
const LOOPBACK_ALLOWED: (&str, &str) = ("SLIPWAY_OUTBOUND__ALLOW_HOSTS", "[\"127.0.0.1\"]");

/// A request as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    /// `POST /path HTTP/1.1`.
    line: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// An HTTP receiver on loopback answering with `statuses` in turn (the
/// last one from then on); a status of 0 never answers (the receiver
/// hangs on that request).
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(listener: TcpListener, statuses: Vec<u16>) -> Receiver {
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut headers = BTreeMap::new();
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let request_line = line.trim_end().to_owned();
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = l.split_once(": ") {
                        headers.insert(k.to_ascii_lowercase(), v.to_owned());
                    }
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                seen.lock().unwrap().push(Received {
                    line: request_line,
                    headers,
                    body,
                });
                let status = statuses[n.min(statuses.len() - 1)];
                if status == 0 {
                    // Hang: keep the connection open, answer nothing.
                    std::thread::spawn(move || {
                        std::thread::sleep(std::time::Duration::from_secs(30));
                        drop(stream);
                    });
                    continue;
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { url, got }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

fn submit_with_callback(server: &Server, repo: &std::path::Path, url: &str) -> u64 {
    let (code, body) = post_json(
        server,
        "/api/v1/profiles",
        &json!({"name": "callbacks", "validation": {"fast": ["true"]}}),
    );
    assert!(code == 201 || code == 200, "{body}");
    let (code, body) = post_json(
        server,
        "/api/v1/jobs",
        &json!({"repository": repo, "commit": "HEAD", "profile": "callbacks",
                "callbacks": [{"url": url, "secret": format!("env:{SECRET_VAR}")}]}),
    );
    assert_eq!(code, 201, "{body}");
    body["id"].as_u64().unwrap()
}

fn callbacks_of(server: &Server, id: u64) -> Vec<Value> {
    serde_json::from_str(&get(server, &format!("/api/v1/jobs/{id}/callbacks")).1).unwrap()
}

/// The receiver's check: the signature over `<id>.<timestamp>.<body>`.
fn assert_signed(r: &Received) {
    let id = &r.headers["webhook-id"];
    let timestamp: i64 = r.headers["webhook-timestamp"].parse().unwrap();
    let expected = slipway::watches::signature::standard_signature(SECRET, id, timestamp, &r.body);
    assert_eq!(r.headers["webhook-signature"], expected, "{r:?}");
    let now = (slipway::job::now_ms() / 1000) as i64;
    assert!((now - timestamp).abs() < 300, "{r:?}");
}

#[test]
fn the_final_state_is_signed_and_retried_until_the_receiver_takes_it() {
    let server = start_with(
        tempfile::tempdir().unwrap(),
        &[(SECRET_VAR, SECRET), LOOPBACK_ALLOWED],
    );
    let receiver = Receiver::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        vec![500, 500, 500, 200],
    );
    let repo = dockerfile_repo(&format!("FROM {BUSYBOX}\n"));
    let id = submit_with_callback(&server, repo.path(), &receiver.url);
    wait_until("the job succeeds", 120, || {
        job(&server, id)["state"] == "succeeded"
    });
    // 500 three times (1 s, 2 s, 4 s apart), then 200: delivered once.
    wait_until("the callback is delivered", 60, || {
        callbacks_of(&server, id)
            .first()
            .is_some_and(|c| c["delivered_ms"].is_u64())
    });
    let got = receiver.received();
    assert_eq!(got.len(), 4, "{got:?}");
    let ids: Vec<&String> = got.iter().map(|r| &r.headers["webhook-id"]).collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one message, retried: {ids:?}"
    );
    for r in &got {
        assert_signed(r);
    }
    let body: Value = serde_json::from_slice(&got[3].body).unwrap();
    assert_eq!(body["type"], "job.succeeded", "{body}");
    assert_eq!(body["data"]["id"], id);
    let entry = &callbacks_of(&server, id)[0];
    let statuses: Vec<u64> = entry["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 500, 500, 200], "{entry}");
    assert!(entry["next_attempt_ms"].is_null(), "{entry}");
    // A bad URL or secret reference is refused at submit, by field.
    let (code, refused) = post_json(
        &server,
        "/api/v1/jobs",
        &json!({"repository": repo.path(), "commit": "HEAD",
                "callbacks": [{"url": "ftp://x", "secret": "plain-text"}]}),
    );
    assert_eq!(code, 422, "{refused}");
    let fields: Vec<&str> = refused["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["callbacks[0].url", "callbacks[0].secret"],
        "{refused}"
    );
}

#[test]
fn messages_in_the_outbox_survive_a_kill_of_the_engine() {
    let state = tempfile::tempdir().unwrap();
    let server = start_with(state, &[(SECRET_VAR, SECRET), LOOPBACK_ALLOWED]);
    // A receiver that is not there yet: its port is known, nothing listens.
    let port = crate::support::serve::free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let repo = dockerfile_repo(&format!("FROM {BUSYBOX}\n"));
    let id = submit_with_callback(&server, repo.path(), &url);
    wait_until("the job succeeds", 120, || {
        job(&server, id)["state"] == "succeeded"
    });
    wait_until("a first attempt fails", 30, || {
        callbacks_of(&server, id)
            .first()
            .is_some_and(|c| c["attempts"].as_array().is_some_and(|a| !a.is_empty()))
    });
    let refused = callbacks_of(&server, id)[0]["attempts"][0].clone();
    assert!(
        refused["error"].is_string() && refused["status"].is_null(),
        "{refused}"
    );
    let state = server.crash();
    // The receiver comes up; the engine starts again on the same state.
    let receiver = Receiver::start(TcpListener::bind(("127.0.0.1", port)).unwrap(), vec![200]);
    let server = start_with(state, &[(SECRET_VAR, SECRET), LOOPBACK_ALLOWED]);
    wait_until("the outbox delivers after the restart", 60, || {
        !receiver.received().is_empty()
    });
    let got = receiver.received();
    assert_signed(&got[0]);
    wait_until("the delivery is recorded", 30, || {
        callbacks_of(&server, id)[0]["delivered_ms"].is_u64()
    });
}

#[test]
fn a_forge_gets_the_commit_status_of_each_state_in_order() {
    let forge = Receiver::start(TcpListener::bind("127.0.0.1:0").unwrap(), vec![201]);
    let api_url = forge.url.trim_end_matches("/hook").to_owned();
    let server = start_with(
        tempfile::tempdir().unwrap(),
        &[
            (SECRET_VAR, "forge-token-1"),
            ("SLIPWAY_ADVERTISE_URL", "http://slipway.test:7878"),
            LOOPBACK_ALLOWED,
        ],
    );
    let repo = dockerfile_repo(&format!("FROM {BUSYBOX}\n"));
    crate::support::git(repo.path(), &["init", "-q"]);
    crate::support::git(repo.path(), &["add", "."]);
    crate::support::git(repo.path(), &["commit", "-q", "-m", "x"]);
    let sha = crate::support::git(repo.path(), &["rev-parse", "HEAD"]);
    let (code, body) = post_json(
        &server,
        "/api/v1/jobs",
        &json!({"repository": repo.path(), "commit": "HEAD",
                "forge": {"kind": "github", "api_url": api_url, "token": format!("env:{SECRET_VAR}"),
                          "repo": "acme/app"}}),
    );
    assert_eq!(code, 201, "{body}");
    let id = body["id"].as_u64().unwrap();
    wait_until("the job succeeds", 120, || {
        job(&server, id)["state"] == "succeeded"
    });
    wait_until("every status is posted", 30, || {
        let all = callbacks_of(&server, id);
        !all.is_empty() && all.iter().all(|c| c["delivered_ms"].is_u64())
    });
    let got = forge.received();
    let states: Vec<String> = got
        .iter()
        .map(|r| {
            assert_eq!(
                r.line,
                format!("POST /repos/acme/app/statuses/{sha} HTTP/1.1")
            );
            assert_eq!(r.headers["authorization"], "Bearer forge-token-1");
            let b: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(b["context"], "slipway/fast", "{b}");
            assert_eq!(
                b["target_url"],
                format!("http://slipway.test:7878/api/v1/jobs/{id}")
            );
            b["state"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        states,
        ["pending", "pending", "success"],
        "queued, running, succeeded"
    );
    // A forge whose owner/name cannot be told is refused at submit.
    let (code, refused) = post_json(
        &server,
        "/api/v1/jobs",
        &json!({"repository": repo.path(), "commit": "HEAD",
                "forge": {"kind": "gitlab", "api_url": api_url, "token": format!("env:{SECRET_VAR}")}}),
    );
    assert_eq!(code, 422, "{refused}");
    assert_eq!(refused["error"]["field"], "forge.repo", "{refused}");
}

#[test]
fn a_receiver_that_hangs_is_given_up_on_after_ten_seconds_and_tried_again() {
    let server = start_with(
        tempfile::tempdir().unwrap(),
        &[(SECRET_VAR, SECRET), LOOPBACK_ALLOWED],
    );
    let receiver = Receiver::start(TcpListener::bind("127.0.0.1:0").unwrap(), vec![0, 200]);
    let repo = dockerfile_repo(&format!("FROM {BUSYBOX}\n"));
    let id = submit_with_callback(&server, repo.path(), &receiver.url);
    wait_until("the job succeeds", 120, || {
        job(&server, id)["state"] == "succeeded"
    });
    wait_until("the second attempt delivers", 60, || {
        callbacks_of(&server, id)
            .first()
            .is_some_and(|c| c["delivered_ms"].is_u64())
    });
    let entry = &callbacks_of(&server, id)[0];
    let attempts = entry["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{entry}");
    let hung = &attempts[0];
    assert!(
        hung["status"].is_null() && hung["error"].is_string(),
        "{hung}"
    );
    let took = hung["took_ms"].as_u64().unwrap();
    assert!(
        (9_500..15_000).contains(&took),
        "stopped after the 10 s timeout: {hung}"
    );
    assert_eq!(attempts[1]["status"], 200, "{entry}");
    assert_eq!(receiver.received().len(), 2);
}
