//! `/api/v1/jobs`: submit, list, show, cancel, logs.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use crate::checkout::{self, CheckoutError};
use crate::job::{FieldProblem, JobId, JobRecord, JobSpec, JobState};
use crate::queue::ListFilter;

/// How long a submit waits for the repository to name a ref's commit
/// (within the request's own time limit, `api::REQUEST_TIMEOUT`).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A job as the API shows it: the record, with secret references replaced
/// by their names.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    /// The job's id: a sequence number, unique and increasing in submit order.
    pub id: JobId,
    /// Where the job is in its life cycle.
    pub state: JobState,
    /// The submitted spec; `secrets` holds only the secret names.
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
    /// Attempts started so far; 0 until the job first runs.
    pub attempt: u32,
    /// Attempts allowed before the job is `dead` (from the spec, else the server default).
    pub max_attempts: u32,
    /// Fence of the running attempt; a report from any other attempt is refused.
    /// `null` when no attempt is running.
    pub fence: Option<u64>,
    /// When the running attempt's lease runs out unless its worker heartbeats (Unix ms);
    /// `null` when no attempt is running.
    pub lease_expires_ms: Option<u64>,
    /// Worker holding the running attempt (`slipway-<pid>`); `null` when none is running.
    pub worker: Option<String>,
    /// When the job was submitted (Unix ms).
    pub created_ms: u64,
    /// When the record last changed: a state change, progress or run report (Unix ms).
    pub updated_ms: u64,
    /// A cancel was asked for while the job ran; the attempt ends as `cancelled` once
    /// its worker sees it at the next heartbeat.
    pub cancel_requested: bool,
    /// Step the current (or last) attempt last reported; `null` until it reports one.
    pub progress: Option<crate::job::Progress>,
    /// Why the job last retried or ended (e.g. `tests failed`); `null` before either.
    pub reason: Option<String>,
    /// Every state change, oldest first, starting with `submitted`.
    pub events: Vec<crate::job::Event>,
    /// What the last attempt ran: commit, image, plugins, steps, timings.
    pub run: Option<crate::job::RunRecord>,
    /// What submitted the job: the API, a watch (and the webhook delivery
    /// that woke it), or a deployment.
    pub trigger: crate::job::Trigger,
}

impl From<JobRecord> for JobView {
    fn from(r: JobRecord) -> JobView {
        let secret_names: Vec<String> = r.spec.secrets.keys().cloned().collect();
        let trigger = r.spec.trigger.clone().unwrap_or_default();
        let mut spec = serde_json::to_value(&r.spec).unwrap_or_default();
        if let Some(obj) = spec.as_object_mut() {
            obj.insert("secrets".into(), serde_json::json!(secret_names));
        }
        JobView {
            id: r.id,
            state: r.state,
            spec,
            attempt: r.attempt,
            max_attempts: r.max_attempts,
            fence: r.lease.as_ref().map(|l| l.fence),
            lease_expires_ms: r.lease.as_ref().map(|l| l.expires_ms),
            worker: r.lease.map(|l| l.worker),
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
            cancel_requested: r.cancel_requested,
            progress: r.progress,
            reason: r.reason,
            events: r.events,
            run: r.run,
            trigger,
        }
    }
}

/// The job's callback messages (its final state, or every change, per
/// callback) with every delivery attempt.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/callbacks", params(("id" = u64, Path)), security(("bearer" = [])),
    responses((status = 200, body = [crate::callbacks::OutboxEntry]), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn callbacks(
    State(state): State<AppState>,
    Path(id): Path<JobId>,
) -> Result<Json<Vec<crate::callbacks::OutboxEntry>>, ApiError> {
    if state.store.get(id).await?.is_none() {
        return Err(crate::queue::StoreError::NotFound(id).into());
    }
    Ok(Json(state.store.job_callbacks(id).await?))
}

/// Submit a job.
#[utoipa::path(post, path = "/api/v1/jobs", request_body = JobSpec, security(("bearer" = [])),
    responses((status = 201, description = "Created", body = JobView), (status = 200, description = "An earlier job with the same idempotency key", body = JobView),
        (status = 400, description = "Malformed JSON", body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, description = "Invalid spec: every problem by field", body = ErrorBody)))]
pub async fn submit(
    State(state): State<AppState>,
    body: Result<JsonBody<JobSpec>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(spec) = body?;
    let submitted = submit_spec(&state, spec).await?;
    let status = if submitted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(JobView::from(submitted.record))).into_response())
}

