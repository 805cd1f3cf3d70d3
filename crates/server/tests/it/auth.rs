//! Authentication and authorisation, end to end: API keys, roles, the admin bootstrap and
//! user tokens.

use crate::{start, start_with};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use questline_testkit::{ADMIN_KEY, Backend, ServerOptions, expect_problem, send};
use reqwest::Method;
use serde_json::{Value, json};

pub async fn no_key_is_401_with_a_bearer_challenge(backend: Backend) {
    let server = start(backend).await;
    let response = send(server.anonymous(Method::GET, "/v1/keys")).await;
    assert_eq!(response.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"));
    let body = expect_problem(response, 401).await;
    assert!(body["detail"].as_str().unwrap().contains("Authorization"), "{body}");
}

pub async fn wrong_or_malformed_keys_are_401(backend: Backend) {
    let server = start(backend).await;
    let wrong = send(server.with_key("ql_not-a-key-we-ever-issued-000000000000000", Method::GET, "/v1/keys")).await;
    assert!(wrong.headers().contains_key("www-authenticate"));
    expect_problem(wrong, 401).await;
    let basic = server.anonymous(Method::GET, "/v1/keys").header("authorization", format!("Basic {ADMIN_KEY}"));
    expect_problem(send(basic).await, 401).await;
    let empty = server.anonymous(Method::GET, "/v1/keys").header("authorization", "Bearer ");
    expect_problem(send(empty).await, 401).await;
}

pub async fn the_configured_admin_key_works_and_nothing_is_printed(backend: Backend) {
    let server = start(backend).await;
    assert_eq!(server.printed_admin_key(), None, "{:?}", server.startup_lines);
    let response = send(server.get("/v1/keys")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{body}");
    assert_eq!((items[0]["name"].as_str(), items[0]["role"].as_str()), (Some("bootstrap"), Some("admin")));
}

pub async fn roles_are_enforced_with_403(backend: Backend) {
    let server = start(backend).await;
    let (_, read) = server.create_key("reader", "read").await;
    let (_, ingest) = server.create_key("pos", "ingest").await;

    let create = json!({"name": "sneaky", "role": "admin"});
    let body = expect_problem(send(server.with_key(&read, Method::POST, "/v1/keys").json(&create)).await, 403).await;
    assert!(body["detail"].as_str().unwrap().contains("read"), "{body}");
    expect_problem(send(server.with_key(&ingest, Method::GET, "/v1/keys")).await, 403).await;
    expect_problem(send(server.with_key(&read, Method::GET, "/v1/keys")).await, 403).await;
    expect_problem(send(server.with_key(&ingest, Method::DELETE, "/v1/keys/key_x")).await, 403).await;

    // and the keys were not created or listed behind our back
    let listed: Value = send(server.get("/v1/keys")).await.json().await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 3, "{listed}");
}

pub async fn without_a_configured_key_one_is_generated_printed_once_and_kept(backend: Backend) {
    let mut server = start_with(ServerOptions::on(backend).without_admin_key()).await;
    let printed = server.printed_admin_key().expect("an admin key is printed").to_owned();
    assert!(printed.starts_with("ql_") && printed.len() == 46, "{printed}");

    // the server is not open: no key, no entry
    expect_problem(send(server.anonymous(Method::GET, "/v1/keys")).await, 401).await;
    // the printed key is an admin key
    let listed: Value = send(server.with_key(&printed, Method::GET, "/v1/keys")).await.json().await.unwrap();
    assert_eq!(listed["items"][0]["role"], "admin", "{listed}");
    assert!(!listed.to_string().contains(&printed), "the secret is never listed");

    // a restart on the same database prints nothing new, and the key still works
    server.restart().await;
    assert_eq!(server.printed_admin_key(), None, "{:?}", server.startup_lines);
    assert!(server.stdout_lines().iter().all(|l| !l.contains("ql_")), "{:?}", server.stdout_lines());
    assert_eq!(send(server.with_key(&printed, Method::GET, "/v1/keys")).await.status(), 200);
    assert!(!server.logs().contains(&printed), "the secret never reaches the log");
}

fn token(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

fn expiry() -> i64 {
    jiff::Timestamp::now().as_second() + 600
}

pub async fn user_tokens_are_refused_when_not_configured(backend: Backend) {
    let server = start(backend).await;
    let jwt = token(&json!({"sub": "u-1", "exp": expiry()}), "some-secret-some-secret");
    let response = send(server.with_key(&jwt, Method::GET, "/v1/me/missions")).await;
    let body = expect_problem(response, 401).await;
    assert!(body["detail"].as_str().unwrap().contains("not configured"), "{body}");
}

pub async fn user_tokens_must_be_valid_hs256(backend: Backend) {
    const SECRET: &str = "jwt-secret-for-the-tests-0123456789";
    let server = start_with(ServerOptions::on(backend).env("QUESTLINE_JWT_SECRET", SECRET)).await;

    let good = token(&json!({"sub": "u-1", "exp": expiry()}), SECRET);
    let response = send(server.with_key(&good, Method::GET, "/v1/me/missions")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["items"].is_array(), "{body}");

    let part = |v: Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap());
    let claims = json!({"sub": "u-1", "exp": expiry()});
    let bad = [
        ("alg none", format!("{}.{}.", part(json!({"alg": "none", "typ": "JWT"})), part(claims.clone()))),
        ("wrong secret", token(&claims, "another-secret-another-secret")),
        ("expired", token(&json!({"sub": "u-1", "exp": 1_000_000_000}), SECRET)),
        ("no exp", token(&json!({"sub": "u-1"}), SECRET)),
        ("no sub", token(&json!({"exp": expiry()}), SECRET)),
        ("an API key", ADMIN_KEY.to_owned()),
    ];
    for (what, jwt) in bad {
        let response = send(server.with_key(&jwt, Method::GET, "/v1/me/missions")).await;
        assert_eq!(response.status(), 401, "{what}");
        expect_problem(response, 401).await;
    }
    // and a user token is not an API key
    expect_problem(send(server.with_key(&good, Method::GET, "/v1/keys")).await, 401).await;
}

pub async fn user_tokens_not_valid_yet_are_401(backend: Backend) {
    const SECRET: &str = "jwt-secret-for-the-tests-0123456789";
    let server = start_with(ServerOptions::on(backend).env("QUESTLINE_JWT_SECRET", SECRET)).await;
    let now = jiff::Timestamp::now().as_second();
    // within the leeway (a minute, as for `exp`): clocks disagree a little
    let skewed = token(&json!({"sub": "u-1", "exp": expiry(), "nbf": now + 20, "iat": now + 20}), SECRET);
    assert_eq!(send(server.with_key(&skewed, Method::GET, "/v1/me/missions")).await.status(), 200);

    let early = [
        ("nbf in an hour", json!({"sub": "u-1", "exp": expiry(), "nbf": now + 3600}), "`nbf`"),
        ("iat in an hour", json!({"sub": "u-1", "exp": expiry(), "iat": now + 3600}), "`iat`"),
    ];
    for (what, claims, named) in early {
        let response = send(server.with_key(&token(&claims, SECRET), Method::GET, "/v1/me/missions")).await;
        assert_eq!(response.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"), "{what}");
        let body = expect_problem(response, 401).await;
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains("not valid yet") && detail.contains(named), "{what}: {body}");
    }
}

/// A large body refused before it is read (no key) must not break the client's next request
/// on the same connection: the answer says `Connection: close`, so the client opens a new one
/// instead of writing into a connection the server is closing.
pub async fn a_refused_large_body_does_not_break_the_next_request(backend: Backend) {
    let server = start(backend).await;
    let events: Vec<Value> = (0..600)
        .map(|i| {
            json!({"id": format!("e-{i}"), "type": "payment", "user_id": "u-1",
                   "occurred_at": "2026-12-01T10:00:00Z", "attributes": {"amount": 100, "note": "x".repeat(80)}})
        })
        .collect();
    let body = json!({ "events": events });
    assert!(body.to_string().len() > 90_000);
    for i in 0..20 {
        let response = server
            .anonymous(Method::POST, "/v1/events")
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i} failed on the client's side: {e}"));
        assert_eq!(response.headers().get("connection").map(|v| v.to_str().unwrap()), Some("close"), "request {i}");
        expect_problem(response, 401).await;
    }
    // A refusal after the body was read keeps the connection.
    let keep = send(server.post("/v1/events", &json!({"events": "not a list"}))).await;
    assert_eq!(keep.headers().get("connection"), None);
    expect_problem(keep, 422).await;
}
