//! Who is calling: API keys for the panel and ingest endpoints, user JWTs for `/v1/me/...`.
//!
//! An API key is a random secret shown once (`ql_` + 43 base64url characters, 256 bits) and
//! stored only as its hex SHA-256. Every request looks its key up in the store, with no
//! cache, so a deleted key stops working at once. Only the `last_used_at` write is
//! rate-limited (once a minute per key), so that reads do not turn into writes.
//!
//! Handlers say what they need with an extractor: [`AdminCaller`], [`ReadCaller`],
//! [`IngestCaller`] (API keys) or [`UserCaller`] (a user JWT). A missing or bad credential
//! answers 401 with `WWW-Authenticate: Bearer`; a key with the wrong role answers 403.
//!
//! Architecture invariant: a server is never open. Without a configured admin key,
//! [`Authenticator::bootstrap`] makes one and returns it to be shown once.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use questline_store::{ApiKey, NewApiKey, Role, Store, StoreError};
use rand::Rng;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tenant every key and token belongs to until tenants are configurable.
pub const DEFAULT_TENANT: &str = "default";

/// The prefix of generated API key secrets; it makes a leaked key easy to recognise.
pub const KEY_PREFIX: &str = "ql_";

/// `last_used_at` is written at most this often per key.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Longer bearer values are rejected unread: no key or token of ours is this long.
const MAX_CREDENTIAL_LEN: usize = 8 * 1024;

/// An authenticated API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: String,
    pub key_id: String,
    pub role: Role,
}

/// An end user, authenticated by the app's JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCaller {
    pub tenant: String,
    pub user_id: String,
}

/// Any key with the `admin` role.
#[derive(Debug, Clone)]
pub struct AdminCaller(pub Caller);

/// A key allowed to read: `admin` or `read`. For GET endpoints.
#[derive(Debug, Clone)]
pub struct ReadCaller(pub Caller);

/// A key allowed to send events: `admin` or `ingest`.
#[derive(Debug, Clone)]
pub struct IngestCaller(pub Caller);

/// What [`Authenticator::delete_key`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletedKey {
    Deleted,
    NotFound,
    /// Refused: the tenant's only admin key.
    LastAdmin,
}

macro_rules! deref_to_caller {
    ($($t:ty),*) => {$(
        impl std::ops::Deref for $t {
            type Target = Caller;

            fn deref(&self) -> &Caller {
                &self.0
            }
        }
    )*};
}
deref_to_caller!(AdminCaller, ReadCaller, IngestCaller);

/// A new key's stored form and its secret, which exists nowhere else.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub key: ApiKey,
    pub secret: String,
}

pub struct Authenticator {
    store: Arc<dyn Store>,
    jwt: Option<UserTokens>,
    /// When each key's `last_used_at` was last written, by key id.
    touched: Mutex<HashMap<String, Instant>>,
}

impl Authenticator {
    /// `jwt_secret`: the HS256 secret of user tokens; without it `/v1/me` answers 401.
    pub fn new(store: Arc<dyn Store>, jwt_secret: Option<&str>) -> Self {
        Self { store, jwt: jwt_secret.map(UserTokens::hs256), touched: Mutex::new(HashMap::new()) }
    }

    /// Makes sure the tenant can be administered, once at start-up.
    ///
    /// With `admin_key`, a key with that secret exists afterwards (role admin, name
    /// "bootstrap"). Without it, if the tenant has no admin key, one is generated and its
    /// secret returned, to be shown once; otherwise nothing changes and `None` is returned.
    pub async fn bootstrap(&self, admin_key: Option<&str>) -> Result<Option<String>, BootstrapError> {
        let tenant = DEFAULT_TENANT;
        if let Some(secret) = admin_key {
            return match self.store.key_by_hash(&hash_secret(secret)).await? {
                Some((owner, key)) if owner == tenant && key.role == Role::Admin => Ok(None),
                Some(_) => Err(BootstrapError::NotAdmin),
                None => match self.store.insert_key(tenant, &new_key("bootstrap", Role::Admin, secret)).await {
                    // Another process starting at the same moment inserted it first.
                    Ok(_) | Err(StoreError::Conflict(_)) => Ok(None),
                    Err(e) => Err(e.into()),
                },
            };
        }
        if self.store.count_keys(tenant, Role::Admin).await? > 0 {
            return Ok(None);
        }
        let secret = generate_secret();
        self.store.insert_key(tenant, &new_key("bootstrap", Role::Admin, &secret)).await?;
        Ok(Some(secret))
    }

    /// Creates a key; its secret is in the answer and nowhere else.
    pub async fn create_key(&self, tenant: &str, name: &str, role: Role) -> Result<CreatedKey, StoreError> {
        let secret = generate_secret();
        let key = self.store.insert_key(tenant, &new_key(name, role, &secret)).await?;
        Ok(CreatedKey { key, secret })
    }

