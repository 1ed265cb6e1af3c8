//! `/api/v1/deployments`: Compose stacks kept at a branch's head.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use crate::deployments::{Deployment, DeploymentError, DeploymentSpec, Deployments, Rollout};

/// One service's recent output, as `GET …/logs` returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceLog {
    /// The Compose service.
    pub service: String,
    /// Its last lines.
    pub log: String,
}

fn deployments(state: &AppState) -> Result<&Arc<Deployments>, ApiError> {
    state.deployments.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_deployments",
            "deployments need `slipway serve` with a Docker runner",
        )
    })
}

impl From<DeploymentError> for ApiError {
    fn from(e: DeploymentError) -> ApiError {
        match e {
            DeploymentError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
                    .hint("GET /api/v1/deployments lists them")
            }
            DeploymentError::Busy(_) | DeploymentError::NothingToRollBack(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            DeploymentError::Store(e) => e.into(),
        }
    }
}

fn checked(
    state: &AppState,
    body: Result<JsonBody<DeploymentSpec>, ApiError>,
) -> Result<DeploymentSpec, ApiError> {
    let JsonBody(spec) = body?;
    let problems = spec.validate(&state.policy);
    if !problems.is_empty() {
        let mut e = ApiError::invalid_spec(problems);
        e.code = "invalid_deployment";
        return Err(e);
    }
    Ok(spec)
}

/// Declare a deployment; its branch's head is rolled out at the first look.
/// `409` when the name is taken.
#[utoipa::path(post, path = "/api/v1/deployments", request_body = DeploymentSpec, security(("bearer" = [])),
    responses((status = 201, body = Deployment), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    body: Result<JsonBody<DeploymentSpec>, ApiError>,
) -> Result<Response, ApiError> {
    let deployments = deployments(&state)?;
    let spec = checked(&state, body)?;
    let name = spec.name.clone();
    match deployments.create(spec).await? {
        Some(d) => Ok((StatusCode::CREATED, Json(d)).into_response()),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("deployment `{name}` exists"),
        )
        .hint(format!("PUT /api/v1/deployments/{name} replaces it"))),
    }
}

/// Every deployment with its state.
#[utoipa::path(get, path = "/api/v1/deployments", security(("bearer" = [])),
    responses((status = 200, body = [Deployment]), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<Deployment>>, ApiError> {
    Ok(Json(deployments(&state)?.list().await?))
}

/// One deployment: sync and health, what runs, what ran before, history.
#[utoipa::path(get, path = "/api/v1/deployments/{name}", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Deployment), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Deployment>, ApiError> {
    Ok(Json(deployments(&state)?.get(&name).await?))
}

/// Replace a deployment's declaration (its state and history stay).
#[utoipa::path(put, path = "/api/v1/deployments/{name}", params(("name" = String, Path)), request_body = DeploymentSpec, security(("bearer" = [])),
    responses((status = 200, body = Deployment), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn replace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<JsonBody<DeploymentSpec>, ApiError>,
) -> Result<Json<Deployment>, ApiError> {
    let deployments = deployments(&state)?;
    let spec = checked(&state, body)?;
    if spec.name != name {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_deployment",
            format!(
                "the body names deployment `{}`, the path `{name}`",
                spec.name
            ),
        );
        e.field = Some("name".into());
        return Err(e);
    }
    Ok(Json(deployments.replace(spec).await?))
}

/// Remove a deployment: its services stop and go (named volumes stay).
#[utoipa::path(delete, path = "/api/v1/deployments/{name}", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    deployments(&state)?.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deploy the branch's head now (a commit that failed is tried again) and
/// reconcile again after a `down`. `202`: the rollout runs in the background.
#[utoipa::path(post, path = "/api/v1/deployments/{name}/up", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 202, body = Deployment), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn up(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let d = deployments(&state)?.up(&name).await?;
    Ok((StatusCode::ACCEPTED, Json(d)).into_response())
}

/// Stop the stack; nothing is deployed again until `up`, restarts included.
#[utoipa::path(post, path = "/api/v1/deployments/{name}/down", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Deployment), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn down(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Deployment>, ApiError> {
    Ok(Json(deployments(&state)?.down(&name).await?))
}

/// Bring back the release before the running one. `202`: it runs in the
/// background.
#[utoipa::path(post, path = "/api/v1/deployments/{name}/rollback", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 202, body = Deployment), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let d = deployments(&state)?.rollback(&name).await?;
    Ok((StatusCode::ACCEPTED, Json(d)).into_response())
}

/// Its rollouts, newest first.
#[utoipa::path(get, path = "/api/v1/deployments/{name}/history", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = [Rollout]), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Rollout>>, ApiError> {
    Ok(Json(deployments(&state)?.get(&name).await?.history))
}

/// The last 200 lines of each running service's output.
#[utoipa::path(get, path = "/api/v1/deployments/{name}/logs", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = [ServiceLog]), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<ServiceLog>>, ApiError> {
    Ok(Json(
        deployments(&state)?
            .logs(&name, 200)
            .await?
            .into_iter()
            .map(|(service, log)| ServiceLog { service, log })
            .collect(),
    ))
}
