//! Webhooks over HTTP: the registry (validation, the one fulfilment endpoint, the secret
//! shown once and stored sealed), private targets refused, and `reward.fulfil` deciding cash
//! rewards against a real endpoint run by the test (signatures, stable ids, backoff).

use crate::fixtures::*;
use crate::start_with;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use questline_testkit::{Backend, ServerOptions, TestServer, eventually, expect_problem, send};
use serde_json::{Value, json};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// 32 bytes, base64: the key the tests' servers seal secrets with.
pub(crate) const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A server that may deliver to the test's own endpoints on 127.0.0.1.
pub(crate) async fn server(backend: Backend) -> TestServer {
    start_with(
        ServerOptions::on(backend)
            .env("QUESTLINE_ALLOW_PRIVATE_TARGETS", "true")
            .env("QUESTLINE_SECRET_KEY", SECRET_KEY),
    )
    .await
}

/// One request the endpoint received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) at: Instant,
}

/// One scripted answer: status, headers, body.
pub(crate) type Reply = (u16, Vec<(&'static str, &'static str)>, &'static str);

/// A fulfilment endpoint: answers each request with the next of its script (the last one
/// again once the script is out), and records what it received.
pub(crate) struct Endpoint {
    pub(crate) url: String,
    received: Arc<Mutex<Vec<Received>>>,
    _tasks: JoinSet<()>,
}

impl Endpoint {
    pub(crate) async fn start(script: Vec<Reply>) -> Self {
        Self::start_hanging_first(script, false).await
    }

    /// Like [`Endpoint::start`], but the first request is never answered when `hang_first`
    /// (a worker can be killed in the middle of its delivery).
    pub(crate) async fn start_hanging_first(script: Vec<Reply>, hang_first: bool) -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = received.clone();
        let handler = move |headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            let script = script.clone();
            async move {
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(Received { headers, body, at: Instant::now() });
                    log.len()
                };
                if n == 1 && hang_first {
                    std::future::pending::<()>().await;
                }
                let (status, headers, body) = script[(n - 1).min(script.len() - 1)].clone();
                let mut response = axum::response::Response::new(axum::body::Body::from(body));
                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                for (name, value) in headers {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                response
            }
        };
        let app = axum::Router::new().route("/fulfil", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/fulfil", listener.local_addr().unwrap());
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Endpoint { url, received, _tasks: tasks }
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

pub(crate) fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name} header"))
}

/// The Standard Webhooks verification, computed here: the signature of
/// `{id}.{timestamp}.{body}` under the secret's decoded key.
pub(crate) fn verifies(secret: &str, r: &Received) -> bool {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").expect("whsec_ prefix")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", header(r, "webhook-id"), header(r, "webhook-timestamp")).as_bytes());
    mac.update(&r.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    header(r, "webhook-signature").split(' ').any(|s| s == expected)
}

async fn create_webhook(server: &TestServer, url: &str, retry: Value) -> Value {
    let response =
        send(server.post("/v1/webhooks", &json!({"url": url, "events": ["reward.fulfil"], "retry": retry}))).await;
    assert_eq!(response.status().as_u16(), 201);
    response.json().await.unwrap()
}

/// A mission that grants a cash reward on one login, and that login, for `user`.
pub(crate) async fn earn_cash(server: &TestServer, user: &str) {
    let mission = json!({"id": format!("cash-{user}"), "name": "cash", "status": "active",
                         "steps": [{"event_type": "login", "target": 1}],
                         "reward": {"kind": "cash", "amount": 50, "currency": "INR"}});
    create_mission(server, &mission).await;
    ingest(
        server,
        &[json!({"id": format!("e-{user}"), "type": "login", "user_id": user, "occurred_at": hours_ago(1)})],
    )
    .await;
}

