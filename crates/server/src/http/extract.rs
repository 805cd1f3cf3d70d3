//! Request extractors that fail with problem+json and say where.
//!
//! - [`JsonBody<T>`]: the body as JSON. Wrong or missing content type → 415; not JSON → 400
//!   with line and column; too large → 413; JSON of the wrong shape → 422 whose `pointer`
//!   names the value at fault (`/steps/0/filters/1/op`).
//! - [`from_value`]: the same 422 for a `serde_json::Value` already in hand (e.g. one event
//!   of a batch, so that one bad event does not reject its batch).
//! - [`Pagination`]: `?limit=` (default 50, 1..=500) and `?cursor=`, an opaque token made by
//!   [`encode_cursor`] from the last id of the previous page.

use crate::error::{ApiError, ApiResult, problem};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use questline_core::pointer::escape;
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};

/// A JSON request body, deserialized into `T`. Use `JsonBody<serde_json::Value>` to take
/// the document apart by hand.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A JSON request body as a `serde_json::Value`, after the content-type, size and syntax
/// checks, for handlers that take the document apart themselves.
#[derive(Debug, Clone)]
pub struct JsonValue(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for JsonValue {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        parse_json(&bytes).map(JsonValue)
    }
}

/// The raw body of a JSON request, after the content-type and size checks.
pub async fn json_bytes<S: Send + Sync>(req: Request, state: &S) -> ApiResult<Bytes> {
    check_json_content_type(req.headers())?;
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(problem::PAYLOAD_TOO_LARGE, "the request body is larger than this endpoint accepts")
        } else {
            ApiError::malformed("the request body could not be read")
        }
    })
}

/// Accepts `application/json` and any `application/*+json` (such as
/// `application/merge-patch+json`), with any parameters.
pub fn check_json_content_type(headers: &HeaderMap) -> ApiResult<()> {
    let expected = "expected Content-Type: application/json";
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::new(problem::UNSUPPORTED_MEDIA_TYPE, format!("missing Content-Type; {expected}")));
    };
    let essence = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let is_json =
        essence == "application/json" || essence.strip_prefix("application/").is_some_and(|sub| sub.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::new(problem::UNSUPPORTED_MEDIA_TYPE, format!("unsupported Content-Type; {expected}")))
    }
}

/// Parses a JSON document into `T`: 400 if it is not JSON, 422 (with the pointer of the value
/// at fault) if it is JSON of the wrong shape.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => {
            de.end().map_err(|e| malformed(&e))?;
            Ok(value)
        }
        Err(e) if e.inner().classify() == serde_json::error::Category::Data => {
            // A shape error found before a syntax error further on is still malformed JSON.
            if let Err(syntax) = serde_json::from_slice::<IgnoredAny>(bytes) {
                return Err(malformed(&syntax));
            }
            Err(shape_error(e.path(), &message(e.inner())))
        }
        Err(e) => Err(malformed(e.inner())),
    }
}

/// Deserializes a JSON value into `T`: 422, with the pointer of the value at fault, if it
/// has the wrong shape.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> ApiResult<T> {
    serde_path_to_error::deserialize(value).map_err(|e| shape_error(e.path(), &message(e.inner())))
}

/// Like [`from_value`], for a document that must be a JSON object. (serde would also take a
/// struct from an array of its fields in order, which no client means.)
pub fn from_object<T: DeserializeOwned>(value: serde_json::Value) -> ApiResult<T> {
    if !value.is_object() {
        return Err(ApiError::invalid("", "must be a JSON object"));
    }
    from_value(value)
}

/// The JSON pointer (RFC 6901) of a serde path: `/steps/0/filters/1/op`.
pub use questline_service::parse::pointer_of;

fn shape_error(path: &serde_path_to_error::Path, message: &str) -> ApiError {
    let mut at = pointer_of(path);
    // serde reports a missing field at its parent; point at the field itself.
    if let Some(field) = message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()) {
        let field = format!("/{}", escape(field));
        if !at.ends_with(&field) {
            at.push_str(&field);
        }
    }
    ApiError::invalid(&at, message)
}

fn malformed(e: &serde_json::Error) -> ApiError {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input".to_owned(),
        _ => message(e),
    };
    ApiError::malformed(format!("invalid JSON at line {}, column {}: {what}", e.line(), e.column()))
}

