//! The dashboard in a real browser: headless Chromium (Debian's `chromium`
//! and `chromium-driver`, installed by scripts/setup.sh) driven over
//! WebDriver against a real `slipway serve` on loopback with real jobs. A
//! screenshot of each page is kept under the target directory
//! (`dashboard-screenshots/`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::serve::{
    Server, TOKEN, dockerfile_repo, free_port, get, post_json, start, submit_profiled, wait_until,
};

/// `chromedriver` on a port of its own, stopped with the test.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn driver() -> Driver {
    let path = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chromedriver is missing: apt-get install chromium chromium-driver (scripts/setup.sh does); this test does not skip");
    let port = free_port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    wait_until("chromedriver listening", 20, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Driver { child, port }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]}),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session through chromedriver")
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn snap(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.len() > 1000, "a real screenshot of {name}");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Wait (up to `seconds`) until `css` on the current page has `wanted` in its text.
async fn until_text(c: &Client, css: &str, wanted: &str, seconds: u64) -> String {
    let mut last = String::new();
    for _ in 0..seconds * 5 {
        if let Ok(el) = c.find(Locator::Css(css)).await
            && let Ok(t) = el.text().await
        {
            if t.contains(wanted) {
                return t;
            }
            last = t;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("`{wanted}` never appeared in {css}; last: {last}");
}

/// Wait (up to 10 s) until the browser is at `path`: a click's navigation
/// ends a moment after the click returns.
async fn until_path(c: &Client, path: &str) {
    let mut last = String::new();
    for _ in 0..50 {
        if let Ok(url) = c.current_url().await {
            if url.path() == path {
                return;
            }
            last = url.path().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the browser never reached {path}; it is at {last}");
}

/// Type `token` into the login form and send it.
async fn log_in(c: &Client, token: &str) {
    c.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    c.find(Locator::Css("#login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

fn job_state(server: &Server, id: u64) -> String {
    crate::support::serve::job(server, id)["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Log in, watch a job go from running to succeeded with its log
/// streaming, reach a failing job's failing line from the list in two
/// clicks, and log out; a read-only token sees no cancel button.
#[test]
fn a_person_logs_in_follows_a_job_and_reaches_the_failing_line() {
    let server = start(tempfile::tempdir().unwrap());
    let repo = dockerfile_repo("FROM slipway-test/busybox:1\n");
    let failing = submit_profiled(
        &server,
        repo.path(),
        "failing",
        &[
            "echo checking the app",
            "echo 'app.js:3: unexpected token' >&2; exit 3",
        ],
        json!({}),
    );
    wait_until("the failing job ends", 120, || {
        job_state(&server, failing) == "failed"
    });
    let (code, created) = post_json(
        &server,
        "/api/v1/tokens",
        &json!({"name": "viewer", "scope": "read"}),
    );
    assert_eq!(code, 201, "{created}");
    let viewer = created["token"].as_str().unwrap().to_owned();

    let driver = driver();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = browser(&driver).await;
        // Without a session: the login page.
        c.goto(&format!("{}/ui/jobs", server.url)).await.unwrap();
        until_path(&c, "/ui/login").await;
        // A wrong token is refused on the page.
        log_in(&c, "not-a-token").await;
        until_text(&c, ".error", "not valid", 10).await;
        snap(&c, "login").await;
        // The right one opens the overview.
        log_in(&c, TOKEN).await;
        until_path(&c, "/ui/").await;
        assert!(text_of(&c, "h1").await.contains("Overview"));
        // The charts come from the engine's own metrics: the failing
        // job's attempt is counted in the durations.
        let total = c
            .find(Locator::Css("#duration-chart svg"))
            .await
            .unwrap()
            .attr("data-total")
            .await
            .unwrap();
        assert_eq!(total.as_deref(), Some("1"), "one attempt so far");
        c.find(Locator::Css("#queue-chart svg"))
            .await
            .expect("the queue chart");
        snap(&c, "overview").await;

        // A slow job: its page streams the log, then shows it succeeded.
        let slow = submit_profiled(
            &server,
            repo.path(),
            "slow",
            &["for i in 1 2 3; do echo tick $i; sleep 1; done; printf '\\033[1;32mall-green\\033[0m\\n'"],
            json!({}),
        );
        let submitted = std::time::Instant::now();
        c.goto(&format!("{}/ui/jobs/{slow}", server.url))
            .await
            .unwrap();
        let opened = std::time::Instant::now();
        until_text(&c, "#log", "tick 1", 120).await;
        let (to_first, from_open) = (submitted.elapsed(), opened.elapsed());
        until_text(&c, "#log", "tick 3", 120).await;
        // Terminal colours arrive as classes (live, then after the reload),
        // never as escape characters.
        until_text(&c, "#log span.fg-2.b", "all-green", 60).await;
        until_text(&c, "#state", "succeeded", 60).await;
        until_text(&c, "#log span.fg-2.b", "all-green", 30).await;
        let log = c.find(Locator::Css("#log")).await.unwrap().text().await.unwrap();
        assert!(!log.contains('\u{1b}'), "{log}");
        // The page reloads at the end: the plan, each fact with its file.
        let plan = until_text(&c, "table.plan", "Dockerfile", 30).await;
        assert!(plan.contains("image"), "{plan}");
        snap(&c, "job-succeeded").await;
        // What the job page weighs (HTML, CSS, JS as the browser got them)
        // and how soon its first line of output showed.
        let weights = c
            .execute(
                "return [performance.getEntriesByType('navigation')[0], ...performance.getEntriesByType('resource')]\
                   .filter(e => !e.name.includes('/api/'))\
                   .map(e => [e.name, e.decodedBodySize]);",
                vec![],
            )
            .await
            .unwrap();
        let weights: Vec<(String, u64)> = serde_json::from_value(weights).unwrap();
        let total: u64 = weights.iter().map(|(_, n)| n).sum();
        eprintln!(
            "job page weight: {total} bytes ({weights:?}); first log line shown {to_first:?} after submit, {from_open:?} after the page was opened"
        );
        assert_eq!(weights.len(), 3, "the page, its stylesheet and script: {weights:?}");
        assert!(weights.iter().all(|(_, n)| *n > 0), "{weights:?}");
        assert!(total < 64 * 1024, "a small page: {total} bytes");

        // From the list, two clicks to the failing line.
        c.goto(&format!("{}/ui/jobs", server.url)).await.unwrap();
        snap(&c, "jobs").await;
        c.find(Locator::Css(&format!("a[href='/ui/jobs/{failing}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until_path(&c, &format!("/ui/jobs/{failing}")).await;
        until_text(&c, "#state", "failed", 10).await;
        c.find(Locator::Css("tr.failed a.step"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let target = until_text(&c, "span.line:target", "unexpected token", 10).await;
        assert!(target.contains("app.js:3: unexpected token"), "{target}");
        // The failed step's fold is open, the passing one's too (short).
        let folds = c.find_all(Locator::Css("#log details.fold")).await.unwrap();
        assert!(folds.len() >= 3, "preparing and two steps: {}", folds.len());
        until_text(&c, "#log details.failed summary", "exit 3", 5).await;
        snap(&c, "job-failed").await;

        // Retry: the same spec as a new job, on the same commit.
        c.find(Locator::Css("#retry"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let mut retried = None;
        for _ in 0..50 {
            let path = c.current_url().await.unwrap().path().to_owned();
            if let Some(id) = path.strip_prefix("/ui/jobs/")
                && id != failing.to_string()
            {
                retried = id.parse::<u64>().ok();
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let retried = retried.expect("the retry opens the new job's page");
        assert!(retried > failing);
        let (old, new) = (
            crate::support::serve::job(&server, failing),
            crate::support::serve::job(&server, retried),
        );
        assert_eq!(new["spec"]["commit"], old["spec"]["commit"]);
        assert_eq!(new["spec"]["profile"], "failing");
        until_text(&c, "#state", "failed", 120).await;

        // Log out: the session is gone.
        c.find(Locator::Css(".logout button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until_path(&c, "/ui/login").await;
        c.goto(&format!("{}/ui/", server.url)).await.unwrap();
        until_path(&c, "/ui/login").await;

        // A read-only token sees the running job and no cancel button.
        let blocker = submit_profiled(&server, repo.path(), "blocker", &["sleep 30"], json!({}));
        log_in(&c, &viewer).await;
        until_path(&c, "/ui/").await;
        c.goto(&format!("{}/ui/jobs/{blocker}", server.url))
            .await
            .unwrap();
        until_text(&c, ".who", "(read)", 10).await;
        assert!(
            c.find(Locator::Css("#cancel")).await.is_err(),
            "no cancel button for `read`"
        );
        snap(&c, "job-read-only").await;
        c.goto(&format!("{}/ui/jobs/{failing}", server.url))
            .await
            .unwrap();
        until_text(&c, "#state", "failed", 10).await;
        assert!(
            c.find(Locator::Css("#retry")).await.is_err(),
            "no retry button for `read`"
        );
        c.close().await.unwrap();
        let _ = crate::support::serve::request(
            &server,
            "POST",
            &format!("/api/v1/jobs/{blocker}/cancel"),
            None,
        );
    });
}

/// Over plain HTTP: without a session nothing but the login page is
/// served; every page carries the strict policy; a form without the
/// session's CSRF token is refused; the session cookie reads the API but
/// changes nothing through it.
#[test]
fn pages_need_a_session_and_forms_need_its_csrf_token() {
    let server = start(tempfile::tempdir().unwrap());
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    let url = |p: &str| format!("{}{p}", server.url);
    let r = agent.get(&url("/")).call().unwrap();
    assert_eq!(r.headers()["location"], "/ui/");
    for path in [
        "/ui/",
        "/ui/jobs",
        "/ui/jobs/1",
        "/ui/services",
        "/ui/services/x",
        "/ui/workspaces",
        "/ui/workspaces/ws-x",
        "/ui/plugins",
        "/ui/deployments",
        "/ui/deployments/x",
        "/ui/watches",
        "/ui/watches/x",
    ] {
        let r = agent.get(&url(path)).call().unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/ui/login", "{path}");
    }
    let r = agent.get(&url("/ui/login")).call().unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let log_in = |token: &str| {
        let r = agent
            .post(&url("/ui/login"))
            .content_type("application/x-www-form-urlencoded")
            .send(format!("token={token}"))
            .unwrap();
        assert_eq!(r.status(), 303);
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            cookie.contains("HttpOnly")
                && cookie.contains("SameSite=Strict")
                && !cookie.contains("Secure"),
            "plain HTTP: no `Secure`, or the browser would drop it: {cookie}"
        );
        let session = cookie.split(';').next().unwrap().to_owned();
        let mut page = agent
            .get(&url("/ui/"))
            .header("cookie", &session)
            .call()
            .unwrap();
        assert_eq!(page.status(), 200);
        let html = page.body_mut().read_to_string().unwrap();
        assert!(!html.contains(token), "the token is never in a page");
        let csrf = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the logout form carries the CSRF token")
            .to_owned();
        (session, csrf)
    };
    let (session, _) = log_in(TOKEN);
    // Read-only and run tokens change nothing they may not, whichever
    // form they post (with the right CSRF token).
    for (scope, refused) in [
        (
            "read",
            &[
                "/ui/jobs/1/cancel",
                "/ui/jobs/1/retry",
                "/ui/services/x/restart",
            ][..],
        ),
        ("run", &["/ui/services/x/restart"][..]),
    ] {
        let (code, created) = post_json(
            &server,
            "/api/v1/tokens",
            &json!({"name": format!("{scope}-forms"), "scope": scope}),
        );
        assert_eq!(code, 201, "{created}");
        let (their, csrf) = log_in(created["token"].as_str().unwrap());
        for path in refused {
            let mut r = agent
                .post(&url(path))
                .header("cookie", &their)
                .content_type("application/x-www-form-urlencoded")
                .send(format!("csrf={csrf}"))
                .unwrap();
            assert_eq!(r.status(), 403, "{scope} {path}");
            let body = r.body_mut().read_to_string().unwrap();
            assert!(body.contains(&format!("scope `{scope}`")), "{body}");
        }
    }
    let (_, jobs) = get(&server, "/api/v1/jobs");
    let jobs: serde_json::Value = serde_json::from_str(&jobs).unwrap();
    assert_eq!(jobs["jobs"], json!([]), "no job was made: {jobs}");
    // Logout without the CSRF token: refused, the session lives on.
    let r = agent
        .post(&url("/ui/logout"))
        .header("cookie", &session)
        .content_type("application/x-www-form-urlencoded")
        .send("csrf=wrong")
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        agent
            .get(&url("/ui/"))
            .header("cookie", &session)
            .call()
            .unwrap()
            .status(),
        200
    );
    // The cookie reads the API (the live log) and changes nothing there.
    let r = agent
        .get(&url("/api/v1/jobs"))
        .header("cookie", &session)
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = agent
        .post(&url("/api/v1/profiles"))
        .header("cookie", &session)
        .content_type("application/json")
        .send(r#"{"name": "x", "validation": {"fast": ["true"]}}"#)
        .unwrap();
    assert_eq!(r.status(), 401, "a change needs the bearer header");
}

/// A git repository (branch `main`) of `files`, committed.
fn git_repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    for (path, text) in files {
        std::fs::write(repo.path().join(path), text).unwrap();
    }
    crate::support::git(repo.path(), &["init", "-q"]);
    crate::support::git(repo.path(), &["add", "-A"]);
    crate::support::git(repo.path(), &["commit", "-q", "-m", "first"]);
    repo
}

/// The managed service, workspace, plugin and deployment pages against
/// real containers: a service whose container keeps exiting shows its
/// restarts, failure and log as they happen; a workspace shows its failed
/// validate call; the plugins page lists the bundled plugins as active; a
/// deployment shows its state, health and rollout.
#[test]
fn services_restarts_workspaces_plugins_and_deployments_in_the_browser() {
    use crate::support::serve::{BUSYBOX, cli, request, text};
    let server = start(tempfile::tempdir().unwrap());
    let unique = format!("d{}", std::process::id());
    // A service whose container exits after a moment, again and again.
    let crash = format!("crash-{unique}");
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("crash.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"{crash}\"\nimage = \"{BUSYBOX}\"\n\
             command = [\"sh\", \"-c\", \"echo starting up; sleep 1; echo giving up >&2; exit 3\"]\n\
             [restart]\nmax_restarts = 50\nwindow_s = 600\nbackoff_ms = 500\nmax_backoff_ms = 2000\n"
        ),
    )
    .unwrap();
    let out = cli(&server, &["services", "add", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A deployment of a one-service Compose stack.
    let deployed = format!("dash-{unique}");
    let stack = git_repo(&[(
        "compose.yaml",
        &format!("services:\n  app:\n    image: {BUSYBOX}\n    command: [\"sleep\", \"3600\"]\n"),
    )]);
    let (code, body) = post_json(
        &server,
        "/api/v1/deployments",
        &json!({"name": deployed, "repository": stack.path(), "branch": "main", "poll_s": 1}),
    );
    assert_eq!(code, 201, "{body}");
    // A workspace whose fast step fails, validated once.
    let (code, body) = post_json(
        &server,
        "/api/v1/profiles",
        &json!({"name": "ws-check", "validation": {"fast": ["echo checking app.txt; echo 'app.txt:1: not good enough' >&2; exit 2"]}}),
    );
    assert_eq!(code, 201, "{body}");
    let code_repo = git_repo(&[
        (
            "Dockerfile",
            "FROM slipway-test/busybox:1\nWORKDIR /workspace\n",
        ),
        ("app.txt", "app\n"),
    ]);
    let (code, body) = post_json(
        &server,
        "/api/v1/workspaces",
        &json!({"repository": code_repo.path(), "commit": "HEAD", "profile": "ws-check"}),
    );
    assert_eq!(code, 201, "{body}");
    let ws = body["id"].as_str().unwrap().to_owned();
    wait_until("the workspace is ready", 240, || {
        let (_, w) = get(&server, &format!("/api/v1/workspaces/{ws}"));
        w.contains("\"state\":\"ready\"")
    });
    let (code, validated) = request(
        &server,
        "POST",
        &format!("/api/v1/workspaces/{ws}/validate"),
        Some(("application/json", br#"{"tier": "fast"}"#)),
    );
    assert_eq!(code, 200, "{validated}");
    assert!(validated.contains("\"ok\":false"), "{validated}");

    let driver = driver();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = browser(&driver).await;
        c.goto(&format!("{}/ui/login", server.url)).await.unwrap();
        log_in(&c, TOKEN).await;
        until_path(&c, "/ui/").await;

        // The service: its page refreshes itself until a restart shows.
        c.goto(&format!("{}/ui/services/{crash}", server.url))
            .await
            .unwrap();
        let opened = std::time::Instant::now();
        let restarts = async || -> u64 {
            match c.find(Locator::Css("#restarts")).await {
                Ok(el) => el
                    .text()
                    .await
                    .unwrap_or_default()
                    .trim()
                    .parse()
                    .unwrap_or(0),
                Err(_) => 0,
            }
        };
        let first = restarts().await;
        // Without reloading: the page refreshes itself as restarts happen.
        let mut now = first;
        for _ in 0..300 {
            now = restarts().await;
            if now > first && now >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            now > first && now >= 1,
            "the page showed {first} restarts, then no more within 60 s"
        );
        eprintln!(
            "the open service page went from {first} to {now} restarts {:?} after it opened",
            opened.elapsed()
        );
        until_text(&c, "#reason", "exited with code 3", 30).await;
        until_text(&c, "#service-log", "starting up", 30).await;
        until_text(&c, "#service-log", "giving up", 30).await;
        assert!(
            c.find(Locator::Css("#restart")).await.is_ok(),
            "an admin may restart it"
        );
        snap(&c, "service-restarts").await;
        // Listed with its restarts too.
        c.goto(&format!("{}/ui/services", server.url))
            .await
            .unwrap();
        let table = until_text(&c, "#services", &crash, 10).await;
        let listed: u64 = table
            .lines()
            .find(|l| l.starts_with(&crash))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(listed >= now, "listed with its restarts: {table}");

        // Plugins: the bundled ones, active.
        c.goto(&format!("{}/ui/plugins", server.url)).await.unwrap();
        let table = until_text(&c, "table.plugins", "dockerfile", 10).await;
        assert!(
            table
                .lines()
                .any(|l| l.contains("dockerfile") && l.contains("active") && l.contains("bundled")),
            "{table}"
        );
        snap(&c, "plugins").await;

        // Workspaces: from the list to the failed validate call.
        c.goto(&format!("{}/ui/workspaces", server.url))
            .await
            .unwrap();
        c.find(Locator::Css(&format!("a[href='/ui/workspaces/{ws}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until_path(&c, &format!("/ui/workspaces/{ws}")).await;
        until_text(&c, "#state", "ready", 10).await;
        let call = until_text(&c, "section.validate", "#1 fast failed", 10).await;
        assert!(call.contains("exit 2"), "{call}");
        assert!(call.contains("app.txt:1: not good enough"), "{call}");
        snap(&c, "workspace").await;

        // The deployment: synced and healthy, its rollout in the history.
        c.goto(&format!("{}/ui/deployments", server.url))
            .await
            .unwrap();
        until_text(&c, "#deployments", &deployed, 10).await;
        c.goto(&format!("{}/ui/deployments/{deployed}", server.url))
            .await
            .unwrap();
        until_text(&c, "#sync", "synced", 180).await;
        until_text(&c, "#health", "healthy", 60).await;
        let history = until_text(&c, "table.history", "deployed", 30).await;
        let head = crate::support::git(stack.path(), &["rev-parse", "HEAD"]);
        assert!(history.contains(&head[..12]), "{head} in {history}");
        snap(&c, "deployment").await;
        c.close().await.unwrap();
    });
    let _ = cli(&server, &["services", "rm", &crash]);
    let _ = request(
        &server,
        "DELETE",
        &format!("/api/v1/deployments/{deployed}"),
        None,
    );
    let _ = request(&server, "DELETE", &format!("/api/v1/workspaces/{ws}"), None);
}
