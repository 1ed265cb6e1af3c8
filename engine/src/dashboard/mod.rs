//! The web dashboard `slipway serve` serves at `/ui/`: server-rendered
//! pages (overview with charts of the queue and of job durations, jobs, a
//! job's spec, timeline, steps, findings and log, managed services with
//! their restarts and log, workspaces with their validate history,
//! plugins, deployments, watches) with a little script for live updates.
//!
//! Access: `/ui/login` trades an API token for a session cookie
//! ([`session`]); every page needs a session, the token never appears in
//! a URL, every state-changing form carries the session's CSRF token (and
//! the cookie is `SameSite=Strict`), and a read-only token sees everything
//! and changes nothing. Every response carries a strict
//! Content-Security-Policy: scripts, styles and connections to the
//! engine itself only, no inline code, no framing.

pub mod ansi;
pub mod charts;
pub mod links;
pub mod pages;
mod resources;
pub mod session;
pub mod state;
pub mod views;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::api::AppState;
use crate::api::auth::Caller;
use crate::job::{JobId, JobState};
use crate::queue::ListFilter;
use pages::Frame;
use session::Session;

/// The policy on every dashboard response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The log lines a job page shows at most (the newest are kept).
const LOG_LINES_SHOWN: usize = 5_000;

/// `/` (to `/ui/`) and `/ui/...`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(overview))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/jobs", get(jobs))
        .route("/ui/jobs/{id}", get(job))
        .route("/ui/jobs/{id}/cancel", post(cancel))
        .route("/ui/jobs/{id}/retry", post(retry))
        .route("/ui/services", get(resources::services))
        .route("/ui/services/{name}", get(resources::service))
        .route("/ui/services/{name}/restart", post(resources::restart))
        .route("/ui/workspaces", get(resources::workspaces))
        .route("/ui/workspaces/{id}", get(resources::workspace))
        .route("/ui/plugins", get(resources::plugins))
        .route("/ui/deployments", get(resources::deployments))
        .route("/ui/deployments/{name}", get(resources::deployment))
        .route("/ui/watches", get(resources::watches))
        .route("/ui/watches/{id}", get(resources::watch))
        .route("/ui/assets/app.css", get(|| asset(pages::CSS, "text/css")))
        .route(
            "/ui/assets/app.js",
            get(|| asset(pages::JS, "text/javascript")),
        )
        .layer(axum::middleware::map_response(secure_headers))
}

async fn secure_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=300"),
            ),
        ],
        body,
    )
        .into_response()
}

/// The session of a request, its token still usable; else the way to the
/// login page.
async fn session(state: &AppState, headers: &HeaderMap) -> Result<(String, Session), Response> {
    let to_login = || Redirect::to("/ui/login").into_response();
    let id = session::cookie_value(headers).ok_or_else(to_login)?;
    let s = match session::get(state.store.as_ref(), &id).await {
        Ok(found) => found.ok_or_else(to_login)?,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: reading a session");
            return Err(store_unavailable());
        }
    };
    // A token revoked or expired since the login ends its sessions.
    if crate::api::auth::identify_hash(state, &s.token_hash)
        .await
        .is_none()
    {
        if let Err(e) = session::close(state.store.as_ref(), &id).await {
            tracing::warn!(error = %e, "dashboard: ending the session of a revoked token");
        }
        return Err(to_login());
    }
    Ok((id, s))
}

/// Refused unless the session's token may do what the API route
/// `method api_path` does (the API's own scope rule).
fn may(s: &Session, method: &str, api_path: &str, what: &str) -> Result<(), Response> {
    let needed = crate::token::required_scope(method, api_path);
    if s.caller.scope >= needed {
        return Ok(());
    }
    Err(refused(
        StatusCode::FORBIDDEN,
        "Refused",
        &format!(
            "Token {} has scope `{}`; {what} needs `{}`.",
            s.caller.token,
            s.caller.scope.name(),
            needed.name()
        ),
    ))
}

fn frame(s: &Session) -> Frame<'_> {
    Frame {
        token: &s.caller.token,
        scope: s.caller.scope,
        csrf: &s.csrf,
    }
}

