//! Handlers of the pages about what is not a job: managed services,
//! workspaces, plugins, deployments and watches. Each reads what the API
//! route of the same thing reads.

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::views::{self, PluginRow};
use super::{CsrfForm, frame, may, refused, session, session_of_form};
use crate::api::AppState;
use crate::plugins::Status;

/// Service log lines a service page shows.
const SERVICE_LOG_LINES: usize = 200;

fn unavailable(what: &str) -> Response {
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "Not available",
        &format!("{what} need `slipway serve` with the Docker runner."),
    )
}

fn not_found(what: &str) -> Response {
    refused(StatusCode::NOT_FOUND, "Not found", what)
}

fn failed(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "dashboard: {what}");
    refused(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Cannot read it",
        &format!("{what} failed (see the engine's log)."),
    )
}

/// `/ui/services`: managed services and their health.
pub(super) async fn services(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (_, s) = match session(&state, &headers).await {
        Ok(found) => found,
        Err(to_login) => return to_login,
    };
    let list = state
        .supervisor
        .as_ref()
        .map(|s| s.statuses())
        .unwrap_or_default();
    let body = maud::html! {
        h1 { "Managed services" }
        div #services data-refresh="3000" { (super::pages::service_table(&list)) }
    };
    Html(super::pages::page("Services", Some(&frame(&s)), body).into_string()).into_response()
}

/// `/ui/services/{name}`: state, restarts, last failure and log.
pub(super) async fn service(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let (_, s) = match session(&state, &headers).await {
        Ok(found) => found,
        Err(to_login) => return to_login,
    };
    let Some(supervisor) = state.supervisor.as_ref() else {
        return unavailable("Managed services");
    };
    let declared = match state.store.get_service(&name).await {
        Ok(Some(d)) => d,
        Ok(None) => return not_found(&format!("No managed service `{name}`.")),
        Err(e) => return failed("reading a service", e),
    };
    let log = match supervisor.logs(&name, SERVICE_LOG_LINES) {
        Ok(log) => log,
        Err(e) => return failed("reading a service's log", e),
    };
    let status = supervisor.status(&name);
    Html(views::service(&frame(&s), &declared.spec, status.as_ref(), &log).into_string())
        .into_response()
}

/// `POST /ui/services/{name}/restart`, as `POST /api/v1/services/{name}/restart`.
pub(super) async fn restart(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (_, s) = match session_of_form(&state, &headers, &form).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let api_path = format!("/api/v1/services/{name}/restart");
    if let Err(refusal) = may(&s, "POST", &api_path, "restarting a service") {
        return refusal;
    }
    let Some(supervisor) = state.supervisor.as_ref() else {
        return unavailable("Managed services");
    };
    let (status, answer) = match supervisor.restart(&name) {
        Ok(()) => (
            StatusCode::SEE_OTHER,
            Redirect::to(&format!("/ui/services/{name}")).into_response(),
        ),
        Err(_) => (
            StatusCode::NOT_FOUND,
            not_found(&format!("No managed service `{name}`.")),
        ),
    };
    crate::api::auth::audit_dashboard(
        &state,
        &s.caller,
        "POST",
        "/ui/services/{name}/restart",
        &format!("/ui/services/{name}/restart"),
        status,
    )
    .await;
    answer
}

/// `/ui/workspaces`.
pub(super) async fn workspaces(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (_, s) = match session(&state, &headers).await {
        Ok(found) => found,
        Err(to_login) => return to_login,
    };
    let Some(ws) = state.workspaces.as_ref() else {
        return unavailable("Workspaces");
    };
    let mut list = match ws.list().await {
        Ok(list) => list,
        Err(e) => return failed("listing workspaces", e),
    };
    list.sort_by_key(|w| std::cmp::Reverse(w.created_ms));
    Html(views::workspaces(&frame(&s), &list).into_string()).into_response()
}