/// serde_json's message without its " at line L column C" suffix.
fn message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) if e.line() > 0 => text[..at].to_owned(),
        _ => text,
    }
}

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// `?limit=&cursor=`, validated when extracted; other query parameters are left to other
/// extractors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pagination {
    limit: u32,
    after: Option<String>,
}

impl Default for Pagination {
    fn default() -> Self {
        Self { limit: DEFAULT_LIMIT, after: None }
    }
}

/// Where a validation error in a query parameter points: `query/limit`.
pub fn query_pointer(name: &str) -> String {
    format!("query/{name}")
}

impl Pagination {
    pub fn new(limit: u32, after: Option<String>) -> Self {
        Self { limit: limit.clamp(1, MAX_LIMIT), after }
    }

    /// How many items the page may hold: 1..=500, default 50.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The id the page starts after (the decoded `cursor`), if any. The cursor was checked
    /// when the query was extracted, so this does not fail; it returns a `Result` so that
    /// handlers need not change if cursors ever carry more.
    pub fn after(&self) -> ApiResult<Option<String>> {
        Ok(self.after.clone())
    }

    /// Pages an already ordered list in memory (for per-user lists, which are small): the
    /// items after the cursor's id, and the `next_cursor` if more follow.
    pub fn page_of<T>(&self, items: Vec<T>, id: impl Fn(&T) -> &str) -> (Vec<T>, Option<String>) {
        let start = match &self.after {
            Some(after) => items.iter().position(|i| id(i) == after.as_str()).map_or(items.len(), |p| p + 1),
            None => 0,
        };
        let more = items.len() > start + self.limit as usize;
        let page: Vec<T> = items.into_iter().skip(start).take(self.limit as usize).collect();
        let next = if more { page.last().map(|last| encode_cursor(id(last))) } else { None };
        (page, next)
    }

    /// The `next_cursor` that resumes a list after `last_id`.
    pub fn cursor_for(last_id: &str) -> String {
        encode_cursor(last_id)
    }

    /// Parses a raw query string (without `?`).
    pub fn from_query(query: Option<&str>) -> ApiResult<Self> {
        let mut page = Pagination::default();
        let Some(query) = query else { return Ok(page) };
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "limit" => {
                    page.limit =
                        value.parse::<u32>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                            ApiError::invalid(
                                &query_pointer("limit"),
                                format!("must be an integer from 1 to {MAX_LIMIT}"),
                            )
                        })?;
                }
                "cursor" if value.is_empty() => page.after = None,
                "cursor" => page.after = Some(decode_cursor(&value)?),
                _ => {}
            }
        }
        Ok(page)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Pagination {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Pagination::from_query(parts.uri.query())
    }
}

impl utoipa::IntoParams for Pagination {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let limit = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(MAX_LIMIT))
            .default(Some(DEFAULT_LIMIT.into()));
        vec![
            ParameterBuilder::new()
                .name("limit")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(format!("How many items, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})")))
                .schema(Some(limit))
                .build(),
            ParameterBuilder::new()
                .name("cursor")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some("The `next_cursor` of the previous page"))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        ]
    }
}

/// The opaque cursor that resumes a list after `last_id`.
pub fn encode_cursor(last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_id.as_bytes())
}

/// The id a cursor resumes after; 422 at `query/cursor` if it is not one of ours.
pub fn decode_cursor(cursor: &str) -> ApiResult<String> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        // A cursor is an id this API returned: never empty, and storable by every backend.
        .filter(|id| !id.is_empty() && questline_core::id::storable(id))
        .ok_or_else(|| ApiError::invalid(&query_pointer("cursor"), "not a cursor this API returned"))
}