    /// Deletes a key; it stops working with the next request. The tenant's last admin key
    /// is kept: deleting it would lock everyone out until a restart. (Two concurrent
    /// deletes of the last two admin keys can both pass; a restart then makes a new one.)
    pub async fn delete_key(&self, tenant: &str, id: &str) -> Result<DeletedKey, StoreError> {
        let keys = self.store.list_keys(tenant).await?;
        let Some(target) = keys.iter().find(|k| k.id == id) else {
            return Ok(DeletedKey::NotFound);
        };
        if target.role == Role::Admin && keys.iter().filter(|k| k.role == Role::Admin).count() <= 1 {
            return Ok(DeletedKey::LastAdmin);
        }
        let deleted = self.store.delete_key(tenant, id).await?;
        self.touched.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        Ok(if deleted { DeletedKey::Deleted } else { DeletedKey::NotFound })
    }

    /// The caller an `Authorization: Bearer <api key>` header names.
    pub async fn authenticate_key(&self, authorization: Option<&HeaderValue>) -> ApiResult<Caller> {
        let secret = bearer(authorization, "an API key")?;
        let found = self.store.key_by_hash(&hash_secret(secret)).await?;
        let Some((tenant, key)) = found else {
            return Err(ApiError::unauthorized("unknown or deleted API key"));
        };
        self.touch(&tenant, &key.id).await;
        Ok(Caller { tenant, key_id: key.id, role: key.role })
    }

    /// The user an `Authorization: Bearer <JWT>` header names.
    pub fn authenticate_user(&self, authorization: Option<&HeaderValue>) -> ApiResult<UserCaller> {
        let Some(tokens) = &self.jwt else {
            return Err(ApiError::unauthorized(
                "user tokens are not configured on this server (set QUESTLINE_JWT_SECRET)",
            ));
        };
        let token = bearer(authorization, "a user token (JWT)")?;
        let user_id = tokens.verify(token)?;
        Ok(UserCaller { tenant: DEFAULT_TENANT.to_owned(), user_id })
    }

    /// Writes `last_used_at`, at most once a minute per key. A failure is logged, not
    /// answered: the caller is authenticated whatever happens to this bookkeeping.
    async fn touch(&self, tenant: &str, key_id: &str) {
        let now = Instant::now();
        {
            let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
            match touched.get(key_id) {
                Some(at) if now.duration_since(*at) < TOUCH_EVERY => return,
                _ => touched.insert(key_id.to_owned(), now),
            };
        }
        if let Err(e) = self.store.touch_key(tenant, key_id, Timestamp::now()).await {
            tracing::warn!(key_id, error = %e, "could not record the key's last use");
        }
    }
}

/// Verifies the app's user tokens: HS256 only (`alg: none` and other algorithms are
/// refused, so an RS256 public key can never be used as an HMAC secret), `exp` required and
/// checked, `sub` required and non-empty.
pub struct UserTokens {
    key: DecodingKey,
    validation: Validation,
}

impl UserTokens {
    pub fn hs256(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Apps' tokens carry audiences we are not told about; the signature and expiry are
        // what prove the user.
        validation.validate_aud = false;
        Self { key: DecodingKey::from_secret(secret.as_bytes()), validation }
    }

    /// The user id (`sub`) of a valid token.
    pub fn verify(&self, token: &str) -> ApiResult<String> {
        #[derive(Deserialize)]
        struct Claims {
            sub: String,
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "the token must be signed with HS256",
                ErrorKind::InvalidSignature => "the token's signature does not verify",
                ErrorKind::MissingRequiredClaim(_) => "the token must have `exp` and `sub` claims",
                ErrorKind::ImmatureSignature => "the token is not valid yet",
                _ => "the token is malformed",
            };
            ApiError::unauthorized(why)
        })?;
        if data.claims.sub.trim().is_empty() {
            return Err(ApiError::unauthorized("the token's `sub` claim is empty"));
        }
        Ok(data.claims.sub)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("QUESTLINE_ADMIN_KEY is the secret of an existing key that is not an admin key")]
    NotAdmin,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new API key secret: `ql_` + base64url (no padding) of 32 random bytes.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// How a secret is stored: lowercase hex SHA-256. Secrets are 256-bit random, so a fast
/// hash is enough (no salt or stretching needed).
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A key id: `key_` + 16 random lowercase letters and digits.
pub fn generate_key_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..16).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("key_{suffix}")
}

fn new_key(name: &str, role: Role, secret: &str) -> NewApiKey {
    NewApiKey {
        id: generate_key_id(),
        name: name.to_owned(),
        role,
        secret_hash: hash_secret(secret),
        created_at: Timestamp::now(),
    }
}

/// The credential of an `Authorization: Bearer …` header.
fn bearer<'a>(authorization: Option<&'a HeaderValue>, what: &str) -> ApiResult<&'a str> {
    let Some(value) = authorization else {
        return Err(ApiError::unauthorized(format!("missing Authorization header: expected `Bearer <{what}>`")));
    };
    let malformed = || ApiError::unauthorized(format!("malformed Authorization header: expected `Bearer <{what}>`"));
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, credential) = value.split_once(' ').ok_or_else(malformed)?;
    let credential = credential.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || credential.is_empty() || credential.len() > MAX_CREDENTIAL_LEN {
        return Err(malformed());
    }
    Ok(credential)
}

