//! Who is calling: API keys for the panel and ingest endpoints, user JWTs for `/v1/me/...`.
//!
//! Handlers say what they need with an extractor: [`AdminCaller`], [`ReadCaller`],
//! [`IngestCaller`] (API keys, checked by the service: `questline_service::keys`) or
//! [`UserCaller`] (a user JWT, verified here with the app's HS256 secret). A missing or bad
//! credential answers 401 with `WWW-Authenticate: Bearer`; a key with the wrong role answers
//! 403.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use questline_core::id::{TenantId, UserId};
use questline_store::Role;
use serde::Deserialize;

/// Longer bearer values are rejected unread: no key or token of ours is this long.
const MAX_CREDENTIAL_LEN: usize = 8 * 1024;

pub use questline_service::keys::Caller;

/// An end user, authenticated by the app's JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCaller {
    pub tenant: TenantId,
    pub user_id: UserId,
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

/// A key allowed to send messages: `admin` or `send`.
#[derive(Debug, Clone)]
pub struct SendCaller(pub Caller);

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
deref_to_caller!(AdminCaller, ReadCaller, IngestCaller, SendCaller);

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
        // A token that is not valid yet is refused like an expired one, with the same leeway
        // (`validation.leeway`) for clocks that disagree a little.
        validation.validate_nbf = true;
        Self { key: DecodingKey::from_secret(secret.as_bytes()), validation }
    }

    /// The user id (`sub`) of a valid token.
    pub fn verify(&self, token: &str) -> ApiResult<String> {
        #[derive(Deserialize)]
        struct Claims {
            sub: String,
            /// Checked here: jsonwebtoken validates `exp` and `nbf`, not `iat`.
            iat: Option<u64>,
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "the token must be signed with HS256",
                ErrorKind::InvalidSignature => "the token's signature does not verify",
                ErrorKind::MissingRequiredClaim(_) => "the token must have `exp` and `sub` claims",
                ErrorKind::ImmatureSignature => "the token is not valid yet: its `nbf` is in the future",
                _ => "the token is malformed",
            };
            ApiError::unauthorized(why)
        })?;
        let now = jsonwebtoken::get_current_timestamp();
        if data.claims.iat.is_some_and(|iat| iat > now.saturating_add(self.validation.leeway)) {
            return Err(ApiError::unauthorized("the token is not valid yet: its `iat` (issued at) is in the future"));
        }
        if data.claims.sub.trim().is_empty() {
            return Err(ApiError::unauthorized("the token's `sub` claim is empty"));
        }
        Ok(data.claims.sub)
    }
}

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
    let secret = bearer(parts.headers.get(header::AUTHORIZATION), "an API key")?;
    let caller = state.service.authenticate_key(secret).await.map_err(ApiError::from)?;
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

impl FromRequestParts<AppState> for SendCaller {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        caller_with_role(parts, state, &[Role::Admin, Role::Send], "the `admin` or `send` role").await.map(Self)
    }
}

impl FromRequestParts<AppState> for UserCaller {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(tokens) = &state.user_tokens else {
            return Err(AuthRejection(ApiError::unauthorized(
                "user tokens are not configured on this server (set QUESTLINE_JWT_SECRET)",
            )));
        };
        let token = bearer(parts.headers.get(header::AUTHORIZATION), "a user token (JWT)")?;
        let user_id = tokens.verify(token)?;
        Ok(UserCaller { tenant: TenantId::default_tenant(), user_id: UserId::new(user_id) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use jiff::Timestamp;
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
        fn nbf_and_iat_within_the_leeway_or_past_are_accepted() {
            let tokens = UserTokens::hs256(SECRET);
            let exp = now() + 600;
            for claims in [
                json!({"sub": "u", "exp": exp, "nbf": now() - 10, "iat": now() - 10}),
                json!({"sub": "u", "exp": exp, "nbf": now() + 30, "iat": now() + 30}),
            ] {
                assert_eq!(tokens.verify(&sign(Algorithm::HS256, &claims, SECRET)).unwrap(), "u", "{claims}");
            }
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
                (
                    "nbf in an hour",
                    sign(Algorithm::HS256, &json!({"sub": "u", "exp": exp, "nbf": now() + 3600}), SECRET),
                ),
                (
                    "iat in an hour",
                    sign(Algorithm::HS256, &json!({"sub": "u", "exp": exp, "iat": now() + 3600}), SECRET),
                ),
                ("iat not a number", sign(Algorithm::HS256, &json!({"sub": "u", "exp": exp, "iat": "now"}), SECRET)),
            ];
            for (what, token) in cases {
                assert_eq!(status(tokens.verify(&token)), 401, "{what}");
            }
        }
    }
}
