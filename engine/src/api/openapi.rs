//! The OpenAPI 3 document, generated from the handlers' own annotations and
//! types, served at `GET /api/v1/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};
use super::{deployments, health, jobs, profiles, services, system, tokens, watches, workspaces};
use crate::job::{
    AllGpus, Event, FieldProblem, GpuPolicy, Gpus, JobSpec, JobState, Network, Progress,
    ReadinessSpec, Resources, ServiceSpec, Tier,
};
use crate::job::{ImageRecord, RunRecord, StepRecord};
use crate::profile::{CachePolicy, Profile, TierCommands};
use crate::service::{ManagedService, ManagedServiceSpec, RestartMode, RestartPolicy, VolumeMount};
use crate::supervisor::{ServiceState, ServiceStatus};
use crate::workspace::{FindingView, StepResult, ValidateResult, WorkspaceRecord, WorkspaceState};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The answers every operation can give besides its own, added to each
/// one that does not declare them: the middleware's (401 no valid token,
/// 403 scope, 429 failed-authentication limit) under `/api/`, the
/// extractors' (400 a path or query parameter that does not parse; 400,
/// 413, 415 and 422 a body that does not), and 408 past the request
/// timeout. All in the one error shape.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |why: &str| {
            ResponseBuilder::new()
                .description(why)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let behind_token = path.starts_with("/api/");
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let mut add = |status: &str, why: &str| {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(why).into());
                };
                if behind_token {
                    add("401", "No valid bearer token");
                    add("403", "The token's scope does not allow this request");
                    add("429", "Too many failed authentications from this client");
                    // Streams and steps with their own timeouts are not limited.
                    let long = ["/logs", "/patch", "/validate", "/reset"]
                        .iter()
                        .any(|end| path.ends_with(end));
                    if !long {
                        add("408", "The request took longer than the server allows");
                    }
                }
                if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                    add("400", "A path or query parameter does not parse");
                }
                if op.request_body.is_some() {
                    add("400", "The body is not valid JSON");
                    add("413", "The body is larger than the server accepts (1 MiB)");
                    add(
                        "415",
                        "The body's content type is not the one the operation takes",
                    );
                    add("422", "The body does not describe a valid request");
                }
            }
        }
    }
}

/// The API's OpenAPI 3 description: every path and schema, with bearer-token security.
#[derive(OpenApi)]
#[openapi(
    info(title = "Slipway", description = "Jobs against code repositories in hardened containers."),
    paths(
        jobs::submit, jobs::list, jobs::show, jobs::cancel, jobs::logs, jobs::callbacks,
        profiles::create, profiles::replace, profiles::list, profiles::show, profiles::delete,
        services::create, services::replace, services::list, services::show, services::delete,
        services::restart, services::logs, services::health,
        tokens::create, tokens::list, tokens::revoke, tokens::audit,
        workspaces::create, workspaces::list, workspaces::show, workspaces::delete, workspaces::patch,
        workspaces::read_file, workspaces::write_file, workspaces::delete_file, workspaces::diff,
        workspaces::validate, workspaces::reset, workspaces::history,
        watches::create, watches::list, watches::show, watches::replace, watches::delete,
        watches::pause, watches::resume, watches::rotate_secret, watches::deliveries, watches::hook,
        deployments::create, deployments::list, deployments::show, deployments::replace,
        deployments::delete, deployments::up, deployments::down, deployments::rollback,
        deployments::history, deployments::logs,
        system::update, system::last_update,
        health::healthz, health::readyz, health::metrics,
    ),
    components(schemas(
        JobSpec, Tier, Resources, ServiceSpec, ReadinessSpec, Network, Gpus, AllGpus, GpuPolicy, JobState, Progress, Event, FieldProblem,
        jobs::JobView, jobs::JobList, Profile, TierCommands, CachePolicy, ErrorBody, ErrorDetail,
        ManagedServiceSpec, ManagedService, RestartPolicy, RestartMode, VolumeMount,
        services::ServiceView, services::ServicesHealth, ServiceStatus, ServiceState,
        RunRecord, StepRecord, ImageRecord, tokens::NewToken, tokens::CreatedToken, crate::token::TokenView,
        crate::token::Scope, crate::token::AuditEntry,
        WorkspaceRecord, WorkspaceState, ValidateResult, StepResult, FindingView, workspaces::ValidateBody,
        crate::watches::WatchSpec, crate::watches::WatchView, crate::watches::WatchState,
        crate::watches::RefState, crate::watches::Delivery, crate::watches::Forge,
        watches::WatchCreated, watches::HookAnswer, crate::job::Trigger, crate::job::TriggerKind,
        crate::callbacks::CallbackSpec, crate::callbacks::CallbackEvents, crate::callbacks::OutboxEntry,
        crate::callbacks::Attempt,
        crate::deployments::DeploymentSpec, crate::deployments::Deployment,
        crate::deployments::SyncState, crate::deployments::HealthState, crate::deployments::Release,
        crate::deployments::ReleasedService, crate::deployments::Rollout,
        crate::deployments::RolloutResult, deployments::ServiceLog,
        crate::selfupdate::UpdateRequest, crate::selfupdate::UpdateStatus, crate::selfupdate::UpdateState,
    )),
    modifiers(&BearerAuth, &CommonResponses)
)]
pub struct ApiDoc;

/// `GET /api/v1/openapi.json`: the OpenAPI document, built from [`ApiDoc`] on each request.
pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
