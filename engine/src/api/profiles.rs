//! `/api/v1/profiles`: repo profiles CRUD.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use crate::profile::Profile;

fn checked(body: Result<JsonBody<Profile>, ApiError>) -> Result<Profile, ApiError> {
    let JsonBody(profile) = body?;
    let problems = profile.validate();
    if !problems.is_empty() {
        let mut e = ApiError::invalid_spec(problems);
        e.code = "invalid_profile";
        return Err(e);
    }
    Ok(profile)
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no profile `{name}`"),
    )
}

/// Create; `409` when the name is taken.
#[utoipa::path(post, path = "/api/v1/profiles", request_body = Profile, security(("bearer" = [])),
    responses((status = 201, body = Profile), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    body: Result<JsonBody<Profile>, ApiError>,
) -> Result<Response, ApiError> {
    let profile = checked(body)?;
    let name = profile.name.clone();
    if state.store.put_profile(profile.clone(), true).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("profile `{name}` exists"),
        )
        .hint(format!("PUT /api/v1/profiles/{name} replaces it")));
    }
    Ok((StatusCode::CREATED, Json(profile)).into_response())
}

/// Create or replace `{name}`; the body's `name` must match.
#[utoipa::path(put, path = "/api/v1/profiles/{name}", params(("name" = String, Path)), request_body = Profile, security(("bearer" = [])),
    responses((status = 200, description = "Replaced", body = Profile), (status = 201, description = "Created", body = Profile), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn replace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<JsonBody<Profile>, ApiError>,
) -> Result<Response, ApiError> {
    let profile = checked(body)?;
    if profile.name != name {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_profile",
            format!(
                "the body names profile `{}`, the path `{name}`",
                profile.name
            ),
        );
        e.field = Some("name".into());
        return Err(e);
    }
    let replaced = state.store.put_profile(profile.clone(), false).await?;
    Ok((
        if replaced {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        Json(profile),
    )
        .into_response())
}

/// All profiles, by name.
#[utoipa::path(get, path = "/api/v1/profiles", security(("bearer" = [])), responses((status = 200, description = "`{\"profiles\": [...]}`"), (status = 401, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        serde_json::json!({ "profiles": state.store.list_profiles().await? }),
    ))
}

/// One profile.
#[utoipa::path(get, path = "/api/v1/profiles/{name}", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Profile), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Profile>, ApiError> {
    state
        .store
        .get_profile(&name)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(&name))
}

/// Delete a profile.
#[utoipa::path(delete, path = "/api/v1/profiles/{name}", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_profile(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&name))
    }
}
