//! `/api/v1/system/update`: the engine replaces its own container with one
//! on a new image (see [`crate::selfupdate`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use crate::selfupdate::{SelfUpdate, UpdateError, UpdateRequest, UpdateStatus};

fn updater(state: &AppState) -> Result<&Arc<SelfUpdate>, ApiError> {
    state.self_update.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_self_update",
            "self-update needs `slipway serve` with a Docker daemon",
        )
    })
}

impl From<UpdateError> for ApiError {
    fn from(e: UpdateError) -> ApiError {
        let message = e.to_string();
        match e {
            UpdateError::NotInContainer | UpdateError::AlreadyCurrent { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            UpdateError::InProgress { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
                    .hint("GET /api/v1/system/update shows where it stands")
            }
            UpdateError::ImageNotFound(_) => {
                let mut e =
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_update", message);
                e.field = Some("image".into());
                e
            }
            UpdateError::Invalid { field, .. } => {
                let mut e =
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_update", message);
                e.field = Some(field.into());
                e
            }
            UpdateError::Runtime(_) | UpdateError::Io { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "update_failed", message)
            }
        }
    }
}

/// Start replacing the engine's container with one on `image` (default:
/// the reference it was started from, as tagged now). `202` with the
/// update; its end is read from `GET /api/v1/system/update`.
#[utoipa::path(post, path = "/api/v1/system/update", request_body = UpdateRequest, security(("bearer" = [])),
    responses((status = 202, body = UpdateStatus), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    body: Result<JsonBody<UpdateRequest>, ApiError>,
) -> Result<(StatusCode, Json<UpdateStatus>), ApiError> {
    let updater = updater(&state)?;
    let JsonBody(request) = body?;
    Ok((StatusCode::ACCEPTED, Json(updater.start(request).await?)))
}

/// The last update: `updating`, `updated`, `rolled_back` or `failed`, with
/// the images and the reason. `404` before the first.
#[utoipa::path(get, path = "/api/v1/system/update", security(("bearer" = [])),
    responses((status = 200, body = UpdateStatus), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn last_update(State(state): State<AppState>) -> Result<Json<UpdateStatus>, ApiError> {
    updater(&state)?.last().map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this engine has not been updated yet",
        )
        .hint("POST /api/v1/system/update starts one")
    })
}
