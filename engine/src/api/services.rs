//! `/api/v1/services`: long-running managed services. Declarations go to
//! the store; the runner's supervisor makes the containers follow them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use crate::service::{ManagedService, ManagedServiceSpec};
use crate::supervisor::{ServiceState, ServiceStatus, Supervisor};

/// A declared service with what it is doing now.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceView {
    /// The declaration, with when it was created and last replaced.
    pub service: ManagedService,
    /// `None` until the supervisor has picked the declaration up.
    pub status: Option<ServiceStatus>,
}

/// `GET /api/v1/services/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServicesHealth {
    /// `healthy` when every declared service is ready.
    pub status: &'static str,
    /// The status of every supervised service, by name.
    pub services: Vec<ServiceStatus>,
}

/// Query of `GET /api/v1/services/{name}/logs`.
#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    /// How many of the last lines to return; absent: 100.
    pub tail: Option<usize>,
}

fn supervisor(state: &AppState) -> Result<&Arc<Supervisor>, ApiError> {
    state.supervisor.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_runner",
            "managed services need the Docker runner, which this server does not have",
        )
    })
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no managed service `{name}`"),
    )
    .hint("GET /api/v1/services lists them")
}

fn checked(
    supervisor: &Supervisor,
    body: Result<JsonBody<ManagedServiceSpec>, ApiError>,
) -> Result<ManagedServiceSpec, ApiError> {
    let JsonBody(spec) = body?;
    let mut problems = spec.validate();
    if spec.deployment.is_some() {
        problems.push(crate::job::FieldProblem {
            field: "deployment".into(),
            message:
                "is set by the engine on a deployment's services; declare a deployment instead"
                    .into(),
        });
    }
    problems.extend(supervisor.plugin_problems(&spec));
    if !problems.is_empty() {
        let mut e = ApiError::invalid_spec(problems);
        e.code = "invalid_service";
        return Err(e);
    }
    Ok(spec)
}

fn view(supervisor: &Supervisor, service: ManagedService) -> ServiceView {
    let status = supervisor.status(&service.spec.name);
    ServiceView { service, status }
}

/// Declare a service; it starts at once. `409` when the name is taken.
#[utoipa::path(post, path = "/api/v1/services", request_body = ManagedServiceSpec, security(("bearer" = [])),
    responses((status = 201, body = ServiceView), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    body: Result<JsonBody<ManagedServiceSpec>, ApiError>,
) -> Result<Response, ApiError> {
    let supervisor = supervisor(&state)?;
    let spec = checked(supervisor, body)?;
    let name = spec.name.clone();
    let service = ManagedService::new(spec);
    if state.store.put_service(service.clone(), true).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("managed service `{name}` exists"),
        )
        .hint(format!("PUT /api/v1/services/{name} replaces it")));
    }
    supervisor.sync().await;
    Ok((StatusCode::CREATED, Json(view(supervisor, service))).into_response())
}

/// Create or replace `{name}`; a changed declaration replaces the container.
#[utoipa::path(put, path = "/api/v1/services/{name}", params(("name" = String, Path)), request_body = ManagedServiceSpec, security(("bearer" = [])),
    responses((status = 200, description = "Replaced", body = ServiceView), (status = 201, description = "Created", body = ServiceView), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn replace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<JsonBody<ManagedServiceSpec>, ApiError>,
) -> Result<Response, ApiError> {
    let supervisor = supervisor(&state)?;
    let spec = checked(supervisor, body)?;
    if spec.name != name {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_service",
            format!("the body names service `{}`, the path `{name}`", spec.name),
        );
        e.field = Some("name".into());
        return Err(e);
    }
    let mut service = ManagedService::new(spec);
    if let Some(old) = state.store.get_service(&name).await? {
        service.created_ms = old.created_ms;
    }
    let replaced = state.store.put_service(service.clone(), false).await?;
    supervisor.sync().await;
    Ok((
        if replaced {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        Json(view(supervisor, service)),
    )
        .into_response())
}

/// All declared services, by name, with their status.
#[utoipa::path(get, path = "/api/v1/services", security(("bearer" = [])), responses((status = 200, description = "`{\"services\": [ServiceView]}`"), (status = 401, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let supervisor = supervisor(&state)?;
    let services: Vec<ServiceView> = state
        .store
        .list_services()
        .await?
        .into_iter()
        .map(|s| view(supervisor, s))
        .collect();
    Ok(Json(serde_json::json!({ "services": services })))
}

/// One service.
#[utoipa::path(get, path = "/api/v1/services/{name}", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = ServiceView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceView>, ApiError> {
    let supervisor = supervisor(&state)?;
    let service = state
        .store
        .get_service(&name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(Json(view(supervisor, service)))
}

/// Remove the declaration; the service's containers go with it (its named
/// volumes stay).
#[utoipa::path(delete, path = "/api/v1/services/{name}", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Removed"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let supervisor = supervisor(&state)?;
    if !state.store.delete_service(&name).await? {
        return Err(not_found(&name));
    }
    supervisor.sync().await;
    Ok(StatusCode::NO_CONTENT)
}

/// Restart now; a `failed` service starts over with a fresh restart budget.
#[utoipa::path(post, path = "/api/v1/services/{name}/restart", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 202, description = "Restarting"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn restart(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let supervisor = supervisor(&state)?;
    supervisor.restart(&name).map_err(|_| not_found(&name))?;
    Ok(StatusCode::ACCEPTED)
}

/// The last `tail` lines (default 100) of the service's output and of the
/// supervisor's events about it.
#[utoipa::path(get, path = "/api/v1/services/{name}/logs", params(("name" = String, Path), ("tail" = Option<usize>, Query)), security(("bearer" = [])),
    responses((status = 200, description = "Log lines: `<ms> <stream> <text>`", body = String), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Result<String, ApiError> {
    let supervisor = supervisor(&state)?;
    if state.store.get_service(&name).await?.is_none() {
        return Err(not_found(&name));
    }
    supervisor
        .logs(&name, query.tail.unwrap_or(100))
        .map_err(|e| ApiError::internal("reading the service log", e))
}

/// Health of every managed service: `200` when all are ready, else `503`.
#[utoipa::path(get, path = "/api/v1/services/health", security(("bearer" = [])),
    responses((status = 200, body = ServicesHealth), (status = 503, body = ServicesHealth), (status = 401, body = ErrorBody)))]
pub async fn health(State(state): State<AppState>) -> Result<Response, ApiError> {
    let supervisor = supervisor(&state)?;
    let declared = state.store.list_services().await?;
    let statuses = supervisor.statuses();
    let healthy = declared.iter().all(|d| {
        statuses
            .iter()
            .any(|s| s.name == d.spec.name && s.state == ServiceState::Ready)
    });
    let body = ServicesHealth {
        status: if healthy { "healthy" } else { "unhealthy" },
        services: statuses,
    };
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((code, Json(body)).into_response())
}
