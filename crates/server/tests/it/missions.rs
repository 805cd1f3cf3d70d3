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

/// The numbers of a mission are JSON numbers (never strings) that an exact decimal holds, by
/// the rule events follow; an error's pointer names the field, never serde_json's internals.
pub async fn numbers_in_a_mission_are_exact_json_numbers(backend: Backend) {
    let server = start(backend).await;
    let base = json!({"name": "n", "steps": [{"event_type": "payment", "aggregate": {"fn": "sum", "field": "amount"},
                      "target": 500}], "reward": {"kind": "cash", "amount": 50, "currency": "INR"}});
    let number = |text: &str| serde_json::from_str::<Value>(text).unwrap();
    let with = |pointer: &str, value: Value| {
        let mut m = base.clone();
        *m.pointer_mut(pointer).unwrap() = value;
        m
    };
    let not_exact = json!(questline_core::decimal::NOT_EXACT);
    let filtered = |value: Value| {
        let mut m = base.clone();
        m["steps"][0]["filters"] = json!([{"field": "amount", "op": "gte", "value": value}]);
        m
    };
    let cases = [
        (with("/steps/0/target", json!("500")), "/steps/0/target", None),
        (with("/reward/amount", json!("50")), "/reward/amount", None),
        (filtered(json!("100")), "/steps/0/filters/0/value", None),
        (with("/steps/0/target", number("1e400")), "/steps/0/target", Some(&not_exact)),
        (with("/steps/0/target", number("123456789012345678901234567890")), "/steps/0/target", Some(&not_exact)),
        (with("/reward/amount", number("1e-400")), "/reward/amount", Some(&not_exact)),
        (filtered(number("1e400")), "/steps/0/filters/0/value", Some(&not_exact)),
    ];
    for (mission, pointer, detail) in cases {
        let p = expect_problem(send(server.post("/v1/missions", &mission)).await, 422).await;
        assert_eq!(p["errors"][0]["pointer"], pointer, "{mission}: {p}");
        assert!(!p.to_string().contains("serde_json"), "{p}");
        if let Some(detail) = detail {
            assert_eq!(&p["errors"][0]["detail"], detail, "{p}");
        }
    }
    let mut cashback = with("/reward", json!({"kind": "cash", "percent": "5", "cap": 100, "currency": "INR"}));
    let p = expect_problem(send(server.post("/v1/missions", &cashback)).await, 422).await;
    assert_eq!(p["errors"][0]["pointer"], "/reward/percent", "{p}");
    cashback["reward"]["percent"] = json!(5);
    create_mission(&server, &cashback).await;

    // One rule: 2^64 is a decimal like any other, and so are 28 decimal places.
    let big = create_mission(&server, &with("/steps/0/target", number("18446744073709551616"))).await;
    assert_eq!(big["steps"][0]["target"].to_string(), "18446744073709551616");
    let fine = create_mission(&server, &with("/steps/0/target", number("1.2345678901234567890123456789"))).await;
    let read = ok(server.get(&format!("/v1/missions/{}", fine["id"].as_str().unwrap()))).await;
    assert_eq!(read["steps"][0]["target"].to_string(), "1.2345678901234567890123456789");
}

/// `starts_at`/`ends_at` follow the rule events do: any RFC 3339 timestamp parses; a valid
/// one outside 1970-01-01T00:00:00Z..=9999-12-30T22:00:00.999999999Z is refused for its range.
pub async fn mission_times_follow_the_timestamp_rule(backend: Backend) {
    let server = start(backend).await;
    let with = |field: &str, at: &str| json!({"name": "t", field: at, "steps": [{"event_type": "login", "target": 1}], "reward": {"kind": "badge"}});
    let range = questline_core::time::OUT_OF_RANGE;
    let cases = [
        (with("ends_at", "9999-12-31T23:59:59Z"), "/ends_at", range),
        (with("starts_at", "0000-01-01T00:00:00Z"), "/starts_at", range),
        (with("starts_at", "1969-12-31T23:59:59Z"), "/starts_at", range),
        (with("ends_at", "next week"), "/ends_at", "not an RFC 3339 timestamp"),
    ];
    for (mission, pointer, detail) in cases {
        let p = expect_problem(send(server.post("/v1/missions", &mission)).await, 422).await;
        assert_eq!((&p["errors"][0]["pointer"], &p["errors"][0]["detail"]), (&json!(pointer), &json!(detail)), "{p}");
    }
    let last = create_mission(&server, &with("ends_at", "9999-12-30T22:00:00Z")).await;
    assert_eq!(last["ends_at"], "9999-12-30T22:00:00Z");
    let fine = create_mission(&server, &with("starts_at", "2026-01-01T00:00:00.123456789012+00:00")).await;
    assert_eq!(fine["starts_at"], "2026-01-01T00:00:00.123456789Z");
    let epoch = create_mission(&server, &with("starts_at", "1970-01-01T00:00:00Z")).await;
    let read = ok(server.get(&format!("/v1/missions/{}", epoch["id"].as_str().unwrap()))).await;
    assert_eq!(read["starts_at"], "1970-01-01T00:00:00Z");
}

/// A cashback percent needs a cap: without one, 100% of a huge sum would be the reward.
pub async fn cashback_without_a_cap_is_refused(backend: Backend) {
    let server = start(backend).await;
    let mut m = swiggy("cashback");
    m["reward"] = json!({"kind": "cash", "percent": 100, "currency": "INR"});
    let p = expect_problem(send(server.post("/v1/missions", &m)).await, 422).await;
    assert_eq!(p["errors"][0]["pointer"], "/reward/cap", "{p}");
    m["reward"]["cap"] = json!(100);
    create_mission(&server, &m).await;
}
