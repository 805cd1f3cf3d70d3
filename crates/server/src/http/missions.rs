//! `/v1/missions`: thin handlers over the service's mission functions.

use crate::auth::{AdminCaller, ReadCaller};
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{JsonValue, Pagination};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use questline_core::id::MissionId;
use questline_core::mission::{Mission, MissionStatus};
use questline_service::missions::Simulation;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create, list)).routes(routes!(get_one, patch, delete)).routes(routes!(simulate))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MissionList {
    pub items: Vec<Mission>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only missions with this status.
    #[param(value_type = Option<MissionStatus>)]
    pub status: Option<String>,
}

/// What a client sends to create a mission: its definition, and optionally its id and
/// status. Everything else of a [`Mission`] (timestamps, grant count, active periods) is the
/// service's to set. Documentation only: the body is read as JSON and validated by the
/// service, which names every problem with its pointer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NewMission {
    /// `[a-z0-9_-]{1,64}`; generated when absent.
    #[schema(example = "swiggy-500")]
    pub id: Option<String>,
    /// `draft` (the default) or `active`.
    pub status: Option<MissionStatus>,
    #[serde(flatten)]
    pub spec: questline_core::mission::MissionSpec,
}

/// Create a mission (draft unless `status` says active).
#[utoipa::path(post, path = "/v1/missions", tag = "missions", request_body = NewMission,
    responses((status = 201, body = Mission), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("api_key" = [])))]
async fn create(
    State(state): State<AppState>,
    caller: AdminCaller,
    JsonValue(body): JsonValue,
) -> ApiResult<(StatusCode, Json<Mission>)> {
    let mission = state.service.create_mission(&caller.tenant, body).await?;
    Ok((StatusCode::CREATED, Json(mission)))
}

/// List missions, optionally by status, ordered by id.
#[utoipa::path(get, path = "/v1/missions", tag = "missions", params(ListQuery, Pagination),
    responses((status = 200, body = MissionList), (status = 422, body = Problem)),
    security(("api_key" = [])))]
async fn list(
    State(state): State<AppState>,
    caller: ReadCaller,
    Query(query): Query<ListQuery>,
    page: Pagination,
) -> ApiResult<Json<MissionList>> {
    let status = match query.status.as_deref() {
        None => None,
        Some(s) => Some(MissionStatus::parse(s).ok_or_else(|| {
            ApiError::invalid(
                &crate::http::extract::query_pointer("status"),
                "must be one of draft, active, paused, ended",
            )
        })?),
    };
    let after = page.after()?;
    let found = state.service.list_missions(&caller.tenant, status, after.as_deref(), page.limit()).await?;
    Ok(Json(MissionList { items: found.items, next_cursor: found.next_after.as_deref().map(Pagination::cursor_for) }))
}

#[utoipa::path(get, path = "/v1/missions/{id}", tag = "missions",
    responses((status = 200, body = Mission), (status = 404, body = Problem)), security(("api_key" = [])))]
async fn get_one(
    State(state): State<AppState>,
    caller: ReadCaller,
    Path(id): Path<MissionId>,
) -> ApiResult<Json<Mission>> {
    Ok(Json(state.service.mission(&caller.tenant, &id).await?))
}

/// Change a mission with a JSON merge patch (RFC 7386): status, name, reward, budget… The
/// rules (`steps`, `window`, `sequential`) of a mission that has been active are immutable.
#[utoipa::path(patch, path = "/v1/missions/{id}", tag = "missions", request_body(content = Object, content_type = "application/merge-patch+json"),
    responses((status = 200, body = Mission), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("api_key" = [])))]
async fn patch(
    State(state): State<AppState>,
    caller: AdminCaller,
    Path(id): Path<MissionId>,
    JsonValue(body): JsonValue,
) -> ApiResult<Json<Mission>> {
    Ok(Json(state.service.patch_mission(&caller.tenant, &id, body).await?))
}

/// Delete a draft. Other missions are ended with `PATCH {"status": "ended"}`.
#[utoipa::path(delete, path = "/v1/missions/{id}", tag = "missions",
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)), security(("api_key" = [])))]
async fn delete(
    State(state): State<AppState>,
    caller: AdminCaller,
    Path(id): Path<MissionId>,
) -> ApiResult<StatusCode> {
    state.service.delete_mission(&caller.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Run the engine over the given events (1 to 1000, of one user), as if they were all there is. Writes nothing.
#[utoipa::path(post, path = "/v1/missions/{id}/simulate", tag = "missions", request_body(content = Object, description = "{\"events\": [Event]}"),
    responses((status = 200, body = Simulation), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("api_key" = [])))]
async fn simulate(
    State(state): State<AppState>,
    caller: AdminCaller,
    Path(id): Path<MissionId>,
    JsonValue(body): JsonValue,
) -> ApiResult<Json<Simulation>> {
    Ok(Json(state.service.simulate(&caller.tenant, &id, body).await?))
}
