//! Notification webhooks against real endpoints run by the test: `mission.completed`,
//! `reward.granted`, `reward.revoked` and `reward.failed` reach the webhooks subscribed to
//! them, signed, once each (a failed delivery is retried under the same `webhook-id`), and
//! nothing reaches a webhook that did not subscribe.

use crate::fixtures::*;
use crate::webhooks::{Endpoint, Received, decided_reward, earn_cash, header, listed_jobs, server, verifies};
use questline_testkit::{Backend, DEADLINE, TestServer, eventually, send};
use serde_json::{Value, json};
use std::collections::BTreeMap;

async fn subscribe(server: &TestServer, url: &str, events: &[&str]) -> String {
    let body = json!({"url": url, "events": events, "retry": {"max_attempts": 5, "initial": "PT1S", "max": "PT1S"}});
    let response = send(server.post("/v1/webhooks", &body)).await;
    assert_eq!(response.status().as_u16(), 201);
    let created: Value = response.json().await.unwrap();
    created["secret"].as_str().unwrap().to_owned()
}

/// The bodies an endpoint received, by `webhook-id`, once `count` distinct ids arrived.
async fn distinct(endpoint: &Endpoint, count: usize, server: &TestServer) -> BTreeMap<String, Vec<Received>> {
    eventually(&format!("{count} notifications"), DEADLINE, || async {
        let by_id = by_webhook_id(endpoint);
        if by_id.len() >= count { Ok(by_id) } else { Err(format!("{} arrived\n{}", by_id.len(), server.logs())) }
    })
    .await
}

fn by_webhook_id(endpoint: &Endpoint) -> BTreeMap<String, Vec<Received>> {
    let mut by_id: BTreeMap<String, Vec<Received>> = BTreeMap::new();
    for r in endpoint.received() {
        by_id.entry(header(&r, "webhook-id").to_owned()).or_default().push(r);
    }
    by_id
}

/// Every delivery job, once `count` have succeeded: none is left to run (a delivery
/// succeeds once), so what an endpoint received then is all it will receive.
async fn all_delivered(server: &TestServer, count: usize) -> Vec<Value> {
    listed_jobs(server, "kind=webhook.deliver&state=succeeded", count).await;
    ok(server.get("/v1/jobs?kind=webhook.deliver")).await["items"].as_array().cloned().unwrap_or_default()
}

fn body_of(r: &Received) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

pub async fn completions_grants_and_revocations_are_notified_once_each(backend: Backend) {
    let server = server(backend).await;
    // The first delivery fails: whichever it is, it must come again under the same id.
    let endpoint = Endpoint::start(vec![(503, vec![], "busy"), (200, vec![], "")]).await;
    let bystander = Endpoint::start(vec![(200, vec![], "")]).await;
    let secret = subscribe(&server, &endpoint.url, &["mission.completed", "reward.granted", "reward.revoked"]).await;
    subscribe(&server, &bystander.url, &["reward.failed"]).await;

    let login = |id: &str| json!({"id": id, "type": "login", "user_id": "u-1", "occurred_at": hours_ago(1)});
    create_mission(
        &server,
        &json!({"id": "daily", "name": "login", "status": "active",
        "steps": [{"event_type": "login", "target": 1}], "reward": {"kind": "points", "amount": 10}}),
    )
    .await;
    create_mission(
        &server,
        &json!({"id": "spend", "name": "spend", "status": "active",
        "steps": [{"event_type": "payment", "aggregate": {"fn": "sum", "field": "amount"}, "target": 100}],
        "reward": {"kind": "coins", "amount": 5, "hold": "PT1H"}}),
    )
    .await;
    ingest(&server, &[login("l-1"), payment("p-1", "u-1", json!(150), 1)]).await;
    // During its hold, the refund takes the completion back and revokes the coins.
    ingest(&server, &[refund("r-1", "u-1", "p-1", None)]).await;

    // Two completions, the points granted, the coins revoked: four notifications, each
    // delivered (one after a failed attempt), and no other delivery job.
    let jobs = all_delivered(&server, 4).await;
    assert_eq!(jobs.len(), 4, "{jobs:?}");
    let by_id = by_webhook_id(&endpoint);
    assert_eq!(by_id.len(), 4, "nothing else: {:?}", by_id.keys());
    let total: usize = by_id.values().map(Vec::len).sum();
    assert_eq!(total, 5, "one delivery failed and came again; the others came once");
    let mut seen = Vec::new();
    for (msg_id, received) in &by_id {
        let first = body_of(&received[0]);
        for r in received {
            assert!(verifies(&secret, r), "signed with the webhook's secret");
            assert_eq!(body_of(r), first, "a retry carries the same body");
        }
        let data = &first["data"];
        assert!(first["timestamp"].is_string(), "{first}");
        assert!(msg_id.starts_with("msg_"), "{msg_id}");
        match first["type"].as_str().unwrap() {
            "mission.completed" => {
                assert_eq!((&data["user_id"], &data["status"]), (&json!("u-1"), &json!("completed")), "{data}");
                assert_eq!(data["completions"], 1);
                seen.push(format!("completed {}", data["mission_id"].as_str().unwrap()));
            }
            "reward.granted" => {
                assert_eq!(
                    (&data["mission_id"], &data["status"], &data["amount"]),
                    (&json!("daily"), &json!("granted"), &json!(10))
                );
                seen.push("granted daily".to_owned());
            }
            "reward.revoked" => {
                assert_eq!((&data["mission_id"], &data["status"]), (&json!("spend"), &json!("revoked")));
                seen.push("revoked spend".to_owned());
            }
            other => panic!("not subscribed: {other}"),
        }
    }
    seen.sort();
    assert_eq!(seen, ["completed daily", "completed spend", "granted daily", "revoked spend"]);
    assert!(bystander.received().is_empty(), "reward.failed was never true");
}

