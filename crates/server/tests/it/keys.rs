//! `/v1/keys`: create, list, delete; validation and body errors.

use crate::start;
use questline_testkit::{ADMIN_KEY, Backend, expect_problem, send};
use reqwest::Method;
use serde_json::{Value, json};

pub async fn create_use_delete_and_the_key_stops_working_at_once(backend: Backend) {
    let server = start(backend).await;
    let response = send(server.post("/v1/keys", &json!({"name": "second admin", "role": "admin"}))).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(fields(&created), ["created_at", "id", "key", "name", "role"], "{created}");
    assert_eq!((created["name"].as_str(), created["role"].as_str()), (Some("second admin"), Some("admin")));
    let id = created["id"].as_str().unwrap();
    let secret = created["key"].as_str().unwrap();
    assert!(id.starts_with("key_"), "{id}");
    assert!(secret.starts_with("ql_") && secret.len() == 46, "{secret}");
    assert_utc_timestamp(created["created_at"].as_str().unwrap());

    // use it
    assert_eq!(send(server.with_key(secret, Method::GET, "/v1/keys")).await.status(), 200);

    // delete it (with the other admin key) and it is refused on the very next request
    assert_eq!(send(server.delete(&format!("/v1/keys/{id}"))).await.status(), 204);
    expect_problem(send(server.with_key(secret, Method::GET, "/v1/keys")).await, 401).await;
    expect_problem(send(server.delete(&format!("/v1/keys/{id}"))).await, 404).await;
}

fn assert_utc_timestamp(s: &str) {
    s.parse::<jiff::Timestamp>().unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"));
    assert!(s.ends_with('Z'), "{s} is not UTC");
}

/// The member names of a JSON object, sorted.
fn fields(v: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = v.as_object().expect("an object").keys().map(String::as_str).collect();
    names.sort_unstable();
    names
}

pub async fn the_list_never_shows_a_secret_or_hash_and_records_last_use(backend: Backend) {
    let server = start(backend).await;
    let (id, secret) = server.create_key("pos-ingest", "ingest").await;
    let listed: Value = send(server.get("/v1/keys")).await.json().await.unwrap();
    let text = listed.to_string();
    assert!(!text.contains(&secret) && !text.contains(ADMIN_KEY), "{text}");
    assert!(!text.contains("hash") && !text.contains("\"key\""), "{text}");
    assert_eq!(listed["next_cursor"], Value::Null);
    let items = listed["items"].as_array().unwrap();
    let mine = items.iter().find(|k| k["id"] == id.as_str()).expect("the new key is listed");
    assert_eq!(fields(mine), ["created_at", "id", "last_used_at", "name", "role"], "{mine}");
    assert_eq!(mine["last_used_at"], Value::Null, "never used yet");
    // the admin key was just used to list
    let admin = items.iter().find(|k| k["name"] == "bootstrap").unwrap();
    assert!(admin["last_used_at"].is_string(), "{admin}");

    // a use of the ingest key shows up (its 403 still authenticated it)
    expect_problem(send(server.with_key(&secret, Method::GET, "/v1/keys")).await, 403).await;
    let listed: Value = send(server.get("/v1/keys")).await.json().await.unwrap();
    let mine = listed["items"].as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert!(mine["last_used_at"].is_string(), "{mine}");
}

pub async fn the_last_admin_key_cannot_be_deleted(backend: Backend) {
    let server = start(backend).await;
    let listed: Value = send(server.get("/v1/keys")).await.json().await.unwrap();
    let id = listed["items"][0]["id"].as_str().unwrap().to_owned();
    expect_problem(send(server.delete(&format!("/v1/keys/{id}"))).await, 409).await;
    assert_eq!(send(server.get("/v1/keys")).await.status(), 200, "still works");
}

pub async fn invalid_key_requests_are_422_with_pointers(backend: Backend) {
    let server = start(backend).await;
    let cases = [
        (json!({"name": "", "role": "read"}), vec!["/name"]),
        (json!({"name": "x".repeat(101), "role": "read"}), vec!["/name"]),
        (json!({"name": "ok", "role": "superuser"}), vec!["/role"]),
        (json!({"name": "  ", "role": "owner"}), vec!["/name", "/role"]),
        (json!({"name": "ok", "role": "read", "rolee": "x"}), vec!["/rolee"]),
        (json!({"role": "read"}), vec!["/name"]),
        (json!({"name": 5, "role": "read"}), vec!["/name"]),
        (json!(["name", "role"]), vec![""]),
    ];
    for (body, pointers) in cases {
        let problem = expect_problem(send(server.post("/v1/keys", &body)).await, 422).await;
        let got: Vec<&str> =
            problem["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
        assert_eq!(got, pointers, "{body} -> {problem}");
    }
    // nothing was created
    let listed: Value = send(server.get("/v1/keys")).await.json().await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

pub async fn malformed_json_is_400_with_a_position(backend: Backend) {
    let server = start(backend).await;
    let request = server
        .admin(Method::POST, "/v1/keys")
        .header("content-type", "application/json")
        .body("{\"name\": \"x\",\n \"role\": }");
    let problem = expect_problem(send(request).await, 400).await;
    assert!(problem["detail"].as_str().unwrap().contains("line 2"), "{problem}");
}

pub async fn a_body_that_is_not_json_is_415(backend: Backend) {
    let server = start(backend).await;
    let body = r#"{"name": "x", "role": "read"}"#;
    let plain = server.admin(Method::POST, "/v1/keys").header("content-type", "text/plain").body(body);
    expect_problem(send(plain).await, 415).await;
    let none = server.admin(Method::POST, "/v1/keys").body(body);
    let problem = expect_problem(send(none).await, 415).await;
    assert!(problem["detail"].as_str().unwrap().contains("application/json"), "{problem}");
}
