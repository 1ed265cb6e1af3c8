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
    Server, TOKEN, dockerfile_repo, free_port, post_json, start, submit_profiled, wait_until,
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
        until_path(&c, "/login").await;
        // A wrong token is refused on the page.
        log_in(&c, "not-a-token").await;
        until_text(&c, ".error", "not valid", 10).await;
        snap(&c, "login").await;
        // The right one opens the overview.
        log_in(&c, TOKEN).await;
        until_path(&c, "/ui").await;
        assert!(text_of(&c, "h1").await.contains("Overview"));
        snap(&c, "overview").await;

        // A slow job: its page streams the log, then shows it succeeded.
        let slow = submit_profiled(
            &server,
            repo.path(),
            "slow",
            &["for i in 1 2 3; do echo tick $i; sleep 1; done"],
            json!({}),
        );
        c.goto(&format!("{}/ui/jobs/{slow}", server.url))
            .await
            .unwrap();
        until_text(&c, "#log", "tick 3", 120).await;
        until_text(&c, "#state", "succeeded", 60).await;
        snap(&c, "job-succeeded").await;

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
        snap(&c, "job-failed").await;

        // Log out: the session is gone.
        c.find(Locator::Css(".logout button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until_path(&c, "/login").await;
        c.goto(&format!("{}/ui", server.url)).await.unwrap();
        until_path(&c, "/login").await;

        // A read-only token sees the running job and no cancel button.
        let blocker = submit_profiled(&server, repo.path(), "blocker", &["sleep 30"], json!({}));
        log_in(&c, &viewer).await;
        until_path(&c, "/ui").await;
        c.goto(&format!("{}/ui/jobs/{blocker}", server.url))
            .await
            .unwrap();
        until_text(&c, ".who", "(read)", 10).await;
        assert!(
            c.find(Locator::Css("#cancel")).await.is_err(),
            "no cancel button for `read`"
        );
        snap(&c, "job-read-only").await;
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
    for path in [
        "/ui",
        "/ui/jobs",
        "/ui/jobs/1",
        "/ui/services",
        "/ui/workspaces",
    ] {
        let r = agent.get(&url(path)).call().unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/login", "{path}");
    }
    let r = agent.get(&url("/login")).call().unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    // Log in (a form post), keep the cookie.
    let r = agent
        .post(&url("/login"))
        .content_type("application/x-www-form-urlencoded")
        .send(format!("token={TOKEN}"))
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let mut page = agent
        .get(&url("/ui"))
        .header("cookie", &session)
        .call()
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.body_mut().read_to_string().unwrap();
    assert!(!html.contains(TOKEN), "the token is never in a page");
    // Logout without the CSRF token: refused, the session lives on.
    let r = agent
        .post(&url("/logout"))
        .header("cookie", &session)
        .content_type("application/x-www-form-urlencoded")
        .send("csrf=wrong")
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        agent
            .get(&url("/ui"))
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