fn refused(status: StatusCode, title: &str, text: &str) -> Response {
    (status, Html(pages::message(title, text).into_string())).into_response()
}

/// The page when the store, which keeps the sessions, did not answer.
fn store_unavailable() -> Response {
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "Store unavailable",
        "The engine could not reach its store to check your session; try again shortly (the engine's log says why).",
    )
}

async fn login_form() -> Html<String> {
    Html(pages::login(None).into_string())
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(state): State<AppState>,
    connect: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let client = connect.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.0.ip());
    let presented = form.token.trim();
    let Some(caller) = crate::api::auth::identify(&state, presented).await else {
        // Counted with the API's failures: the same limit per client.
        let status = if state.auth_guard.count_failure(client) {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::UNAUTHORIZED
        };
        return (
            status,
            Html(
                pages::login(Some("That token is not valid (or revoked, or expired)."))
                    .into_string(),
            ),
        )
            .into_response();
    };
    let (id, _) = match session::open(
        state.store.as_ref(),
        caller.clone(),
        crate::token::hash(presented),
    )
    .await
    {
        Ok(opened) => opened,
        Err(e) => {
            tracing::error!(error = %e, "cannot open a dashboard session");
            return refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Cannot log in",
                "The engine could not make a session (see its log).",
            );
        }
    };
    tracing::info!(token = %caller.token, "dashboard login");
    (
        [(
            header::SET_COOKIE,
            session::set_cookie(Some(&id), state.dashboard.secure_cookie),
        )],
        Redirect::to("/ui/"),
    )
        .into_response()
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The session of a form's request, when the form carries the session's
/// CSRF token (compared in constant time); else the answer to give.
async fn session_of_form(
    state: &AppState,
    headers: &HeaderMap,
    form: &CsrfForm,
) -> Result<(String, Session), Response> {
    let (id, s) = session(state, headers).await?;
    if !crate::api::auth::constant_time_eq(s.csrf.as_bytes(), form.csrf.as_bytes()) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form did not carry this session's token.",
        ));
    }
    Ok((id, s))
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (id, _) = match session_of_form(&state, &headers, &form).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    if let Err(e) = session::close(state.store.as_ref(), &id).await {
        tracing::error!(error = %e, "dashboard: ending a session");
        return store_unavailable();
    }
    (
        [(
            header::SET_COOKIE,
            session::set_cookie(None, state.dashboard.secure_cookie),
        )],
        Redirect::to("/ui/login"),
    )
        .into_response()
}

async fn overview(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (_, s) = match session(&state, &headers).await {
        Ok(found) => found,
        Err(to_login) => return to_login,
    };
    let counts = state.store.counts().await.unwrap_or_default();
    let counts: Vec<(JobState, u64)> = JobState::ALL
        .iter()
        .map(|st| (*st, counts.get(st).copied().unwrap_or(0)))
        .collect();
    let running = state
        .store
        .list(&ListFilter {
            state: Some(JobState::Running),
            before: None,
            limit: 20,
        })
        .await
        .unwrap_or_default();
    let services = state
        .supervisor
        .as_ref()
        .map(|s| s.statuses())
        .unwrap_or_default();
    let workspaces_open = match &state.workspaces {
        Some(w) => w
            .list()
            .await
            .map_or(0, |list| list.iter().filter(|w| w.state.is_open()).count()),
        None => 0,
    };
    let deployments = match &state.deployments {
        Some(d) => d.list().await.unwrap_or_default(),
        None => Vec::new(),
    };
    let watches = state
        .store
        .list_watches()
        .await
        .map(|w| w.len())
        .unwrap_or(0);
    // The sampled history, and the queue as it is now.
    let mut queue = state.dashboard.history();
    let n = |st: JobState| counts.iter().find(|(c, _)| *c == st).map_or(0, |(_, n)| *n);
    queue.push(state::QueueSample {
        at_ms: crate::job::now_ms(),
        waiting: n(JobState::Queued) + n(JobState::Retrying),
        running: n(JobState::Running),
    });
    let durations = state.scheduler.metrics().attempt_duration.buckets();
    // The container host as the engine's Docker client reaches it.
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let version = format!("{}, container host {host}", env!("CARGO_PKG_VERSION"));
    let page = pages::overview(
        &frame(&s),
        &pages::Overview {
            counts,
            running: &running,
            services: &services,
            workspaces_open,
            deployments: &deployments,
            watches,
            queue: &queue,
            durations: &durations,
            version: &version,
        },
    );
    Html(page.into_string()).into_response()
}

