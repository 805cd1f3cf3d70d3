//! Balances and entitlements over HTTP: entries an admin posts, and what users see of them.

use crate::fixtures::*;
use crate::start_with;
use questline_testkit::{Backend, ServerOptions, expect_problem, send};
use reqwest::Method;
use serde_json::{Value, json};

pub async fn balance_entries_are_exact_idempotent_and_never_overdraw(backend: Backend) {
    const SECRET: &str = "a-jwt-secret-for-wallet-tests-0123456";
    let server = start_with(ServerOptions::on(backend).env("QUESTLINE_JWT_SECRET", SECRET)).await;
    let entries = "/v1/users/u-1/balances/coins/entries";
    let post = |body: Value| server.post(entries, &body);

    let first = send(post(json!({"amount": 120.50, "reason": "welcome", "idempotency_key": "k-1"}))).await;
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        (&first["amount"], &first["balance_after"], &first["currency"]),
        (&json!(120.5), &json!(120.5), &json!("coins"))
    );
    let again = send(post(json!({"amount": 120.50, "reason": "welcome", "idempotency_key": "k-1"}))).await;
    assert_eq!(again.status().as_u16(), 200, "posted before: answered, not written");
    assert_eq!(again.json::<Value>().await.unwrap(), first);

    let over = expect_problem(send(post(json!({"amount": -120.51, "reason": "redeem"}))).await, 409).await;
    assert!(over["type"].as_str().unwrap().ends_with("/insufficient-balance"), "{over}");
    let debit = ok(post(json!({"amount": -20.5, "reason": "redeem"}))).await;
    assert_eq!(debit["balance_after"], json!(100));

    // Bad input: each problem with its pointer, nothing written.
    let bad = expect_problem(send(post(json!({"amount": "5", "reason": "x"}))).await, 422).await;
    assert_eq!(bad["errors"][0]["pointer"], "/amount", "{bad}");
    let bad = expect_problem(send(post(json!({"amount": 0, "reason": " "}))).await, 422).await;
    let pointers: Vec<&str> =
        bad["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers, ["/amount", "/reason"]);
    let bad = send(server.post("/v1/users/u-1/balances/COINS/entries", &json!({"amount": 1, "reason": "x"}))).await;
    assert_eq!(expect_problem(bad, 422).await["errors"][0]["pointer"], "/currency");
    expect_problem(send(post(json!({"amount": 1, "reason": "x", "extra": true}))).await, 422).await;

    let balances = ok(server.get("/v1/users/u-1/balances")).await;
    assert_eq!(balances["items"], json!([{"currency": "coins", "balance": 100}]));
    let page = ok(server.get(&format!("{entries}?limit=1"))).await;
    assert_eq!(page["items"][0]["id"], debit["id"], "newest first");
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let rest = ok(server.get(&format!("{entries}?limit=1&cursor={cursor}"))).await;
    assert_eq!((&rest["items"][0]["id"], &rest["next_cursor"]), (&first["id"], &Value::Null));

    // The user sees their own balances; an ingest-only key cannot post.
    let exp = jiff::Timestamp::now().as_second() + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "u-1", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let mine = ok(server.with_key(&token, Method::GET, "/v1/me/balances")).await;
    assert_eq!(mine["items"], balances["items"]);
    assert_eq!(ok(server.with_key(&token, Method::GET, "/v1/me/entitlements")).await["items"], json!([]));
    expect_problem(
        send(server.with_key(&token, Method::POST, entries).json(&json!({"amount": 1, "reason": "x"}))).await,
        401,
    )
    .await;
}

