//! `/v1/messages` (messages to users, sent by the dispatcher) and `/v1/providers` (how each
//! provider's month stands).

use crate::auth::{ReadCaller, SendCaller};
use crate::dispatch::ProviderReport;
use crate::error::{ApiResult, Problem};
use crate::http::extract::{JsonValue, Paginated};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use jiff::Timestamp;
use questline_core::message::{Attempt, Message};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(send_message)).routes(routes!(get_message)).routes(routes!(list_providers))
}

/// A message to send: `template` (with `data`) or `body`.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"id": "msg-1", "channel": "sms", "to": "+919876543210", "template": "otp",
    "data": {"code": "4321"}, "deadline": "2026-12-01T10:05:00Z", "priority": 0, "user_id": "u-42"}))]
#[allow(dead_code, reason = "documents the request; the service reads the document itself")]
pub struct MessageRequest {
    /// The idempotency key, 1 to 128 characters.
    id: String,
    /// `sms`, `email`, `push`, `whatsapp` or `ivr`; a provider must serve it.
    channel: String,
    /// E.164 for sms, whatsapp and ivr; an e-mail address; a device token for push.
    to: String,
    /// A configured template's name.
    template: Option<String>,
    /// The template's variables (at most 16 KiB).
    #[schema(value_type = Option<Object>)]
    data: Option<serde_json::Value>,
    /// The text as it is, instead of a template (at most 64 KiB).
    body: Option<String>,
    /// E-mail only (a template may give it).
    subject: Option<String>,
    /// Unsent by then, the message is `expired`; must be in the future.
    deadline: Option<Timestamp>,
    /// 0 (first) to 9; default 5.
    priority: Option<u8>,
    user_id: Option<String>,
}

/// A campaign: up to 1,000 messages queued together, all or none.
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "documents the request; the service reads the document itself")]
pub struct MessageBatch {
    messages: Vec<MessageRequest>,
}

/// The request: one message, or a batch of them.
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "documents the request; the service reads the document itself")]
#[serde(untagged)]
pub enum SendRequest {
    One(Box<MessageRequest>),
    Batch(MessageBatch),
}

/// The answer to a batch: one entry per message, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedBatch {
    items: Vec<Queued>,
}

/// The answer to one message or to a batch.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SendAnswer {
    One(Queued),
    Batch(QueuedBatch),
}

/// The answer to a message accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    id: String,
    /// `queued`, or the status of the first message with this id.
    status: String,
}

/// A message, with its status and attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageInfo {
    id: String,
    channel: String,
    to: String,
    template: Option<String>,
    subject: Option<String>,
    body: String,
    deadline: Option<Timestamp>,
    priority: u8,
    user_id: Option<String>,
    /// `queued`, `sending` (a slot is booked for it at `provider`, more than a moment
    /// ahead), `sent`, `failed` or `expired`.
    status: String,
    provider: Option<String>,
    /// What sending it added to the provider's bill (zero on capacity or a commitment
    /// already paid for).
    #[schema(value_type = Option<f64>)]
    cost: Option<Decimal>,
    currency: Option<String>,
    attempts: Vec<AttemptInfo>,
    /// While `sending`: the instant of the slot booked for it at `provider`.
    booked_for: Option<Timestamp>,
    sent_at: Option<Timestamp>,
    created_at: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptInfo {
    /// Empty for a decision of questline's own (e.g. `expired`).
    provider: String,
    at: Timestamp,
    /// `sent`, `rate_limited`, `failed`, `rejected`, `expired`.
    outcome: String,
    /// The provider's HTTP status or SMTP reply code.
    status: Option<u16>,
    detail: Option<String>,
}

impl From<Attempt> for AttemptInfo {
    fn from(a: Attempt) -> Self {
        Self { provider: a.provider, at: a.at, outcome: a.outcome, status: a.status, detail: a.detail }
    }
}

impl From<Message> for MessageInfo {
    fn from(m: Message) -> Self {
        Self {
            id: m.id,
            channel: m.channel.as_str().to_owned(),
            to: m.to,
            template: m.template,
            subject: m.subject,
            body: m.body,
            deadline: m.deadline,
            priority: m.priority,
            user_id: m.user_id,
            status: m.status.as_str().to_owned(),
            provider: m.provider,
            cost: m.cost,
            currency: m.currency,
            attempts: m.attempts.into_iter().map(AttemptInfo::from).collect(),
            booked_for: m.booking.map(|b| b.at),
            sent_at: m.sent_at,
            created_at: m.created_at,
        }
    }
}

/// Send a message, or a batch `{"messages": [...]}` of up to 1,000 (all or none): answered
/// once durably queued.
#[utoipa::path(
    post, path = "/v1/messages", tag = "messages",
    security(("api_key" = [])),
    request_body = SendRequest,
    responses(
        (status = 202, description = "Queued (or, for an id sent before with the same request, that message); a batch answers each in order", body = SendAnswer),
        (status = 401, description = "No or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither an admin nor a send key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An id was used for a different message (a batch: none is queued)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown channel or template, a bad address, a deadline in the past, data the template cannot render with (a batch: pointers under /messages/<index>, none is queued)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn send_message(
    State(state): State<AppState>,
    SendCaller(caller): SendCaller,
    JsonValue(body): JsonValue,
) -> ApiResult<(StatusCode, Json<SendAnswer>)> {
    let queued = |accepted: questline_service::messages::Accepted| {
        let m = accepted.message;
        if accepted.created {
            tracing::info!(message_id = %m.id, channel = m.channel.as_str(), by = %caller.key_id, "message queued");
        }
        Queued { id: m.id, status: m.status.as_str().to_owned() }
    };
    let answer = match body.get("messages") {
        Some(serde_json::Value::Array(batch)) if body.as_object().is_some_and(|o| o.len() == 1) => {
            let accepted = state.service.send_messages(&caller.tenant, batch).await?;
            SendAnswer::Batch(QueuedBatch { items: accepted.into_iter().map(queued).collect() })
        }
        Some(_) => {
            let detail = "a batch is an object with one key, messages: an array of 1 to 1000 messages";
            return Err(crate::error::ApiError::invalid("/messages", detail));
        }
        None => SendAnswer::One(queued(state.service.send_message(&caller.tenant, &body).await?)),
    };
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// A message, with its status and attempts.
#[utoipa::path(
    get, path = "/v1/messages/{id}", tag = "messages",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The message's id")),
    responses(
        (status = 200, description = "The message", body = MessageInfo),
        (status = 401, description = "No or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither an admin nor a read key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such message", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_message(
    State(state): State<AppState>,
    ReadCaller(caller): ReadCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<MessageInfo>> {
    Ok(Json(state.service.message(&caller.tenant, &id).await?.into()))
}

/// The configured providers, with what each sent and costs this month.
#[utoipa::path(
    get, path = "/v1/providers", tag = "messages",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Every provider, as configured", body = Paginated<ProviderReport>),
        (status = 401, description = "No or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither an admin nor a read key", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_providers(
    State(state): State<AppState>,
    ReadCaller(_caller): ReadCaller,
) -> Json<Paginated<ProviderReport>> {
    Json(Paginated::all(state.dispatcher.report().await))
}
