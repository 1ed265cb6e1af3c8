//! Watch benchmarks; prints its figures. `cargo bench -p slipway --bench watches`.
//!
//! - push → job queued, from a webhook's arrival: the watcher's whole
//!   handling of a signed GitHub push (verify, deduplicate, `ls-remote` of
//!   a bare repository on the local disk, decide, submit durably, record the
//!   delivery), 50 pushes, against a bare `git ls-remote` of the same
//!   repository, interleaved in the same run;
//! - webhook signature verification throughput on one core (GitHub's
//!   HMAC-SHA256 of a 4 KiB body, and Standard Webhooks).

#[path = "common/git.rs"]
mod git;
use git::git;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use slipway::executor::{Attempt, ExecFuture, Executor};
use slipway::job::{Outcome, SpecPolicy};
use slipway::logs::JobLogs;
use slipway::queue::{RedbStore, Scheduler, SchedulerConfig};
use slipway::watches::secret::SealingKey;
use slipway::watches::signature;
use slipway::watches::watcher::WatcherSettings;
use slipway::watches::{Forge, WatchSpec, Watcher};

/// Jobs are queued, never run: the figure stops at the queue.
struct Idle;

impl Executor for Idle {
    fn execute(&self, _attempt: Attempt) -> ExecFuture {
        Box::pin(async { Outcome::Succeeded })
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

fn github(secret: &str, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("origin.git");
        let work = dir.path().join("work");
        git(dir.path(), &["init", "-q", "--bare", bare.to_str().unwrap()]);
        git(dir.path(), &["init", "-q", work.to_str().unwrap()]);
        git(&work, &["commit", "-q", "--allow-empty", "-m", "0"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        git(&work, &["push", "-q", "origin", "main"]);

        let policy = SpecPolicy {
            allow_local_paths: true,
            ..SpecPolicy::default()
        };
        let store = Arc::new(RedbStore::open(&dir.path().join("store.redb"), policy.clone()).unwrap());
        let logs = JobLogs::new(dir.path().join("logs")).unwrap();
        let scheduler = Scheduler::new(
            store.clone(),
            Arc::new(Idle),
            logs,
            SchedulerConfig {
                policy,
                ..SchedulerConfig::default()
            },
        );
        let watcher = Watcher::new(
            store.clone(),
            scheduler,
            SealingKey::load_or_create(dir.path()).unwrap(),
            WatcherSettings {
                credentials: Default::default(),
                git_timeout: Duration::from_secs(30),
            },
        );
        let spec: WatchSpec = serde_json::from_value(serde_json::json!({
            "repository": bare, "branch": "main", "poll_interval_s": 0
        }))
        .unwrap();
        let (watch, secret) = watcher.create(spec).await.unwrap();
        watcher.look(&watch.id, None).await.unwrap();

        let (mut hook_ms, mut ls_ms) = (Vec::new(), Vec::new());
        for n in 0..50 {
            git(&work, &["commit", "-q", "--allow-empty", "-m", &n.to_string()]);
            git(&work, &["push", "-q", "origin", "main"]);
            let body = serde_json::json!({"ref": "refs/heads/main"}).to_string();
            let sig = github(&secret, body.as_bytes());
            let delivery = format!("d-{n}");
            let headers: Vec<(&str, &str)> = vec![
                ("X-GitHub-Event", "push"),
                ("X-GitHub-Delivery", &delivery),
                ("X-Hub-Signature-256", &sig),
            ];
            let t = Instant::now();
            let answer = watcher.deliver(&watch.id, &headers[..], body.as_bytes()).await;
            hook_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(answer.status == 202 || answer.status == 200, "{answer:?}");
            let t = Instant::now();
            git(dir.path(), &["ls-remote", "--", bare.to_str().unwrap(), "refs/heads/*"]);
            ls_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let (hook_ms, ls_ms) = (sorted(hook_ms), sorted(ls_ms));
        println!(
            "push -> job queued from the webhook's arrival (50 pushes): p50 {:.1} ms, p99 {:.1} ms; bare `git ls-remote` of the same repository: p50 {:.1} ms, p99 {:.1} ms; the watcher's own part p50 {:.1} ms",
            pct(&hook_ms, 0.5),
            pct(&hook_ms, 0.99),
            pct(&ls_ms, 0.5),
            pct(&ls_ms, 0.99),
            pct(&hook_ms, 0.5) - pct(&ls_ms, 0.5)
        );

        // Verification alone, on one core.
        let body = vec![b'x'; 4096];
        let sig = github(&secret, &body);
        let headers: Vec<(&str, &str)> =
            vec![("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)];
        let n = 100_000;
        let t = Instant::now();
        for _ in 0..n {
            let v = signature::verify(&headers[..], &body, &secret, &Forge::ALL, 0);
            assert!(v.is_ok());
        }
        let gh = n as f64 / t.elapsed().as_secs_f64();
        let now = (slipway::job::now_ms() / 1000) as i64;
        let sw = signature::standard_signature(&secret, "m", now, &body);
        let ts = now.to_string();
        let sw_headers: Vec<(&str, &str)> = vec![
            ("webhook-id", "m"),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &sw),
        ];
        let t = Instant::now();
        for _ in 0..n {
            assert!(signature::verify(&sw_headers[..], &body, &secret, &Forge::ALL, now).is_ok());
        }
        let std_rate = n as f64 / t.elapsed().as_secs_f64();
        println!(
            "webhook verification, 4 KiB body, one core: GitHub {:.0}/s, Standard Webhooks {:.0}/s",
            gh, std_rate
        );
    });
}