/// `/ui/workspaces/{id}`: the workspace and its validate history.
pub(super) async fn workspace(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (_, s) = match session(&state, &headers).await {
        Ok(found) => found,
        Err(to_login) => return to_login,
    };
    let Some(ws) = state.workspaces.as_ref() else {
        return unavailable("Workspaces");
    };
    match ws.get(&id).await {
        Ok(w) => Html(views::workspace(&frame(&s), &w).into_string()).into_response(),
        Err(crate::workspaces::WorkspaceError::NotFound(_)) => {
            not_found(&format!("No workspace `{id}`."))
        }
        Err(e) => failed("reading a workspace", e),
    }
}

/// `/ui/plugins`: every plugin the engine found, with its status.
pub(super) async fn plugins(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (_, s) = match session(&state, &headers).await {
        Ok(found) => found,
        Err(to_login) => return to_login,
    };
    let Some(registry) = state.dashboard.registry.as_ref() else {
        return unavailable("The plugin list");
    };
    let rows: Vec<PluginRow> = registry
        .candidates()
        .iter()
        .map(|c| {
            let (status, reason) = match &c.status {
                Status::Active => ("active", None),
                Status::Shadowed { by } => ("shadowed", Some(format!("version {by} is in use"))),
                Status::Replaced { by } => (
                    "replaced",
                    Some(format!(
                        "the third-party {by} replaces it (plugins.replace)"
                    )),
                ),
                Status::Rejected(e) => ("rejected", Some(e.to_string())),
            };
            PluginRow {
                status,
                name: c.name.clone(),
                version: c.version().map(|v| v.to_string()),
                world: c.world().map(|w| w.name()),
                origin: c.origin.to_string(),
                third_party: c.is_third_party(),
                reason,
                description: c
                    .manifest
                    .as_ref()
                    .map(|m| m.description.clone())
                    .unwrap_or_default(),
            }
        })
        .collect();
    Html(views::plugins(&frame(&s), &rows, &registry.source_problems).into_string()).into_response()
}

/// `/ui/deployments`.
pub(super) async fn deployments(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (_, s) = match session(&state, &headers).await {
        Ok(found) => found,
        Err(to_login) => return to_login,
    };
    let Some(d) = state.deployments.as_ref() else {
        return unavailable("Deployments");
    };
    match d.list().await {
        Ok(list) => Html(views::deployments(&frame(&s), &list).into_string()).into_response(),
        Err(e) => failed("listing deployments", e),
    }
}

/// `/ui/deployments/{name}`: state, health, history.
pub(super) async fn deployment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let (_, s) = match session(&state, &headers).await {
        Ok(found) => found,
        Err(to_login) => return to_login,
    };
    let Some(d) = state.deployments.as_ref() else {
        return unavailable("Deployments");
    };
    match d.get(&name).await {
        Ok(dep) => Html(views::deployment(&frame(&s), &dep).into_string()).into_response(),
        Err(crate::deployments::DeploymentError::NotFound(_)) => {
            not_found(&format!("No deployment `{name}`."))
        }
        Err(e) => failed("reading a deployment", e),
    }
}

/// `/ui/watches`.
pub(super) async fn watches(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (_, s) = match session(&state, &headers).await {
        Ok(found) => found,
        Err(to_login) => return to_login,
    };
    match state.store.list_watches().await {
        Ok(list) => Html(views::watches(&frame(&s), &list).into_string()).into_response(),
        Err(e) => failed("listing watches", e),
    }
}

/// `/ui/watches/{id}`: refs and deliveries.
pub(super) async fn watch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (_, s) = match session(&state, &headers).await {
        Ok(found) => found,
        Err(to_login) => return to_login,
    };
    let w = match state.store.get_watch(&id).await {
        Ok(Some(w)) => w,
        Ok(None) => return not_found(&format!("No watch `{id}`.")),
        Err(e) => return failed("reading a watch", e),
    };
    match state.store.list_deliveries(&id).await {
        Ok(deliveries) => {
            Html(views::watch(&frame(&s), &w, &deliveries).into_string()).into_response()
        }
        Err(e) => failed("reading a watch's deliveries", e),
    }
}
