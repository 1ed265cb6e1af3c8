//! The web dashboard `slipway serve` serves at `/ui`: server-rendered pages
//! (overview, jobs, a job's spec, timeline, steps, findings and log,
//! services, workspaces) with a little script for live updates.
//!
//! Access: `/login` trades an API token for a session cookie
//! ([`session`]); every page needs a session, the token never appears in
//! a URL, every state-changing form carries the session's CSRF token (and
//! the cookie is `SameSite=Strict`), and a read-only token sees everything
//! and changes nothing. Every response carries a strict
//! Content-Security-Policy: scripts, styles and connections to the
//! engine itself only, no inline code, no framing.

pub mod pages;
pub mod session;

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
use crate::token::Scope;
use pages::Frame;
use session::Session;

/// The policy on every dashboard response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The log lines a job page shows at most (the newest are kept).
const LOG_LINES_SHOWN: usize = 5_000;

/// `/login`, `/logout` and `/ui/...`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/ui", get(overview))
        .route("/ui/jobs", get(jobs))
        .route("/ui/jobs/{id}", get(job))
        .route("/ui/jobs/{id}/cancel", post(cancel))
        .route("/ui/services", get(services))
        .route("/ui/workspaces", get(workspaces))
        .route("/ui/static/app.css", get(|| asset(pages::CSS, "text/css")))
        .route(
            "/ui/static/app.js",
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
    let to_login = || Redirect::to("/login").into_response();
    let id = session::cookie_value(headers).ok_or_else(to_login)?;
    let s = state.sessions.get(&id).ok_or_else(to_login)?;
    // A token revoked or expired since the login ends its sessions.
    if crate::api::auth::identify_hash(state, &s.token_hash)
        .await
        .is_none()
    {
        state.sessions.close(&id);
        return Err(to_login());
    }
    Ok((id, s))
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
    let (id, _) = match state
        .sessions
        .open(caller.clone(), crate::token::hash(presented))
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
        [(header::SET_COOKIE, session::set_cookie(Some(&id)))],
        Redirect::to("/ui"),
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
    state.sessions.close(&id);
    (
        [(header::SET_COOKIE, session::set_cookie(None))],
        Redirect::to("/login"),
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
    // Where each step's link in the steps table points: a failed step's
    // last line of output (where its failure shows), another's first.
    let step_lines: Vec<usize> = record
        .run
        .iter()
        .flat_map(|r| r.steps.iter())
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
    Html(pages::job(&frame(&s), &record, &log, end, &step_lines).into_string()).into_response()
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
    if s.caller.scope < Scope::Run {
        return refused(
            StatusCode::FORBIDDEN,
            "Refused",
            &format!(
                "Token {} has scope `{}`; cancelling needs `run`.",
                s.caller.token,
                s.caller.scope.name()
            ),
        );
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

async fn services(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (_, s) = match session(&state, &headers).await {
        Ok(found) => found,
        Err(to_login) => return to_login,
    };
    let list = state
        .supervisor
        .as_ref()
        .map(|s| s.statuses())
        .unwrap_or_default();
    Html(pages::services(&frame(&s), &list).into_string()).into_response()
}

async fn workspaces(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (_, s) = match session(&state, &headers).await {
        Ok(found) => found,
        Err(to_login) => return to_login,
    };
    let listed = match &state.workspaces {
        Some(w) => w.list().await.unwrap_or_default(),
        None => Vec::new(),
    };
    let rows: Vec<(String, String, String)> = listed
        .into_iter()
        .map(|w| {
            let state = serde_json::to_value(w.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            (w.id, w.repository, state)
        })
        .collect();
    Html(pages::workspaces(&frame(&s), &rows).into_string()).into_response()
}

/// The caller a session cookie stands for, for the API's read-only
/// routes (the dashboard's live log): `None` without a live session.
pub async fn session_caller(state: &AppState, headers: &HeaderMap) -> Option<Caller> {
    session(state, headers).await.ok().map(|(_, s)| s.caller)
}
