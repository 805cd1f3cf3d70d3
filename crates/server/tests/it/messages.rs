//! Messages end to end: `POST /v1/messages` validates, is idempotent by id and queues; the
//! dispatcher sends through HTTP providers the test runs (its answers scripted: 503, 429,
//! 400), retries, slows down, fails, expires, and routes by cost without ever exceeding a
//! provider's limit; `/v1/providers` counts the month.

use crate::fixtures::*;
use crate::start_with;
use crate::webhooks::{Endpoint, Received};
use questline_testkit::{Backend, ServerOptions, TestServer, expect_problem, send};
use serde_json::{Value, json};
use std::time::Duration;

/// A provider entry of the configuration file.
struct Provider<'a> {
    name: &'a str,
    url: &'a str,
    limits: &'a str,
    price: &'a str,
}

fn config(providers: &[Provider<'_>]) -> String {
    let mut toml =
        String::from("[[templates]]\nname = \"otp\"\nbody = \"Your code is {{ code }}\"\nsubject = \"Your code\"\n\n");
    for p in providers {
        toml.push_str(&format!(
            "[[providers]]\nname = \"{}\"\nchannels = [\"sms\"]\nkind = \"http\"\nurl = \"{}\"\n\
             headers = {{ Authorization = \"Bearer sekrit\" }}\n\
             body = '{{\"to\": {{{{to}}}}, \"text\": {{{{body}}}}, \"ref\": {{{{id}}}}}}'\n\
             limits = {}\nprice = {}\n\n",
            p.name, p.url, p.limits, p.price
        ));
    }
    toml
}

/// A server whose providers are `providers` (each may call the test's own endpoints).
async fn server_with(backend: Backend, providers: &[Provider<'_>]) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("questline.toml");
    std::fs::write(&file, config(providers)).unwrap();
    let server =
        start_with(ServerOptions::on(backend).env("QUESTLINE_ALLOW_PRIVATE_TARGETS", "true").config_file(&file)).await;
    (server, dir)
}

fn sms(id: &str, code: &str) -> Value {
    json!({"id": id, "channel": "sms", "to": "+919876543210", "template": "otp", "data": {"code": code}, "user_id": "u-1"})
}

/// An amount as the exact decimal its JSON number says.
fn decimal(v: &Value) -> rust_decimal::Decimal {
    v.to_string().parse().unwrap_or_else(|_| panic!("{v} is not an amount"))
}

/// The message once its status is final.
async fn final_message(server: &TestServer, id: &str) -> Value {
    body_when(server, &format!("/v1/messages/{id}"), |m| {
        matches!(m["status"].as_str(), Some("sent" | "failed" | "expired"))
    })
    .await
}

fn one_provider<'a>(url: &'a str) -> [Provider<'a>; 1] {
    [Provider {
        name: "acme",
        url,
        limits: "[{ requests = 100, per = \"PT1S\" }]",
        price: "{ per_message = 0.12, currency = \"INR\" }",
    }]
}

pub async fn bad_messages_are_422_with_pointers_and_roles_are_enforced(backend: Backend) {
    let endpoint = Endpoint::start(vec![(200, vec![], "{}")]).await;
    let (server, _dir) = server_with(backend, &one_provider(&endpoint.url)).await;
    let future = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let cases = [
        (json!({"id": "m", "channel": "fax", "to": "+919876543210", "body": "x"}), "/channel"),
        (json!({"id": "m", "channel": "push", "to": "token", "body": "x"}), "/channel"),
        (json!({"id": "m", "channel": "sms", "to": "98765", "body": "x"}), "/to"),
        (
            json!({"id": "m", "channel": "sms", "to": "+919876543210", "body": "x", "deadline": "2020-01-01T00:00:00Z"}),
            "/deadline",
        ),
        (json!({"id": "m", "channel": "sms", "to": "+919876543210", "template": "welcome"}), "/template"),
        (json!({"id": "m", "channel": "sms", "to": "+919876543210", "template": "otp", "data": {"cod": 1}}), "/data"),
        (json!({"id": "m", "channel": "sms", "to": "+919876543210", "body": "x", "priority": 10}), "/priority"),
        (json!({"id": "", "channel": "sms", "to": "+919876543210", "body": "x"}), "/id"),
    ];
    for (body, pointer) in cases {
        let problem = expect_problem(send(server.post("/v1/messages", &body)).await, 422).await;
        let pointers: Vec<&str> =
            problem["errors"].as_array().unwrap().iter().filter_map(|e| e["pointer"].as_str()).collect();
        assert!(pointers.contains(&pointer), "{body} -> {problem}");
    }
    let (_, ingest) = server.create_key("pos", "ingest").await;
    let message =
        json!({"id": "m-ok", "channel": "sms", "to": "+919876543210", "body": "hi", "deadline": future.to_string()});
    expect_problem(send(server.with_key(&ingest, reqwest::Method::POST, "/v1/messages").json(&message)).await, 403)
        .await;
    let (_, sender) = server.create_key("campaigns", "send").await;
    let answer = send(server.with_key(&sender, reqwest::Method::POST, "/v1/messages").json(&message)).await;
    assert_eq!(answer.status(), 202);
    expect_problem(send(server.with_key(&sender, reqwest::Method::GET, "/v1/messages/m-ok")).await, 403).await;
    expect_problem(send(server.get("/v1/messages/nope")).await, 404).await;
}

pub async fn the_same_id_answers_the_first_message_and_another_body_is_409(backend: Backend) {
    let endpoint = Endpoint::start(vec![(200, vec![], "{\"id\": \"prov-1\"}")]).await;
    let (server, _dir) = server_with(backend, &one_provider(&endpoint.url)).await;
    let first = ok(server.post("/v1/messages", &sms("otp-1", "4321"))).await;
    assert_eq!(first, json!({"id": "otp-1", "status": "queued"}));
    let again = send(server.post("/v1/messages", &sms("otp-1", "4321"))).await;
    assert_eq!(again.status(), 202);
    expect_problem(send(server.post("/v1/messages", &sms("otp-1", "9999"))).await, 409).await;
    let sent = final_message(&server, "otp-1").await;
    assert_eq!(sent["status"], "sent", "{sent}");
    assert_eq!(sent["provider"], "acme");
    assert_eq!(decimal(&sent["cost"]), decimal(&json!(0.12)));
    assert_eq!(sent["body"], "Your code is 4321");
    // Sent once, with the configured header, the id as idempotency key, and the body as JSON.
    let received = endpoint.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].headers["authorization"], "Bearer sekrit");
    assert_eq!(received[0].headers["idempotency-key"], "otp-1");
    let body: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body, json!({"to": "+919876543210", "text": "Your code is 4321", "ref": "otp-1"}));
    let providers = ok(server.get("/v1/providers")).await;
    assert_eq!(providers["items"][0]["name"], "acme");
    assert_eq!(providers["items"][0]["sent"], 1);
    assert_eq!(decimal(&providers["items"][0]["cost"]), decimal(&json!(0.12)));
}

