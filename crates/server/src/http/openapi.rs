//! The OpenAPI document, assembled from the handlers' `#[utoipa::path]` annotations as the
//! routes are registered, so the document and the router cannot drift apart.
//!
//! Security schemes that handlers name in `security(...)`:
//! - `api_key`: `Authorization: Bearer <api key>` (panel, ingest, reads);
//! - `user_jwt`: `Authorization: Bearer <JWT>` (HS256) for `/v1/me/...`.

use crate::http::{events, keys, missions, ops, progress};
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
}

/// The OpenAPI document alone (e.g. to write it to a file).
pub fn document() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}
