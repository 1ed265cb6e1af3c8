//! `/api/v1/tokens`: API tokens, stored hashed; a new token is shown once.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::job::now_ms;
use crate::token::{self, ApiToken, TokenView};

/// `POST /api/v1/tokens` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for, e.g. `ci-runner`: 1 to 64 letters, digits, `-`, `_`
    /// or `.`; a label only, not required to be unique.
    pub name: String,
}

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
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
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
    let value = token::generate().map_err(|e| ApiError::internal("generating a token", e))?;
    let record = ApiToken {
        id: format!("tok-{}", &token::hash(&value)[..12]),
        name: body.name,
        hash: token::hash(&value),
        created_ms: now_ms(),
        revoked_ms: None,
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
        .list_tokens()?
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
    let found = state.store.list_tokens()?.into_iter().find(|t| t.id == id);
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
