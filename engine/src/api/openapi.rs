//! The OpenAPI 3 document, generated from the handlers' own annotations and
//! types, served at `GET /api/v1/openapi.json`.

use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};
use super::{deployments, health, jobs, profiles, services, system, tokens, watches, workspaces};
use crate::job::{
    AllGpus, Event, FieldProblem, GpuPolicy, Gpus, JobSpec, JobState, Network, Progress,
    ReadinessSpec, Resources, ServiceSpec, Tier,
};
use crate::job::{ImageRecord, PlanFact, RunRecord, SpecPolicy, StepRecord};
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
                if path.starts_with("/api/v1/workspaces/{id}") {
                    add(
                        "410",
                        "The workspace is closed, or failed while it was prepared",
                    );
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
        RunRecord, StepRecord, ImageRecord, PlanFact, tokens::NewToken, tokens::CreatedToken, crate::token::TokenView,
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

/// `GET /api/v1/openapi.json`: the OpenAPI document, built from [`ApiDoc`]
/// on each request and completed by [`served`] for this server's policy.
pub async fn document(
    axum::extract::State(state): axum::extract::State<super::AppState>,
) -> Result<axum::Json<Value>, super::error::ApiError> {
    served(&state.policy)
        .map(axum::Json)
        .map_err(|e| super::error::ApiError::internal("the OpenAPI document", e))
}

/// A secret's reference, as [`crate::secrets::check_reference`] takes it.
const REFERENCE: &str = r"^(?:env:[^=]+|file:/[\s\S]*)$";

/// The document this server serves: [`ApiDoc`] with what its annotations
/// cannot say. The constraints the server checks that depend on its
/// configuration (the longest job timeout, whether local paths and the host
/// network are allowed), those on map keys and list items, the shapes of
/// the bodies that are not one Rust type (a watch's job template, a
/// workspace's request), and the links from each create operation to the
/// operations on what it created.
pub fn served(policy: &SpecPolicy) -> Result<Value, serde_json::Error> {
    let mut doc = serde_json::to_value(ApiDoc::openapi())?;
    let schemas = &mut doc["components"]["schemas"];

    // A job spec, as this server checks it.
    let job = &mut schemas["JobSpec"]["properties"];
    job["timeout_s"]["maximum"] = json!(policy.max_timeout_s);
    if !policy.allow_host_network {
        let description = job["network"]["description"].take();
        job["network"] = json!({"type": "string", "enum": ["none", "bridge"], "default": "none",
            "description": description});
    }
    let repository = if policy.allow_local_paths {
        // A URL, or an absolute path (`file://` too) without `..`.
        r"^\s*(?:(?:https?|ssh|git)://[^/\s]|git@\S|(?:file://)?/(?![\s\S]*(?:^|/)\.\.(?:/|\s*$)))"
    } else {
        r"^\s*(?:(?:https?|ssh|git)://[^/\s]|git@\S)"
    };
    job["repository"]["pattern"] = json!(repository);
    job["env"]["propertyNames"] = json!({"type": "string", "pattern": "^[^=]+$"});
    job["secrets"]["propertyNames"] = json!({"type": "string", "pattern": "^[^=]+$"});
    job["secrets"]["additionalProperties"] = json!({"type": "string", "pattern": REFERENCE});
    for engine_set in ["trigger", "resolved_from"] {
        job[engine_set]["readOnly"] = json!(true);
    }
    let deployment = &mut schemas["DeploymentSpec"]["properties"];
    deployment["repository"]["pattern"] = json!(repository);
    deployment["env"]["propertyNames"] = json!({"type": "string", "pattern": "^[A-Za-z0-9_]+$"});
    // A secret's name is also not in `env` (one source per variable): a
    // rule between two maps, which the schema cannot state.
    deployment["secrets"]["propertyNames"] =
        json!({"type": "string", "pattern": "^[A-Za-z0-9_]+$"});
    deployment["secrets"]["additionalProperties"] = json!({"type": "string", "pattern": REFERENCE});
    let service = &mut schemas["ManagedServiceSpec"]["properties"];
    service["env"]["propertyNames"] = json!({"type": "string", "pattern": "^[^=]+$"});
    service["secrets"]["propertyNames"] = json!({"type": "string", "pattern": "^[^=]+$"});
    service["secrets"]["additionalProperties"] = json!({"type": "string", "pattern": REFERENCE});
    for service in ["ServiceSpec", "ManagedServiceSpec"] {
        let ports = &mut schemas[service]["properties"]["ports"]["items"];
        ports["minimum"] = json!(1);
        ports["maximum"] = json!(65535);
    }
    // Commands are not blank.
    schemas["Profile"]["properties"]["setup"]["items"]["pattern"] = json!(r"\S");
    for tier in ["fast", "full"] {
        schemas["TierCommands"]["properties"][tier]["items"]["pattern"] = json!(r"\S");
    }

    // A watch's job template: a job spec but its repository and commit.
    let mut template = schemas["JobSpec"].clone();
    for field in ["repository", "commit"] {
        template["properties"]
            .as_object_mut()
            .map(|p| p.remove(field));
    }
    template["required"] = json!([]);
    template["description"] =
        json!("A job spec without `repository` and `commit`, which a watch fills in.");
    schemas["JobTemplate"] = template;
    let watch = &mut schemas["WatchSpec"];
    let description = watch["properties"]["job"]["description"].take();
    watch["properties"]["job"] =
        json!({"$ref": "#/components/schemas/JobTemplate", "description": description});
    watch["properties"]["repository"]["pattern"] = json!(repository);
    let glob = r"^(?!-)(?!refs/)(?![\s\S]*\.\.)[^\x00-\x1f\x7f-\x9f ]+$";
    for field in ["branch", "tag"] {
        watch["properties"][field]["pattern"] = json!(glob);
    }
    // Exactly one of `branch` and `tag`.
    watch["oneOf"] = json!([
        {"required": ["branch"], "properties": {"branch": {"type": "string"}, "tag": {"type": "null"}}},
        {"required": ["tag"], "properties": {"tag": {"type": "string"}, "branch": {"type": "null"}}},
    ]);
    watch["properties"]["poll_interval_s"]["anyOf"] =
        json!([{"maximum": 0}, {"minimum": crate::watches::spec::MIN_POLL_S}]);
    watch["properties"]["sources"]["minItems"] = json!(1);

    // A workspace's request: a job spec and its two lifetimes.
    let mut workspace = schemas["JobSpec"].clone();
    for field in ["idle_timeout_s", "max_lifetime_s"] {
        workspace["properties"][field] = json!({"type": ["integer", "null"], "minimum": 1,
            "description": "Seconds; at least 1 (idle at most the lifetime)."});
    }
    workspace["description"] =
        json!("A job spec, and how long the workspace may sit idle and live.");
    schemas["WorkspaceSpec"] = workspace;
    doc["paths"]["/api/v1/workspaces"]["post"]["requestBody"]["content"]["application/json"]["schema"] =
        json!({"$ref": "#/components/schemas/WorkspaceSpec"});

    // A GPU count is 1 to MAX_GPUS.
    let schemas = &mut doc["components"]["schemas"];
    if let Some(count) = schemas["Gpus"]["oneOf"]
        .as_array_mut()
        .and_then(|v| v.iter_mut().find(|s| s["type"] == "integer"))
    {
        count["minimum"] = json!(1);
        count["maximum"] = json!(crate::job::MAX_GPUS);
    }
    unsigned_32(schemas);

    // Each server-sent event of a followed log: its lines, kind and id.
    doc["paths"]["/api/v1/jobs/{id}/logs"]["get"]["responses"]["200"]["content"]["text/event-stream"]
        ["schema"] = json!({
        "type": "object",
        "properties": {
            "data": {"type": "string", "description": "Log lines, `<ms> <stream> <text>`, or why the stream ends"},
            "event": {"type": "string", "description": "`message` for lines, `end` when the job is over"},
            "id": {"type": "string", "description": "The byte offset to resume from (`Last-Event-ID`)"},
        },
    });

    // Unsigned path and query parameters end where their Rust type does.
    if let Some(paths) = doc["paths"].as_object_mut() {
        for parameter in paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(|item| item.values_mut())
            .filter_map(|op| op.get_mut("parameters").and_then(Value::as_array_mut))
            .flatten()
        {
            let schema = &mut parameter["schema"];
            if schema["minimum"] == json!(0) && schema["maximum"].is_null() {
                schema["maximum"] = json!(u64::MAX);
            }
        }
    }

    links(&mut doc);
    Ok(doc)
}

/// utoipa writes a `u32` as `int32` from 0: the server takes it up to
/// `u32::MAX`, which `int32` does not reach; say so.
fn unsigned_32(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.get("format").is_some_and(|f| f == "int32")
                && map
                    .get("minimum")
                    .and_then(Value::as_f64)
                    .is_some_and(|m| m >= 0.0)
                && !map.contains_key("maximum")
            {
                map.insert("format".into(), json!("int64"));
                map.insert("maximum".into(), json!(u32::MAX));
            }
            map.values_mut().for_each(unsigned_32);
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned_32),
        _ => {}
    }
}

