//! Balances and entitlements: what settled rewards left, for the panel (`/v1/users/{id}/…`,
//! API keys) and for the app's users (`/v1/me/…`, JWTs); and balance entries an admin posts
//! (a redemption, a correction).

use crate::auth::{AdminCaller, ReadCaller, UserCaller};
use crate::error::{ApiResult, Problem};
use crate::http::extract::{JsonValue, Paginated, Pagination, from_object};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use questline_core::id::UserId;
use questline_core::wallet::{Balance, BalanceEntry, Entitlement};
use questline_service::wallet::NewEntry;
use rust_decimal::Decimal;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(user_balances))
        .routes(routes!(balance_entries, post_entry))
        .routes(routes!(user_entitlements))
        .routes(routes!(my_balances))
        .routes(routes!(my_entitlements))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostEntryRequest {
    /// Positive credits, negative debits; a debit may not take the balance below zero.
    #[serde(deserialize_with = "questline_core::decimal::exact")]
    #[schema(value_type = f64, example = -50)]
    amount: Decimal,
    #[schema(example = "redeem", min_length = 1, max_length = 200)]
    reason: String,
    /// Posting again with the same key writes nothing and answers the first entry.
    #[serde(default)]
    #[schema(max_length = 200)]
    idempotency_key: Option<String>,
}

/// A user's balances (points, coins, and any balance a reward names), by currency.
#[utoipa::path(get, path = "/v1/users/{user_id}/balances", tag = "progress",
    responses((status = 200, body = Paginated<Balance>)), security(("api_key" = [])))]
async fn user_balances(
    State(state): State<AppState>,
    caller: ReadCaller,
    Path(user_id): Path<UserId>,
) -> ApiResult<Json<Paginated<Balance>>> {
    Ok(Json(Paginated::all(state.service.balances(&caller.tenant, &user_id).await?)))
}

/// One balance's entries, newest first.
#[utoipa::path(get, path = "/v1/users/{user_id}/balances/{currency}/entries", tag = "progress",
    params(Pagination), responses((status = 200, body = Paginated<BalanceEntry>), (status = 422, body = Problem)),
    security(("api_key" = [])))]
async fn balance_entries(
    State(state): State<AppState>,
    caller: ReadCaller,
    Path((user_id, currency)): Path<(UserId, String)>,
    page: Pagination,
) -> ApiResult<Json<Paginated<BalanceEntry>>> {
    let after = page.after()?;
    let entries =
        state.service.balance_entries(&caller.tenant, &user_id, &currency, after.as_deref(), page.limit()).await?;
    Ok(Json(Paginated::from_page(entries, |e| e)))
}

/// Post an entry to a balance: a credit, or a debit that the balance covers.
#[utoipa::path(post, path = "/v1/users/{user_id}/balances/{currency}/entries", tag = "progress",
    request_body = PostEntryRequest,
    responses(
        (status = 201, description = "Written", body = BalanceEntry),
        (status = 200, description = "Posted before with this idempotency key: the first entry", body = BalanceEntry),
        (status = 409, description = "The debit is larger than the balance", body = Problem,
            content_type = "application/problem+json"),
    ),
    security(("api_key" = [])))]
async fn post_entry(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path((user_id, currency)): Path<(UserId, String)>,
    JsonValue(body): JsonValue,
) -> ApiResult<(StatusCode, Json<BalanceEntry>)> {
    let req: PostEntryRequest = from_object(body)?;
    let new = NewEntry { amount: req.amount, reason: req.reason, idempotency_key: req.idempotency_key };
    let (entry, written) = state.service.post_entry(&caller.tenant, &user_id, &currency, new).await?;
    if written {
        tracing::info!(entry_id = %entry.id, by = %caller.key_id, "balance entry posted");
    }
    Ok((if written { StatusCode::CREATED } else { StatusCode::OK }, Json(entry)))
}

/// A user's entitlements (badges, unlocks), oldest first.
#[utoipa::path(get, path = "/v1/users/{user_id}/entitlements", tag = "progress",
    responses((status = 200, body = Paginated<Entitlement>)), security(("api_key" = [])))]
async fn user_entitlements(
    State(state): State<AppState>,
    caller: ReadCaller,
    Path(user_id): Path<UserId>,
) -> ApiResult<Json<Paginated<Entitlement>>> {
    Ok(Json(Paginated::all(state.service.entitlements(&caller.tenant, &user_id).await?)))
}

#[utoipa::path(get, path = "/v1/me/balances", tag = "me",
    responses((status = 200, body = Paginated<Balance>), (status = 401, body = Problem)), security(("user_jwt" = [])))]
async fn my_balances(State(state): State<AppState>, user: UserCaller) -> ApiResult<Json<Paginated<Balance>>> {
    Ok(Json(Paginated::all(state.service.balances(&user.tenant, &user.user_id).await?)))
}

#[utoipa::path(get, path = "/v1/me/entitlements", tag = "me",
    responses((status = 200, body = Paginated<Entitlement>), (status = 401, body = Problem)), security(("user_jwt" = [])))]
async fn my_entitlements(State(state): State<AppState>, user: UserCaller) -> ApiResult<Json<Paginated<Entitlement>>> {
    Ok(Json(Paginated::all(state.service.entitlements(&user.tenant, &user.user_id).await?)))
}
