//! `POST /v1/events`: validate each event, apply the batch, answer after the commit.

use crate::auth::IngestCaller;
use crate::error::{ApiError, ApiResult, problem};
use crate::http::extract::JsonValue;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use questline_core::pointer::FieldError;
use questline_service::ingest::Outcome;
use serde::Serialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use questline_service::ingest::MAX_BATCH;

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
    let (raw, single) = match body {
        Value::Object(mut obj) if obj.contains_key("events") => match obj.remove("events") {
            Some(Value::Array(items)) if obj.is_empty() => (items, false),
            Some(Value::Array(_)) => return Err(ApiError::invalid("", "a batch holds only \"events\"")),
            _ => return Err(ApiError::invalid("/events", "must be an array of events")),
        },
        Value::Object(obj) => (vec![Value::Object(obj)], true),
        _ => return Err(ApiError::invalid("", "expected {\"events\": [...]} or one event object")),
    };
    let outcomes = state.service.ingest(&caller.tenant, &raw).await?;
    if outcomes.iter().any(|o| matches!(o, Outcome::NotApplied(_))) {
        return Err(partly_recorded(&outcomes));
    }
    let mut response = IngestResponse { accepted: 0, duplicates: 0, rejected: Vec::new() };
    for (index, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Outcome::Accepted => response.accepted += 1,
            Outcome::Duplicate => response.duplicates += 1,
            // A single event is the whole request: its problem is the request's.
            Outcome::Rejected(error) if single => return Err(ApiError::validation(vec![error])),
            Outcome::NotApplied(_) => unreachable!("answered as partly recorded above"),
            Outcome::Rejected(error) => {
                let id = raw[index].get("id").and_then(Value::as_str).map(str::to_owned);
                response.rejected.push(Rejection { index, id, error: reason(&error) });
            }
        }
    }
    Ok(Json(response))
}

/// Part of the request was committed and part was not (its events went to several lanes,
/// and one lane's transaction failed): a 503 that says which, by index. Sending the whole
/// request again is safe: what was recorded comes back as duplicates.
fn partly_recorded(outcomes: &[Outcome]) -> ApiError {
    let indexes = |keep: fn(&Outcome) -> bool| -> Vec<usize> {
        outcomes.iter().enumerate().filter(|(_, o)| keep(o)).map(|(i, _)| i).collect()
    };
    let recorded = indexes(|o| matches!(o, Outcome::Accepted | Outcome::Duplicate));
    let not_recorded = indexes(|o| matches!(o, Outcome::NotApplied(_)));
    let rejected = indexes(|o| matches!(o, Outcome::Rejected(_)));
    let detail = format!(
        "{} of the request's events were recorded and {} were not (the database was busy or failed); \
         send the request again: recorded events come back as duplicates",
        recorded.len(),
        not_recorded.len()
    );
    ApiError::new(problem::PARTIALLY_RECORDED, detail)
        .with("recorded", serde_json::json!(recorded))
        .with("not_recorded", serde_json::json!(not_recorded))
        .with("rejected", serde_json::json!(rejected))
}

/// `occurred_at: required`, the batch answer's form of a field error (`attributes.amount`
/// for a nested field, `event` for the event as a whole), as the API has always written it.
fn reason(error: &FieldError) -> String {
    let field: Vec<String> = error.pointer.split('/').skip(1).map(unescape).collect();
    let field = if field.is_empty() { "event".to_owned() } else { field.join(".") };
    format!("{field}: {}", error.detail)
}

/// The inverse of `questline_core::pointer::escape`.
fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}