/// A page of a list, as every list endpoint answers: `{"items": […], "next_cursor": "…" | null}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Paginated<T> {
    pub items: Vec<T>,
    /// Pass as `?cursor=` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Paginated<T> {
    /// A page from the store's page, mapping each item.
    pub fn from_page<U>(page: questline_store::Page<U>, map: impl FnMut(U) -> T) -> Self {
        Self {
            items: page.items.into_iter().map(map).collect(),
            next_cursor: page.next_after.as_deref().map(encode_cursor),
        }
    }

    /// A complete list: one page, no next.
    pub fn all(items: Vec<T>) -> Self {
        Self { items, next_cursor: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Problem;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        steps: Vec<Step>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Step {
        filters: Vec<Filter>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Filter {
        op: Op,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Op {
        Eq,
        Gte,
    }

    fn problem(e: ApiError) -> Problem {
        match e {
            ApiError::Problem(p) => *p,
            ApiError::Internal(cause) => panic!("unexpected internal error: {cause}"),
        }
    }

    #[test]
    fn shape_errors_point_at_the_value() {
        let bad = br#"{"steps": [{"filters": [{"op": "eq"}, {"op": "gtee"}]}]}"#;
        let p = problem(parse_json::<Doc>(bad).unwrap_err());
        assert_eq!(p.status, 422);
        assert_eq!(p.errors[0].pointer, "/steps/0/filters/1/op");
        assert!(p.errors[0].detail.contains("gtee"), "{}", p.errors[0].detail);
        assert!(!p.errors[0].detail.contains("line"), "{}", p.errors[0].detail);

        let value: serde_json::Value = serde_json::from_slice(bad).unwrap();
        let p = problem(from_value::<Doc>(value).unwrap_err());
        assert_eq!(p.errors[0].pointer, "/steps/0/filters/1/op");
    }

    #[test]
    fn missing_and_unknown_fields_point_at_the_field() {
        let p = problem(parse_json::<Doc>(br#"{"steps": [{"filters": [{}]}]}"#).unwrap_err());
        assert_eq!(p.errors[0].pointer, "/steps/0/filters/0/op");
        let p = problem(parse_json::<Doc>(br#"{"steps": [], "stpes": 1}"#).unwrap_err());
        assert_eq!(p.errors[0].pointer, "/stpes");
        assert!(p.errors[0].detail.contains("unknown field"), "{}", p.errors[0].detail);
        let value = serde_json::json!({"steps": [{"filters": [{"op": "eq", "value": 1}]}]});
        let p = problem(from_value::<Doc>(value).unwrap_err());
        assert_eq!(p.errors[0].pointer, "/steps/0/filters/0/value");
    }

    #[test]
    fn syntax_errors_are_400_with_a_position() {
        let p = problem(parse_json::<Doc>(b"{\n  \"steps\": [,]\n}").unwrap_err());
        assert_eq!(p.status, 400);
        assert!(p.detail.contains("line 2, column"), "{}", p.detail);
        let p = problem(parse_json::<Doc>(b"").unwrap_err());
        assert_eq!(p.status, 400);
        let p = problem(parse_json::<Doc>(b"{\"steps\": []} trailing").unwrap_err());
        assert_eq!(p.status, 400);
        // a shape error before a syntax error is still a 400
        let p = problem(parse_json::<Doc>(br#"{"steps": 5, "#).unwrap_err());
        assert_eq!(p.status, 400);
    }

    #[test]
    fn content_types() {
        let headers = |ct: Option<&str>| {
            let mut h = HeaderMap::new();
            if let Some(ct) = ct {
                h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            }
            h
        };
        assert!(check_json_content_type(&headers(Some("application/json"))).is_ok());
        assert!(check_json_content_type(&headers(Some("Application/JSON; charset=utf-8"))).is_ok());
        assert!(check_json_content_type(&headers(Some("application/merge-patch+json"))).is_ok());
        for bad in [None, Some("text/plain"), Some("application/jsonx"), Some("text/json")] {
            let e = check_json_content_type(&headers(bad)).unwrap_err();
            assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{bad:?}");
        }
    }

    #[test]
    fn pagination_defaults_bounds_and_cursors() {
        assert_eq!(Pagination::from_query(None).unwrap(), Pagination::default());
        assert_eq!(Pagination::from_query(Some("status=active")).unwrap(), Pagination::new(50, None));
        let cursor = Pagination::cursor_for("mission-7");
        let page = Pagination::from_query(Some(&format!("limit=500&cursor={cursor}"))).unwrap();
        assert_eq!((page.limit(), page.after().unwrap()), (500, Some("mission-7".to_owned())));
        for bad in ["limit=0", "limit=501", "limit=ten", "limit=", "limit=-1"] {
            let p = problem(Pagination::from_query(Some(bad)).unwrap_err());
            assert_eq!((p.status, p.errors[0].pointer.as_str()), (422, "query/limit"), "{bad}");
        }
        let p = problem(Pagination::from_query(Some("cursor=***")).unwrap_err());
        assert_eq!(p.errors[0].pointer, "query/cursor");
    }
}