/// Check `spec` (its fields, its profile), resolve its commit, store it and
/// wake the scheduler: what `POST /api/v1/jobs` does, shared with the
/// dashboard's retry.
pub(crate) async fn submit_spec(
    state: &AppState,
    spec: JobSpec,
) -> Result<crate::queue::Submitted, ApiError> {
    let mut problems = spec.validate(&state.policy);
    if let Some(name) = &spec.profile
        && state.store.get_profile(name).await?.is_none()
    {
        let known: Vec<String> = state
            .store
            .list_profiles()
            .await?
            .into_iter()
            .map(|p| p.name)
            .collect();
        let known = if known.is_empty() {
            "none defined".to_owned()
        } else {
            format!("known: {}", known.join(", "))
        };
        problems.push(crate::job::FieldProblem {
            field: "profile".into(),
            message: format!("unknown profile `{name}` ({known})"),
        });
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_spec(problems));
    }
    let mut spec = spec;
    resolve_commit(&mut spec, &state.git_credentials).await?;
    let submitted = state.store.submit(spec).await?;
    if submitted.created {
        crate::metrics::Metrics::add(&state.scheduler.metrics().jobs_submitted, 1);
    }
    state.scheduler.wake();
    Ok(submitted)
}

/// A ref in `commit` (branch, tag, `HEAD`) becomes the SHA it names now, so
/// every attempt of the job runs the same code; the ref is kept in
/// `resolved_from`. A plain directory has no commits and is left alone.
async fn resolve_commit(
    spec: &mut JobSpec,
    credentials: &crate::git_auth::GitCredentials,
) -> Result<(), ApiError> {
    let reference = spec.commit.trim().to_owned();
    let repository = spec.repository.clone();
    // Before any git call, even with a full SHA: the job's checkout would
    // otherwise be the first to find out.
    let (repo, creds) = (repository.clone(), credentials.clone());
    let reachable = tokio::task::spawn_blocking(move || creds.check_reachable(&repo))
        .await
        .map_err(|e| ApiError::internal("checking the repository URL", e.to_string()))?;
    if let Err(e) = reachable {
        return Err(ApiError::invalid_spec(vec![FieldProblem {
            field: "repository".into(),
            message: e.to_string(),
        }]));
    }
    if crate::job::is_full_sha(&reference) || checkout::is_plain_directory(&spec.repository) {
        return Ok(());
    }
    let (repo, r, credentials) = (repository.clone(), reference.clone(), credentials.clone());
    let resolved = tokio::task::spawn_blocking(move || {
        checkout::resolve_ref(&repo, &r, RESOLVE_TIMEOUT, &credentials)
    })
    .await
    .map_err(|e| ApiError::internal("resolving the commit", e.to_string()))?;
    let problem = match resolved {
        Ok(sha) => {
            spec.commit = sha;
            spec.resolved_from = Some(reference);
            return Ok(());
        }
        Err(CheckoutError::UnknownCommit { .. }) => FieldProblem {
            field: "commit".into(),
            message: format!(
                "`{reference}` names no branch, tag or commit in {repository}; give a full 40-digit SHA, or a branch or tag that exists there"
            ),
        },
        Err(e) => FieldProblem {
            field: "repository".into(),
            message: format!(
                "could not ask {repository} which commit `{reference}` is: {e}; check the URL and that this server can reach it, or give a full 40-digit SHA"
            ),
        },
    };
    Err(ApiError::invalid_spec(vec![problem]))
}

/// Query of `GET /api/v1/jobs`: a state filter, and the page to fetch.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only jobs in this state.
    #[param(value_type = Option<crate::job::JobState>)]
    state: Option<String>,
    /// The page after this job id (the previous page's `next_cursor`).
    cursor: Option<JobId>,
    /// How many (1 to 500; default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// A list's `limit`: 1 to 500, `default` when absent; anything else is
/// refused (the document says so, and a clamp would accept what it refuses).
pub(super) fn page_size(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(n) => {
            let mut e = ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("limit {n} is outside 1 to 500"),
            );
            e.field = Some("limit".into());
            Err(e)
        }
    }
}

/// A list's position (`cursor`, `before`): the document states it as a
/// 64-bit signed integer, as most clients read one; past that is refused.
pub(super) fn position(field: &'static str, at: Option<u64>) -> Result<Option<u64>, ApiError> {
    match at {
        Some(n) if n > i64::MAX as u64 => {
            let mut e = ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("{field} {n} is past the largest id, {}", i64::MAX),
            );
            e.field = Some(field.into());
            Err(e)
        }
        other => Ok(other),
    }
}

/// One page of jobs, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JobList {
    jobs: Vec<JobView>,
    /// Pass as `cursor` for the next (older) page.
    next_cursor: Option<JobId>,
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/api/v1/jobs", params(ListQuery), security(("bearer" = [])),
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
    let job_state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            let known: Vec<&str> = JobState::ALL.iter().map(|s| s.name()).collect();
            let mut e = ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("unknown state `{s}` (known: {})", known.join(", ")),
            );
            e.field = Some("state".into());
            e
        })?),
    };
    let limit = page_size(q.limit, 50)?;
    let store = state.store.clone();
    let filter = ListFilter {
        state: job_state,
        before: position("cursor", q.cursor)?,
        limit,
    };
    let records = store.list(&filter).await?;
    let next_cursor = if records.len() == limit {
        records.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Json(JobList {
        jobs: records.into_iter().map(JobView::from).collect(),
        next_cursor,
    }))
}