#[derive(Deserialize)]
struct JobsQuery {
    state: Option<String>,
}

async fn jobs(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<JobsQuery>,
) -> Response {
    let (_, s) = match session(&state, &headers).await {
        Ok(found) => found,
        Err(to_login) => return to_login,
    };
    let wanted = q
        .state
        .as_deref()
        .and_then(|name| JobState::ALL.iter().copied().find(|st| st.name() == name));
    let list = state
        .store
        .list(&ListFilter {
            state: wanted,
            before: None,
            limit: 100,
        })
        .await
        .unwrap_or_default();
    Html(pages::jobs(&frame(&s), &list, wanted).into_string()).into_response()
}

async fn job(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<JobId>) -> Response {
    let (_, s) = match session(&state, &headers).await {
        Ok(found) => found,
        Err(to_login) => return to_login,
    };
    let record = match state.store.get(id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return refused(
                StatusCode::NOT_FOUND,
                "No such job",
                "There is no job with that number.",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "dashboard: reading a job");
            return refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Cannot read the job",
                "See the engine's log.",
            );
        }
    };
    let (bytes, end) = state.logs.read(id, 0, 8 << 20).unwrap_or_default();
    let (log, offsets) = log_lines(&bytes, record.created_ms);
    let steps: Vec<&crate::job::StepRecord> =
        record.run.iter().flat_map(|r| r.steps.iter()).collect();
    // Where each step's link in the steps table points: a failed step's
    // last line of output (where its failure shows), another's first.
    let step_lines: Vec<usize> = steps
        .iter()
        .map(|st| {
            let inside: Vec<usize> = offsets
                .iter()
                .enumerate()
                .filter(|(_, o)| **o >= st.log_start && **o < st.log_end)
                .map(|(i, _)| i + 1)
                .collect();
            let line = if st.exit_code == Some(0) {
                inside.first()
            } else {
                inside.last()
            };
            line.copied().unwrap_or(1)
        })
        .collect();
    let sections = log_sections(&offsets, &steps, record.state.is_final());
    Html(pages::job(&frame(&s), &record, &log, end, &step_lines, &sections).into_string())
        .into_response()
}

/// Steps with more lines than this are folded once the job has ended,
/// unless they failed.
const FOLD_OVER_LINES: usize = 20;

/// The log's lines grouped for folding: what came before the first step
/// (checkout, image, services), each step (by its byte range in the log),
/// and what came after; `offsets` are the lines' byte offsets.
fn log_sections(
    offsets: &[u64],
    steps: &[&crate::job::StepRecord],
    ended: bool,
) -> Vec<pages::LogSection> {
    let mut sections = Vec::new();
    let line_at = |byte: u64| offsets.partition_point(|o| *o < byte);
    let mut next = 0;
    for st in steps {
        let (from, to) = (line_at(st.log_start).max(next), line_at(st.log_end));
        if from > next {
            sections.push(pages::LogSection::plain(
                if sections.is_empty() {
                    "preparing"
                } else {
                    "engine"
                },
                next..from,
                ended,
            ));
        }
        let ok = st.exit_code == Some(0);
        let lines = from..to.max(from);
        sections.push(pages::LogSection {
            title: st.name.clone(),
            result: Some(match st.exit_code {
                Some(0) => "ok".into(),
                Some(c) => format!("exit {c}"),
                None => "stopped".into(),
            }),
            failed: !ok,
            open: !(ended && ok && lines.len() > FOLD_OVER_LINES),
            took_ms: Some(st.duration_ms),
            lines,
        });
        next = to.max(from);
    }
    if next < offsets.len() {
        sections.push(pages::LogSection::plain(
            if sections.is_empty() { "log" } else { "engine" },
            next..offsets.len(),
            false,
        ));
    }
    sections
}

