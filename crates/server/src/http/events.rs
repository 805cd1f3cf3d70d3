//! `POST /v1/events`: validate each event, apply the batch, answer after the commit.

use crate::auth::IngestCaller;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::JsonValue;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use questline_core::event::Event;
use serde::Serialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Most events in one request.
pub const MAX_BATCH: usize = 1000;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ingest))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestResponse {
    /// New events, recorded and applied.
    pub accepted: usize,
    /// Events whose id was seen before (earlier, or earlier in this batch): no effect.
    pub duplicates: usize,
    pub rejected: Vec<Rejection>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Rejection {
    /// Position in the batch.
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub error: String,
}

/// Ingest a batch `{"events": [Event, …]}` (1 to 1000) or a single Event.
#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body(content = Object, description = "{\"events\": [Event]} or one Event"),
    responses(
        (status = 200, description = "Committed and applied", body = IngestResponse),
        (status = 400, description = "Not JSON", body = crate::error::Problem),
        (status = 422, description = "Not a batch, or a single event that is invalid", body = crate::error::Problem),
    ),
    security(("api_key" = [])))]
async fn ingest(
    State(state): State<AppState>,
    caller: IngestCaller,
    JsonValue(body): JsonValue,
) -> ApiResult<Json<IngestResponse>> {
    let now = jiff::Timestamp::now();
    let (raw, single) = match body {
        Value::Object(mut obj) if obj.contains_key("events") => match obj.remove("events") {
            Some(Value::Array(items)) if obj.is_empty() => (items, false),
            Some(Value::Array(_)) => return Err(ApiError::invalid("", "a batch holds only \"events\"")),
            _ => return Err(ApiError::invalid("/events", "must be an array of events")),
        },
        Value::Object(obj) => (vec![Value::Object(obj)], true),
        _ => return Err(ApiError::invalid("", "expected {\"events\": [...]} or one event object")),
    };
    if raw.is_empty() || raw.len() > MAX_BATCH {
        return Err(ApiError::invalid("/events", format!("must hold 1 to {MAX_BATCH} events, got {}", raw.len())));
    }
    let mut events = Vec::with_capacity(raw.len());
    let mut rejected = Vec::new();
    for (index, v) in raw.iter().enumerate() {
        match Event::parse(v, now) {
            Ok(e) => events.push(e),
            Err(error) => {
                let id = v.get("id").and_then(Value::as_str).map(str::to_owned);
                rejected.push(Rejection { index, id, error });
            }
        }
    }
    if single && !rejected.is_empty() {
        let error = &rejected[0].error;
        let (field, detail) = error.split_once(": ").unwrap_or(("", error));
        return Err(ApiError::invalid(&format!("/{}", field.replace('.', "/")), detail));
    }
    metrics::counter!("questline_events_rejected_total").increment(rejected.len() as u64);
    let valid = events.len();
    let new = state.ingestor.ingest(&caller.tenant, events, now).await?;
    let accepted = new.iter().filter(|n| **n).count();
    Ok(Json(IngestResponse { accepted, duplicates: valid - accepted, rejected }))
}
