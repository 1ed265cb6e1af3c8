//! The one error shape of the API: `{"error": {"code", "message", "field"?,
//! "hint"?, "problems"?}}`. Bad input gets its status and a specific message;
//! internal failures reach the client as a generic 500 and are logged here.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::job::{FieldProblem, TransitionError};
use crate::queue::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub hint: Option<String>,
    pub problems: Vec<FieldProblem>,
}

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `malformed_json`, `invalid_job_spec`, `not_found`, `conflict`, ...
    pub code: String,
    /// For people: what was wrong, and where.
    pub message: String,
    /// The request field the problem is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Every problem, by field, when there are several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<FieldProblem>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            hint: None,
            problems: Vec::new(),
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> ApiError {
        self.hint = Some(hint.into());
        self
    }

    pub fn invalid_spec(problems: Vec<FieldProblem>) -> ApiError {
        let message = problems
            .iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect::<Vec<_>>()
            .join("; ");
        let field = problems.first().map(|p| p.field.clone());
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_job_spec",
            message,
            field,
            hint: None,
            problems,
        }
    }

    pub fn internal(context: &str, error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, "{context}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field,
                hint: self.hint,
                problems: self.problems,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let text = rejection.body_text();
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than the server accepts (1 MiB)",
            );
        }
        match rejection {
            JsonRejection::JsonSyntaxError(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", text)
            }
            JsonRejection::JsonDataError(_) => {
                // e.g. "unknown field `colour`" or "invalid type: string, expected u64"
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_job_spec", text)
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                text,
            )
            .hint("send Content-Type: application/json"),
            _ => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", text),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(id) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no job {id}"))
            }
            StoreError::Transition(t @ TransitionError::WrongState { .. }) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", t.to_string())
            }
            other => ApiError::internal("job store", other),
        }
    }
}
