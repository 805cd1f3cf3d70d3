//! `/v1/missions`: lifecycle, validation with pointers, immutability, simulate.

use crate::fixtures::*;
use crate::start;
use questline_testkit::{Backend, expect_problem, send};
use reqwest::Method;
use serde_json::{Value, json};

pub async fn lifecycle_create_get_list_patch_end_delete(backend: Backend) {
    let server = start(backend).await;
    let mut draft = swiggy("swiggy-500");
    draft.as_object_mut().unwrap().remove("status");
    let created = create_mission(&server, &draft).await;
    assert_eq!(created["status"], "draft");
    assert_eq!(created["steps"][0]["target"], json!(500));
    assert!(created["created_at"].is_string());

    expect_problem(send(server.post("/v1/missions", &draft)).await, 409).await;
    assert_eq!(ok(server.get("/v1/missions/swiggy-500")).await["name"], created["name"]);
    expect_problem(send(server.get("/v1/missions/nope")).await, 404).await;

    // Activation, then the rules are frozen but the name is not.
    let active = ok(server.admin(Method::PATCH, "/v1/missions/swiggy-500").json(&json!({"status": "active"}))).await;
    assert_eq!(active["status"], "active");
    let renamed =
        ok(server.admin(Method::PATCH, "/v1/missions/swiggy-500").json(&json!({"name": "Swiggy week"}))).await;
    assert_eq!(renamed["name"], "Swiggy week");
    assert_eq!(renamed["steps"], created["steps"]);
    let frozen = server.admin(Method::PATCH, "/v1/missions/swiggy-500").json(&json!({"window": null}));
    expect_problem(send(frozen).await, 409).await;
    let back = server.admin(Method::PATCH, "/v1/missions/swiggy-500").json(&json!({"status": "draft"}));
    expect_problem(send(back).await, 409).await;
    let read_only = server.admin(Method::PATCH, "/v1/missions/swiggy-500").json(&json!({"rewards_granted": 9}));
    let p = expect_problem(send(read_only).await, 422).await;
    assert_eq!(p["errors"][0]["pointer"], "/rewards_granted");

    // Only drafts can be deleted.
    expect_problem(send(server.delete("/v1/missions/swiggy-500")).await, 409).await;
    let ended = ok(server.admin(Method::PATCH, "/v1/missions/swiggy-500").json(&json!({"status": "ended"}))).await;
    assert_eq!(ended["status"], "ended");
    create_mission(
        &server,
        &json!({"id": "scratch", "name": "x", "steps": [{"event_type": "login", "target": 1}],
                                     "reward": {"kind": "badge"}}),
    )
    .await;
    assert_eq!(send(server.delete("/v1/missions/scratch")).await.status(), 204);
    expect_problem(send(server.get("/v1/missions/scratch")).await, 404).await;
}

