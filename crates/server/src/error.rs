//! The one mapping from failures to HTTP: `application/problem+json` (RFC 9457).
//!
//! Every rejection says what and where. Unexpected failures become an opaque 500 that is
//! logged once here, with its cause, and never shows internal text to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use questline_core::pointer::{FieldError, ValidationErrors};
use questline_store::StoreError;
use serde::Serialize;

/// Stable problem `type` URIs; documented in docs/errors.md.
pub mod kind {
    pub const MALFORMED: &str = "https://questline.dev/problems/malformed-request";
    pub const VALIDATION: &str = "https://questline.dev/problems/validation";
    pub const UNAUTHORIZED: &str = "https://questline.dev/problems/unauthorized";
    pub const FORBIDDEN: &str = "https://questline.dev/problems/forbidden";
    pub const NOT_FOUND: &str = "https://questline.dev/problems/not-found";
    pub const CONFLICT: &str = "https://questline.dev/problems/conflict";
    pub const TOO_LARGE: &str = "https://questline.dev/problems/payload-too-large";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "https://questline.dev/problems/unsupported-media-type";
    pub const METHOD_NOT_ALLOWED: &str = "https://questline.dev/problems/method-not-allowed";
    pub const UNAVAILABLE: &str = "https://questline.dev/problems/unavailable";
    pub const INTERNAL: &str = "https://questline.dev/problems/internal";
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<PointerError>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PointerError {
    pub pointer: String,
    pub detail: String,
}

/// An error a handler returns.
#[derive(Debug)]
pub enum ApiError {
    Problem(Box<Problem>),
    /// Unexpected: logged, answered with an opaque 500.
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    fn problem(status: StatusCode, kind: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        ApiError::Problem(Box::new(Problem {
            kind,
            title,
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }))
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::problem(StatusCode::BAD_REQUEST, kind::MALFORMED, "Malformed request", detail)
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => one.to_string(),
            many => format!("{} problems, first: {}", many.len(), many[0]),
        };
        let mut e = Self::problem(StatusCode::UNPROCESSABLE_ENTITY, kind::VALIDATION, "Invalid request", detail);
        if let ApiError::Problem(p) = &mut e {
            p.errors = errors.into_iter().map(|e| PointerError { pointer: e.pointer, detail: e.detail }).collect();
        }
        e
    }

    pub fn invalid(pointer: &str, detail: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(pointer, detail)])
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::problem(StatusCode::UNAUTHORIZED, kind::UNAUTHORIZED, "Unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::problem(StatusCode::FORBIDDEN, kind::FORBIDDEN, "Forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::problem(StatusCode::NOT_FOUND, kind::NOT_FOUND, "Not found", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::problem(StatusCode::CONFLICT, kind::CONFLICT, "Conflict", detail)
    }

    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::problem(StatusCode::PAYLOAD_TOO_LARGE, kind::TOO_LARGE, "Payload too large", detail)
    }

    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            kind::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            detail,
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::problem(
            StatusCode::METHOD_NOT_ALLOWED,
            kind::METHOD_NOT_ALLOWED,
            "Method not allowed",
            "this path does not accept that method",
        )
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::problem(StatusCode::SERVICE_UNAVAILABLE, kind::UNAVAILABLE, "Unavailable", detail)
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::Internal(cause.to_string())
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Problem(p) => StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(e: ValidationErrors) -> Self {
        ApiError::validation(e.0)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => ApiError::conflict(what),
            // Only reaches a client once the business layer's own retries are spent.
            StoreError::Retryable(_) => ApiError::unavailable("the database is busy with conflicting work; retry"),
            StoreError::Database(_)
            | StoreError::Migrate(_)
            | StoreError::Corrupt(_)
            | StoreError::UnsupportedUrl(_) => ApiError::internal(e),
        }
    }
}

impl From<crate::service::ingest::IngestError> for ApiError {
    fn from(e: crate::service::ingest::IngestError) -> Self {
        use crate::service::ingest::IngestError;
        match e {
            IngestError::ShuttingDown => ApiError::unavailable("the server is shutting down; retry elsewhere"),
            IngestError::Store(e) => match &*e {
                StoreError::Retryable(_) => ApiError::unavailable("the database is busy with conflicting work; retry"),
                other => ApiError::internal(other),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match self {
            ApiError::Problem(p) => *p,
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                Problem {
                    kind: kind::INTERNAL,
                    title: "Internal error",
                    status: 500,
                    detail: "an unexpected error occurred; it has been logged".into(),
                    errors: Vec::new(),
                }
            }
        };
        let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(problem)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        response
    }
}