/// What an auth extractor answers when it refuses: the problem, plus
/// `WWW-Authenticate: Bearer` on a 401 (RFC 6750).
#[derive(Debug)]
pub struct AuthRejection(pub ApiError);

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let unauthorized = self.0.status() == axum::http::StatusCode::UNAUTHORIZED;
        let mut response = self.0.into_response();
        if unauthorized {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<ApiError> for AuthRejection {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

async fn caller_with_role(
    parts: &Parts,
    state: &AppState,
    allowed: &[Role],
    needs: &str,
) -> Result<Caller, AuthRejection> {
    let caller = state.auth.authenticate_key(parts.headers.get(header::AUTHORIZATION)).await?;
    if !allowed.contains(&caller.role) {
        return Err(AuthRejection(ApiError::forbidden(format!(
            "this key has the `{}` role; this endpoint needs {needs}",
            caller.role.as_str()
        ))));
    }
    Ok(caller)
}

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        caller_with_role(parts, state, &[Role::Admin], "the `admin` role").await.map(Self)
    }
}

impl FromRequestParts<AppState> for ReadCaller {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        caller_with_role(parts, state, &[Role::Admin, Role::Read], "the `admin` or `read` role").await.map(Self)
    }
}

impl FromRequestParts<AppState> for IngestCaller {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        caller_with_role(parts, state, &[Role::Admin, Role::Ingest], "the `admin` or `ingest` role").await.map(Self)
    }
}

impl FromRequestParts<AppState> for UserCaller {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(state.auth.authenticate_user(parts.headers.get(header::AUTHORIZATION))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_the_documented_shape_and_differ() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert!(a.starts_with("ql_"));
        assert_eq!(a.len(), 3 + 43);
        assert!(a[3..].bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(hash_secret(&a).len(), 64);
        assert_eq!(hash_secret(&a), hash_secret(&a));
        assert!(generate_key_id().starts_with("key_"));
    }

    #[test]
    fn bearer_parsing() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(bearer(Some(&h("Bearer abc")), "x").unwrap(), "abc");
        assert_eq!(bearer(Some(&h("bearer  abc ")), "x").unwrap(), "abc");
        assert!(bearer(None, "x").is_err());
        assert!(bearer(Some(&h("Basic abc")), "x").is_err());
        assert!(bearer(Some(&h("Bearer")), "x").is_err());
        assert!(bearer(Some(&h("Bearer ")), "x").is_err());
    }

    mod tokens {
        use super::*;
        use jsonwebtoken::{EncodingKey, Header, encode};
        use serde_json::{Value, json};

        const SECRET: &str = "a-test-secret-of-32-bytes-length";

        fn now() -> i64 {
            Timestamp::now().as_second()
        }

        fn sign(alg: Algorithm, claims: &Value, secret: &str) -> String {
            encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
        }

        fn unsigned(header: &Value, claims: &Value) -> String {
            let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
            format!("{}.{}.", part(header), part(claims))
        }

        fn status(r: ApiResult<String>) -> u16 {
            r.map(|_| 200).unwrap_or_else(|e| e.status().as_u16())
        }

        #[test]
        fn a_valid_hs256_token_names_its_user() {
            let tokens = UserTokens::hs256(SECRET);
            let token = sign(Algorithm::HS256, &json!({"sub": "u-42", "exp": now() + 600}), SECRET);
            assert_eq!(tokens.verify(&token).unwrap(), "u-42");
        }

        #[test]
        fn bad_tokens_are_refused_with_401() {
            let tokens = UserTokens::hs256(SECRET);
            let exp = now() + 600;
            let cases = [
                ("expired", sign(Algorithm::HS256, &json!({"sub": "u", "exp": now() - 3600}), SECRET)),
                ("no exp", sign(Algorithm::HS256, &json!({"sub": "u"}), SECRET)),
                ("no sub", sign(Algorithm::HS256, &json!({"exp": exp}), SECRET)),
                ("empty sub", sign(Algorithm::HS256, &json!({"sub": "", "exp": exp}), SECRET)),
                (
                    "wrong secret",
                    sign(Algorithm::HS256, &json!({"sub": "u", "exp": exp}), "another-secret-another-secret"),
                ),
                ("HS512", sign(Algorithm::HS512, &json!({"sub": "u", "exp": exp}), SECRET)),
                ("alg none", unsigned(&json!({"alg": "none", "typ": "JWT"}), &json!({"sub": "u", "exp": exp}))),
                ("RS256 header, HMAC body", {
                    let good = sign(Algorithm::HS256, &json!({"sub": "u", "exp": exp}), SECRET);
                    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
                    parts[0] = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
                    parts.join(".")
                }),
                ("garbage", "not-a-jwt".to_owned()),
            ];
            for (what, token) in cases {
                assert_eq!(status(tokens.verify(&token)), 401, "{what}");
            }
        }
    }
}
