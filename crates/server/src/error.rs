//! The one mapping from failures to HTTP: `application/problem+json` (RFC 9457).
//!
//! [`problem`] is the table of every public problem type: one entry per cause, each with its
//! status and title, so that clients can branch on `type` and `docs/errors.md` can list them
//! all (a test holds the two together). [`ApiError`] maps every [`ServiceError`] with an
//! exhaustive match. Unexpected failures become an opaque 500 that is logged once here, with
//! its cause, and never shows internal text to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use questline_core::pointer::{FieldError, ValidationErrors};
use questline_service::ServiceError;
use serde::Serialize;

/// The prefix of every problem `type` URI.
pub const TYPE_BASE: &str = "https://questline.dev/problems/";

/// One public problem type: a stable slug (the end of its `type` URI), a status and a title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemType {
    pub slug: &'static str,
    pub status: StatusCode,
    pub title: &'static str,
}

macro_rules! problem_types {
    ($($name:ident = ($slug:literal, $status:ident, $title:literal);)*) => {
        /// Every problem type questline answers with. Documented in `docs/errors.md`.
        pub mod problem {
            use super::ProblemType;
            use axum::http::StatusCode;
            $(pub const $name: ProblemType = ProblemType { slug: $slug, status: StatusCode::$status, title: $title };)*
            /// The whole table, for documentation and its test.
            pub const ALL: &[ProblemType] = &[$($name),*];
        }
    };
}

