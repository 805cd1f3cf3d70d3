//! The OpenAPI document, assembled from the handlers' `#[utoipa::path]` annotations as the
//! routes are registered, so the document and the router cannot drift apart.
//!
//! Security schemes that handlers name in `security(...)`:
//! - `api_key`: `Authorization: Bearer <api key>` (panel, ingest, reads);
//! - `user_jwt`: `Authorization: Bearer <JWT>` (HS256) for `/v1/me/...`.

use crate::http::{contacts, events, jobs, keys, messages, missions, ops, progress, wallet, webhooks};
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

/// Request bodies larger than this are refused (413), except on `POST /v1/events`.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// The body limit of `POST /v1/events` (a batch of up to 1000 events).
pub const EVENTS_BODY_LIMIT: usize = 16 * 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "questline",
        description = "An engagement engine: missions, fed by your apps' events, with rewards.\n\nErrors are `application/problem+json` (RFC 9457)."
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "keys", description = "API keys and their roles"),
        (name = "missions", description = "Missions: goals, challenges, quests, badges"),
        (name = "events", description = "Event ingest"),
        (name = "progress", description = "Users' progress and rewards, for the panel"),
        (name = "me", description = "The calling user's own progress and rewards (user JWT)"),
        (name = "jobs", description = "The job queue: settlement and other background work"),
        (name = "webhooks", description = "Webhook endpoints: reward.fulfil decides cash and vouchers"),
        (name = "messages", description = "Messages to users through rate-limited providers, by the cheapest route that meets the deadline"),
        (name = "contacts", description = "How each user is reached (phone, e-mail, push token, time zone) and what they agreed to hear (opt-outs, quiet hours)"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (`ql_…`) with the role the endpoint needs"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "user_jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("The app's user token (HS256); `sub` is the user id, `exp` is required"))
                    .build(),
            ),
        );
    }
}

/// Every route of the API, with its documentation.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(ops::routes())
        .merge(keys::routes())
        .merge(missions::routes())
        .merge(events::routes().layer(DefaultBodyLimit::max(EVENTS_BODY_LIMIT)))
        .merge(progress::routes())
        .merge(wallet::routes())
        .merge(jobs::routes())
        .merge(webhooks::routes())
        .merge(messages::routes())
        .merge(contacts::routes())
}

/// The document as served: every operation's error answers completed from the rules that
/// produce them, so that a client generated from it expects what the API really answers.
///
/// The rules are the API's own, applied by layers every operation passes through, which the
/// handlers' annotations cannot see: every error is `application/problem+json`; an
/// operation with a security requirement answers 401 without valid credentials, and 403 for
/// an API key of the wrong role; one with a request body answers 400 (not JSON), 413 (too
/// large), 415 (not a JSON content type) and 422 (invalid).
pub fn render(doc: &utoipa::openapi::OpenApi) -> String {
    let mut doc = serde_json::to_value(doc).expect("the OpenAPI document serializes");
    complete_errors(&mut doc);
    doc.to_string()
}

fn complete_errors(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let problem = |description: &str| {
        json!({"description": description,
               "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
    };
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for operation in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|p| p.values_mut()) {
        let Some(operation) = operation.as_object_mut() else { continue };
        let schemes: Vec<String> = operation
            .get("security")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .flat_map(|requirement| requirement.keys().cloned())
            .collect();
        let has_body = operation.contains_key("requestBody");
        let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else { continue };
        // Errors are problem+json, whatever an annotation said.
        for (status, response) in responses.iter_mut() {
            if status.as_str() >= "400"
                && let Some(content) = response.get_mut("content").and_then(Value::as_object_mut)
                && let Some(json) = content.remove("application/json")
            {
                content.entry("application/problem+json").or_insert(json);
            }
        }
        let mut ensure = |status: &str, description: &str| {
            responses.entry(status.to_owned()).or_insert_with(|| problem(description));
        };
        if !schemes.is_empty() {
            ensure("401", "No, malformed, unknown or deleted credentials");
        }
        if schemes.iter().any(|s| s == "api_key") {
            ensure("403", "The API key's role does not allow this operation");
        }
        if has_body {
            ensure("400", "The body is not valid JSON");
            ensure("413", "The body is larger than this operation accepts");
            ensure("415", "The body does not have a JSON content type");
            ensure("422", "The body is well-formed JSON but invalid (each problem with its pointer)");
        }
    }
}
