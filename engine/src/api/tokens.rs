//! `/api/v1/tokens`: API tokens, stored hashed; a new token is shown once.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use crate::job::now_ms;
use crate::token::{self, ApiToken, AuditEntry, Scope, TokenView};

/// `POST /api/v1/tokens` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for, e.g. `ci-runner`: 1 to 64 letters, digits, `-`, `_`
    /// or `.`; a label only, not required to be unique.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub name: String,
    /// What it may do: `read`, `run` (the default) or `admin`.
    #[serde(default = "default_scope")]
    pub scope: Scope,
    /// Seconds until it stops working (1 to 10 years); without it, never.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 315_360_000)]
    pub expires_in_s: Option<u64>,
}

fn default_scope() -> Scope {
    Scope::Run
}

/// The longest a token may be made to last, in seconds (10 years).
const MAX_EXPIRY_S: u64 = 315_360_000;

/// The one time a token is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// The stored token's `id`, `name` and timestamps, inline in the object.
    #[serde(flatten)]
    pub view: TokenView,
    /// The bearer token itself (`slw_` and 64 hex digits); only its hash is
    /// kept, so it cannot be shown again.
    pub token: String,
}

/// Create a token; its value is in this response only.
#[utoipa::path(post, path = "/api/v1/tokens", request_body = NewToken, security(("bearer" = [])),
    responses((status = 201, body = CreatedToken), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    body: Result<JsonBody<NewToken>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(body) = body?;
    if !token::valid_name(&body.name) {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_token",
            format!(
                "`{}` must be 1 to 64 letters, digits, `-`, `_` or `.`",
                body.name
            ),
        );
        e.field = Some("name".into());
        return Err(e);
    }
    if let Some(s) = body.expires_in_s
        && !(1..=MAX_EXPIRY_S).contains(&s)
    {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_token",
            format!("{s} s is outside 1 s to 10 years"),
        );
        e.field = Some("expires_in_s".into());
        return Err(e);
    }
    let value = token::generate().map_err(|e| ApiError::internal("generating a token", e))?;
    let created_ms = now_ms();
    let record = ApiToken {
        id: format!("tok-{}", &token::hash(&value)[..12]),
        name: body.name,
        hash: token::hash(&value),
        created_ms,
        revoked_ms: None,
        scope: body.scope,
        expires_ms: body.expires_in_s.map(|s| created_ms + s * 1000),
    };
    state.store.put_token(record.clone()).await?;
    let created = CreatedToken {
        view: record.into(),
        token: value,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Every token (never their values), oldest first.
#[utoipa::path(get, path = "/api/v1/tokens", security(("bearer" = [])), responses((status = 200, description = "`{\"tokens\": [TokenView]}`"), (status = 401, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let mut tokens: Vec<TokenView> = state
        .store
        .list_tokens()
        .await?
        .into_iter()
        .map(TokenView::from)
        .collect();
    tokens.sort_by_key(|t| t.created_ms);
    Ok(Json(serde_json::json!({ "tokens": tokens })))
}

/// Revoke a token: it stops working at once. Revoking twice is fine.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let found = state
        .store
        .list_tokens()
        .await?
        .into_iter()
        .find(|t| t.id == id);
    let Some(mut record) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no token `{id}`"),
        ));
    };
    if record.revoked_ms.is_none() {
        record.revoked_ms = Some(now_ms());
        state.store.put_token(record).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `GET /api/v1/audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries older than this `seq` (the previous page's last).
    before: Option<u64>,
    /// How many (1 to 500; default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// The audit log: every request that changed something (or tried to),
/// newest first: who (token id), what (method, route, target), the
/// answer's status, when. The newest 10,000 are kept.
#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery), security(("bearer" = [])),
    responses((status = 200, body = [AuditEntry]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn audit(
    State(state): State<AppState>,
    query: Result<axum::extract::Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let axum::extract::Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
    let limit = super::jobs::page_size(q.limit, 100)?;
    let before = super::jobs::position("before", q.before)?;
    Ok(Json(state.store.list_audit(before, limit).await?))
}
