//! Operations endpoints, routing errors, body limits and process lifecycle.

use crate::start;
use questline_testkit::{ADMIN_KEY, Backend, DEADLINE, expect_problem, send};
use reqwest::Method;
use serde_json::Value;
use std::time::{Duration, Instant};

pub async fn healthz_and_readyz_answer_ok_without_a_key(backend: Backend) {
    let server = start(backend).await;
    for path in ["/healthz", "/readyz"] {
        let response = send(server.anonymous(Method::GET, path)).await;
        assert_eq!(response.status(), 200, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, serde_json::json!({"status": "ok"}), "{path}");
    }
}

pub async fn openapi_document_describes_the_routes(backend: Backend) {
    let server = start(backend).await;
    let response = send(server.anonymous(Method::GET, "/openapi.json")).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let doc: Value = response.json().await.expect("valid JSON");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("a paths object");
    for path in ["/v1/keys", "/v1/keys/{id}", "/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert!(paths.contains_key(path), "{path} missing from {:?}", paths.keys().collect::<Vec<_>>());
    }
    assert!(paths["/v1/keys"]["post"].is_object() && paths["/v1/keys"]["get"].is_object());
    assert!(paths["/v1/keys/{id}"]["delete"].is_object());
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["user_jwt"]["bearerFormat"], "JWT", "{schemes}");
}

pub async fn metrics_count_requests_in_prometheus_text(backend: Backend) {
    let server = start(backend).await;
    assert_eq!(send(server.anonymous(Method::GET, "/healthz")).await.status(), 200);
    assert_eq!(send(server.anonymous(Method::GET, "/v1/keys")).await.status(), 401);
    let response = send(server.anonymous(Method::GET, "/metrics")).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = response.text().await.unwrap();
    let has = |needle: &str| text.lines().any(|l| l.starts_with("http_requests_total{") && l.contains(needle));
    assert!(has(r#"route="/healthz""#) && has(r#"status="200""#), "{text}");
    assert!(has(r#"route="/v1/keys""#) && has(r#"status="401""#), "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
}

pub async fn unknown_paths_are_404_and_wrong_methods_405_problems(backend: Backend) {
    let server = start(backend).await;
    let body = expect_problem(send(server.get("/v1/nothing-here")).await, 404).await;
    assert!(body["detail"].as_str().unwrap().contains("/v1/nothing-here"), "{body}");

    let response = send(server.admin(Method::PUT, "/v1/keys")).await;
    let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
    expect_problem(response, 405).await;
    let allow = allow.expect("an Allow header");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
}

pub async fn request_bodies_over_one_mebibyte_are_413(backend: Backend) {
    let server = start(backend).await;
    let big = serde_json::json!({"name": "x".repeat(1024 * 1024 + 1), "role": "read"});
    let body = expect_problem(send(server.post("/v1/keys", &big)).await, 413).await;
    assert!(body["detail"].as_str().unwrap().contains("larger"), "{body}");
    // the server is still fine afterwards
    assert_eq!(send(server.get("/v1/keys")).await.status(), 200);
}

pub async fn event_batches_may_be_larger_than_one_mebibyte(backend: Backend) {
    let server = start(backend).await;
    // 2 MiB: over the general limit, under the 16 MiB limit of POST /v1/events.
    let padding = "x".repeat(2 * 1024 * 1024);
    let body = serde_json::json!({"events": [], "padding": padding});
    let response = send(server.post("/v1/events", &body)).await;
    assert_ne!(response.status(), 413, "a 2 MiB batch is within the events limit");
    expect_problem(response, 422).await;

    let too_big = serde_json::json!({"events": [], "padding": "x".repeat(16 * 1024 * 1024)});
    expect_problem(send(server.post("/v1/events", &too_big)).await, 413).await;
}

pub async fn sigterm_stops_the_server_promptly_with_status_0(backend: Backend) {
    let mut server = start(backend).await;
    // an open keep-alive connection must not hold the shutdown up
    assert_eq!(send(server.anonymous(Method::GET, "/healthz")).await.status(), 200);
    let started = Instant::now();
    server.terminate();
    let status = server.wait(Duration::from_secs(10)).await.expect("exits within 10 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}; log:\n{}", server.logs());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(server.logs().contains("SIGTERM"), "{}", server.logs());
}

pub async fn sigterm_lets_an_in_flight_request_finish(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut server = start(backend).await;
    let addr = server.base_url.trim_start_matches("http://").to_owned();
    let body = r#"{"name": "in-flight", "role": "read"}"#;
    let (first, rest) = body.split_at(10);

    // A request whose handler is waiting for its body when the signal arrives: the server
    // answers `100 Continue` only once the handler reads the body, so it is in flight.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/keys HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(DEADLINE, stream.read(&mut byte)).await.expect("100 Continue").unwrap();
        assert_eq!(read, 1, "connection closed before 100 Continue");
        interim.push(byte[0]);
    }
    assert!(interim.starts_with(b"HTTP/1.1 100"), "{}", String::from_utf8_lossy(&interim));
    stream.write_all(first.as_bytes()).await.unwrap();
    server.terminate();

    // once the server has stopped accepting, the signal has been handled
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&addr).await.is_ok() {
        assert!(Instant::now() < deadline, "the server still accepts connections 10 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await; // poll interval
    }

    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut response))
        .await
        .expect("the in-flight request is answered")
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(response.contains("\"name\":\"in-flight\""), "{response}");

    let status = server.wait(Duration::from_secs(10)).await.expect("exits once the request is done");
    assert!(status.success(), "exit status {status:?}; log:\n{}", server.logs());
}

pub async fn data_survives_a_crash_and_restart(backend: Backend) {
    let mut server = start(backend).await;
    let (_, secret) = server.create_key("survivor", "read").await;
    server.kill();
    let status = server.wait(Duration::from_secs(10)).await.expect("SIGKILL ends it");
    assert!(!status.success());
    server.restart().await;
    // 403, not 401: the key is still known (a read key may not list keys)
    expect_problem(send(server.with_key(&secret, Method::GET, "/v1/keys")).await, 403).await;
}

/// Writes `request` on a fresh connection and reads the answer until the server closes it
/// (send `Connection: close` where the router answers).
/// A write error is not a failure: the server may answer and close before reading it all.
pub async fn raw_exchange(server: &questline_testkit::TestServer, request: &[u8]) -> (u16, String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.base_url.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let request = request.to_vec();
    // The writing half stays open until the answer is read: hyper drops a connection whose
    // client has shut down its side.
    let write = async move {
        let _ = writer.write_all(&request).await;
        writer
    };
    let read = async move {
        let mut answer = Vec::new();
        let _ = reader.read_to_end(&mut answer).await;
        answer
    };
    let (_writer, answer) =
        tokio::time::timeout(DEADLINE, async { tokio::join!(write, read) }).await.expect("an answer");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response head: {answer:?}"));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{status} {content_type}: {e}: {body:?}"));
    (status, content_type, body)
}