/// The user's one reward once it is no longer pending.
pub(crate) async fn decided_reward(server: &TestServer, user: &str) -> Value {
    eventually("the reward to be decided", Duration::from_secs(30), || async {
        let rewards = rewards(server, user).await;
        match rewards.first() {
            Some(r) if r["status"] != "pending" => Ok(r.clone()),
            _ => Err(format!("{rewards:?}\n{}", server.logs())),
        }
    })
    .await
}

/// The jobs `/v1/jobs?{query}` lists once there are `count` of them.
pub(crate) async fn listed_jobs(server: &TestServer, query: &str, count: usize) -> Vec<Value> {
    let path = format!("/v1/jobs?{query}");
    let jobs = body_when(server, &path, |b| b["items"].as_array().is_some_and(|i| i.len() >= count)).await;
    jobs["items"].as_array().cloned().unwrap_or_default()
}

pub async fn the_registry_validates_and_shows_the_secret_once(backend: Backend) {
    let server = server(backend).await;
    let created = create_webhook(&server, "https://example.com/hooks", json!({"max_attempts": 3})).await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    assert!(key.len() >= 24, "{secret}");
    assert!(created["id"].as_str().unwrap().starts_with("wh_"));
    assert_eq!(created["events"], json!(["reward.fulfil"]));
    assert_eq!(created["retry"], json!({"max_attempts": 3, "initial": "PT10S", "max": "PT1H"}), "defaults filled in");

    // A second fulfilment endpoint is a conflict; other events are not.
    let again = send(server.post("/v1/webhooks", &json!({"url": "https://example.org/", "events": ["reward.fulfil"]})));
    let problem = expect_problem(again.await, 409).await;
    assert!(problem["type"].as_str().unwrap().ends_with("/fulfilment-endpoint-taken"), "{problem}");
    let other = ok(server.post(
        "/v1/webhooks",
        &json!({"url": "https://example.org/n", "events": ["reward.granted", "mission.completed"]}),
    ))
    .await;

    // Listed, never with the secret.
    let listed = ok(server.get("/v1/webhooks")).await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!((&items[0]["id"], &items[1]["id"]), (&created["id"], &other["id"]));
    assert!(!listed.to_string().contains("whsec_") && !listed.to_string().contains(&secret[6..]), "{listed}");
    assert!(items.iter().all(|w| w.get("secret").is_none()));

    // The stored secret is sealed: the table holds neither the secret nor its key.
    let sealed: Vec<String> = match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(server.database_url()).await.unwrap();
            sqlx::query_scalar("SELECT sealed_secret FROM webhooks").fetch_all(&pool).await.unwrap()
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(server.database_url()).await.unwrap();
            sqlx::query_scalar("SELECT sealed_secret FROM webhooks").fetch_all(&pool).await.unwrap()
        }
    };
    assert_eq!(sealed.len(), 2);
    for text in &sealed {
        assert!(!text.contains(&secret) && !text.contains(&secret[6..]) && !text.contains("whsec_"), "{text}");
    }
    assert!(!server.logs().contains(&secret[6..]), "the secret is never logged");

    // Validation names each pointer.
    let bad = |body: Value| {
        let server = &server;
        async move { expect_problem(send(server.post("/v1/webhooks", &body)).await, 422).await }
    };
    let pointers = |p: &Value| -> Vec<String> {
        p["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap().to_owned()).collect()
    };
    let p = bad(json!({"url": "ftp://example.com/", "events": []})).await;
    assert_eq!(pointers(&p), ["/url", "/events"], "{p}");
    let long = format!("https://example.com/{}", "a".repeat(2048));
    let p = bad(json!({"url": long, "events": ["reward.granted", "nope", "reward.granted"]})).await;
    assert_eq!(pointers(&p), ["/url", "/events/1", "/events/2"], "{p}");
    let p = bad(json!({"url": "relative/path", "events": ["reward.failed"],
                       "retry": {"max_attempts": 51, "initial": "PT0.5S", "max": "P8D"}}))
    .await;
    assert_eq!(pointers(&p), ["/url", "/retry/max_attempts", "/retry/initial", "/retry/max"], "{p}");
    let p = bad(json!({"url": "https://example.com/", "events": ["reward.failed"],
                       "retry": {"initial": "PT1M", "max": "PT30S"}}))
    .await;
    assert_eq!(pointers(&p), ["/retry/max"], "{p}");
    let p = bad(json!({"url": "https://example.com/", "events": ["reward.failed"], "extra": 1})).await;
    assert!(!pointers(&p).is_empty(), "{p}");

    // Delete: 204, then 404.
    let gone = send(server.delete(&format!("/v1/webhooks/{}", other["id"].as_str().unwrap()))).await;
    assert_eq!(gone.status().as_u16(), 204);
    let problem = expect_problem(send(server.delete("/v1/webhooks/wh_nope")).await, 404).await;
    assert!(problem["type"].as_str().unwrap().ends_with("/webhook-not-found"), "{problem}");

    // At most 50 per tenant.
    for i in 1..50 {
        ok(server
            .post("/v1/webhooks", &json!({"url": format!("https://example.com/{i}"), "events": ["reward.failed"]})))
        .await;
    }
    let over = send(server.post("/v1/webhooks", &json!({"url": "https://example.com/x", "events": ["reward.failed"]})));
    let problem = expect_problem(over.await, 409).await;
    assert!(problem["type"].as_str().unwrap().ends_with("/too-many-webhooks"), "{problem}");

    // A read key may not administer webhooks.
    let (_, read_key) = server.create_key("reader", "read").await;
    expect_problem(send(server.with_key(&read_key, reqwest::Method::GET, "/v1/webhooks")).await, 403).await;
}

