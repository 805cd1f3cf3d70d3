//! Progress and rewards as readers see them, budgets under concurrency, and `/v1/me`.

use crate::fixtures::*;
use crate::harness::{ServerOptions, TestServer, expect_problem, send};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn statuses_not_started_in_progress_completed_expired() {
    let server = TestServer::start().await;
    create_mission(&server, &swiggy("swiggy-500")).await;
    let mut daily = swiggy("one-day");
    daily["window"] = json!({"kind": "rolling", "duration": "P1D"});
    create_mission(&server, &daily).await;

    let p = progress(&server, "nobody", "swiggy-500").await;
    assert_eq!(p["status"], "not_started");
    assert_eq!(p["steps"], json!([{"value": 0, "target": 500}]));
    expect_problem(send(server.get("/v1/users/nobody/missions/no-such-mission")).await, 404).await;

    ingest(&server, &[payment("p1", "u", json!(250), 1)]).await;
    let p = progress(&server, "u", "swiggy-500").await;
    assert_eq!(p["status"], "in_progress");
    assert_eq!(p["steps"][0]["value"], json!(250));
    assert!(p["window"]["starts_at"].is_string() && p["window"]["ends_at"].is_string(), "{p}");

    // A payment three days ago opened a one-day window that has lapsed.
    ingest(&server, &[payment("old", "v", json!(250), 72)]).await;
    assert_eq!(progress(&server, "v", "one-day").await["status"], "expired");

    ingest(&server, &[payment("p2", "u", json!(250), 1)]).await;
    let p = progress(&server, "u", "swiggy-500").await;
    assert_eq!((p["status"].as_str(), p["completions"].as_u64()), (Some("completed"), Some(1)));

    let all = ok(server.get("/v1/users/u/missions")).await;
    let ids: Vec<&str> = all["items"].as_array().unwrap().iter().map(|p| p["mission_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["one-day", "swiggy-500"]);

    // Both missions share the filters, so both completed; one reward each.
    let r = rewards(&server, "u").await;
    let mut missions: Vec<&str> = r.iter().map(|r| r["mission_id"].as_str().unwrap()).collect();
    missions.sort();
    assert_eq!(missions, ["one-day", "swiggy-500"]);
    let swiggy = r.iter().find(|r| r["mission_id"] == "swiggy-500").unwrap();
    assert_eq!(
        (&swiggy["kind"], &swiggy["amount"], &swiggy["currency"], &swiggy["status"], &swiggy["completion"]),
        (&json!("cash"), &json!(50), &json!("INR"), &json!("pending"), &json!(1))
    );
}

#[tokio::test]
async fn a_budget_is_never_overspent_and_ends_the_mission() {
    let server = TestServer::start().await;
    let mut m = swiggy("budgeted");
    m["budget"] = json!({"max_rewards": 3});
    create_mission(&server, &m).await;
    // Twelve users complete at once, each in their own request.
    let mut tasks = tokio::task::JoinSet::new();
    for u in 0..12 {
        let request = server
            .post("/v1/events", &json!({"events": [payment(&format!("b{u}"), &format!("user-{u}"), json!(500), 1)]}));
        tasks.spawn(async move { ok(request).await });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap()["accepted"], 1);
    }
    let mut granted = 0;
    for u in 0..12 {
        granted += rewards(&server, &format!("user-{u}")).await.len();
    }
    assert_eq!(granted, 3);
    let mission = ok(server.get("/v1/missions/budgeted")).await;
    assert_eq!((mission["status"].as_str(), mission["rewards_granted"].as_u64()), (Some("ended"), Some(3)));
    // An ended mission counts nothing more.
    ingest(&server, &[payment("late", "latecomer", json!(500), 1)]).await;
    assert_eq!(progress(&server, "latecomer", "budgeted").await["status"], "not_started");
}

#[tokio::test]
async fn users_read_their_own_progress_with_a_jwt() {
    const SECRET: &str = "a-jwt-secret-for-progress-tests-0123";
    let server = TestServer::start_with(ServerOptions::default().env("QUESTLINE_JWT_SECRET", SECRET)).await;
    create_mission(&server, &swiggy("swiggy-500")).await;
    ingest(&server, &[payment("m1", "u-7", json!(500), 1), payment("m2", "u-8", json!(200), 1)]).await;

    let exp = jiff::Timestamp::now().as_second() + 600;
    let claims = json!({"sub": "u-7", "exp": exp});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let me = |path: &str| server.with_key(&token, Method::GET, path);
    let mine = ok(me("/v1/me/missions")).await;
    assert_eq!(mine["items"][0]["user_id"], "u-7");
    assert_eq!(mine["items"][0]["status"], "completed");
    assert_eq!(ok(me("/v1/me/missions/swiggy-500")).await["completions"], 1);
    let my_rewards: Value = ok(me("/v1/me/rewards")).await;
    assert_eq!(my_rewards["items"].as_array().unwrap().len(), 1);
    assert_eq!(my_rewards["items"][0]["user_id"], "u-7");
    expect_problem(send(me("/v1/users/u-8/missions")).await, 401).await;
}