pub async fn the_running_server_settles_points_and_badges_after_their_hold(backend: Backend) {
    let server = crate::start(backend).await;
    let reads = |id: &str, target: u32, reward: Value| {
        json!({"id": id, "name": id, "status": "active",
               "steps": [{"event_type": "article_read", "target": target}], "reward": reward})
    };
    create_mission(&server, &reads("read-2", 2, json!({"kind": "points", "amount": 25}))).await;
    create_mission(&server, &reads("read-1", 1, json!({"kind": "badge", "code": "first-read"}))).await;
    create_mission(&server, &reads("held", 1, json!({"kind": "coins", "amount": 5, "hold": "PT1H"}))).await;
    let read = |id: &str| json!({"id": id, "type": "article_read", "user_id": "u-9", "occurred_at": hours_ago(1)});
    ingest(&server, &[read("a1"), read("a2")]).await;

    let balances = body_when(&server, "/v1/users/u-9/balances", |b| !b["items"].as_array().unwrap().is_empty()).await;
    assert_eq!(balances["items"], json!([{"currency": "points", "balance": 25}]), "coins wait for their hold");
    let entitlements =
        body_when(&server, "/v1/users/u-9/entitlements", |b| !b["items"].as_array().unwrap().is_empty()).await;
    assert_eq!(entitlements["items"][0]["code"], "first-read");
    assert_eq!(entitlements["items"][0]["kind"], "badge");
    let rewards = body_when(&server, "/v1/users/u-9/rewards", |b| {
        b["items"].as_array().unwrap().iter().filter(|r| r["status"] == "granted").count() == 2
    })
    .await;
    for reward in rewards["items"].as_array().unwrap() {
        match reward["mission_id"].as_str().unwrap() {
            "held" => {
                assert_eq!(
                    (&reward["status"], &reward["attempts"], &reward["settled_at"]),
                    (&json!("pending"), &json!(0), &Value::Null)
                );
                assert!(reward["hold_until"].as_str().unwrap() > reward["created_at"].as_str().unwrap(), "{reward}");
            }
            _ => {
                assert_eq!((&reward["attempts"], &reward["failure"]), (&json!(1), &Value::Null), "{reward}");
                assert!(reward["settled_at"].is_string(), "{reward}");
            }
        }
    }
    let entries = ok(server.get("/v1/users/u-9/balances/points/entries")).await;
    let granted = rewards["items"].as_array().unwrap().iter().find(|r| r["mission_id"] == "read-2").unwrap();
    assert_eq!((&entries["items"][0]["reward_id"], &entries["items"][0]["amount"]), (&granted["id"], &json!(25)));
    assert_eq!(entries["items"].as_array().unwrap().len(), 1, "settled once");
}

/// Points that expire: what is left of them when they do is taken back, the oldest credit
/// spent first; points that do not expire stay.
pub async fn what_is_left_of_expired_points_is_taken_back(backend: Backend) {
    let server = start_with(ServerOptions::on(backend)).await;
    let mission = |id: &str, event: &str, reward: Value| json!({"id": id, "name": id, "status": "active", "steps": [{"event_type": event, "target": 1}], "reward": reward});
    create_mission(
        &server,
        &mission("brief", "login", json!({"kind": "points", "amount": 100, "expires_after": "PT4S"})),
    )
    .await;
    create_mission(&server, &mission("lasting", "read", json!({"kind": "points", "amount": 50}))).await;
    let event = |id: &str, kind: &str| json!({"id": id, "type": kind, "user_id": "u-x", "occurred_at": hours_ago(1)});
    // Both settle at once; the debit must come before the expiry (4 s later).
    ingest(&server, &[event("l", "login"), event("r", "read")]).await;
    let balances = "/v1/users/u-x/balances";
    body_when(&server, balances, |b| b["items"] == json!([{"currency": "points", "balance": 150}])).await;
    // Spent from the oldest credit: 30 of the 100 that expire.
    let entries = "/v1/users/u-x/balances/points/entries";
    ok(server.post(entries, &json!({"amount": -30, "reason": "redeem"}))).await;

    // The 70 left of the expiring credit go; the 50 that last stay.
    let after = body_when(&server, balances, |b| b["items"][0]["balance"] == json!(50)).await;
    assert_eq!(after["items"], json!([{"currency": "points", "balance": 50}]));
    let items = ok(server.get(entries)).await["items"].as_array().unwrap().clone();
    let credit = items.iter().find(|e| e["amount"] == json!(100)).expect("the expiring credit");
    assert!(credit["expires_at"].is_string(), "{credit}");
    let expiry = &items[0];
    assert_eq!((&expiry["amount"], &expiry["balance_after"]), (&json!(-70), &json!(50)), "{items:?}");
    assert_eq!((&expiry["reason"], &expiry["expiry_of"]), (&json!("expired"), &credit["id"]));
    assert!(items.iter().filter(|e| e["expiry_of"].is_string()).count() == 1, "taken back once: {items:?}");
    let rejected = expect_problem(
        send(server.post("/v1/missions", &mission("bad", "login", json!({"kind": "badge", "expires_after": "P1D"}))))
            .await,
        422,
    )
    .await;
    assert_eq!(rejected["errors"][0]["pointer"], "/reward/expires_after", "{rejected}");
}
