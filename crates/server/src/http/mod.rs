//! HTTP: routes (thin handlers), extractors, and the OpenAPI document built from them.
//!
//! [`router`] is the whole service as an axum `Router`: the routes of [`openapi::api`], a
//! problem+json answer for every error (unknown path 404, wrong method 405, a panic an
//! opaque 500, and any bare error a layer or a built-in extractor produces), request
//! tracing, request metrics and the body limits. What hyper answers itself, before the
//! router (a request it cannot parse, a path over 64 KiB, headers too large), is made
//! problem+json by [`wire`].

pub mod contacts;
pub mod events;
pub mod extract;
pub mod jobs;
pub mod keys;
pub mod messages;
pub mod missions;
pub mod openapi;
pub mod ops;
pub mod progress;
pub mod wallet;
pub mod webhooks;
pub mod wire;

use crate::error::{ApiError, Problem, problem};
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use std::any::Any;
use std::time::Instant;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

/// The service, ready to serve.
pub fn router(state: AppState) -> Router {
    let (routes, doc) = openapi::api().split_for_parts();
    let doc = openapi::render(&doc);
    with_layers(routes.layer(Extension(ops::OpenApiJson(doc.into())))).with_state(state)
}

/// What every route gets: the fallbacks, the default body limit, problem+json errors, panic
/// catching, metrics and tracing.
fn with_layers<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(openapi::BODY_LIMIT))
        .layer(middleware::from_fn(problem_details))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(limit_head))
        .layer(middleware::from_fn(close_if_body_unread))
        .layer(middleware::from_fn(record_metrics))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
}

/// Refusals that come before a request's body is read: the key or token (401, 403), the
/// route (404, 405), the head (431), the content type (415) or the size (413).
const REFUSED_UNREAD: [StatusCode; 7] = [
    StatusCode::UNAUTHORIZED,
    StatusCode::FORBIDDEN,
    StatusCode::NOT_FOUND,
    StatusCode::METHOD_NOT_ALLOWED,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::UNSUPPORTED_MEDIA_TYPE,
    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
];

/// A request with a body refused before the body was read is answered `Connection: close`.
/// hyper does not keep a connection whose request body was left unread; a client told
/// nothing would send its next request on it and see the connection drop under it (every
/// time, with a 93 KB body and no key).
async fn close_if_body_unread(req: Request, next: Next) -> Response {
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0);
    let mut response = next.run(req).await;
    if has_body && REFUSED_UNREAD.contains(&response.status()) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The most a request's target and headers may hold together. hyper refuses a head over its
/// read buffer (about 400 KiB) only when the head arrives in pieces: one that is already in
/// the socket whole was parsed and served. So the bound is kept here, the same every time.
pub const MAX_HEAD_BYTES: usize = 256 * 1024;

async fn limit_head(req: Request, next: Next) -> Response {
    let headers: usize = req.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    let size = req.uri().path_and_query().map_or(0, |target| target.as_str().len()) + headers;
    if size > MAX_HEAD_BYTES {
        return ApiError::new(
            problem::HEADERS_TOO_LARGE,
            format!("the request's target and headers hold {size} bytes; at most {MAX_HEAD_BYTES} are read"),
        )
        .into_response();
    }
    next.run(req).await
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(problem::NOT_FOUND, format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(problem::METHOD_NOT_ALLOWED, "this path does not accept that method")
}

/// A panic is a bug: logged with its message, answered with an opaque 500.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    ApiError::internal(format!("handler panicked: {message}")).into_response()
}

/// Counts requests and their latency by method, route and status.
async fn record_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    // The route template, not the path: ids in paths would make a series per id.
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method, "route" => route.clone(), "status" => status.clone())
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Headers of a bare error response that must survive its conversion to problem+json.
const KEPT_HEADERS: [header::HeaderName; 3] = [header::ALLOW, header::WWW_AUTHENTICATE, header::RETRY_AFTER];

/// Turns any error response that is not problem+json yet (a built-in extractor's rejection,
/// a layer's 413) into one, so that every error a client sees has the same shape.
async fn problem_details(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let detail = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_lowercase() } else { text };
    let error = match status {
        StatusCode::BAD_REQUEST => ApiError::malformed(detail),
        StatusCode::UNAUTHORIZED => ApiError::unauthorized(detail),
        StatusCode::FORBIDDEN => ApiError::forbidden(detail),
        StatusCode::NOT_FOUND => ApiError::new(problem::NOT_FOUND, detail),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(problem::METHOD_NOT_ALLOWED, detail),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(problem::PAYLOAD_TOO_LARGE, detail),
        StatusCode::URI_TOO_LONG => ApiError::new(problem::URI_TOO_LONG, detail),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(problem::UNSUPPORTED_MEDIA_TYPE, detail),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::new(problem::HEADERS_TOO_LARGE, detail),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::invalid("", detail),
        // Never show a server error's text: it may be internal.
        s if s.is_server_error() => ApiError::internal(format!("{s} without a problem body: {detail}")),
        s => ApiError::Problem(Box::new(Problem {
            kind: "about:blank".to_owned(),
            title: s.canonical_reason().unwrap_or("Error"),
            status: s.as_u16(),
            detail,
            errors: Vec::new(),
            extensions: serde_json::Map::new(),
        })),
    };
    let mut problem = error.into_response();
    for name in KEPT_HEADERS {
        if let Some(value) = parts.headers.get(&name) {
            problem.headers_mut().insert(name, value.clone());
        }
    }
    if status == StatusCode::UNAUTHORIZED && !problem.headers().contains_key(header::WWW_AUTHENTICATE) {
        problem.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    problem
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    async fn call(router: Router, request: axum::http::Request<Body>) -> (StatusCode, String, String) {
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let content_type =
            response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, content_type, String::from_utf8(body.to_vec()).unwrap())
    }

    fn get_request(path: &str) -> axum::http::Request<Body> {
        axum::http::Request::get(path).body(Body::empty()).unwrap()
    }

    async fn boom() -> &'static str {
        panic!("secret internals")
    }

    #[tokio::test]
    async fn a_panic_is_an_opaque_500_problem() {
        let router = with_layers(Router::new().route("/boom", get(boom)));
        let (status, content_type, body) = call(router, get_request("/boom")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(content_type, "application/problem+json");
        assert!(body.contains("\"status\":500") && !body.contains("secret internals"), "{body}");
    }

    #[tokio::test]
    async fn bare_errors_become_problems_and_server_error_text_is_hidden() {
        let router = with_layers(
            Router::new()
                .route("/teapot", get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }))
                .route("/bad-gateway", get(|| async { (StatusCode::BAD_GATEWAY, "upstream 10.0.0.7 refused") }))
                .route("/json", post(|axum::Json(v): axum::Json<serde_json::Value>| async move { v.to_string() })),
        );
        let (status, content_type, body) = call(router.clone(), get_request("/teapot")).await;
        assert_eq!((status.as_u16(), content_type.as_str()), (418, "application/problem+json"));
        assert!(body.contains("short and stout"), "{body}");

        let (status, content_type, body) = call(router.clone(), get_request("/bad-gateway")).await;
        assert_eq!((status.as_u16(), content_type.as_str()), (500, "application/problem+json"));
        assert!(!body.contains("10.0.0.7"), "{body}");

        // axum's own Json rejection (plain text) comes out as problem+json too
        let request = axum::http::Request::post("/json").body(Body::from("{}")).unwrap();
        let (status, content_type, _) = call(router, request).await;
        assert_eq!((status.as_u16(), content_type.as_str()), (415, "application/problem+json"));
    }
}