pub async fn private_targets_are_refused_unless_allowed(backend: Backend) {
    // No QUESTLINE_ALLOW_PRIVATE_TARGETS and no QUESTLINE_SECRET_KEY.
    let server = crate::start(backend).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "https://api.localhost/",
        "http://[::1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://192.168.1.10/",
        "http://169.254.169.254/latest",
        "http://[fd00::1]/",
        "http://0.0.0.0/",
    ] {
        let response = send(server.post("/v1/webhooks", &json!({"url": url, "events": ["reward.fulfil"]}))).await;
        let problem = expect_problem(response, 422).await;
        assert_eq!(problem["errors"][0]["pointer"], "/url", "{url}: {problem}");
    }
    let public = json!({"url": "https://example.com/hook", "events": ["reward.fulfil"]});
    match backend {
        // The embedded default keeps a generated key beside its database file.
        Backend::Sqlite => {
            ok(server.post("/v1/webhooks", &public)).await;
            let path = server.database_url().strip_prefix("sqlite://").unwrap().to_owned() + ".key";
            let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!server.logs().contains(text.trim()), "the key is never logged");
        }
        Backend::Postgres => {
            let problem = expect_problem(send(server.post("/v1/webhooks", &public)).await, 409).await;
            assert!(problem["type"].as_str().unwrap().ends_with("/secret-key-not-configured"), "{problem}");
            assert!(server.logs().contains("QUESTLINE_SECRET_KEY"), "the start says webhooks need the key");
        }
    }
}

