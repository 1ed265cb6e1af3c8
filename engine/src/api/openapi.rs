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
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// `GET /api/v1/openapi.json`: the OpenAPI document, built from [`ApiDoc`] on each request.
pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
