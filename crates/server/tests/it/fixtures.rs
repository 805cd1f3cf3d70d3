//! Sample missions and events shared by the end-to-end tests.

use jiff::{SignedDuration, Timestamp};
use questline_testkit::{TestServer, send};
use serde_json::{Value, json};

/// The README's Swiggy mission: sum of card payments ≥ 100 at Swiggy, 500 within 7 days.
pub fn swiggy(id: &str) -> Value {
    json!({
        "id": id, "name": "Spend ₹500 at Swiggy in 7 days", "status": "active",
        "window": {"kind": "rolling", "duration": "P7D"},
        "steps": [{"event_type": "payment",
                   "filters": [{"field": "amount", "op": "gte", "value": 100},
                               {"field": "merchant", "op": "in", "value": ["swiggy", "swiggy-instamart"]}],
                   "aggregate": {"fn": "sum", "field": "amount"}, "target": 500}],
        "reward": {"kind": "cash", "amount": 50, "currency": "INR"}
    })
}

/// An instant `hours` before now, as RFC 3339.
pub fn hours_ago(hours: i64) -> String {
    (Timestamp::now() - SignedDuration::from_hours(hours)).to_string()
}

pub fn payment(id: &str, user: &str, amount: Value, hours_back: i64) -> Value {
    json!({"id": id, "type": "payment", "user_id": user, "occurred_at": hours_ago(hours_back),
           "attributes": {"amount": amount, "merchant": "swiggy"}})
}

pub fn refund(id: &str, user: &str, of: &str, amount: Option<Value>) -> Value {
    let mut e = json!({"id": id, "type": "refund", "user_id": user, "occurred_at": hours_ago(0), "reverses": of});
    if let Some(a) = amount {
        e["attributes"] = json!({"amount": a});
    }
    e
}

/// Asserts a 2xx answer and returns its JSON body.
pub async fn ok(request: reqwest::RequestBuilder) -> Value {
    let response = send(request).await;
    let status = response.status();
    let url = response.url().clone();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status}: {body}");
    body
}

pub async fn create_mission(server: &TestServer, mission: &Value) -> Value {
    ok(server.post("/v1/missions", mission)).await
}

/// Posts a batch and returns the ingest answer.
pub async fn ingest(server: &TestServer, events: &[Value]) -> Value {
    ok(server.post("/v1/events", &json!({"events": events}))).await
}

pub async fn progress(server: &TestServer, user: &str, mission: &str) -> Value {
    ok(server.get(&format!("/v1/users/{user}/missions/{mission}"))).await
}

pub async fn rewards(server: &TestServer, user: &str) -> Vec<Value> {
    ok(server.get(&format!("/v1/users/{user}/rewards"))).await["items"].as_array().cloned().unwrap_or_default()
}

/// The body of `GET path` once `done` holds of it (polled, for up to 30 s).
pub async fn body_when(server: &TestServer, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    questline_testkit::eventually(path, std::time::Duration::from_secs(30), || async {
        let body = ok(server.get(path)).await;
        if done(&body) { Ok(body) } else { Err(body.to_string()) }
    })
    .await
}