async fn find(state: &AppState, id: JobId) -> Result<JobRecord, ApiError> {
    state
        .store
        .get(id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no job {id}")))
}

/// One job's record.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", params(("id" = u64, Path)), security(("bearer" = [])),
    responses((status = 200, body = JobView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<JobId>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(find(&state, id).await?.into()))
}

/// Cancel a job: at once when waiting, at its next heartbeat when running.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", params(("id" = u64, Path)), security(("bearer" = [])),
    responses((status = 200, body = JobView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Already finished", body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<JobId>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(state.store.cancel(id).await?.into()))
}

/// Query of `GET /api/v1/jobs/{id}/logs`: where to start, and whether to follow.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    offset: Option<u64>,
    tail: Option<usize>,
    #[serde(default)]
    follow: bool,
}

const LOG_CHUNK: usize = 256 * 1024;

/// A job's log: text from `offset` (or the last `tail` lines); with `follow=true`, server-sent
/// events (`id` = the offset after the event, resumable with `Last-Event-ID`; `event: end` when
/// the job has finished).
#[utoipa::path(get, path = "/api/v1/jobs/{id}/logs", params(("id" = u64, Path), LogQuery), security(("bearer" = [])),
    responses((status = 200, description = "text/plain, or text/event-stream when following",
            content((String = "text/plain"), (String = "text/event-stream"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn logs(
    State(state): State<AppState>,
    caller: Option<axum::Extension<super::auth::Caller>>,
    Path(id): Path<JobId>,
    headers: HeaderMap,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
    find(&state, id).await?;
    // An SSE client that reconnects sends the id of the last event it saw.
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut offset = resume.or(q.offset).unwrap_or(0);
    if let Some(n) = q.tail.filter(|_| resume.is_none() && q.offset.is_none()) {
        offset = tail_offset(&state, id, n)?;
    }
    if !q.follow {
        let (bytes, next) = state
            .logs
            .read(id, offset, LOG_CHUNK)
            .map_err(|e| ApiError::internal("log read", e))?;
        let mut response = (StatusCode::OK, bytes).into_response();
        response.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
            .headers_mut()
            .insert("x-slipway-next-offset", HeaderValue::from(next));
        return Ok(response);
    }
    // Held by the stream: the slot frees when the client goes away.
    let token = caller.map_or_else(|| "configured".to_owned(), |c| c.0.token);
    let slot = state.auth_guard.open_stream(&token).ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!(
                "token {token} holds {} log streams open already",
                super::auth::STREAMS_PER_TOKEN
            ),
        )
        .hint("close streams you no longer read, or read without follow=true")
    })?;
    let stream = futures_util::stream::unfold(
        (state, offset, false),
        move |(state, offset, done)| async move {
            if done {
                return None;
            }
            loop {
                let (bytes, next) = match state.logs.read(id, offset, LOG_CHUNK) {
                    Ok(r) => r,
                    Err(e) => {
                        return Some((
                            Ok::<Event, Infallible>(
                                Event::default().event("error").data(e.to_string()),
                            ),
                            (state, offset, true),
                        ));
                    }
                };
                if !bytes.is_empty() {
                    let text = String::from_utf8_lossy(&bytes)
                        .trim_end_matches('\n')
                        .to_owned();
                    return Some((
                        Ok(Event::default().id(next.to_string()).data(text)),
                        (state, next, false),
                    ));
                }
                let finished = state
                    .store
                    .get(id)
                    .await
                    .ok()
                    .flatten()
                    .is_none_or(|r| r.state.is_final());
                if finished {
                    // Read once more: the last lines may have landed since.
                    if let Ok((bytes, _)) = state.logs.read(id, offset, LOG_CHUNK)
                        && !bytes.is_empty()
                    {
                        continue;
                    }
                    return Some((
                        Ok(Event::default().event("end").data("job finished")),
                        (state, offset, true),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        },
    );
    let stream = futures_util::StreamExt::map(stream, move |event| {
        let _held = &slot;
        event
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The offset where the last `n` lines start.
fn tail_offset(state: &AppState, id: JobId, n: usize) -> Result<u64, ApiError> {
    let path = state.logs.path(id);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(ApiError::internal("log read", e)),
    };
    let mut newlines = 0;
    for (i, b) in bytes.iter().enumerate().rev().skip(1) {
        if *b == b'\n' {
            newlines += 1;
            if newlines == n {
                return Ok(i as u64 + 1);
            }
        }
    }
    Ok(0)
}