problem_types! {
    MALFORMED_REQUEST = ("malformed-request", BAD_REQUEST, "Malformed request");
    UNAUTHORIZED = ("unauthorized", UNAUTHORIZED, "Unauthorized");
    FORBIDDEN = ("forbidden", FORBIDDEN, "Forbidden");
    NOT_FOUND = ("not-found", NOT_FOUND, "Not found");
    MISSION_NOT_FOUND = ("mission-not-found", NOT_FOUND, "No such mission");
    KEY_NOT_FOUND = ("key-not-found", NOT_FOUND, "No such API key");
    JOB_NOT_FOUND = ("job-not-found", NOT_FOUND, "No such job");
    WEBHOOK_NOT_FOUND = ("webhook-not-found", NOT_FOUND, "No such webhook");
    MESSAGE_NOT_FOUND = ("message-not-found", NOT_FOUND, "No such message");
    METHOD_NOT_ALLOWED = ("method-not-allowed", METHOD_NOT_ALLOWED, "Method not allowed");
    MISSION_ID_TAKEN = ("mission-id-taken", CONFLICT, "Mission id taken");
    MESSAGE_ID_TAKEN = ("message-id-taken", CONFLICT, "Message id used for another message");
    RULES_IMMUTABLE = ("rules-immutable", CONFLICT, "Rules are immutable");
    INVALID_TRANSITION = ("invalid-transition", CONFLICT, "Status change not allowed");
    STALE_WRITE = ("stale-write", CONFLICT, "Changed meanwhile");
    NOT_A_DRAFT = ("not-a-draft", CONFLICT, "Not a draft");
    LAST_ADMIN_KEY = ("last-admin-key", CONFLICT, "Last admin key");
    INSUFFICIENT_BALANCE = ("insufficient-balance", CONFLICT, "Insufficient balance");
    JOB_NOT_RETRYABLE = ("job-not-retryable", CONFLICT, "Job cannot be retried");
    JOB_NOT_CANCELLABLE = ("job-not-cancellable", CONFLICT, "Job cannot be cancelled");
    JOB_UNIQUE_KEY_TAKEN = ("job-unique-key-taken", CONFLICT, "Job's unique key taken");
    FULFILMENT_ENDPOINT_TAKEN = ("fulfilment-endpoint-taken", CONFLICT, "Fulfilment endpoint exists");
    TOO_MANY_WEBHOOKS = ("too-many-webhooks", CONFLICT, "Too many webhooks");
    SECRET_KEY_NOT_CONFIGURED = ("secret-key-not-configured", CONFLICT, "Secret key not configured");
    PAYLOAD_TOO_LARGE = ("payload-too-large", PAYLOAD_TOO_LARGE, "Payload too large");
    URI_TOO_LONG = ("uri-too-long", URI_TOO_LONG, "URI too long");
    UNSUPPORTED_MEDIA_TYPE = ("unsupported-media-type", UNSUPPORTED_MEDIA_TYPE, "Unsupported media type");
    HEADERS_TOO_LARGE = ("headers-too-large", REQUEST_HEADER_FIELDS_TOO_LARGE, "Request headers too large");
    VALIDATION = ("validation", UNPROCESSABLE_ENTITY, "Invalid request");
    INTERNAL = ("internal", INTERNAL_SERVER_ERROR, "Internal error");
    DATABASE_BUSY = ("database-busy", SERVICE_UNAVAILABLE, "Database busy");
    SHUTTING_DOWN = ("shutting-down", SERVICE_UNAVAILABLE, "Shutting down");
    PARTIALLY_RECORDED = ("partially-recorded", SERVICE_UNAVAILABLE, "Partly recorded");
    NOT_READY = ("not-ready", SERVICE_UNAVAILABLE, "Not ready");
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `https://questline.dev/problems/<slug>`, one per cause (see docs/errors.md).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<PointerError>,
    /// Members particular to a problem type (RFC 9457 extensions), e.g. which events of a
    /// partly recorded batch were recorded.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
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

/// Problems one answer lists at most (a batch of 1,000 bad messages is one answer, not
/// 70 KB of them); `detail` says how many there were.
pub const MAX_LISTED_ERRORS: usize = 100;

impl ApiError {
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        ApiError::Problem(Box::new(Problem {
            kind: format!("{TYPE_BASE}{}", kind.slug),
            title: kind.title,
            status: kind.status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            extensions: serde_json::Map::new(),
        }))
    }

    /// Adds an extension member to the problem body.
    pub fn with(mut self, member: &str, value: serde_json::Value) -> Self {
        if let ApiError::Problem(p) = &mut self {
            p.extensions.insert(member.to_owned(), value);
        }
        self
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(problem::MALFORMED_REQUEST, detail)
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [] => "invalid request".to_owned(),
            [one] => one.to_string(),
            many if many.len() > MAX_LISTED_ERRORS => {
                format!("{} problems (the first {MAX_LISTED_ERRORS} listed), first: {}", many.len(), many[0])
            }
            many => format!("{} problems, first: {}", many.len(), many[0]),
        };
        let mut e = Self::new(problem::VALIDATION, detail);
        if let ApiError::Problem(p) = &mut e {
            p.errors = errors
                .into_iter()
                .take(MAX_LISTED_ERRORS)
                .map(|e| PointerError { pointer: e.pointer, detail: e.detail })
                .collect();
        }
        e
    }

    pub fn invalid(pointer: &str, detail: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(pointer, detail)])
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(problem::UNAUTHORIZED, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(problem::FORBIDDEN, detail)
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

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let detail = e.to_string();
        let kind = match e {
            ServiceError::Invalid(errors) => return ApiError::validation(errors.0),
            ServiceError::MissionNotFound(_) => problem::MISSION_NOT_FOUND,
            ServiceError::KeyNotFound(_) => problem::KEY_NOT_FOUND,
            ServiceError::WebhookNotFound(_) => problem::WEBHOOK_NOT_FOUND,
            ServiceError::MessageNotFound(_) => problem::MESSAGE_NOT_FOUND,
            ServiceError::MessageIdTaken(_) => problem::MESSAGE_ID_TAKEN,
            ServiceError::FulfilmentEndpointTaken(_) => problem::FULFILMENT_ENDPOINT_TAKEN,
            ServiceError::TooManyWebhooks(_) => problem::TOO_MANY_WEBHOOKS,
            ServiceError::SecretKeyNotConfigured => problem::SECRET_KEY_NOT_CONFIGURED,
            ServiceError::MissionIdTaken(_) => problem::MISSION_ID_TAKEN,
            ServiceError::RulesImmutable { .. } => problem::RULES_IMMUTABLE,
            ServiceError::InvalidTransition { .. } => problem::INVALID_TRANSITION,
            ServiceError::StaleWrite => problem::STALE_WRITE,
            ServiceError::NotADraft => problem::NOT_A_DRAFT,
            ServiceError::LastAdminKey => problem::LAST_ADMIN_KEY,
            ServiceError::InsufficientBalance(_) => problem::INSUFFICIENT_BALANCE,
            ServiceError::UnknownKey => problem::UNAUTHORIZED,
            ServiceError::Busy => problem::DATABASE_BUSY,
            ServiceError::ShuttingDown => problem::SHUTTING_DOWN,
            // Start-up only: never the answer to a request.
            ServiceError::AdminKeyNotAdmin | ServiceError::Store(_) | ServiceError::Internal(_) => {
                return ApiError::Internal(detail);
            }
        };
        ApiError::new(kind, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match self {
            ApiError::Problem(p) => *p,
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                Problem {
                    kind: format!("{TYPE_BASE}{}", problem::INTERNAL.slug),
                    title: problem::INTERNAL.title,
                    status: 500,
                    detail: "an unexpected error occurred; it has been logged".into(),
                    errors: Vec::new(),
                    extensions: serde_json::Map::new(),
                }
            }
        };
        let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(problem)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn slugs_are_unique_and_every_one_is_documented() {
        let doc = include_str!("../../../docs/errors.md");
        let mut seen = HashSet::new();
        for kind in problem::ALL {
            assert!(seen.insert(kind.slug), "{} twice in the table", kind.slug);
            let row = format!("| {} | `{}` |", kind.status.as_u16(), kind.slug);
            assert!(doc.contains(&row), "docs/errors.md has no row starting {row:?}");
        }
    }
}