pub async fn huge_paths_and_headers_are_problems_too(backend: Backend) {
    let server = start(backend).await;
    let host = server.base_url.trim_start_matches("http://").to_owned();
    let get = |target: &str, headers: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{headers}\r\n").into_bytes()
    };
    let slug = |body: &Value| body["type"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        // hyper's own limits, before the router: 64 KiB of request target, 100 headers,
        // about 400 KiB of head
        ("a 70 KB path", get(&format!("/v1/{}", "x".repeat(70_000)), ""), 414, "uri-too-long"),
        ("a 70 KB query", get(&format!("/healthz?q={}", "x".repeat(70_000)), ""), 414, "uri-too-long"),
        (
            "101 headers",
            get("/healthz", &(0..101).map(|i| format!("x-h{i}: v\r\n")).collect::<String>()),
            431,
            "headers-too-large",
        ),
        ("a 500 KB header", get("/healthz", &format!("x-big: {}\r\n", "x".repeat(500_000))), 431, "headers-too-large"),
        ("not HTTP", b"GARBAGE\r\n\r\n".to_vec(), 400, "malformed-request"),
        // within hyper's limits the router answers, as ever
        ("a 16 KB path", get(&format!("/v1/{}", "x".repeat(16_000)), ""), 404, "not-found"),
        (
            "a 100 KB credential",
            get("/v1/keys", &format!("authorization: Bearer {}\r\n", "x".repeat(100_000))),
            401,
            "unauthorized",
        ),
    ];
    for (what, request, status, expected) in cases {
        let (got, content_type, body) = raw_exchange(&server, &request).await;
        assert_eq!((got, content_type.as_str()), (status, "application/problem+json"), "{what}: {body}");
        assert_eq!(
            (body["status"].as_u64(), slug(&body)),
            (Some(u64::from(status)), expected.to_owned()),
            "{what}: {body}"
        );
        assert!(body["title"].is_string() && body["detail"].is_string(), "{what}: {body}");
    }
    // and the server is still fine afterwards
    assert_eq!(send(server.anonymous(Method::GET, "/healthz")).await.status(), 200);
}

