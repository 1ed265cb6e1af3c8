//! The HTTP API (axum). Only this module knows HTTP and JSON wire shapes;
//! it calls the queue through the [`JobStore`] seam and never sees redb.
//!
//! Routes (docs/design.md, "HTTP API"): `/api/v1/jobs` (POST, GET),
//! `/api/v1/jobs/{id}`, `/api/v1/jobs/{id}/cancel`, `/api/v1/profiles[/{name}]`,
//! `/api/v1/services[/{name}[/restart|/logs]]`, `/api/v1/services/health`,
//! `/api/v1/tokens[/{id}]`, `/api/v1/workspaces[/{id}[/patch|/files/{path}|/diff|/validate|/reset|/history]]`, `/api/v1/jobs/{id}/logs`
//! (`?offset=`, `?tail=`, `?follow=true` as server-sent events that resume
//! from `Last-Event-ID`), all behind a bearer token; `/healthz`, `/readyz`,
//! `/metrics` without one. `/api/v1/openapi.json` describes it all (generated from
//! the handlers, see [`openapi`]). Bodies are capped at 1 MiB. A request
//! that takes longer than [`AppState::request_timeout`] (a slow upload, a
//! slow repository answering a ref lookup) is answered 408; only the routes
//! that are long by nature (log streams, a workspace's patch, validate and
//! reset, which run steps with their own timeouts) are exempt.

pub mod auth;
pub mod body;
pub mod deployments;
pub mod error;
mod health;
pub mod jobs;
pub mod openapi;
mod profiles;
pub mod services;
pub mod system;
pub mod tokens;
pub mod watches;
pub mod workspaces;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::job::SpecPolicy;
use crate::logs::JobLogs;
use crate::queue::{JobStore, Scheduler};

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler shares; the optional parts are `None` where the engine
/// runs without them (e.g. no Docker runner).
#[derive(Clone)]
pub struct AppState {
    /// Jobs, profiles, services, tokens, workspaces and watches.
    pub store: Arc<dyn JobStore>,
    /// Woken after a submit; holds the metrics `/metrics` renders.
    pub scheduler: Arc<Scheduler>,
    /// The job logs on disk, read by the log routes.
    pub logs: JobLogs,
    /// The server's own bearer token (its token file or `SLIPWAY_TOKEN`);
    /// tokens made with `slipway tokens create` are checked in the store.
    pub token: Arc<str>,
    /// The limits job specs are checked against at submit.
    pub policy: SpecPolicy,
    /// Managed services; `None` where there is no Docker runner (tests of
    /// the queue alone), and the services routes answer 503.
    pub supervisor: Option<Arc<crate::supervisor::Supervisor>>,
    /// The plugin host, for its call counts in `/metrics`.
    pub plugins: Option<Arc<crate::plugins::PluginSandbox>>,
    /// Workspaces; `None` without a Docker runner (the routes answer 503).
    pub workspaces: Option<Arc<crate::workspaces::Workspaces>>,
    /// The longest a request may take, body included (see the module doc).
    pub request_timeout: std::time::Duration,
    /// For resolving refs of private repositories at submit.
    pub git_credentials: crate::git_auth::GitCredentials,
    /// The watcher of watched repositories; `None` outside `serve` (the
    /// watch routes answer 503).
    pub watcher: Option<Arc<crate::watches::Watcher>>,
    /// The deployments controller; `None` outside `serve` (the routes answer 503).
    pub deployments: Option<Arc<crate::deployments::Deployments>>,
    /// Self-update; `None` outside `serve` (the routes answer 503).
    pub self_update: Option<Arc<crate::selfupdate::SelfUpdate>>,
    /// Failed authentications by client, open log streams by token.
    pub auth_guard: Arc<auth::AuthGuard>,
    /// The dashboard's sessions, cookie setting, plugin list and queue history.
    pub dashboard: Arc<crate::dashboard::state::DashboardState>,
    /// This engine among the replicas of a shared store; `None` with redb.
    /// Requests for what the duties own are forwarded to their holder.
    pub replica: Option<Arc<crate::replica::Replica>>,
}

