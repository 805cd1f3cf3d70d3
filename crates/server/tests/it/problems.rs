//! Every rejection path's problem body, pinned by one snapshot (`snapshots/`): the status,
//! the content type and the whole body, so that a changed type, title, detail or pointer is
//! a reviewed change (`cargo insta review`), never an accident. Both backends compare
//! against the same snapshot: the answers do not depend on the database.

use crate::fixtures::{create_mission, swiggy};
use crate::start;
use questline_testkit::{Backend, send};
use reqwest::Method;
use serde_json::{Value, json};

/// One request and what it answered.
async fn case(name: &str, request: reqwest::RequestBuilder) -> (String, Value) {
    let response = send(request).await;
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (name.to_owned(), json!({"status": status, "content_type": content_type, "body": body}))
}

pub async fn every_rejection_has_its_problem_type(backend: Backend) {
    let server = start(backend).await;
    let (_, read_key) = server.create_key("reader", "read").await;
    create_mission(&server, &swiggy("live")).await;
    create_mission(
        &server,
        &json!({"id": "ended", "name": "Ended", "status": "active",
        "steps": [{"event_type": "login", "target": 1}], "reward": {"kind": "badge"}}),
    )
    .await;
    send(server.admin(Method::PATCH, "/v1/missions/ended").json(&json!({"status": "ended"}))).await;
    let admin_keys = server.get("/v1/keys").send().await.unwrap().json::<Value>().await.unwrap();
    let only_admin = admin_keys["items"][0]["id"].as_str().unwrap().to_owned();

    let mut cases = Vec::new();
    cases.push(
        case(
            "400 malformed JSON",
            server.admin(Method::POST, "/v1/missions").header("content-type", "application/json").body("{\"id\": "),
        )
        .await,
    );
    cases.push(case("401 no credentials", server.anonymous(Method::GET, "/v1/missions")).await);
    cases.push(case("401 unknown key", server.with_key("ql_not-a-key", Method::GET, "/v1/missions")).await);
    cases.push(case("401 user tokens not configured", server.with_key("e.y.j", Method::GET, "/v1/me/missions")).await);
    cases.push(
        case("403 read key writes", server.with_key(&read_key, Method::POST, "/v1/missions").json(&swiggy("x"))).await,
    );
    cases.push(case("404 no route", server.get("/v1/nothing-here")).await);
    cases.push(case("404 mission", server.get("/v1/missions/nope")).await);
    cases.push(case("404 key", server.delete("/v1/keys/key_nope")).await);
    cases.push(case("404 job", server.admin(Method::POST, "/v1/jobs/nope/retry")).await);
    cases.push(case("405 method", server.admin(Method::DELETE, "/v1/events")).await);
    cases.push(case("409 mission id taken", server.post("/v1/missions", &swiggy("live"))).await);
    cases.push(
        case(
            "409 rules immutable",
            server.admin(Method::PATCH, "/v1/missions/live").json(&json!({"sequential": true})),
        )
        .await,
    );
    cases.push(
        case(
            "409 invalid transition from ended",
            server.admin(Method::PATCH, "/v1/missions/ended").json(&json!({"status": "active"})),
        )
        .await,
    );
    cases.push(
        case(
            "409 invalid transition to draft",
            server.admin(Method::PATCH, "/v1/missions/live").json(&json!({"status": "draft"})),
        )
        .await,
    );
    cases.push(case("409 not a draft", server.delete("/v1/missions/live")).await);
    cases.push(case("409 last admin key", server.delete(&format!("/v1/keys/{only_admin}"))).await);
    // Just over the limit: far over it, the server answers before reading the rest and the
    // client may see the connection close under its request instead of the answer.
    let huge = "x".repeat(1024 * 1024 + 16);
    cases.push(
        case(
            "413 too large",
            server.admin(Method::POST, "/v1/missions").header("content-type", "application/json").body(huge),
        )
        .await,
    );
    // Over hyper's limit of 64 KiB, which no `reqwest` URL can exceed: written by hand.
    let host = server.base_url.trim_start_matches("http://");
    let long = format!("GET /v1/{} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n", "x".repeat(70_000));
    let (status, content_type, body) = crate::ops::raw_exchange(&server, long.as_bytes()).await;
    cases.push(("414 path too long".to_owned(), json!({"status": status, "content_type": content_type, "body": body})));
    cases.push(case("415 no content type", server.admin(Method::POST, "/v1/missions").body("{}")).await);
    let mut unknown_field = swiggy("typo");
    unknown_field["stpes"] = json!([]);
    cases.push(case("422 unknown mission field", server.post("/v1/missions", &unknown_field)).await);
    let mut bad_op = swiggy("bad-op");
    bad_op["steps"][0]["filters"][1]["op"] = json!("between");
    cases.push(case("422 bad filter op", server.post("/v1/missions", &bad_op)).await);
    cases.push(case("422 empty batch", server.post("/v1/events", &json!({"events": []}))).await);
    cases.push(
        case("422 single invalid event", server.post("/v1/events", &json!({"id": "e1", "type": "payment"}))).await,
    );
    cases.push(case("422 bad status filter", server.get("/v1/missions?status=open")).await);
    cases.push(case("422 bad job state filter", server.get("/v1/jobs?state=done")).await);
    cases.push(case("422 bad cursor", server.get("/v1/missions?cursor=%%%")).await);
    let mut many_headers = server.get("/v1/missions");
    for i in 0..101 {
        many_headers = many_headers.header(format!("x-header-{i}"), "v");
    }
    cases.push(case("431 too many headers", many_headers).await);

    let cases: serde_json::Map<String, Value> = cases.into_iter().collect();
    for (name, case) in &cases {
        let content_type = case["content_type"].as_str().unwrap_or_default();
        assert!(content_type.starts_with("application/problem+json"), "{name}: {content_type}");
    }
    // As serde_json writes it: with `arbitrary_precision`, numbers handed to insta's own
    // serializer would come out as internal structs.
    insta::assert_snapshot!("problems", serde_json::to_string_pretty(&cases).unwrap());
}