pub async fn a_batch_is_queued_all_or_none_with_a_pointer_per_message(backend: Backend) {
    let endpoint = Endpoint::start(vec![(200, vec![], "{}")]).await;
    let (server, _dir) = server_with(backend, &one_provider(&endpoint.url)).await;
    // One bad message: 422 naming it, and none of the batch is queued.
    let mut bad = sms("b-2", "3");
    bad["to"] = json!("12345");
    let batch = json!({"messages": [sms("b-1", "1"), bad, sms("b-3", "3")]});
    let problem = expect_problem(send(server.post("/v1/messages", &batch)).await, 422).await;
    assert_eq!(problem["errors"][0]["pointer"], "/messages/1/to", "{problem}");
    assert_eq!(problem["errors"].as_array().unwrap().len(), 1, "{problem}");
    expect_problem(send(server.get("/v1/messages/b-1")).await, 404).await;

    let batch = json!({"messages": [sms("b-1", "1"), sms("b-2", "2"), sms("b-3", "3")]});
    let queued = ok(server.post("/v1/messages", &batch)).await;
    let statuses: Vec<(&str, &str)> = queued["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| (q["id"].as_str().unwrap(), q["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [("b-1", "queued"), ("b-2", "queued"), ("b-3", "queued")]);
    for id in ["b-1", "b-2", "b-3"] {
        assert_eq!(final_message(&server, id).await["status"], "sent");
    }
    // The same batch again answers each as it stands and sends nothing more; one id reused
    // for another message fails the whole batch.
    let again = ok(server.post("/v1/messages", &batch)).await;
    assert!(again["items"].as_array().unwrap().iter().all(|q| q["status"] == "sent"), "{again}");
    let reused = json!({"messages": [sms("b-4", "4"), sms("b-1", "changed")]});
    expect_problem(send(server.post("/v1/messages", &reused)).await, 409).await;
    expect_problem(send(server.get("/v1/messages/b-4")).await, 404).await;
    assert_eq!(endpoint.received().len(), 3);

    // The same message twice in one batch is queued once; two messages under one id are a 409.
    let twice = ok(server.post("/v1/messages", &json!({"messages": [sms("d-1", "1"), sms("d-1", "1")]}))).await;
    assert_eq!(twice["items"].as_array().unwrap().len(), 2, "{twice}");
    assert_eq!(final_message(&server, "d-1").await["status"], "sent");
    let clash = json!({"messages": [sms("e-1", "1"), sms("e-1", "2")]});
    expect_problem(send(server.post("/v1/messages", &clash)).await, 409).await;
    expect_problem(send(server.get("/v1/messages/e-1")).await, 404).await;
    assert_eq!(endpoint.received().len(), 4, "d-1 sent once");

    // A batch of many bad messages lists the first 100 problems and counts them all.
    let bad: Vec<Value> =
        (0..150).map(|i| json!({"id": format!("x-{i}"), "channel": "sms", "to": "1", "body": "x"})).collect();
    let problem = expect_problem(send(server.post("/v1/messages", &json!({"messages": bad}))).await, 422).await;
    assert_eq!(problem["errors"].as_array().unwrap().len(), 100, "{}", problem["detail"]);
    assert_eq!(problem["errors"][99]["pointer"], "/messages/99/to");
    assert!(
        problem["detail"].as_str().unwrap().starts_with("150 problems (the first 100 listed)"),
        "{}",
        problem["detail"]
    );

    for (body, pointer) in [
        (json!({"messages": []}), "/messages"),
        (json!({"messages": {"id": "x"}}), "/messages"),
        (json!({"messages": [sms("c-1", "1")], "extra": 1}), "/messages"),
        (json!({"messages": (0..1001).map(|i| sms(&format!("c-{i}"), "1")).collect::<Vec<_>>()}), "/messages"),
    ] {
        let problem = expect_problem(send(server.post("/v1/messages", &body)).await, 422).await;
        assert_eq!(problem["errors"][0]["pointer"], pointer, "{problem}");
    }
}