pub async fn a_failed_fulfilment_is_notified(backend: Backend) {
    let server = server(backend).await;
    let fulfilment = Endpoint::start(vec![(422, vec![], "unknown account")]).await;
    let listener = Endpoint::start(vec![(200, vec![], "")]).await;
    let body = json!({"url": fulfilment.url, "events": ["reward.fulfil"]});
    assert_eq!(send(server.post("/v1/webhooks", &body)).await.status().as_u16(), 201);
    let secret = subscribe(&server, &listener.url, &["reward.failed", "reward.granted"]).await;
    earn_cash(&server, "u-9").await;
    let reward = decided_reward(&server, "u-9").await;
    assert_eq!(reward["status"], "failed");

    let jobs = all_delivered(&server, 1).await;
    assert_eq!(jobs.len(), 1, "reward.failed only, no reward.granted for a failed reward: {jobs:?}");
    let by_id = by_webhook_id(&listener);
    let received = by_id.values().next().unwrap();
    let note = body_of(&received[0]);
    assert!(verifies(&secret, &received[0]));
    assert_eq!(
        (&note["type"], &note["data"]["id"], &note["data"]["status"]),
        (&json!("reward.failed"), &reward["id"], &json!("failed"))
    );
    assert!(note["data"]["failure"].as_str().unwrap().contains("unknown account"), "{note}");
    assert_eq!(listener.received().len(), 1, "no reward.granted for a failed reward");
    assert_eq!(fulfilment.received().len(), 1, "a fulfilment endpoint hears only reward.fulfil");
}

pub async fn a_notification_that_keeps_failing_ends_dead_with_its_errors(backend: Backend) {
    let server = server(backend).await;
    let endpoint = Endpoint::start(vec![(500, vec![], "broken")]).await;
    let body = json!({"url": endpoint.url, "events": ["mission.completed"],
                      "retry": {"max_attempts": 2, "initial": "PT1S", "max": "PT1S"}});
    assert_eq!(send(server.post("/v1/webhooks", &body)).await.status().as_u16(), 201);
    create_mission(
        &server,
        &json!({"id": "once", "name": "once", "status": "active",
        "steps": [{"event_type": "login", "target": 1}], "reward": {"kind": "badge"}}),
    )
    .await;
    ingest(&server, &[json!({"id": "l", "type": "login", "user_id": "u-2", "occurred_at": hours_ago(1)})]).await;

    let dead = listed_jobs(&server, "kind=webhook.deliver&state=dead", 1).await.remove(0);
    assert_eq!(endpoint.received().len(), 2, "max_attempts 2");
    assert_eq!(dead["attempt"], 2, "{dead}");
    let errors = dead["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{dead}");
    assert!(errors.iter().all(|e| e["error"].as_str().unwrap().contains("500")), "{dead}");
}

/// With `QUESTLINE_REDIS_URL`, notification deliveries ride the fast lane: born in the
/// batch's transaction through the outbox, relayed to Redis, delivered from there; the
/// durable lane holds none of them.
pub async fn with_redis_notifications_ride_the_fast_lane(backend: Backend) {
    if questline_testkit::redis::skipped("with_redis_notifications_ride_the_fast_lane") {
        return;
    }
    let namespace = questline_testkit::redis::Namespace::fresh();
    let server = crate::start_with(
        questline_testkit::ServerOptions::on(backend)
            .env("QUESTLINE_ALLOW_PRIVATE_TARGETS", "true")
            .env("QUESTLINE_SECRET_KEY", crate::webhooks::SECRET_KEY)
            .env("QUESTLINE_REDIS_URL", &questline_testkit::redis::url())
            .env("QUESTLINE_REDIS_NAMESPACE", &namespace.0),
    )
    .await;
    let endpoint = Endpoint::start(vec![(200, vec![], "")]).await;
    let secret = subscribe(&server, &endpoint.url, &["mission.completed"]).await;
    create_mission(
        &server,
        &json!({"id": "fast", "name": "fast", "status": "active",
        "steps": [{"event_type": "login", "target": 1}], "reward": {"kind": "badge"}}),
    )
    .await;
    ingest(&server, &[json!({"id": "l", "type": "login", "user_id": "u-r", "occurred_at": hours_ago(1)})]).await;

    let by_id = distinct(&endpoint, 1, &server).await;
    let received = by_id.values().next().unwrap();
    assert!(verifies(&secret, &received[0]));
    assert_eq!(body_of(&received[0])["data"]["mission_id"], "fast");
    let sql_lane = ok(server.get("/v1/jobs?kind=webhook.deliver")).await;
    assert_eq!(sql_lane["items"], json!([]), "not on the durable lane");
    // The job is on Redis, under the deployment's namespace, and succeeded there.
    let redis = questline_queue::RedisQueue::open(
        &questline_testkit::redis::url(),
        &namespace.0,
        questline_queue::QueueConfig::default(),
    )
    .await
    .unwrap();
    let filter = questline_queue::ListFilter { kind: Some("webhook.deliver".into()), ..Default::default() };
    eventually("the delivery job to succeed on Redis", DEADLINE, || async {
        let jobs = questline_queue::Backend::list(&redis, &filter, jiff::Timestamp::now()).await.unwrap().items;
        match &jobs[..] {
            [job] if job.state == questline_queue::JobState::Succeeded => Ok(()),
            _ => Err(format!("{jobs:?}")),
        }
    })
    .await;
}
