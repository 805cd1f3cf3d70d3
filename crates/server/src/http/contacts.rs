//! How a user is reached and what they agreed to hear: contact points and preferences, for
//! the panel (`/v1/users/{id}/…`, API keys) and for the user themselves (`/v1/me/…`, JWTs).
//! A `PUT` replaces the document whole; mission notifications read it when they are sent.

use crate::auth::{AdminCaller, ReadCaller, UserCaller};
use crate::error::{ApiResult, Problem};
use crate::http::extract::JsonValue;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use jiff::Timestamp;
use questline_core::contact::{Contact, ContactPoints, Preferences};
use questline_core::id::UserId;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_contact, put_contact))
        .routes(routes!(get_preferences, put_preferences))
        .routes(routes!(my_contact, put_my_contact))
        .routes(routes!(my_preferences, put_my_preferences))
}

/// A user's contact points.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactView {
    user_id: String,
    #[serde(flatten)]
    points: ContactPoints,
    /// When the user's contact or preferences last changed; `null` if never.
    #[schema(value_type = Option<String>)]
    updated_at: Option<Timestamp>,
}

/// What a user agreed to hear.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreferencesView {
    user_id: String,
    #[serde(flatten)]
    preferences: Preferences,
    #[schema(value_type = Option<String>)]
    updated_at: Option<Timestamp>,
}

impl From<Contact> for ContactView {
    fn from(c: Contact) -> Self {
        ContactView { user_id: c.user_id, points: c.points, updated_at: c.updated_at }
    }
}

impl From<Contact> for PreferencesView {
    fn from(c: Contact) -> Self {
        PreferencesView { user_id: c.user_id, preferences: c.preferences, updated_at: c.updated_at }
    }
}

/// A user's contact points (all `null` for a user who gave none).
#[utoipa::path(get, path = "/v1/users/{user_id}/contact", tag = "contacts",
    responses((status = 200, body = ContactView)), security(("api_key" = [])))]
async fn get_contact(
    State(state): State<AppState>,
    caller: ReadCaller,
    Path(user_id): Path<UserId>,
) -> ApiResult<Json<ContactView>> {
    Ok(Json(state.service.contact(&caller.tenant, &user_id).await?.into()))
}

/// Replace a user's contact points: `phone` (E.164), `email`, `push_token`, `time_zone`
/// (IANA; quiet hours are read in it). A field left out is removed.
#[utoipa::path(put, path = "/v1/users/{user_id}/contact", tag = "contacts", request_body = ContactPoints,
    responses((status = 200, body = ContactView), (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
async fn put_contact(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(user_id): Path<UserId>,
    JsonValue(body): JsonValue,
) -> ApiResult<Json<ContactView>> {
    Ok(Json(state.service.put_contact_points(&caller.tenant, &user_id, &body).await?.into()))
}

/// A user's preferences: opt-outs and quiet hours.
#[utoipa::path(get, path = "/v1/users/{user_id}/preferences", tag = "contacts",
    responses((status = 200, body = PreferencesView)), security(("api_key" = [])))]
async fn get_preferences(
    State(state): State<AppState>,
    caller: ReadCaller,
    Path(user_id): Path<UserId>,
) -> ApiResult<Json<PreferencesView>> {
    Ok(Json(state.service.contact(&caller.tenant, &user_id).await?.into()))
}

/// Replace a user's preferences: `opt_out` (`channels`, `missions`) and `quiet_hours`
/// (`{"from": "22:00", "to": "08:00"}` in the user's time zone; a notification due then
/// waits for their end).
#[utoipa::path(put, path = "/v1/users/{user_id}/preferences", tag = "contacts", request_body = Preferences,
    responses((status = 200, body = PreferencesView), (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
async fn put_preferences(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(user_id): Path<UserId>,
    JsonValue(body): JsonValue,
) -> ApiResult<Json<PreferencesView>> {
    Ok(Json(state.service.put_preferences(&caller.tenant, &user_id, &body).await?.into()))
}

#[utoipa::path(get, path = "/v1/me/contact", tag = "me",
    responses((status = 200, body = ContactView), (status = 401, body = Problem)), security(("user_jwt" = [])))]
async fn my_contact(State(state): State<AppState>, user: UserCaller) -> ApiResult<Json<ContactView>> {
    Ok(Json(state.service.contact(&user.tenant, &user.user_id).await?.into()))
}

#[utoipa::path(put, path = "/v1/me/contact", tag = "me", request_body = ContactPoints,
    responses((status = 200, body = ContactView), (status = 401, body = Problem), (status = 422, body = Problem)),
    security(("user_jwt" = [])))]
async fn put_my_contact(
    State(state): State<AppState>,
    user: UserCaller,
    JsonValue(body): JsonValue,
) -> ApiResult<Json<ContactView>> {
    Ok(Json(state.service.put_contact_points(&user.tenant, &user.user_id, &body).await?.into()))
}

#[utoipa::path(get, path = "/v1/me/preferences", tag = "me",
    responses((status = 200, body = PreferencesView), (status = 401, body = Problem)), security(("user_jwt" = [])))]
async fn my_preferences(State(state): State<AppState>, user: UserCaller) -> ApiResult<Json<PreferencesView>> {
    Ok(Json(state.service.contact(&user.tenant, &user.user_id).await?.into()))
}

#[utoipa::path(put, path = "/v1/me/preferences", tag = "me", request_body = Preferences,
    responses((status = 200, body = PreferencesView), (status = 401, body = Problem), (status = 422, body = Problem)),
    security(("user_jwt" = [])))]
async fn put_my_preferences(
    State(state): State<AppState>,
    user: UserCaller,
    JsonValue(body): JsonValue,
) -> ApiResult<Json<PreferencesView>> {
    Ok(Json(state.service.put_preferences(&user.tenant, &user.user_id, &body).await?.into()))
}
