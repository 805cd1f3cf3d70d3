//! Notifications a mission declares, end to end: a milestone, the completion and the reward
//! reach the user by the contact they gave, rendered with their data, once each; opt-outs
//! and users without an address get nothing; quiet hours hold a notice until they end; a
//! window about to lapse warns the user who has not finished, and not the one who did.

use crate::fixtures::*;
use crate::start_with;
use crate::webhooks::{Endpoint, Received};
use questline_testkit::{Backend, ServerOptions, TestServer, eventually, expect_problem, send};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const TEMPLATES: &str = r#"
[[templates]]
name = "halfway"
body = "{{ mission.name }}: {{ percent }}% there ({{ progress.steps[0].value }} of {{ progress.steps[0].target }})"

[[templates]]
name = "done"
body = "You completed {{ mission.name }}"

[[templates]]
name = "won"
body = "You won {{ reward.amount }} {{ reward.kind }}"

[[templates]]
name = "hurry"
body = "{{ mission.name }} ends at {{ ends_at }}"
"#;

const JWT_SECRET: &str = "a-jwt-secret-for-notice-tests-0123456";

/// A server with one SMS provider (the test's endpoint) and the templates above.
async fn server(backend: Backend, provider_url: &str) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("questline.toml");
    let provider = format!(
        "[[providers]]\nname = \"acme\"\nchannels = [\"sms\"]\nkind = \"http\"\nurl = \"{provider_url}\"\n\
         body = '{{\"to\": {{{{to}}}}, \"text\": {{{{body}}}}}}'\n\
         limits = [{{ requests = 100, per = \"PT1S\" }}]\nprice = {{ per_message = 0.10, currency = \"INR\" }}\n"
    );
    std::fs::write(&file, format!("{TEMPLATES}\n{provider}")).unwrap();
    let options = ServerOptions::on(backend)
        .env("QUESTLINE_ALLOW_PRIVATE_TARGETS", "true")
        .env("QUESTLINE_JWT_SECRET", JWT_SECRET)
        .config_file(&file);
    (start_with(options).await, dir)
}

/// Payments summed to 100, for points; notifies at 50 %, on completion and on the reward.
fn loud(id: &str) -> Value {
    json!({
        "id": id, "name": "Spend 100", "status": "active",
        "steps": [{"event_type": "payment", "aggregate": {"fn": "sum", "field": "amount"}, "target": 100}],
        "reward": {"kind": "points", "amount": 10},
        "notifications": [
            {"on": "progress", "at_percent": 50, "channel": "sms", "template": "halfway"},
            {"on": "completed", "channel": "sms", "template": "done"},
            {"on": "reward_granted", "channel": "sms", "template": "won"},
        ]
    })
}

