//! `/v1/webhooks`: a tenant's webhook endpoints, administered by admin keys. A webhook's
//! secret is answered once, at creation, and is never listed.

use crate::auth::AdminCaller;
use crate::error::{ApiResult, Problem};
use crate::http::extract::{JsonValue, Paginated, from_object};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use jiff::Timestamp;
use questline_service::webhooks::{RetryRequest, WebhookRequest};
use questline_store::Webhook;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_webhook, list_webhooks)).routes(routes!(delete_webhook))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Absolute `http(s)` URL, at most 2,048 bytes; not a loopback or private address unless
    /// the server allows private targets.
    #[schema(example = "https://example.com/questline")]
    url: String,
    /// One or more of `reward.fulfil`, `reward.granted`, `reward.revoked`, `reward.failed`,
    /// `mission.completed`, each once. At most one endpoint of a tenant takes `reward.fulfil`.
    #[schema(example = json!(["reward.fulfil"]))]
    events: Vec<String>,
    retry: Option<RetryBody>,
}

/// How a delivery is retried: `max_attempts` (1 to 50, default 8) attempts in all, waiting
/// `initial` (ISO 8601, at least PT1S, default PT10S) after the first failure, doubling (with
/// jitter) up to `max` (at least `initial`, at most P7D, default PT1H).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    #[schema(example = 8)]
    max_attempts: Option<u32>,
    #[schema(example = "PT10S")]
    initial: Option<String>,
    #[schema(example = "PT1H")]
    max: Option<String>,
}

/// A webhook as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookInfo {
    #[schema(example = "wh_3kq9x0m2b7d1c8zt")]
    id: String,
    url: String,
    events: Vec<String>,
    retry: RetryBody,
    created_at: Timestamp,
}

/// A new webhook, with its secret: the only time the secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    webhook: WebhookInfo,
    /// `whsec_` + base64 of 32 random bytes: the signing key of the Standard Webhooks
    /// signature. Shown once; stored only encrypted.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    secret: String,
}

/// A duration in ISO 8601 as hours, minutes and seconds (`PT1H`, `PT10S`, `PT1.5S`).
fn iso(d: Duration) -> String {
    let ms = d.as_millis();
    let (secs, frac) = (ms / 1000, ms % 1000);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::from("PT");
    if h > 0 {
        out.push_str(&format!("{h}H"));
    }
    if m > 0 {
        out.push_str(&format!("{m}M"));
    }
    if frac > 0 {
        out.push_str(&format!("{s}.{frac:03}S"));
    } else if s > 0 || (h == 0 && m == 0) {
        out.push_str(&format!("{s}S"));
    }
    out
}

impl From<Webhook> for WebhookInfo {
    fn from(w: Webhook) -> Self {
        Self {
            retry: RetryBody {
                max_attempts: Some(w.max_attempts),
                initial: Some(iso(w.retry_initial)),
                max: Some(iso(w.retry_max)),
            },
            id: w.id,
            url: w.url,
            events: w.events,
            created_at: w.created_at,
        }
    }
}

/// Create a webhook.
#[utoipa::path(
    post, path = "/v1/webhooks", tag = "webhooks",
    security(("api_key" = [])),
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "The webhook, with its secret (shown this once)", body = CreatedWebhook),
        (status = 401, description = "No or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another endpoint takes reward.fulfil; 50 webhooks already; no secret key configured", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid URL, events or retry settings", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_webhook(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    JsonValue(body): JsonValue,
) -> ApiResult<(StatusCode, Json<CreatedWebhook>)> {
    let req = from_object::<CreateWebhookRequest>(body)?;
    let request = WebhookRequest {
        url: req.url,
        events: req.events,
        retry: req.retry.map(|r| RetryRequest { max_attempts: r.max_attempts, initial: r.initial, max: r.max }),
    };
    let created = state.service.create_webhook(&caller.tenant, request).await?;
    tracing::info!(webhook_id = %created.webhook.id, by = %caller.key_id, "created by");
    Ok((StatusCode::CREATED, Json(CreatedWebhook { webhook: created.webhook.into(), secret: created.secret })))
}

/// List webhooks (never their secrets).
#[utoipa::path(
    get, path = "/v1/webhooks", tag = "webhooks",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Every webhook of the tenant, oldest first", body = Paginated<WebhookInfo>),
        (status = 401, description = "No or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_webhooks(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
) -> ApiResult<Json<Paginated<WebhookInfo>>> {
    let hooks = state.service.list_webhooks(&caller.tenant).await?;
    Ok(Json(Paginated::all(hooks.into_iter().map(WebhookInfo::from).collect())))
}

/// Delete a webhook; nothing more is delivered to it.
#[utoipa::path(
    delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The webhook's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_webhook(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.service.delete_webhook(&caller.tenant, &id).await?;
    tracing::info!(webhook_id = %id, by = %caller.key_id, "deleted by");
    Ok(StatusCode::NO_CONTENT)
}