/// A create operation: its path, its status, the parameter its targets take,
/// where that is in its answer, and the targets (path tail, method).
type Create = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// Links from each create operation's answer to the operations on what it
/// created, by `operationRef` (operation ids repeat across resources).
fn links(doc: &mut Value) {
    let creates: [Create; 7] = [
        (
            "/api/v1/jobs",
            "201",
            "id",
            "/id",
            &[
                ("{id}", "get"),
                ("{id}/cancel", "post"),
                ("{id}/logs", "get"),
                ("{id}/callbacks", "get"),
            ],
        ),
        (
            "/api/v1/profiles",
            "201",
            "name",
            "/name",
            &[("{name}", "get"), ("{name}", "put"), ("{name}", "delete")],
        ),
        (
            "/api/v1/services",
            "201",
            "name",
            "/service/spec/name",
            &[
                ("{name}", "get"),
                ("{name}", "put"),
                ("{name}", "delete"),
                ("{name}/restart", "post"),
                ("{name}/logs", "get"),
            ],
        ),
        ("/api/v1/tokens", "201", "id", "/id", &[("{id}", "delete")]),
        (
            "/api/v1/watches",
            "201",
            "id",
            "/watch/id",
            &[
                ("{id}", "get"),
                ("{id}", "put"),
                ("{id}", "delete"),
                ("{id}/pause", "post"),
                ("{id}/resume", "post"),
                ("{id}/secret", "post"),
                ("{id}/deliveries", "get"),
            ],
        ),
        (
            "/api/v1/deployments",
            "201",
            "name",
            "/spec/name",
            &[
                ("{name}", "get"),
                ("{name}", "put"),
                ("{name}", "delete"),
                ("{name}/up", "post"),
                ("{name}/down", "post"),
                ("{name}/rollback", "post"),
                ("{name}/history", "get"),
                ("{name}/logs", "get"),
            ],
        ),
        (
            "/api/v1/workspaces",
            "201",
            "id",
            "/id",
            &[
                ("{id}", "get"),
                ("{id}", "delete"),
                ("{id}/diff", "get"),
                ("{id}/history", "get"),
                ("{id}/validate", "post"),
                ("{id}/reset", "post"),
                ("{id}/patch", "post"),
            ],
        ),
    ];
    for (path, status, parameter, pointer, targets) in creates {
        let mut links = serde_json::Map::new();
        for (tail, method) in targets {
            let target = format!("{path}/{tail}");
            if doc["paths"][&target][method].is_null() {
                continue;
            }
            let escaped = target.replace('~', "~0").replace('/', "~1");
            let name = format!("{method}{}", tail.replace(['{', '}'], "").replace('/', "_"));
            links.insert(
                name,
                json!({
                    "operationRef": format!("#/paths/{escaped}/{method}"),
                    "parameters": {parameter: format!("$response.body#{pointer}")},
                }),
            );
        }
        doc["paths"][path]["post"]["responses"][status]["links"] = Value::Object(links);
    }
}