/// The document tells the truth about errors: every error answer is problem+json, every
/// secured operation documents 401 (and 403 for API keys), every operation with a body
/// documents 400, 413, 415 and 422.
pub async fn openapi_documents_every_error_an_operation_answers(backend: Backend) {
    let server = start(backend).await;
    let doc: Value = send(server.anonymous(Method::GET, "/openapi.json")).await.json().await.unwrap();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let responses = op["responses"].as_object().unwrap();
            for (status, response) in responses {
                if status.as_str() >= "400" {
                    let content = response["content"].as_object().map(|c| c.keys().cloned().collect::<Vec<_>>());
                    assert_eq!(content, Some(vec!["application/problem+json".to_owned()]), "{method} {path} {status}");
                }
            }
            let secured: Vec<&str> = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| r.as_object().unwrap().keys().map(String::as_str))
                .collect();
            let must: Vec<&str> =
                [(!secured.is_empty()).then_some("401"), secured.contains(&"api_key").then_some("403")]
                    .into_iter()
                    .flatten()
                    .chain(if op.get("requestBody").is_some() { vec!["400", "413", "415", "422"] } else { vec![] })
                    .collect();
            for status in must {
                assert!(responses.contains_key(status), "{method} {path} documents no {status}");
            }
        }
    }
    assert!(operations >= 15, "{operations} operations");
    // And a real answer agrees: an anonymous call of a secured operation.
    let response = send(server.anonymous(Method::GET, "/v1/missions")).await;
    assert_eq!(response.status(), 401);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/problem+json"));
}

/// A client generated from the document can create a mission: the request schema asks only
/// for what a client sends (not the timestamps and counts the service sets), and a mission's
/// status is an enum.
pub async fn openapi_mission_request_schema_is_satisfiable(backend: Backend) {
    let server = start(backend).await;
    let doc: Value = send(server.anonymous(Method::GET, "/openapi.json")).await.json().await.unwrap();
    let body = &doc["paths"]["/v1/missions"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let name = body["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
    let schema = &doc["components"]["schemas"][name];
    // Its own `required`, and that of every part it is made of (`allOf`, by reference).
    let resolve = |s: &Value| -> Value {
        match s["$ref"].as_str() {
            Some(r) => doc["components"]["schemas"][r.rsplit('/').next().unwrap()].clone(),
            None => s.clone(),
        }
    };
    let parts: Vec<Value> =
        std::iter::once(schema.clone()).chain(schema["allOf"].as_array().into_iter().flatten().map(resolve)).collect();
    let required: Vec<&str> =
        parts.iter().flat_map(|p| p["required"].as_array().into_iter().flatten().filter_map(Value::as_str)).collect();
    for set_by_service in ["created_at", "updated_at", "rewards_granted", "status", "id", "active_periods"] {
        assert!(!required.contains(&set_by_service), "{set_by_service} required in {schema}");
    }
    for field in ["name", "steps", "reward"] {
        assert!(required.contains(&field), "{field} not required in {schema}");
    }
    let list = doc["paths"]["/v1/missions"]["get"]["parameters"].as_array().unwrap();
    let status = list.iter().find(|p| p["name"] == "status").unwrap();
    assert!(status.to_string().contains("MissionStatus"), "{status}");
    assert!(
        doc["components"]["schemas"]["MissionStatus"]["enum"].is_array(),
        "{}",
        doc["components"]["schemas"]["MissionStatus"]
    );
}