pub async fn list_filters_by_status_and_paginates(backend: Backend) {
    let server = start(backend).await;
    for i in 0..5 {
        let mut m = swiggy(&format!("m-{i}"));
        m["status"] = json!(if i % 2 == 0 { "active" } else { "draft" });
        create_mission(&server, &m).await;
    }
    let active = ok(server.get("/v1/missions?status=active")).await;
    let ids: Vec<&str> = active["items"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["m-0", "m-2", "m-4"]);

    let mut seen = Vec::new();
    let mut path = "/v1/missions?limit=2".to_owned();
    loop {
        let page = ok(server.get(&path)).await;
        assert!(page["items"].as_array().unwrap().len() <= 2);
        seen.extend(page["items"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/missions?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["m-0", "m-1", "m-2", "m-3", "m-4"]);
    expect_problem(send(server.get("/v1/missions?status=sleeping")).await, 422).await;
    expect_problem(send(server.get("/v1/missions?limit=501")).await, 422).await;
}

pub async fn validation_names_every_pointer(backend: Backend) {
    let server = start(backend).await;
    let typo =
        json!({"name": "x", "steps": [{"event_type": "login", "target": 1, "tagret": 2}], "reward": {"kind": "badge"}});
    let p = expect_problem(send(server.post("/v1/missions", &typo)).await, 422).await;
    assert_eq!(p["errors"][0]["pointer"], "/steps/0/tagret", "{p}");
    assert!(p["errors"][0]["detail"].as_str().unwrap().contains("tagret"), "{p}");

    let bad_op = json!({"name": "x", "steps": [{"event_type": "payment", "filters": [{"field": "a", "op": "between", "value": 1}],
                         "target": 1}], "reward": {"kind": "badge"}});
    let p = expect_problem(send(server.post("/v1/missions", &bad_op)).await, 422).await;
    assert_eq!(p["errors"][0]["pointer"], "/steps/0/filters/0/op", "{p}");

    let many = json!({"id": "Bad Id", "name": "x", "window": {"kind": "rolling", "duration": "7 days"},
                      "steps": [{"event_type": "payment", "aggregate": {"fn": "sum"}, "target": -1}],
                      "reward": {"kind": "cash", "amount": 5}});
    let p = expect_problem(send(server.post("/v1/missions", &many)).await, 422).await;
    assert_eq!(p["errors"][0]["pointer"], "/id");
    let bad_rules = {
        let mut m = many.clone();
        m["id"] = json!("fine");
        m
    };
    let p = expect_problem(send(server.post("/v1/missions", &bad_rules)).await, 422).await;
    let pointers: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    for expected in ["/window/duration", "/steps/0/target", "/steps/0/aggregate/field", "/reward/currency"] {
        assert!(pointers.contains(&expected), "{expected} not in {pointers:?}");
    }
    expect_problem(send(server.post("/v1/missions", &json!([1, 2]))).await, 422).await;
}

pub async fn simulate_runs_the_engine_and_writes_nothing(backend: Backend) {
    let server = start(backend).await;
    create_mission(&server, &swiggy("swiggy-500")).await;
    let events = json!({"events": [
        payment("s1", "sim-user", json!(300), 30),
        payment("s2", "sim-user", json!(250), 20),
        payment("s2", "sim-user", json!(250), 20),
        refund("s3", "sim-user", "s1", Some(json!(10))),
    ]});
    let sim = ok(server.post("/v1/missions/swiggy-500/simulate", &events)).await;
    assert_eq!(sim["progress"]["status"], "completed");
    assert_eq!(sim["progress"]["steps"][0]["value"], json!(540));
    assert_eq!(sim["completions"][0]["reward_amount"], json!(50));
    assert_eq!(sim["duplicates"], json!(["s2"]));

    let after = progress(&server, "sim-user", "swiggy-500").await;
    assert_eq!(after["status"], "not_started", "simulate must not write: {after}");
    let again = ingest(&server, &[payment("s1", "sim-user", json!(300), 30)]).await;
    assert_eq!(again["accepted"], 1, "simulated ids never reached the ledger");

    let bad = json!({"events": [{"id": "x", "type": "payment", "user_id": "u"}]});
    let p = expect_problem(send(server.post("/v1/missions/swiggy-500/simulate", &bad)).await, 422).await;
    assert_eq!(p["errors"][0]["pointer"], "/events/0/occurred_at");
}

pub async fn patching_budget_repeat_and_status_edge_cases(backend: Backend) {
    let server = start(backend).await;
    let mut m = swiggy("budget");
    m["budget"] = json!({"max_rewards": 5});
    m["repeat"] = json!({"max_completions": 3});
    create_mission(&server, &m).await;
    ingest(&server, &[payment("b1", "u1", json!(500), 1), payment("b2", "u2", json!(500), 1)]).await;
    // A budget lowered to what is already granted is spent: the mission ends.
    let patched =
        ok(server.admin(Method::PATCH, "/v1/missions/budget").json(&json!({"budget": {"max_rewards": 2}}))).await;
    assert_eq!((patched["status"].as_str(), patched["rewards_granted"].as_u64()), (Some("ended"), Some(2)));

    // `null` means unlimited, even through a merge patch.
    create_mission(&server, &swiggy("repeatable")).await;
    let patched =
        ok(server.admin(Method::PATCH, "/v1/missions/repeatable").json(&json!({"repeat": {"max_completions": null}})))
            .await;
    assert_eq!(patched["repeat"], json!({"max_completions": null}));

    // A draft exists, so a user's progress in it is `not_started`, not 404.
    let mut draft = swiggy("draft");
    draft.as_object_mut().unwrap().remove("status");
    create_mission(&server, &draft).await;
    assert_eq!(progress(&server, "u1", "draft").await["status"], "not_started");
    assert_eq!(progress(&server, "u1", "draft").await["window"], Value::Null);

    // Simulate is a POST: admin only, like every other POST but ingest.
    let (_, read_key) = server.create_key("dashboard", "read").await;
    let sim = server.with_key(&read_key, Method::POST, "/v1/missions/draft/simulate").json(&json!({"events": []}));
    expect_problem(send(sim).await, 403).await;
}

pub async fn simulate_takes_1_to_1000_events_like_ingest(backend: Backend) {
    let server = start(backend).await;
    create_mission(&server, &swiggy("swiggy-500")).await;
    let events =
        |n: usize| -> Vec<Value> { (0..n).map(|i| payment(&format!("s{i}"), "sim-user", json!(100), 30)).collect() };
    for n in [0, 1001] {
        let body = json!({"events": events(n)});
        let p = expect_problem(send(server.post("/v1/missions/swiggy-500/simulate", &body)).await, 422).await;
        assert_eq!(p["errors"][0]["pointer"], "/events", "{n}: {p}");
        assert!(p["detail"].as_str().unwrap().contains(&format!("1 to 1000 events, got {n}")), "{p}");
    }
    let sim = ok(server.post("/v1/missions/swiggy-500/simulate", &json!({"events": events(1000)}))).await;
    assert_eq!(sim["progress"]["status"], "completed", "1000 events are simulated: {sim}");
}
