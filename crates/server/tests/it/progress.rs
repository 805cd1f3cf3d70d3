//! Progress and rewards as readers see them, budgets under concurrency, and `/v1/me`.

use crate::fixtures::*;
use crate::{start, start_with};
use questline_testkit::{Backend, ServerOptions, expect_problem, send};
use reqwest::Method;
use serde_json::{Value, json};

pub async fn statuses_not_started_in_progress_completed_expired(backend: Backend) {
    let server = start(backend).await;
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

pub async fn a_budget_is_never_overspent_and_ends_the_mission(backend: Backend) {
    let server = start(backend).await;
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

pub async fn users_read_their_own_progress_with_a_jwt(backend: Backend) {
    const SECRET: &str = "a-jwt-secret-for-progress-tests-0123";
    let server = start_with(ServerOptions::on(backend).env("QUESTLINE_JWT_SECRET", SECRET)).await;
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

pub async fn events_count_only_if_received_while_the_mission_was_active(backend: Backend) {
    let server = start(backend).await;
    let patch = |id: &str, status: &str| {
        server.admin(Method::PATCH, &format!("/v1/missions/{id}")).json(&json!({"status": status}))
    };
    create_mission(
        &server,
        &json!({"id": "logins", "name": "3 logins",
        "steps": [{"event_type": "login", "target": 3}], "reward": {"kind": "badge"}}),
    )
    .await;
    let login =
        |id: &str, hours: i64| json!({"id": id, "type": "login", "user_id": "u", "occurred_at": hours_ago(hours)});
    ingest(&server, &[login("l0", 5)]).await; // while a draft: never counts
    ok(patch("logins", "active")).await;
    ingest(&server, &[login("l2", 1)]).await;
    // A late event forces a refold from the ledger; it must not pick up the draft-time login.
    ingest(&server, &[login("l1", 2)]).await;
    let p = progress(&server, "u", "logins").await;
    assert_eq!((p["status"].as_str(), &p["steps"][0]["value"]), (Some("in_progress"), &json!(2)), "{p}");
    let mission = ok(server.get("/v1/missions/logins")).await;
    assert_eq!(mission["active_periods"].as_array().unwrap().len(), 1, "{mission}");

    // Paused: a refund still takes back what was counted, and what arrives meanwhile never counts.
    create_mission(&server, &swiggy("swiggy-500")).await;
    ingest(&server, &[payment("p1", "w", json!(300), 3)]).await;
    ok(patch("swiggy-500", "paused")).await;
    ingest(&server, &[refund("r1", "w", "p1", None), payment("p-paused", "w", json!(400), 2)]).await;
    ok(patch("swiggy-500", "active")).await;
    ingest(&server, &[payment("p2", "w", json!(250), 1)]).await;
    let p = progress(&server, "w", "swiggy-500").await;
    assert_eq!((p["status"].as_str(), &p["steps"][0]["value"]), (Some("in_progress"), &json!(250)), "{p}");
    assert!(rewards(&server, "w").await.is_empty());
}

pub async fn a_refund_after_the_budget_ended_the_mission_still_revokes(backend: Backend) {
    let server = start(backend).await;
    let mut m = swiggy("one-reward");
    m["budget"] = json!({"max_rewards": 1});
    create_mission(&server, &m).await;
    ingest(&server, &[payment("big", "u", json!(600), 1)]).await;
    let ended = ok(server.get("/v1/missions/one-reward")).await;
    assert_eq!(ended["status"], "ended");
    // Its active period is closed, as a PATCH to `ended` would close it.
    let periods = ended["active_periods"].as_array().unwrap();
    assert!(!periods.is_empty() && periods.iter().all(|p| p["until"].is_string()), "{ended}");
    ingest(&server, &[refund("back", "u", "big", None)]).await;
    assert_eq!(rewards(&server, "u").await[0]["status"], "revoked");
    assert_eq!(progress(&server, "u", "one-reward").await["steps"][0]["value"], json!(0));
}

pub async fn progress_and_reward_lists_are_paginated(backend: Backend) {
    let server = start(backend).await;
    for i in 0..5 {
        let mut m = swiggy(&format!("m-{i}"));
        m["steps"][0]["target"] = json!(100);
        create_mission(&server, &m).await;
    }
    ingest(&server, &[payment("p", "u", json!(150), 1)]).await;
    for (path, key) in [("/v1/users/u/missions", "mission_id"), ("/v1/users/u/rewards", "id")] {
        let mut seen = Vec::new();
        let mut url = format!("{path}?limit=2");
        loop {
            let page = ok(server.get(&url)).await;
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= 2, "{page}");
            seen.extend(items.iter().map(|i| i[key].as_str().unwrap().to_owned()));
            match page["next_cursor"].as_str() {
                Some(c) => url = format!("{path}?limit=2&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(seen.len(), 5, "{path}: {seen:?}");
        seen.dedup();
        assert_eq!(seen.len(), 5, "{path}: no item twice");
    }
}

/// A mission its budget ended stays ended for what arrives later, even after an edit: a
/// recomputation (here, forced by a refund) never counts an event received after the end.
pub async fn an_edit_after_the_budget_ended_the_mission_does_not_reopen_it(backend: Backend) {
    let server = start(backend).await;
    let mut m = swiggy("one-reward");
    m["budget"] = json!({"max_rewards": 1});
    create_mission(&server, &m).await;
    ingest(&server, &[payment("u2-first", "u2", json!(300), 3)]).await;
    ingest(&server, &[payment("u1-big", "u1", json!(600), 2)]).await;
    assert_eq!(ok(server.get("/v1/missions/one-reward")).await["status"], "ended");
    // Received after the end: never counts.
    ingest(&server, &[payment("u2-late", "u2", json!(300), 1)]).await;
    ok(server.admin(reqwest::Method::PATCH, "/v1/missions/one-reward").json(&json!({"name": "Renamed"}))).await;
    // A partial refund of the counted payment refolds u2's progress in the ended mission.
    ingest(&server, &[refund("u2-back", "u2", "u2-first", Some(json!(100)))]).await;
    let p = progress(&server, "u2", "one-reward").await;
    assert_eq!(p["steps"][0]["value"], json!(200), "{p}");
    assert_eq!(p["completions"], 0, "{p}");
}