/// The log's lines for the page, and each line's byte offset in the log.
fn log_lines(bytes: &[u8], start_ms: u64) -> (Vec<pages::LogLine>, Vec<u64>) {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = Vec::new();
    let mut offsets = Vec::new();
    let mut at = 0u64;
    for raw in text.split_inclusive('\n') {
        offsets.push(at);
        at += raw.len() as u64;
        let raw = raw.trim_end_matches('\n');
        let mut parts = raw.splitn(3, ' ');
        let line = match (
            parts.next().and_then(|s| s.parse::<u64>().ok()),
            parts.next(),
        ) {
            (Some(stamp), Some(stream)) => pages::LogLine {
                elapsed: format!(
                    "+{}",
                    crate::logs::human_duration(stamp.saturating_sub(start_ms))
                ),
                stream: stream.to_owned(),
                text: parts.next().unwrap_or_default().to_owned(),
            },
            _ => pages::LogLine {
                elapsed: String::new(),
                stream: String::new(),
                text: raw.to_owned(),
            },
        };
        lines.push(line);
    }
    if lines.len() > LOG_LINES_SHOWN {
        let cut = lines.len() - LOG_LINES_SHOWN;
        lines.drain(..cut);
        offsets.drain(..cut);
    }
    (lines, offsets)
}

async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<JobId>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (_, s) = match session_of_form(&state, &headers, &form).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    if let Err(refusal) = may(
        &s,
        "POST",
        &format!("/api/v1/jobs/{id}/cancel"),
        "cancelling",
    ) {
        return refusal;
    }
    match state.store.cancel(id).await {
        Ok(_) => {
            crate::api::auth::audit_dashboard(
                &state,
                &s.caller,
                "POST",
                "/ui/jobs/{id}/cancel",
                &format!("/ui/jobs/{id}/cancel"),
                StatusCode::SEE_OTHER,
            )
            .await;
            Redirect::to(&format!("/ui/jobs/{id}")).into_response()
        }
        Err(e) => refused(StatusCode::CONFLICT, "Cannot cancel", &e.to_string()),
    }
}

/// Submit the job's spec again as a new job, through the API's own submit
/// (its checks, its commit resolution); the same commit runs again.
async fn retry(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<JobId>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (_, s) = match session_of_form(&state, &headers, &form).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    if let Err(refusal) = may(&s, "POST", "/api/v1/jobs", "retrying (a new submit)") {
        return refusal;
    }
    let record = match state.store.get(id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return refused(
                StatusCode::NOT_FOUND,
                "No such job",
                "There is no job with that number.",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "dashboard: reading a job");
            return refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Cannot read the job",
                "See the engine's log.",
            );
        }
    };
    let mut spec = record.spec;
    // What the engine set, not the client: the commit is the exact one
    // already, and a new job needs no idempotency key of the old one.
    spec.idempotency_key = None;
    spec.trigger = None;
    spec.resolved_from = None;
    let (status, answer) = match crate::api::jobs::submit_spec(&state, spec).await {
        Ok(submitted) => {
            tracing::info!(job = id, new = submitted.record.id, token = %s.caller.token, "dashboard: retry");
            (
                StatusCode::SEE_OTHER,
                Redirect::to(&format!("/ui/jobs/{}", submitted.record.id)).into_response(),
            )
        }
        Err(e) => {
            let mut text = e.message.clone();
            for p in &e.problems {
                text.push_str(&format!(" {}: {}.", p.field, p.message));
            }
            (e.status, refused(e.status, "Cannot retry", &text))
        }
    };
    crate::api::auth::audit_dashboard(
        &state,
        &s.caller,
        "POST",
        "/ui/jobs/{id}/retry",
        &format!("/ui/jobs/{id}/retry"),
        status,
    )
    .await;
    answer
}

/// The caller a session cookie stands for, for the API's read-only
/// routes (the dashboard's live log): `None` without a live session.
pub async fn session_caller(state: &AppState, headers: &HeaderMap) -> Option<Caller> {
    session(state, headers).await.ok().map(|(_, s)| s.caller)
}