/// What the provider was asked to send: (to, text), in arrival order.
fn texts(received: &[Received]) -> Vec<(String, String)> {
    received
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            (body["to"].as_str().unwrap().to_owned(), body["text"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// The provider's requests once there are `n` of them.
async fn when_received(endpoint: &Endpoint, n: usize) -> Vec<(String, String)> {
    eventually("the provider's requests", Duration::from_secs(30), || async {
        let got = texts(&endpoint.received());
        if got.len() >= n { Ok(got) } else { Err(format!("{got:?}")) }
    })
    .await
}

/// The `notice.send` jobs once none is waiting to run.
async fn settled_notices(server: &TestServer) -> Vec<Value> {
    let jobs = body_when(server, "/v1/jobs?kind=notice.send&limit=100", |page| {
        page["items"].as_array().is_some_and(|jobs| {
            jobs.iter().all(|j| matches!(j["state"].as_str(), Some("succeeded" | "dead" | "cancelled")))
        })
    })
    .await;
    jobs["items"].as_array().unwrap().clone()
}

fn hh_mm(at: jiff::Timestamp) -> String {
    at.strftime("%H:%M").to_string()
}

pub async fn milestones_completions_and_rewards_reach_the_user_once_as_they_chose(backend: Backend) {
    let endpoint = Endpoint::start(vec![(200, vec![], "{}")]).await;
    let (server, _dir) = server(backend, &endpoint.url).await;
    create_mission(&server, &loud("spend-100")).await;
    ok(server.put("/v1/users/u-1/contact", &json!({"phone": "+919800000001", "time_zone": "Asia/Kolkata"}))).await;
    // u-2 opted out of SMS; u-3 opted out of this mission; u-4 gave no phone.
    ok(server.put("/v1/users/u-2/contact", &json!({"phone": "+919800000002"}))).await;
    ok(server.put("/v1/users/u-2/preferences", &json!({"opt_out": {"channels": ["sms"]}}))).await;
    ok(server.put("/v1/users/u-3/contact", &json!({"phone": "+919800000003"}))).await;
    ok(server.put("/v1/users/u-3/preferences", &json!({"opt_out": {"missions": ["spend-100"]}}))).await;
    ok(server.put("/v1/users/u-4/contact", &json!({"email": "u4@example.com"}))).await;

    let halfway: Vec<Value> =
        ["u-1", "u-2", "u-3", "u-4"].iter().map(|u| payment(&format!("{u}-a"), u, json!(60), 0)).collect();
    ingest(&server, &halfway).await;
    let got = when_received(&endpoint, 1).await;
    assert_eq!(got, [("+919800000001".to_owned(), "Spend 100: 50% there (60 of 100)".to_owned())]);

    let finish: Vec<Value> =
        ["u-1", "u-2", "u-3", "u-4"].iter().map(|u| payment(&format!("{u}-b"), u, json!(45), 0)).collect();
    ingest(&server, &finish).await;
    let got = when_received(&endpoint, 3).await;
    let mut later: Vec<&str> = got[1..].iter().map(|(_, text)| text.as_str()).collect();
    later.sort();
    assert_eq!(later, ["You completed Spend 100", "You won 10 points"]);
    assert!(got.iter().all(|(to, _)| to == "+919800000001"), "only u-1 hears: {got:?}");

    // The same events again are duplicates: nothing more is due. Every notice job finished,
    // and the provider heard of u-1 only, three times.
    ingest(&server, &halfway).await;
    ingest(&server, &finish).await;
    let jobs = settled_notices(&server).await;
    assert_eq!(jobs.len(), 12, "3 notices for each of 4 users: {jobs:?}");
    assert!(jobs.iter().all(|j| j["state"] == "succeeded"), "{jobs:?}");
    assert_eq!(texts(&endpoint.received()).len(), 3);
    let message_jobs = ok(server.get("/v1/jobs?kind=message.send&limit=100")).await;
    assert_eq!(message_jobs["items"].as_array().unwrap().len(), 3, "{message_jobs}");
}

pub async fn quiet_hours_hold_a_notice_until_they_end(backend: Backend) {
    let endpoint = Endpoint::start(vec![(200, vec![], "{}")]).await;
    let (server, _dir) = server(backend, &endpoint.url).await;
    create_mission(&server, &loud("spend-100")).await;
    let now = jiff::Timestamp::now();
    let (from, to) = (now - jiff::SignedDuration::from_hours(1), now + jiff::SignedDuration::from_hours(2));
    ok(server.put("/v1/users/u-1/contact", &json!({"phone": "+919800000001", "time_zone": "UTC"}))).await;
    let quiet = json!({"quiet_hours": {"from": hh_mm(from), "to": hh_mm(to)}});
    let answer = ok(server.put("/v1/users/u-1/preferences", &quiet)).await;
    assert_eq!(answer["quiet_hours"], quiet["quiet_hours"], "{answer}");

    ingest(&server, &[payment("p1", "u-1", json!(60), 0)]).await;
    // Held, not dropped: the notice waits (no attempt spent) until the quiet hours end.
    let held = body_when(&server, "/v1/jobs?kind=notice.send", |page| {
        page["items"][0]["state"] == "scheduled" && page["items"][0]["errors"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    let job = &held["items"][0];
    let run_at: jiff::Timestamp = job["run_at"].as_str().unwrap().parse().unwrap();
    // The end as HH:MM says it: `to` without its seconds.
    let expected = to
        - jiff::SignedDuration::from_secs(to.as_second().rem_euclid(60))
        - jiff::SignedDuration::from_nanos(i64::from(to.subsec_nanosecond()));
    assert!(
        run_at.duration_since(expected).abs() <= jiff::SignedDuration::from_secs(60),
        "held until {run_at}, quiet hours end at {} UTC",
        hh_mm(to)
    );
    assert!(endpoint.received().is_empty(), "nothing is sent in quiet hours");

    // Once the user lifts their quiet hours, a re-run sends it.
    ok(server.put("/v1/users/u-1/preferences", &json!({}))).await;
    let id = job["id"].as_str().unwrap();
    ok(server.post(&format!("/v1/jobs/{id}/retry"), &json!({}))).await;
    let got = when_received(&endpoint, 1).await;
    assert_eq!(got[0].1, "Spend 100: 50% there (60 of 100)");
}

pub async fn a_window_about_to_lapse_warns_the_user_who_has_not_finished(backend: Backend) {
    let endpoint = Endpoint::start(vec![(200, vec![], "{}")]).await;
    let (server, _dir) = server(backend, &endpoint.url).await;
    let mission = json!({
        "id": "quick", "name": "Two logins in 6 s", "status": "active",
        "window": {"kind": "rolling", "duration": "PT6S"},
        "steps": [{"event_type": "login", "target": 2}],
        "reward": {"kind": "badge"},
        "notifications": [{"on": "window_lapsing", "before": "PT3S", "channel": "sms", "template": "hurry"}]
    });
    create_mission(&server, &mission).await;
    for (user, phone) in [("u-1", "+919800000001"), ("u-2", "+919800000002")] {
        ok(server.put(&format!("/v1/users/{user}/contact"), &json!({"phone": phone}))).await;
    }
    let login = |id: &str, user: &str| json!({"id": id, "type": "login", "user_id": user, "occurred_at": jiff::Timestamp::now().to_string()});
    ingest(&server, &[login("l1", "u-1"), login("l2", "u-2")]).await;
    // u-2 finishes before the warning is due; u-1 does not.
    ingest(&server, &[login("l3", "u-2")]).await;
    let got = when_received(&endpoint, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "+919800000001");
    assert!(got[0].1.starts_with("Two logins in 6 s ends at "), "{got:?}");
    let jobs = settled_notices(&server).await;
    assert_eq!(jobs.len(), 2, "one warning due per window opened: {jobs:?}");
    assert_eq!(texts(&endpoint.received()).len(), 1, "u-2 completed: nothing to warn of");
}

pub async fn contacts_and_notifications_are_validated_and_users_keep_their_own(backend: Backend) {
    let endpoint = Endpoint::start(vec![(200, vec![], "{}")]).await;
    let (server, _dir) = server(backend, &endpoint.url).await;
    let mut mission = loud("bad");
    mission["notifications"] = json!([
        {"on": "progress", "at_percent": 50, "channel": "sms", "template": "nope"},
        {"on": "completed", "channel": "email", "template": "done"},
        {"on": "progress", "channel": "sms", "template": "done"},
    ]);
    let problem = expect_problem(send(server.post("/v1/missions", &mission)).await, 422).await;
    let pointers: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().filter_map(|e| e["pointer"].as_str()).collect();
    assert_eq!(pointers, ["/notifications/2/at_percent"], "the engine's checks first: {problem}");
    mission["notifications"].as_array_mut().unwrap().pop();
    let problem = expect_problem(send(server.post("/v1/missions", &mission)).await, 422).await;
    let pointers: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().filter_map(|e| e["pointer"].as_str()).collect();
    assert_eq!(pointers, ["/notifications/0/template", "/notifications/1/channel"], "{problem}");
    // Notifications are not rules: an active mission's can be changed.
    create_mission(&server, &loud("live")).await;
    let patch = json!({"notifications": [{"on": "completed", "channel": "sms", "template": "done"}]});
    let patched = ok(server.admin(Method::PATCH, "/v1/missions/live").json(&patch)).await;
    assert_eq!(patched["notifications"], patch["notifications"], "{patched}");

    for (path, body, pointer) in [
        ("/v1/users/u-1/contact", json!({"phone": "98765"}), "/phone"),
        ("/v1/users/u-1/contact", json!({"time_zone": "Mars/Olympus"}), "/time_zone"),
        ("/v1/users/u-1/contact", json!({"fax": "1"}), "/fax"),
        ("/v1/users/u-1/preferences", json!({"quiet_hours": {"from": "25:00", "to": "08:00"}}), "/quiet_hours/from"),
        ("/v1/users/u-1/preferences", json!({"opt_out": {"channels": ["fax"]}}), "/opt_out/channels/0"),
        ("/v1/users/u-1/preferences", json!({"quiet_hours": {"from": "08:00", "to": "08:00"}}), "/quiet_hours/to"),
    ] {
        let problem = expect_problem(send(server.put(path, &body)).await, 422).await;
        let pointers: Vec<&str> =
            problem["errors"].as_array().unwrap().iter().filter_map(|e| e["pointer"].as_str()).collect();
        assert_eq!(pointers, [pointer], "{path} {body} -> {problem}");
    }
    // Nothing was written by the refusals.
    let contact = ok(server.get("/v1/users/u-1/contact")).await;
    assert_eq!(
        contact,
        json!({"user_id": "u-1", "phone": null, "email": null, "push_token": null, "time_zone": null, "updated_at": null})
    );

    // A user reads and writes their own with a JWT, and only their own.
    let exp = jiff::Timestamp::now().as_second() + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "u-7", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let mine =
        server.with_key(&token, Method::PUT, "/v1/me/preferences").json(&json!({"opt_out": {"channels": ["sms"]}}));
    assert_eq!(ok(mine).await["opt_out"]["channels"], json!(["sms"]));
    let read = ok(server.with_key(&token, Method::GET, "/v1/me/preferences")).await;
    assert_eq!(read["user_id"], "u-7");
    assert_eq!(ok(server.get("/v1/users/u-7/preferences")).await["opt_out"], read["opt_out"]);
    assert_eq!(ok(server.get("/v1/users/u-1/preferences")).await["opt_out"]["channels"], json!([]));
    // Only admin keys write; a read key reads.
    let (_, reader) = server.create_key("panel", "read").await;
    let put = server.with_key(&reader, Method::PUT, "/v1/users/u-1/contact").json(&json!({}));
    expect_problem(send(put).await, 403).await;
    ok(server.with_key(&reader, Method::GET, "/v1/users/u-1/contact")).await;
}