pub async fn a_5xx_is_retried_a_429_slows_down_and_a_400_fails(backend: Backend) {
    let endpoint = Endpoint::start(vec![
        (503, vec![], "busy"),
        (429, vec![("retry-after", "1")], "slow down"),
        (200, vec![], "{}"),
        (400, vec![], "unknown number"),
    ])
    .await;
    let (server, _dir) = server_with(backend, &one_provider(&endpoint.url)).await;
    ok(server.post("/v1/messages", &sms("m-1", "1"))).await;
    let sent = final_message(&server, "m-1").await;
    let outcomes: Vec<&str> =
        sent["attempts"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["failed", "rate_limited", "sent"], "{sent}");
    assert_eq!(sent["attempts"][0]["status"], 503);
    assert_eq!(sent["attempts"][1]["status"], 429);
    // The 429's Retry-After was honoured: the next request came a second later or more.
    let received: Vec<Received> = endpoint.received();
    assert!(received[2].at - received[1].at >= Duration::from_millis(950), "{:?}", received[2].at - received[1].at);

    ok(server.post("/v1/messages", &sms("m-2", "2"))).await;
    let failed = final_message(&server, "m-2").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["attempts"][0]["outcome"], "rejected");
    assert!(failed["attempts"][0]["detail"].as_str().unwrap().contains("unknown number"), "{failed}");
    assert_eq!(endpoint.received().len(), 4, "a 400 is not retried");
}

pub async fn the_cheapest_route_that_meets_the_deadline_without_exceeding_a_limit(backend: Backend) {
    let fixed = Endpoint::start(vec![(200, vec![], "{}")]).await;
    let cheap = Endpoint::start(vec![(200, vec![], "{}")]).await;
    let (server, _dir) = server_with(
        backend,
        &[
            Provider {
                name: "fixed",
                url: &fixed.url,
                limits: "[{ requests = 2, per = \"PT1S\" }]",
                price: "{ fixed_monthly = 1000, capacity_monthly = 100000, currency = \"INR\" }",
            },
            Provider {
                name: "cheap",
                url: &cheap.url,
                limits: "[{ requests = 50, per = \"PT1S\" }]",
                price: "{ per_message = 0.10, currency = \"INR\" }",
            },
        ],
    )
    .await;
    // 12 messages due within 3 s: the fixed-price provider (2 a second) cannot send them all
    // in time; the rest must go through the per-message one, and none may expire.
    let deadline = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(4)).to_string();
    for i in 0..12 {
        let mut m = sms(&format!("b-{i}"), &i.to_string());
        m["deadline"] = json!(deadline);
        ok(server.post("/v1/messages", &m)).await;
    }
    let mut by = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..12 {
        let m = final_message(&server, &format!("b-{i}")).await;
        assert_eq!(m["status"], "sent", "{m}");
        *by.entry(m["provider"].as_str().unwrap().to_owned()).or_default() += 1;
        let expected_cost = if m["provider"] == "fixed" { json!(0) } else { json!(0.10) };
        assert_eq!(decimal(&m["cost"]), decimal(&expected_cost), "{m}");
    }
    assert!(by.get("fixed").copied().unwrap_or(0) >= 4, "the paid-for capacity is used first: {by:?}");
    assert!(by.get("cheap").copied().unwrap_or(0) >= 1, "the deadline needed the second provider: {by:?}");
    // Never more than 2 in any second at the fixed provider, as it received them.
    let arrivals: Vec<_> = fixed.received().iter().map(|r| r.at).collect();
    for (i, start) in arrivals.iter().enumerate() {
        let within = arrivals[i..].iter().filter(|t| **t - *start < Duration::from_millis(1000)).count();
        assert!(within <= 2, "{within} requests within a second at the fixed provider");
    }
}

