//! `/v1/keys`: API keys, administered by admin keys. A key's secret is answered once, at
//! creation, and is never listed.

use crate::auth::AdminCaller;
use crate::error::{ApiResult, Problem};
use crate::http::extract::{JsonValue, Paginated, from_object};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use jiff::Timestamp;
use questline_core::pointer::{FieldError, ValidationErrors};
use questline_store::{ApiKey, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_key, list_keys)).routes(routes!(delete_key))
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// Everything.
    Admin,
    /// `POST /v1/events` only.
    Ingest,
    /// `GET` endpoints only.
    Read,
    /// `POST /v1/messages` only.
    Send,
}

impl From<Role> for KeyRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => Self::Admin,
            Role::Ingest => Self::Ingest,
            Role::Read => Self::Read,
            Role::Send => Self::Send,
        }
    }
}

impl From<KeyRole> for Role {
    fn from(role: KeyRole) -> Self {
        match role {
            KeyRole::Admin => Self::Admin,
            KeyRole::Ingest => Self::Ingest,
            KeyRole::Read => Self::Read,
            KeyRole::Send => Self::Send,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// 1 to 100 characters; for people to tell keys apart.
    #[schema(example = "pos-ingest", min_length = 1, max_length = 100)]
    name: String,
    #[schema(value_type = KeyRole)]
    role: String,
}

/// A valid request to create a key.
struct NewKey {
    name: String,
    role: Role,
}

impl TryFrom<CreateKeyRequest> for NewKey {
    type Error = ValidationErrors;

    fn try_from(req: CreateKeyRequest) -> Result<Self, Self::Error> {
        let mut errors = Vec::new();
        let len = req.name.chars().count();
        if !(1..=100).contains(&len) || req.name.trim().is_empty() {
            errors.push(FieldError::new("/name", "must be 1 to 100 characters, not all blank"));
        } else if !questline_core::id::storable(&req.name) {
            // PostgreSQL's text cannot hold it; refused on every backend alike.
            errors.push(FieldError::new("/name", "must not contain NUL (U+0000)"));
        }
        let role = Role::parse(&req.role);
        if role.is_none() {
            errors.push(FieldError::new("/role", "must be one of admin, ingest, read"));
        }
        match role {
            Some(role) if errors.is_empty() => Ok(NewKey { name: req.name, role }),
            _ => Err(ValidationErrors(errors)),
        }
    }
}

/// A key as listed: never its secret or its hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyInfo {
    #[schema(example = "key_3kq9x0m2b7d1c8zt")]
    id: String,
    name: String,
    role: KeyRole,
    created_at: Timestamp,
    last_used_at: Option<Timestamp>,
}

impl From<ApiKey> for KeyInfo {
    fn from(key: ApiKey) -> Self {
        Self {
            id: key.id,
            name: key.name,
            role: key.role.into(),
            created_at: key.created_at,
            last_used_at: key.last_used_at,
        }
    }
}

/// A new key, with its secret: the only time the secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    id: String,
    name: String,
    role: KeyRole,
    /// The secret, for `Authorization: Bearer <key>`. Shown once; stored only as a hash.
    #[schema(example = "ql_2J4bX0…")]
    key: String,
    created_at: Timestamp,
}

/// Create an API key.
#[utoipa::path(
    post, path = "/v1/keys", tag = "keys",
    security(("api_key" = [])),
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "The key, with its secret (shown this once)", body = CreatedKey),
        (status = 401, description = "No or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or role", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_key(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    JsonValue(body): JsonValue,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let new = NewKey::try_from(from_object::<CreateKeyRequest>(body)?)?;
    let created = state.service.create_key(&caller.tenant, &new.name, new.role).await?;
    let key = created.key;
    tracing::info!(key_id = %key.id, by = %caller.key_id, "created by");
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            id: key.id,
            name: key.name,
            role: key.role.into(),
            key: created.secret,
            created_at: key.created_at,
        }),
    ))
}

/// List API keys (never their secrets).
#[utoipa::path(
    get, path = "/v1/keys", tag = "keys",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Every key of the tenant", body = Paginated<KeyInfo>),
        (status = 401, description = "No or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_keys(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
) -> ApiResult<Json<Paginated<KeyInfo>>> {
    let keys = state.service.list_keys(&caller.tenant).await?;
    Ok(Json(Paginated::all(keys.into_iter().map(KeyInfo::from).collect())))
}

/// Delete an API key; it stops working at once.
///
/// The tenant's last admin key cannot be deleted (409): that would lock everyone out.
#[utoipa::path(
    delete, path = "/v1/keys/{id}", tag = "keys",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or bad API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last admin key", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_key(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.service.delete_key(&caller.tenant, &id).await?;
    tracing::info!(key_id = %id, by = %caller.key_id, "deleted by");
    Ok(StatusCode::NO_CONTENT)
}
