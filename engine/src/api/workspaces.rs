//! `/api/v1/workspaces`: prepared environments kept open for edit-validate
//! loops (docs/design.md, "Workspaces").

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use crate::job::Tier;
use crate::workspace::{ValidateResult, WorkspaceRecord, WorkspaceRequest};
use crate::workspaces::{WorkspaceError, Workspaces};

/// `POST …/validate` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateBody {
    /// Which steps to run: `fast` (the default) or `full` (fast then full,
    /// capped per workspace by `workspaces.max_full_runs`).
    #[serde(default)]
    pub tier: Tier,
}

fn workspaces(state: &AppState) -> Result<&Arc<Workspaces>, ApiError> {
    state.workspaces.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_runner",
            "workspaces need the Docker runner, which this server does not have",
        )
    })
}

impl From<WorkspaceError> for ApiError {
    fn from(e: WorkspaceError) -> ApiError {
        let message = e.to_string();
        match e {
            WorkspaceError::NotFound(_) | WorkspaceError::NoFile(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            WorkspaceError::Gone { .. } => ApiError::new(StatusCode::GONE, "gone", message)
                .hint("create a new workspace with POST /api/v1/workspaces"),
            WorkspaceError::Preparing(_) => {
                ApiError::new(StatusCode::CONFLICT, "preparing", message)
                    .hint("wait until GET /api/v1/workspaces/{id} says `ready`")
            }
            WorkspaceError::Busy(_) => ApiError::new(StatusCode::CONFLICT, "busy", message)
                .hint("retry when the running call has returned"),
            WorkspaceError::TooMany { .. } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_workspaces",
                message,
            )
            .hint("DELETE a workspace you no longer need"),
            WorkspaceError::FullRunsUsed { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "full_runs_used", message)
                    .hint("the fast tier stays available; a new workspace gets new full runs")
            }
            WorkspaceError::PatchFailed(_) => {
                ApiError::new(StatusCode::CONFLICT, "patch_does_not_apply", message).hint(
                    "GET …/diff shows the workspace's current changes; make the patch against them",
                )
            }
            WorkspaceError::BadPath { .. } => {
                let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_path", message);
                e.field = Some("path".into());
                e
            }
            WorkspaceError::Invalid(problems) => {
                let mut e = ApiError::invalid_spec(problems);
                e.code = "invalid_workspace";
                e
            }
            WorkspaceError::ServiceReset(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "service_reset_failed",
                message,
            )
            .hint("the files are back at the base commit; the service's state is not"),
            WorkspaceError::Internal(m) => ApiError::internal("workspace", m),
        }
    }
}

/// Prepare a workspace (body: the job spec's fields plus `idle_timeout_s`,
/// `max_lifetime_s`); `201` with its record in state `preparing`.
#[utoipa::path(post, path = "/api/v1/workspaces", request_body = serde_json::Value, security(("bearer" = [])),
    responses((status = 201, body = WorkspaceRecord), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    body: Result<JsonBody<serde_json::Value>, ApiError>,
) -> Result<Response, ApiError> {
    let ws = workspaces(&state)?;
    let JsonBody(body) = body?;
    let request = WorkspaceRequest::from_json(body).map_err(WorkspaceError::Invalid)?;
    let record = ws.create(request).await?;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

/// Every workspace, newest first (without histories).
#[utoipa::path(get, path = "/api/v1/workspaces", security(("bearer" = [])), responses((status = 200, description = "`{\"workspaces\": [WorkspaceRecord]}`"), (status = 401, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let list = workspaces(&state)?.list().await?;
    Ok(Json(serde_json::json!({ "workspaces": list })))
}

/// One workspace (without its history).
#[utoipa::path(get, path = "/api/v1/workspaces/{id}", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = WorkspaceRecord), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WorkspaceRecord>, ApiError> {
    let mut record = workspaces(&state)?.get(&id).await?;
    record.history.clear();
    Ok(Json(record))
}

/// Close it: its containers and checkout are removed.
#[utoipa::path(delete, path = "/api/v1/workspaces/{id}", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Closed"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    workspaces(&state)?.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Apply a unified diff (the body): all hunks or none; `409` names the hunk
/// that did not apply.
#[utoipa::path(post, path = "/api/v1/workspaces/{id}/patch", params(("id" = String, Path)), request_body(content = String, content_type = "text/x-diff"), security(("bearer" = [])),
    responses((status = 200, body = WorkspaceRecord), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<WorkspaceRecord>, ApiError> {
    let text = std::str::from_utf8(&body).map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_patch",
            "the patch is not UTF-8 text",
        )
    })?;
    let mut record = workspaces(&state)?.patch(&id, text).await?;
    record.history.clear();
    Ok(Json(record))
}

/// A file of the workspace.
#[utoipa::path(get, path = "/api/v1/workspaces/{id}/files/{path}", params(("id" = String, Path), ("path" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "The file's bytes"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn read_file(
    State(state): State<AppState>,
    Path((id, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let bytes = workspaces(&state)?.read_file(&id, &path).await?;
    let mut response = bytes.into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

/// Write a file (the body, at most 1 MiB); `201` when new, `204` when replaced.
#[utoipa::path(put, path = "/api/v1/workspaces/{id}/files/{path}", params(("id" = String, Path), ("path" = String, Path)), request_body(content = String, content_type = "application/octet-stream"), security(("bearer" = [])),
    responses((status = 201, description = "Created"), (status = 204, description = "Replaced"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn write_file(
    State(state): State<AppState>,
    Path((id, path)): Path<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let existed = workspaces(&state)?.write_file(&id, &path, &body).await?;
    Ok(if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

/// Delete a file.
#[utoipa::path(delete, path = "/api/v1/workspaces/{id}/files/{path}", params(("id" = String, Path), ("path" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete_file(
    State(state): State<AppState>,
    Path((id, path)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    workspaces(&state)?.delete_file(&id, &path).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The changes against the base commit, as a unified diff.
#[utoipa::path(get, path = "/api/v1/workspaces/{id}/diff", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "A unified diff", body = String), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn diff(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let diff = workspaces(&state)?.diff(&id).await?;
    let mut response = diff.into_response();
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("text/x-diff"));
    Ok(response)
}

/// Run the `fast` (or `fast` then `full`) steps; `200` with the result,
/// also when a step failed (`ok: false`).
#[utoipa::path(post, path = "/api/v1/workspaces/{id}/validate", params(("id" = String, Path)), request_body = ValidateBody, security(("bearer" = [])),
    responses((status = 200, body = ValidateResult), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn validate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<JsonBody<ValidateBody>, ApiError>,
) -> Result<Json<ValidateResult>, ApiError> {
    let JsonBody(body) = body?;
    Ok(Json(workspaces(&state)?.validate(&id, body.tier).await?))
}

/// Files back to the base commit, services back to their state after setup.
#[utoipa::path(post, path = "/api/v1/workspaces/{id}/reset", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = WorkspaceRecord), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn reset(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WorkspaceRecord>, ApiError> {
    let mut record = workspaces(&state)?.reset(&id).await?;
    record.history.clear();
    Ok(Json(record))
}

/// Every validate call, oldest first.
#[utoipa::path(get, path = "/api/v1/workspaces/{id}/history", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "`{\"history\": [ValidateResult]}`"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let record = workspaces(&state)?.get(&id).await?;
    Ok(Json(serde_json::json!({ "history": record.history })))
}