pub async fn a_message_no_provider_can_send_in_time_expires_with_the_reason(backend: Backend) {
    let endpoint = Endpoint::start(vec![(200, vec![], "{}")]).await;
    let one_a_minute = [Provider {
        name: "slow",
        url: &endpoint.url,
        limits: "[{ requests = 1, per = \"PT1M\" }]",
        price: "{ per_message = 1, currency = \"INR\" }",
    }];
    let (server, _dir) = server_with(backend, &one_a_minute).await;
    let deadline = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(5)).to_string();
    for id in ["first", "second"] {
        let mut m = sms(id, "1");
        m["deadline"] = json!(deadline);
        ok(server.post("/v1/messages", &m)).await;
    }
    let (a, b) = (final_message(&server, "first").await, final_message(&server, "second").await);
    let mut statuses = [a["status"].as_str().unwrap(), b["status"].as_str().unwrap()];
    statuses.sort();
    assert_eq!(statuses, ["expired", "sent"], "{a}\n{b}");
    let expired = if a["status"] == "expired" { &a } else { &b };
    let reason = expired["attempts"].as_array().unwrap().last().unwrap()["detail"].as_str().unwrap();
    assert!(reason.contains("deadline"), "{reason}");
    assert_eq!(endpoint.received().len(), 1);
}

pub async fn a_slot_seconds_ahead_is_booked_as_sending_then_sent_in_it(backend: Backend) {
    let endpoint = Endpoint::start(vec![(200, vec![], "{}")]).await;
    let one_a_second = [Provider {
        name: "acme",
        url: &endpoint.url,
        limits: "[{ requests = 1, per = \"PT1S\" }]",
        price: "{ per_message = 0.12, currency = \"INR\" }",
    }];
    let (server, _dir) = server_with(backend, &one_a_second).await;
    let batch: Vec<Value> = (0..6).map(|i| sms(&format!("s-{i}"), &i.to_string())).collect();
    ok(server.post("/v1/messages", &json!({"messages": batch}))).await;
    // Slots a second apart: the later ones, more than 2 s ahead, wait booked on the message
    // (their jobs let go until shortly before), not in a held claim.
    // Which messages get the later slots is the claim's order: any of them.
    let booked = questline_testkit::eventually("a message sending", Duration::from_secs(30), || async {
        for i in 0..6 {
            let m = ok(server.get(&format!("/v1/messages/s-{i}"))).await;
            if m["status"] == "sending" {
                return Ok(m);
            }
        }
        Err("none is sending".to_owned())
    })
    .await;
    let booked_id = booked["id"].as_str().unwrap().to_owned();
    assert_eq!(booked["provider"], "acme", "{booked}");
    let slot: jiff::Timestamp = booked["booked_for"].as_str().unwrap().parse().unwrap();
    assert!(slot > jiff::Timestamp::now(), "{booked}");
    assert_eq!(booked["attempts"], json!([]), "a booking is not an attempt: {booked}");
    for i in 0..6 {
        let m = final_message(&server, &format!("s-{i}")).await;
        assert_eq!(m["status"], "sent", "{m}");
        assert_eq!(m["booked_for"], Value::Null, "{m}");
        let outcomes: Vec<&str> =
            m["attempts"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, ["sent"], "{m}");
    }
    let sent_at: jiff::Timestamp =
        final_message(&server, &booked_id).await["sent_at"].as_str().unwrap().parse().unwrap();
    assert!(sent_at >= slot, "sent in its slot, not before: {sent_at} < {slot}");
    // Each once, and never two within a second as the provider received them.
    let received = endpoint.received();
    let mut refs: Vec<String> = received
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["ref"].as_str().unwrap().to_owned())
        .collect();
    refs.sort();
    assert_eq!(refs, (0..6).map(|i| format!("s-{i}")).collect::<Vec<_>>());
    // (Stamped on arrival by this test's busy runtime, beside the other tests: a send that
    // left on time may be stamped some milliseconds late. The limiter's exactness is
    // checked at millisecond resolution in crates/limit.)
    let arrivals: Vec<_> = received.iter().map(|r| r.at).collect();
    for pair in arrivals.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(900), "two requests {:?} apart", pair[1] - pair[0]);
    }
}
