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

/// A failed request on its way to the client: sent with `status` as an
/// [`ErrorBody`].
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status of the response.
    pub status: StatusCode,
    /// Stable code for programs, sent as `error.code` (`not_found`, `conflict`, ...).
    pub code: &'static str,
    /// Explanation for people, sent as `error.message`.
    pub message: String,
    /// Request field the problem is in; `None` when it is not about one field.
    pub field: Option<String>,
    /// What the client can do about it; `None` when there is nothing to suggest.
    pub hint: Option<String>,
    /// Every problem by field (for `invalid_job_spec`); empty otherwise.
    pub problems: Vec<FieldProblem>,
}

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error's code and message, and its field, hint and problems where known.
    pub error: ErrorDetail,
}

/// What went wrong with a request, under the `error` key of every error response.
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
    /// An error with no field, hint or problems; add them with [`ApiError::hint`] or
    /// by setting the fields.
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

    /// Adds a hint saying what the client can do about the error.
    pub fn hint(mut self, hint: impl Into<String>) -> ApiError {
        self.hint = Some(hint.into());
        self
    }

    /// 422 `invalid_job_spec` listing every problem; the message joins them all and
    /// `field` is the first problem's field.
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

    /// Generic 500 `internal`: `error` is logged here with `context`, never sent to
    /// the client.
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

/// Every error answer in the one JSON shape: the framework's own (a path
/// parameter that does not parse, a method a route does not have, an
/// unknown route) come as plain text or empty; they are rewritten here,
/// their text kept as the message.
pub async fn json_errors(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let status = response.status();
    let is_json_or_page = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    // JSON already, or a dashboard page: left as they are.
    if !(status.is_client_error() || status.is_server_error()) || is_json_or_page {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let (code, default) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "the route does not take this method")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "unsupported content type")
        }
        s if s.is_server_error() => ("internal", "the server failed"),
        _ => ("bad_request", "the request does not parse"),
    };
    let message = if text.is_empty() {
        default.to_owned()
    } else {
        text
    };
    let mut out = ApiError::new(status, code, message).into_response();
    // Keep what the route said besides its body (e.g. `Allow`, `Retry-After`).
    for (name, value) in parts.headers.iter() {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
