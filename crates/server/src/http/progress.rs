//! Progress and rewards: for the panel (`/v1/users/{user_id}/…`, API keys) and for the
//! app's users themselves (`/v1/me/…`, the app's JWTs).

use crate::auth::{ReadCaller, UserCaller};
use crate::error::{ApiResult, Problem};
use crate::http::extract::Pagination;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use questline_core::id::{MissionId, UserId};
use questline_core::progress::ProgressView;
use questline_core::reward::Reward;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(user_missions))
        .routes(routes!(user_mission))
        .routes(routes!(user_rewards))
        .routes(routes!(my_missions))
        .routes(routes!(my_mission))
        .routes(routes!(my_rewards))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProgressList {
    /// Ordered by mission id.
    pub items: Vec<ProgressView>,
    pub next_cursor: Option<String>,
}

impl ProgressList {
    fn page(items: Vec<ProgressView>, page: &Pagination) -> Self {
        let (items, next_cursor) = page.page_of(items, |p| p.mission_id.as_str());
        ProgressList { items, next_cursor }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RewardList {
    /// Newest first.
    pub items: Vec<Reward>,
    pub next_cursor: Option<String>,
}

impl RewardList {
    fn page(items: Vec<Reward>, page: &Pagination) -> Self {
        let (items, next_cursor) = page.page_of(items, |r| r.id.as_str());
        RewardList { items, next_cursor }
    }
}

/// A user's progress in every mission they have started, and every active one they have not.
#[utoipa::path(get, path = "/v1/users/{user_id}/missions", tag = "progress",
    params(Pagination), responses((status = 200, body = ProgressList)), security(("api_key" = [])))]
async fn user_missions(
    State(state): State<AppState>,
    caller: ReadCaller,
    Path(user_id): Path<UserId>,
    page: Pagination,
) -> ApiResult<Json<ProgressList>> {
    let items = state.service.user_missions(&caller.tenant, &user_id).await?;
    Ok(Json(ProgressList::page(items, &page)))
}

/// A user's progress in one mission (`not_started` if none yet).
#[utoipa::path(get, path = "/v1/users/{user_id}/missions/{mission_id}", tag = "progress",
    responses((status = 200, body = ProgressView), (status = 404, body = Problem)), security(("api_key" = [])))]
async fn user_mission(
    State(state): State<AppState>,
    caller: ReadCaller,
    Path((user_id, mission_id)): Path<(UserId, MissionId)>,
) -> ApiResult<Json<ProgressView>> {
    Ok(Json(state.service.user_mission(&caller.tenant, &user_id, &mission_id).await?))
}

/// A user's rewards, newest first.
#[utoipa::path(get, path = "/v1/users/{user_id}/rewards", tag = "progress",
    params(Pagination), responses((status = 200, body = RewardList)), security(("api_key" = [])))]
async fn user_rewards(
    State(state): State<AppState>,
    caller: ReadCaller,
    Path(user_id): Path<UserId>,
    page: Pagination,
) -> ApiResult<Json<RewardList>> {
    let items = state.service.user_rewards(&caller.tenant, &user_id).await?;
    Ok(Json(RewardList::page(items, &page)))
}

/// The caller's own progress (the JWT's `sub` is the user id).
#[utoipa::path(get, path = "/v1/me/missions", tag = "me",
    params(Pagination), responses((status = 200, body = ProgressList), (status = 401, body = Problem)), security(("user_jwt" = [])))]
async fn my_missions(
    State(state): State<AppState>,
    user: UserCaller,
    page: Pagination,
) -> ApiResult<Json<ProgressList>> {
    let items = state.service.user_missions(&user.tenant, &user.user_id).await?;
    Ok(Json(ProgressList::page(items, &page)))
}

#[utoipa::path(get, path = "/v1/me/missions/{mission_id}", tag = "me",
    responses((status = 200, body = ProgressView), (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("user_jwt" = [])))]
async fn my_mission(
    State(state): State<AppState>,
    user: UserCaller,
    Path(mission_id): Path<MissionId>,
) -> ApiResult<Json<ProgressView>> {
    Ok(Json(state.service.user_mission(&user.tenant, &user.user_id, &mission_id).await?))
}

#[utoipa::path(get, path = "/v1/me/rewards", tag = "me",
    params(Pagination), responses((status = 200, body = RewardList), (status = 401, body = Problem)), security(("user_jwt" = [])))]
async fn my_rewards(State(state): State<AppState>, user: UserCaller, page: Pagination) -> ApiResult<Json<RewardList>> {
    let items = state.service.user_rewards(&user.tenant, &user.user_id).await?;
    Ok(Json(RewardList::page(items, &page)))
}