pub async fn a_cash_reward_is_granted_after_two_failed_attempts(backend: Backend) {
    let server = server(backend).await;
    let endpoint = Endpoint::start(vec![(500, vec![], "oops"), (500, vec![], "oops"), (200, vec![], "")]).await;
    let hook =
        create_webhook(&server, &endpoint.url, json!({"max_attempts": 5, "initial": "PT1S", "max": "PT2S"})).await;
    let secret = hook["secret"].as_str().unwrap();
    earn_cash(&server, "u-1").await;

    let reward = decided_reward(&server, "u-1").await;
    assert_eq!(
        (&reward["status"], &reward["attempts"], &reward["failure"]),
        (&json!("granted"), &json!(3), &Value::Null)
    );
    assert!(reward["settled_at"].is_string(), "{reward}");
    let received = endpoint.received();
    assert_eq!(received.len(), 3, "three attempts");
    let msg_id = format!("msg_{}", reward["id"].as_str().unwrap());
    for r in &received {
        assert_eq!(header(r, "webhook-id"), msg_id, "the same webhook-id on every attempt");
        assert_eq!(header(r, "idempotency-key"), msg_id);
        assert_eq!(header(r, "content-type"), "application/json");
        let ts: i64 = header(r, "webhook-timestamp").parse().unwrap();
        assert!((jiff::Timestamp::now().as_second() - ts).abs() < 60, "Unix seconds of the attempt");
        assert!(verifies(secret, r), "the signature verifies: {:?}", r.headers);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["type"], "reward.fulfil");
        assert!(body["timestamp"].is_string());
        assert_eq!((&body["data"]["id"], &body["data"]["kind"]), (&reward["id"], &json!("cash")));
        assert_eq!((&body["data"]["amount"], &body["data"]["currency"]), (&json!(50), &json!("INR")));
    }
    // Backoff: initial 1 s, then 2 s (the cap), each jittered into [half, whole).
    let gaps: Vec<Duration> = received.windows(2).map(|w| w[1].at - w[0].at).collect();
    for gap in &gaps {
        assert!(*gap >= Duration::from_millis(450) && *gap <= Duration::from_secs(5), "{gaps:?}");
    }
}

pub async fn a_final_4xx_fails_the_reward_at_once(backend: Backend) {
    let server = server(backend).await;
    let endpoint = Endpoint::start(vec![(422, vec![], "no such account")]).await;
    create_webhook(&server, &endpoint.url, json!({"initial": "PT1S", "max": "PT2S"})).await;
    earn_cash(&server, "u-2").await;
    let reward = decided_reward(&server, "u-2").await;
    assert_eq!((&reward["status"], &reward["attempts"]), (&json!("failed"), &json!(1)), "{reward}");
    let failure = reward["failure"].as_str().unwrap();
    assert!(failure.contains("422") && failure.contains("no such account"), "{failure}");
    // Once its job is dead, no attempt can follow.
    let dead = listed_jobs(&server, "kind=reward.fulfil&state=dead", 1).await;
    assert_eq!(dead[0]["attempt"], 1, "{dead:?}");
    assert_eq!(endpoint.received().len(), 1, "no retry after a final 4xx");
}

pub async fn retry_after_is_honoured(backend: Backend) {
    let server = server(backend).await;
    let endpoint = Endpoint::start(vec![(429, vec![("retry-after", "1")], "slow down"), (204, vec![], "")]).await;
    // A backoff of a minute: only Retry-After can bring the second attempt in seconds.
    create_webhook(&server, &endpoint.url, json!({"initial": "PT60S", "max": "PT60S"})).await;
    earn_cash(&server, "u-3").await;
    let reward = decided_reward(&server, "u-3").await;
    assert_eq!((&reward["status"], &reward["attempts"]), (&json!("granted"), &json!(2)), "{reward}");
    let received = endpoint.received();
    assert_eq!(received.len(), 2);
    let gap = received[1].at - received[0].at;
    assert!(gap >= Duration::from_millis(900) && gap <= Duration::from_secs(10), "{gap:?}");
}

pub async fn the_last_failed_attempt_fails_the_reward_with_its_reason(backend: Backend) {
    let server = server(backend).await;
    let endpoint = Endpoint::start(vec![(503, vec![], "down for maintenance")]).await;
    create_webhook(&server, &endpoint.url, json!({"max_attempts": 2, "initial": "PT1S", "max": "PT1S"})).await;
    earn_cash(&server, "u-4").await;
    let reward = decided_reward(&server, "u-4").await;
    assert_eq!((&reward["status"], &reward["attempts"]), (&json!("failed"), &json!(2)), "{reward}");
    let failure = reward["failure"].as_str().unwrap();
    assert!(failure.contains("503") && failure.contains("down for maintenance"), "{failure}");
    assert_eq!(endpoint.received().len(), 2);
}
