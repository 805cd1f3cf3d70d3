//! Progress and rewards: for the panel (`/v1/users/{user_id}/…`, API keys) and for the
//! app's users themselves (`/v1/me/…`, the app's JWTs).

use crate::auth::{ReadCaller, UserCaller};
use crate::error::{ApiResult, Problem};
use crate::service::progress as service;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
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
    pub items: Vec<ProgressView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RewardList {
    pub items: Vec<Reward>,
}

/// A user's progress in every mission they have started, and every active one they have not.
#[utoipa::path(get, path = "/v1/users/{user_id}/missions", tag = "progress",
    responses((status = 200, body = ProgressList)), security(("api_key" = [])))]
async fn user_missions(
    State(state): State<AppState>,
    caller: ReadCaller,
    Path(user_id): Path<String>,
) -> ApiResult<Json<ProgressList>> {
    let items = service::user_missions(&*state.store, &caller.tenant, &user_id, jiff::Timestamp::now()).await?;
    Ok(Json(ProgressList { items }))
}

/// A user's progress in one mission (`not_started` if none yet).
#[utoipa::path(get, path = "/v1/users/{user_id}/missions/{mission_id}", tag = "progress",
    responses((status = 200, body = ProgressView), (status = 404, body = Problem)), security(("api_key" = [])))]
async fn user_mission(
    State(state): State<AppState>,
    caller: ReadCaller,
    Path((user_id, mission_id)): Path<(String, String)>,
) -> ApiResult<Json<ProgressView>> {
    let now = jiff::Timestamp::now();
    Ok(Json(service::user_mission(&*state.store, &caller.tenant, &user_id, &mission_id, now).await?))
}

/// A user's rewards, newest first.
#[utoipa::path(get, path = "/v1/users/{user_id}/rewards", tag = "progress",
    responses((status = 200, body = RewardList)), security(("api_key" = [])))]
async fn user_rewards(
    State(state): State<AppState>,
    caller: ReadCaller,
    Path(user_id): Path<String>,
) -> ApiResult<Json<RewardList>> {
    let items = service::user_rewards(&*state.store, &caller.tenant, &user_id).await?;
    Ok(Json(RewardList { items }))
}

/// The caller's own progress (the JWT's `sub` is the user id).
#[utoipa::path(get, path = "/v1/me/missions", tag = "me",
    responses((status = 200, body = ProgressList), (status = 401, body = Problem)), security(("user_jwt" = [])))]
async fn my_missions(State(state): State<AppState>, user: UserCaller) -> ApiResult<Json<ProgressList>> {
    let items = service::user_missions(&*state.store, &user.tenant, &user.user_id, jiff::Timestamp::now()).await?;
    Ok(Json(ProgressList { items }))
}

#[utoipa::path(get, path = "/v1/me/missions/{mission_id}", tag = "me",
    responses((status = 200, body = ProgressView), (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("user_jwt" = [])))]
async fn my_mission(
    State(state): State<AppState>,
    user: UserCaller,
    Path(mission_id): Path<String>,
) -> ApiResult<Json<ProgressView>> {
    let now = jiff::Timestamp::now();
    Ok(Json(service::user_mission(&*state.store, &user.tenant, &user.user_id, &mission_id, now).await?))
}

#[utoipa::path(get, path = "/v1/me/rewards", tag = "me",
    responses((status = 200, body = RewardList), (status = 401, body = Problem)), security(("user_jwt" = [])))]
async fn my_rewards(State(state): State<AppState>, user: UserCaller) -> ApiResult<Json<RewardList>> {
    let items = service::user_rewards(&*state.store, &user.tenant, &user.user_id).await?;
    Ok(Json(RewardList { items }))
}
