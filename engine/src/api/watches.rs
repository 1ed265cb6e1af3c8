//! `/api/v1/watches`: watched branches and tags, and `/hooks/{id}`, where
//! forges post their webhooks (no bearer token: the watch's own secret
//! signs each delivery).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use crate::job::JobId;
use crate::watches::watcher::WatchError;
use crate::watches::{Delivery, WatchSpec, WatchView, Watcher};

/// A watch just created (or its secret rotated): the secret is shown this
/// once; configure it in the forge's webhook settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct WatchCreated {
    /// The watch as `GET /api/v1/watches/{id}` shows it.
    pub watch: WatchView,
    /// The webhook secret (`whsec_…`): never shown again.
    pub secret: String,
}

/// What a webhook delivery got, the same words its record keeps.
#[derive(Debug, Serialize, ToSchema)]
pub struct HookAnswer {
    /// What became of the delivery (`submitted job 12 for …`, `ignored: …`,
    /// `rejected: …`).
    pub verdict: String,
    /// The job submitted for it, if one was.
    pub job: Option<JobId>,
}

fn watcher(state: &AppState) -> Result<&Arc<Watcher>, ApiError> {
    state.watcher.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_watcher",
            "watches need `slipway serve`, which runs the watcher",
        )
    })
}

impl From<WatchError> for ApiError {
    fn from(e: WatchError) -> ApiError {
        match e {
            WatchError::Unknown(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no watch `{id}`"),
            )
            .hint("GET /api/v1/watches lists them"),
            WatchError::Store(e) => e.into(),
            WatchError::Look { .. } => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "repository_unreachable",
                e.to_string(),
            ),
            other => ApiError::internal("watches", other),
        }
    }
}

fn checked(
    state: &AppState,
    body: Result<JsonBody<WatchSpec>, ApiError>,
) -> Result<WatchSpec, ApiError> {
    let JsonBody(spec) = body.map_err(|mut e| {
        if e.code == "invalid_job_spec" {
            e.code = "invalid_watch";
        }
        e
    })?;
    let problems = spec.validate(&state.policy);
    if !problems.is_empty() {
        let mut e = ApiError::invalid_spec(problems);
        e.code = "invalid_watch";
        return Err(e);
    }
    Ok(spec)
}

/// Watch a repository's branch or tags; the answer holds the webhook
/// secret, shown once. The first look records the current heads; every
/// later commit runs.
#[utoipa::path(post, path = "/api/v1/watches", request_body = WatchSpec, security(("bearer" = [])),
    responses((status = 201, body = WatchCreated), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    body: Result<JsonBody<WatchSpec>, ApiError>,
) -> Result<Response, ApiError> {
    let watcher = watcher(&state)?;
    let spec = checked(&state, body)?;
    let (watch, secret) = watcher.create(spec).await?;
    // The first look at once: the heads found are the baseline, and a bad
    // repository shows on the watch now, not after a poll interval. A slow
    // one is left to finish in the background.
    let (w, id) = (watcher.clone(), watch.id.clone());
    let first = tokio::spawn(async move { w.look(&id, None).await });
    if let Ok(Ok(Err(e))) = tokio::time::timeout(std::time::Duration::from_secs(10), first).await {
        tracing::info!(watch = %watch.id, error = %e, "the first look failed");
    }
    let watch = state.store.get_watch(&watch.id).await?.unwrap_or(watch);
    Ok((
        StatusCode::CREATED,
        Json(WatchCreated {
            watch: WatchView::from(&watch),
            secret,
        }),
    )
        .into_response())
}

/// Every watch.
#[utoipa::path(get, path = "/api/v1/watches", security(("bearer" = [])),
    responses((status = 200, body = [WatchView]), (status = 401, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<WatchView>>, ApiError> {
    Ok(Json(
        state
            .store
            .list_watches()
            .await?
            .iter()
            .map(WatchView::from)
            .collect(),
    ))
}

async fn get_watch(state: &AppState, id: &str) -> Result<WatchView, ApiError> {
    state
        .store
        .get_watch(id)
        .await?
        .map(|w| WatchView::from(&w))
        .ok_or_else(|| WatchError::Unknown(id.to_owned()).into())
}

/// One watch: its declaration, and per ref what it saw and ran.
#[utoipa::path(get, path = "/api/v1/watches/{id}", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = WatchView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WatchView>, ApiError> {
    Ok(Json(get_watch(&state, &id).await?))
}

/// Replace a watch's declaration (its secret and history stay).
#[utoipa::path(put, path = "/api/v1/watches/{id}", params(("id" = String, Path)), request_body = WatchSpec, security(("bearer" = [])),
    responses((status = 200, body = WatchView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn replace(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<JsonBody<WatchSpec>, ApiError>,
) -> Result<Json<WatchView>, ApiError> {
    let watcher = watcher(&state)?;
    let spec = checked(&state, body)?;
    Ok(Json(WatchView::from(&watcher.update(&id, spec).await?)))
}

/// Stop watching (the watch's jobs stay).
#[utoipa::path(delete, path = "/api/v1/watches/{id}", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match watcher(&state)?.delete(&id).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(WatchError::Unknown(id).into()),
    }
}

/// Pause: no polls, and deliveries are recorded but start nothing.
#[utoipa::path(post, path = "/api/v1/watches/{id}/pause", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = WatchView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WatchView>, ApiError> {
    let w = watcher(&state)?.set_paused(&id, true).await?;
    Ok(Json(WatchView::from(&w)))
}

/// Resume a paused watch: it looks at once.
#[utoipa::path(post, path = "/api/v1/watches/{id}/resume", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = WatchView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WatchView>, ApiError> {
    let w = watcher(&state)?.set_paused(&id, false).await?;
    Ok(Json(WatchView::from(&w)))
}

/// A new webhook secret, shown once; the old one stops verifying at once.
#[utoipa::path(post, path = "/api/v1/watches/{id}/secret", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = WatchCreated), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WatchCreated>, ApiError> {
    let secret = watcher(&state)?.rotate_secret(&id).await?;
    Ok(Json(WatchCreated {
        watch: get_watch(&state, &id).await?,
        secret,
    }))
}

/// Every delivery the watch was sent (newest first, the last 200), each
/// with its verdict.
#[utoipa::path(get, path = "/api/v1/watches/{id}/deliveries", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = [Delivery]), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    get_watch(&state, &id).await?;
    Ok(Json(state.store.list_deliveries(&id).await?))
}

/// A forge's webhook: verified with the watch's secret, then "look now".
/// The commit that runs is the one the repository reports for the watched
/// ref, never one named in the body.
#[utoipa::path(post, path = "/hooks/{id}", params(("id" = String, Path)),
    responses((status = 200, body = HookAnswer, description = "Read; nothing new to run (the verdict says why)"),
              (status = 202, body = HookAnswer, description = "A job was submitted"),
              (status = 400, body = HookAnswer), (status = 401, body = HookAnswer), (status = 404, body = HookAnswer),
              (status = 413, body = ErrorBody), (status = 502, body = HookAnswer)))]
pub async fn hook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(watcher) = state.watcher.as_ref() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HookAnswer {
                verdict: "this server runs no watcher".into(),
                job: None,
            }),
        )
            .into_response();
    };
    let answer = watcher.deliver(&id, &headers, &body).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        Json(HookAnswer {
            verdict: answer.verdict,
            job: answer.job,
        }),
    )
        .into_response()
}