/// The default of [`AppState::request_timeout`].
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The HTTP API: `/api/v1` behind the bearer token, `/hooks/{id}` for forge
/// webhooks, `/healthz`, `/readyz`, `/metrics` without a token, and the
/// dashboard (`/login`, `/ui`) behind a session.
pub fn router(state: AppState) -> Router {
    let replica = state.replica.clone();
    let quick = Router::new()
        .route("/jobs", post(jobs::submit).get(jobs::list))
        .route("/jobs/{id}", get(jobs::show))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/jobs/{id}/callbacks", get(jobs::callbacks))
        .route("/openapi.json", get(openapi::document))
        .route("/profiles", post(profiles::create).get(profiles::list))
        .route(
            "/profiles/{name}",
            get(profiles::show)
                .put(profiles::replace)
                .delete(profiles::delete),
        )
        .route("/services", post(services::create).get(services::list))
        .route("/services/health", get(services::health))
        .route(
            "/services/{name}",
            get(services::show)
                .put(services::replace)
                .delete(services::delete),
        )
        .route("/services/{name}/restart", post(services::restart))
        .route("/tokens", post(tokens::create).get(tokens::list))
        .route("/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/audit", get(tokens::audit))
        .route(
            "/deployments",
            post(deployments::create).get(deployments::list),
        )
        .route(
            "/deployments/{name}",
            get(deployments::show)
                .put(deployments::replace)
                .delete(deployments::delete),
        )
        .route("/deployments/{name}/up", post(deployments::up))
        .route("/deployments/{name}/down", post(deployments::down))
        .route("/deployments/{name}/rollback", post(deployments::rollback))
        .route("/deployments/{name}/history", get(deployments::history))
        .route("/deployments/{name}/logs", get(deployments::logs))
        .route(
            "/system/update",
            post(system::update).get(system::last_update),
        )
        .route("/watches", post(watches::create).get(watches::list))
        .route(
            "/watches/{id}",
            get(watches::show)
                .put(watches::replace)
                .delete(watches::delete),
        )
        .route("/watches/{id}/pause", post(watches::pause))
        .route("/watches/{id}/resume", post(watches::resume))
        .route("/watches/{id}/secret", post(watches::rotate_secret))
        .route("/watches/{id}/deliveries", get(watches::deliveries))
        .route(
            "/workspaces",
            post(workspaces::create).get(workspaces::list),
        )
        .route(
            "/workspaces/{id}",
            get(workspaces::show).delete(workspaces::delete),
        )
        .route(
            "/workspaces/{id}/files/{*path}",
            get(workspaces::read_file)
                .put(workspaces::write_file)
                .delete(workspaces::delete_file),
        )
        .route("/workspaces/{id}/diff", get(workspaces::diff))
        .route("/workspaces/{id}/history", get(workspaces::history))
        .route_layer(axum::middleware::from_fn_with_state(
            state.request_timeout,
            time_limit,
        ));
    // Long by nature: streams, and steps that carry their own timeouts.
    let long = Router::new()
        .route("/jobs/{id}/logs", get(jobs::logs))
        .route("/services/{name}/logs", get(services::logs))
        .route("/workspaces/{id}/patch", post(workspaces::patch))
        .route("/workspaces/{id}/validate", post(workspaces::validate))
        .route("/workspaces/{id}/reset", post(workspaces::reset));
    let api = quick
        .merge(long)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let router = Router::new()
        .nest("/api/v1", api)
        // Forges sign with the watch's secret: no bearer token here.
        .route("/hooks/{id}", post(watches::hook))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // The dashboard's pages are HTML, which the JSON error layer
        // leaves as they are.
        .merge(crate::dashboard::router().layer(DefaultBodyLimit::max(64 * 1024)))
        .layer(axum::middleware::map_response(error::json_errors))
        .with_state(state);
    match replica {
        // Outermost: a forwarded request is authenticated by its owner.
        Some(replica) => router.layer(axum::middleware::from_fn_with_state(
            replica,
            crate::replica::forward_owned,
        )),
        None => router,
    }
}

/// Answer 408 when a request (its body included) outlasts `limit`.
async fn time_limit(
    axum::extract::State(limit): axum::extract::State<std::time::Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error::ApiError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request took longer than {} s and was stopped",
                limit.as_secs_f64()
            ),
        )
        .hint("send the body at once and retry; a submit with an idempotency_key is safe to retry")
        .into_response(),
    }
}

/// Serve until `shutdown`, then finish in-flight requests. `listener` is
/// a `TcpListener`, or a [`crate::tls::TlsListener`] when `serve`
/// terminates TLS.
pub async fn serve<L>(
    listener: L,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    use axum::serve::ListenerExt;
    // A tapped listener has `ConnectInfo<SocketAddr>` whatever its stream
    // type: the auth layer limits failures by client address over TLS too.
    axum::serve(
        listener.tap_io(|_| {}),
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}
