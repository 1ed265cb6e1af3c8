//! Unauthenticated endpoints: liveness, readiness, Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;

use super::AppState;
use crate::job::JobState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "`ok`", body = String)))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the store answers (and, as they land, Docker and plugins).
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "Ready"), (status = 503, description = "Not ready, with the reason")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.counts().await {
        Ok(_) => (
            StatusCode::OK,
            Json(serde_json::json!({"ready": true, "store": "ok"})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"ready": false, "store": e.to_string()})),
        )
            .into_response(),
    }
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text exposition format", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP slipway_jobs Jobs in the store, by state.");
    let _ = writeln!(out, "# TYPE slipway_jobs gauge");
    let counts = state.store.counts().await.unwrap_or_default();
    for s in JobState::ALL {
        let _ = writeln!(
            out,
            "slipway_jobs{{state=\"{}\"}} {}",
            s.name(),
            counts.get(&s).copied().unwrap_or(0)
        );
    }
    let depth = counts.get(&JobState::Queued).copied().unwrap_or(0)
        + counts.get(&JobState::Retrying).copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "# HELP slipway_queue_depth Jobs waiting to run (queued or retrying)."
    );
    let _ = writeln!(out, "# TYPE slipway_queue_depth gauge");
    let _ = writeln!(out, "slipway_queue_depth {depth}");
    state.scheduler.metrics().render(&mut out);
    if let Some(plugins) = &state.plugins {
        plugins.render_metrics(&mut out);
    }
    if let Some(supervisor) = &state.supervisor {
        supervisor.render_metrics(&mut out);
    }
    if let Some(deployments) = &state.deployments {
        deployments.render_metrics(&mut out).await;
    }
    let _ = writeln!(out, "# HELP slipway_build_info Version of this engine.");
    let _ = writeln!(out, "# TYPE slipway_build_info gauge");
    let _ = writeln!(
        out,
        "slipway_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let mut response = out.into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
