//! `POST /v1/events`: validation per event, exactly-once counting, reversals.

use crate::fixtures::*;
use crate::start;
use questline_testkit::{Backend, expect_problem, send};
use serde_json::{Value, json};

pub async fn one_bad_event_never_sinks_its_batch(backend: Backend) {
    let server = start(backend).await;
    create_mission(&server, &swiggy("swiggy-500")).await;
    let future = (jiff::Timestamp::now() + jiff::SignedDuration::from_mins(10)).to_string();
    let batch = [
        payment("ok-1", "u1", json!(200), 1),
        json!({"id": "bad-1", "type": "payment", "user_id": "u1"}),
        json!({"id": "x".repeat(129), "type": "payment", "user_id": "u1", "occurred_at": hours_ago(1)}),
        json!({"id": "bad-3", "type": "payment", "user_id": "u1", "occurred_at": future}),
        json!({"id": "bad-4", "type": "payment", "user_id": "u1", "occurred_at": hours_ago(1), "attributes": "amount=5"}),
        json!({"id": "bad-5", "type": "payment", "user_id": "u1", "occurred_at": hours_ago(1),
               "attributes": {"blob": "x".repeat(17 * 1024)}}),
        json!({"id": "bad-6", "type": "payment", "user_id": "u1", "occurred_at": "yesterday"}),
        json!(42),
        payment("ok-2", "u1", json!(100), 1),
    ];
    let r = ingest(&server, &batch).await;
    assert_eq!(r["accepted"], 2);
    assert_eq!(r["duplicates"], 0);
    let rejected = r["rejected"].as_array().unwrap();
    let by_index: Vec<(u64, &str)> =
        rejected.iter().map(|r| (r["index"].as_u64().unwrap(), r["error"].as_str().unwrap())).collect();
    assert_eq!(
        by_index,
        [
            (1, "occurred_at: required"),
            (2, "id: longer than 128 characters"),
            (3, "occurred_at: more than 5 minutes in the future"),
            (4, "attributes: must be a JSON object"),
            (5, "attributes: larger than 16384 bytes"),
            (6, "occurred_at: not an RFC 3339 timestamp"),
            (7, "event: must be a JSON object"),
        ]
    );
    assert_eq!(rejected[0]["id"], "bad-1");
    assert_eq!(progress(&server, "u1", "swiggy-500").await["steps"][0]["value"], json!(300));
}

pub async fn batch_shape_is_checked(backend: Backend) {
    let server = start(backend).await;
    let single = ok(server.post("/v1/events", &payment("solo", "u1", json!(1), 1))).await;
    assert_eq!(single["accepted"], 1);
    let p =
        expect_problem(send(server.post("/v1/events", &json!({"id": "s", "type": "t", "user_id": "u"}))).await, 422)
            .await;
    assert_eq!(p["errors"][0]["pointer"], "/occurred_at");
    expect_problem(send(server.post("/v1/events", &json!({"events": []}))).await, 422).await;
    let too_many: Vec<Value> = (0..1001).map(|i| payment(&format!("e{i}"), "u", json!(1), 1)).collect();
    expect_problem(send(server.post("/v1/events", &json!({"events": too_many}))).await, 422).await;
    let thousand: Vec<Value> = (0..1000).map(|i| payment(&format!("e{i}"), "u", json!(1), 1)).collect();
    assert_eq!(ingest(&server, &thousand).await["accepted"], 1000);
    let not_json = server
        .admin(reqwest::Method::POST, "/v1/events")
        .header("content-type", "application/json")
        .body("{\"events\": [");
    expect_problem(send(not_json).await, 400).await;
}

pub async fn an_event_counts_once_however_often_it_arrives(backend: Backend) {
    let server = start(backend).await;
    create_mission(&server, &swiggy("swiggy-500")).await;
    let e = payment("p-1", "u1", json!(120), 2);
    let r = ingest(&server, &[e.clone(), e.clone()]).await;
    assert_eq!((r["accepted"].as_u64(), r["duplicates"].as_u64()), (Some(1), Some(1)));
    let r = ingest(&server, std::slice::from_ref(&e)).await;
    assert_eq!(r["duplicates"], 1);

    // The same 50 events from 8 clients at once: each counts once in all.
    let batch: Vec<Value> = (0..50).map(|i| payment(&format!("c-{i}"), "u2", json!(100), 3)).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let request = server.post("/v1/events", &json!({"events": batch}));
        tasks.spawn(async move { ok(request).await });
    }
    let mut accepted = 0;
    while let Some(r) = tasks.join_next().await {
        accepted += r.unwrap()["accepted"].as_u64().unwrap();
    }
    assert_eq!(accepted, 50);
    assert_eq!(progress(&server, "u1", "swiggy-500").await["steps"][0]["value"], json!(120));
    // 500 reached on the fifth event; the rest don't add to a finished mission.
    assert_eq!(rewards(&server, "u2").await.len(), 1);
}

pub async fn reversals_take_back_exactly_what_they_reverse(backend: Backend) {
    let server = start(backend).await;
    create_mission(&server, &swiggy("swiggy-500")).await;

    // Completed, then a full refund: back under the target, reward revoked.
    ingest(&server, &[payment("a1", "alice", json!(300), 5), payment("a2", "alice", json!(250), 4)]).await;
    let p = progress(&server, "alice", "swiggy-500").await;
    assert_eq!(p["status"], "completed");
    assert_eq!(rewards(&server, "alice").await[0]["status"], "pending");
    ingest(&server, &[refund("ar", "alice", "a2", None)]).await;
    let p = progress(&server, "alice", "swiggy-500").await;
    assert_eq!(
        (p["status"].as_str(), &p["steps"][0]["value"], &p["completions"]),
        (Some("in_progress"), &json!(300), &json!(0))
    );
    let r = rewards(&server, "alice").await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["status"], "revoked");
    // Completing again earns a new reward.
    ingest(&server, &[payment("a3", "alice", json!(200), 3)]).await;
    let statuses: Vec<Value> = rewards(&server, "alice").await.iter().map(|r| r["status"].clone()).collect();
    assert!(statuses.contains(&json!("pending")) && statuses.contains(&json!("revoked")), "{statuses:?}");

    // A partial refund re-evaluates the filter on the net amount: 150 - 60 = 90 < 100.
    ingest(&server, &[payment("b1", "bob", json!(150), 5), payment("b2", "bob", json!(200), 4)]).await;
    ingest(&server, &[refund("br", "bob", "b1", Some(json!(60)))]).await;
    assert_eq!(progress(&server, "bob", "swiggy-500").await["steps"][0]["value"], json!(200));
    // Two partial refunds of one payment add up: 400 - 100 - 50 = 250.
    ingest(&server, &[payment("b3", "bob", json!(400), 3), refund("br2", "bob", "b3", Some(json!(100)))]).await;
    ingest(&server, &[refund("br3", "bob", "b3", Some(json!(50)))]).await;
    assert_eq!(progress(&server, "bob", "swiggy-500").await["steps"][0]["value"], json!(450));

    // A refund that arrives before its payment: the payment never counts.
    ingest(&server, &[refund("cr", "carol", "c1", None)]).await;
    ingest(&server, &[payment("c1", "carol", json!(600), 2)]).await;
    let p = progress(&server, "carol", "swiggy-500").await;
    assert_eq!(p["status"], "not_started", "{p}");
    assert!(rewards(&server, "carol").await.is_empty());

    // A late event (older than what was folded) lands where it belongs in the window.
    ingest(&server, &[payment("d2", "dave", json!(200), 1)]).await;
    ingest(&server, &[payment("d1", "dave", json!(200), 24 * 9)]).await;
    let p = progress(&server, "dave", "swiggy-500").await;
    assert_eq!(p["steps"][0]["value"], json!(200), "the 9-day-old payment's window lapsed: {p}");
}

pub async fn ten_tenths_reach_one(backend: Backend) {
    let server = start(backend).await;
    create_mission(
        &server,
        &json!({"id": "tenths", "name": "t", "status": "active",
        "steps": [{"event_type": "payment", "aggregate": {"fn": "sum", "field": "amount"}, "target": 1}],
        "reward": {"kind": "points", "amount": 0.3}}),
    )
    .await;
    let events: Vec<Value> = (0..10).map(|i| payment(&format!("t{i}"), "u", json!(0.1), 1)).collect();
    for e in events {
        ingest(&server, &[e]).await;
    }
    let p = progress(&server, "u", "tenths").await;
    assert_eq!(p["status"], "completed");
    assert_eq!(p["steps"][0]["value"], json!(1));
    assert_eq!(rewards(&server, "u").await[0]["amount"], json!(0.3));
}

pub async fn absurd_amounts_neither_fail_the_batch_nor_stop_ingest(backend: Backend) {
    let server = start(backend).await;
    create_mission(
        &server,
        &json!({"id": "cashback", "name": "c", "status": "active",
        "steps": [{"event_type": "payment", "aggregate": {"fn": "sum", "field": "amount"}, "target": 1000}],
        "reward": {"kind": "cash", "percent": 5, "cap": 100, "currency": "INR"}}),
    )
    .await;
    let r = ingest(&server, &[payment("huge-1", "u", json!(7e28), 2), payment("huge-2", "u", json!(7e28), 1)]).await;
    assert_eq!(r["accepted"], 2);
    assert_eq!(rewards(&server, "u").await[0]["amount"], json!(100), "cashback capped");
    // Ingest still works for everyone else.
    assert_eq!(ingest(&server, &[payment("small", "v", json!(10), 1)]).await["accepted"], 1);
    assert_eq!(progress(&server, "v", "cashback").await["steps"][0]["value"], json!(10));
}

pub async fn a_stray_reversal_by_another_user_hides_nothing(backend: Backend) {
    let server = start(backend).await;
    create_mission(&server, &swiggy("swiggy-500")).await;
    ingest(&server, &[payment("big", "u", json!(600), 2)]).await;
    let r = ingest(&server, &[refund("real", "u", "big", None), refund("stray", "v", "big", None)]).await;
    // Its original is known and is another user's: refused with the reason, not recorded.
    assert_eq!(r["accepted"], 1, "{r}");
    assert_eq!(
        r["rejected"],
        json!([{"index": 1, "id": "stray", "error": "reverses: \"big\" is another user's event"}])
    );
    let p = progress(&server, "u", "swiggy-500").await;
    assert_eq!((p["status"].as_str(), &p["steps"][0]["value"]), (Some("not_started"), &json!(0)), "{p}");
    assert_eq!(rewards(&server, "u").await[0]["status"], "revoked");
}

/// Text one backend cannot store (PostgreSQL has no U+0000; its indexes cap row size) is
/// refused per event, with a reason, on every backend: the rest of the batch still counts.
pub async fn text_a_backend_cannot_store_is_rejected_per_event(backend: Backend) {
    let server = start(backend).await;
    create_mission(&server, &swiggy("swiggy-500")).await;
    let at = hours_ago(1);
    let batch = [
        json!({"id": "nul-\u{0}", "type": "payment", "user_id": "u1", "occurred_at": at}),
        json!({"id": "nul-user", "type": "payment", "user_id": "u\u{0}1", "occurred_at": at}),
        json!({"id": "nul-type", "type": "pay\u{0}ment", "user_id": "u1", "occurred_at": at}),
        json!({"id": "nul-rev", "type": "refund", "user_id": "u1", "occurred_at": at, "reverses": "p\u{0}"}),
        json!({"id": "long-user", "type": "payment", "user_id": "u".repeat(3000), "occurred_at": at}),
        payment("ok-1", "u1", json!(200), 1),
    ];
    let r = ingest(&server, &batch).await;
    let errors: Vec<&str> = r["rejected"].as_array().unwrap().iter().map(|r| r["error"].as_str().unwrap()).collect();
    assert_eq!(
        errors,
        [
            "id: must not contain NUL (U+0000)",
            "user_id: must not contain NUL (U+0000)",
            "type: must not contain NUL (U+0000)",
            "reverses: must not contain NUL (U+0000)",
            "user_id: longer than 128 characters",
        ]
    );
    assert_eq!(r["accepted"], 1, "{r}");
    assert_eq!(progress(&server, "u1", "swiggy-500").await["steps"][0]["value"], 200);
}

/// PostgreSQL only, by nature: only there does a request's batch go to several lanes (one per
/// user hash), so that one part can fail while another commits. A trigger the test installs
/// makes one user's insert fail inside the database; the answer must say which events are in
/// the ledger, and sending the request again must complete it.
#[tokio::test]
async fn postgres_a_partly_recorded_request_says_which_events_were_recorded() {
    use questline_testkit::postgres;
    use sqlx::{Connection, Executor};
    if postgres::skipped("events::postgres_a_partly_recorded_request_says_which_events_were_recorded") {
        return;
    }
    let db = postgres::fresh_database().await;
    let server = crate::start_with(questline_testkit::ServerOptions::default().database_url(db.url())).await;
    create_mission(&server, &swiggy("swiggy-500")).await;
    let mut conn = sqlx::PgConnection::connect(db.url()).await.unwrap();
    conn.execute(
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.user_id = 'poison' THEN RAISE EXCEPTION 'poisoned for the test'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION poison();",
    )
    .await
    .unwrap();

    let mut batch: Vec<Value> = (0..16).map(|i| payment(&format!("e{i}"), &format!("u{i}"), json!(150), 1)).collect();
    batch.push(payment("p", "poison", json!(150), 1));
    batch.push(json!({"id": "bad"}));
    let response = send(server.post("/v1/events", &json!({"events": batch}))).await;
    let body = expect_problem(response, 503).await;
    assert_eq!(body["type"], "https://questline.dev/problems/partially-recorded", "{body}");
    let recorded: Vec<u64> = body["recorded"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap()).collect();
    let not_recorded: Vec<u64> = body["not_recorded"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap()).collect();
    assert_eq!(body["rejected"], json!([17]), "{body}");
    assert!(not_recorded.contains(&16), "{body}");
    assert!(!recorded.is_empty(), "16 users over 4 lanes: some are in other lanes than poison's: {body}");
    assert_eq!(recorded.len() + not_recorded.len(), 17, "{body}");
    for i in 0..16u64 {
        let value = progress(&server, &format!("u{i}"), "swiggy-500").await["steps"][0]["value"].clone();
        let expected = if recorded.contains(&i) { json!(150) } else { json!(0) };
        assert_eq!(value, expected, "event {i}: {body}");
    }

    // Cured, the same request again completes it: what was recorded is a duplicate.
    conn.execute("DROP TRIGGER poison ON events").await.unwrap();
    let again = ingest(&server, &batch).await;
    assert_eq!(again["accepted"], json!(not_recorded.len()), "{again}");
    assert_eq!(again["duplicates"], json!(recorded.len()), "{again}");
}

/// A reversal that can never apply is refused when its original is known: under another
/// user's id, or naming a reversal. One that arrives before its original is accepted (it
/// waits); if the original turns out to be another user's, it is ignored and counted.
pub async fn reversals_that_can_never_apply_are_refused_with_the_reason(backend: Backend) {
    let server = start(backend).await;
    create_mission(&server, &swiggy("swiggy-500")).await;
    ingest(&server, &[payment("p1", "u", json!(300), 2)]).await;
    ingest(&server, &[refund("r1", "u", "p1", Some(json!(100)))]).await;
    let r = ingest(
        &server,
        &[
            refund("of-a-reversal", "u", "r1", None),
            refund("in-batch-stray", "v", "p2", None),
            payment("p2", "u", json!(250), 1),
            refund("early", "v", "p3", None),
        ],
    )
    .await;
    let errors: Vec<(u64, &str)> = r["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["error"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errors,
        [
            (0, "reverses: \"r1\" is itself a reversal; only originals are reversed"),
            (1, "reverses: \"p2\" is another user's event"),
        ]
    );
    assert_eq!(r["accepted"], 2, "{r}");
    // A refused reversal was not recorded: sent again under the right user, it counts.
    let again = ingest(&server, &[refund("in-batch-stray", "u", "p2", None)]).await;
    assert_eq!(again["accepted"], 1, "{again}");
    assert_eq!(progress(&server, "u", "swiggy-500").await["steps"][0]["value"], 200);
    // The early reversal waits; its original, another user's, arrives later: ignored.
    ingest(&server, &[payment("p3", "w", json!(600), 1)]).await;
    assert_eq!(progress(&server, "w", "swiggy-500").await["status"], "completed");
}

/// U+0000 in a path segment or a key's name never reaches a database that cannot store it:
/// lookups answer as for any id that names nothing, and a key name is refused with a pointer.
pub async fn nul_in_paths_and_names_is_answered_not_failed(backend: Backend) {
    let server = start(backend).await;
    create_mission(&server, &swiggy("swiggy-500")).await;
    let body = expect_problem(send(server.get("/v1/missions/a%00b")).await, 404).await;
    assert_eq!(body["type"], "https://questline.dev/problems/mission-not-found", "{body}");
    let missions = ok(server.get("/v1/users/u%00x/missions")).await;
    assert_eq!(missions["items"][0]["status"], "not_started", "{missions}");
    assert_eq!(ok(server.get("/v1/users/u%00x/missions/swiggy-500")).await["status"], "not_started");
    assert_eq!(ok(server.get("/v1/users/u%00x/rewards")).await["items"], json!([]));
    let body =
        expect_problem(send(server.post("/v1/keys", &json!({"name": "a\u{0}b", "role": "read"}))).await, 422).await;
    assert_eq!(body["errors"][0]["pointer"], "/name", "{body}");
    let body = expect_problem(send(server.get("/v1/messages/a%00b")).await, 404).await;
    assert_eq!(body["type"], "https://questline.dev/problems/message-not-found", "{body}");
    let body = expect_problem(send(server.delete("/v1/webhooks/a%00b")).await, 404).await;
    assert_eq!(body["type"], "https://questline.dev/problems/webhook-not-found", "{body}");
    // A cursor that decodes to such text ("a\0b", base64url) is not one this API returned.
    let body = expect_problem(send(server.get("/v1/missions?cursor=YQBi")).await, 422).await;
    assert_eq!(body["errors"][0]["pointer"], "query/cursor", "{body}");
}

/// A number in `attributes` that no exact decimal holds is refused per event with its
/// pointer, instead of being accepted and silently adding nothing.
pub async fn numbers_no_exact_decimal_holds_are_rejected_per_event(backend: Backend) {
    let server = start(backend).await;
    create_mission(&server, &swiggy("swiggy-500")).await;
    // Parsed from text: `json!` would go through f64 and lose what is being tested.
    let number = |text: &str| serde_json::from_str::<Value>(text).unwrap();
    let nested = json!({"id": "nested", "type": "payment", "user_id": "u1", "occurred_at": hours_ago(1),
                        "attributes": {"amount": 200, "merchant": "swiggy", "cart": [{"price": number("1e-400")}]}});
    let batch = [
        payment("huge", "u1", number("1e400"), 1),
        payment("negative-huge", "u1", number("-1e400"), 1),
        payment("tiny", "u1", number("1e-400"), 1),
        payment("thirty-digits", "u1", number("123456789012345678901234567890"), 1),
        nested,
        payment("max", "u2", number("79228162514264337593543950335"), 1),
        payment("fine", "u1", number("500.000000000000000000000000000000"), 1),
    ];
    let r = ingest(&server, &batch).await;
    assert_eq!(r["accepted"], 2, "{r}");
    let errors: Vec<(u64, &str)> = r["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["error"].as_str().unwrap()))
        .collect();
    let reason = questline_core::decimal::NOT_EXACT;
    let amount = format!("attributes.amount: {reason}");
    assert_eq!(
        errors,
        [
            (0, amount.as_str()),
            (1, amount.as_str()),
            (2, amount.as_str()),
            (3, amount.as_str()),
            (4, format!("attributes.cart.0.price: {reason}").as_str()),
        ]
    );
    assert_eq!(progress(&server, "u1", "swiggy-500").await["steps"][0]["value"], json!(500));
    assert_eq!(progress(&server, "u2", "swiggy-500").await["status"], "completed");
    // A single event is answered as a problem, with the pointer.
    let p =
        expect_problem(send(server.post("/v1/events", &payment("solo", "u1", number("1e400"), 1))).await, 422).await;
    assert_eq!((&p["errors"][0]["pointer"], &p["errors"][0]["detail"]), (&json!("/attributes/amount"), &json!(reason)));
}

/// A string is never a number: `"250"` meets no numeric filter and adds nothing to a sum,
/// but the event is accepted (another mission may read it as text).
pub async fn a_string_is_never_a_number(backend: Backend) {
    let server = start(backend).await;
    create_mission(
        &server,
        &json!({"id": "sum", "name": "s", "status": "active",
        "steps": [{"event_type": "payment", "aggregate": {"fn": "sum", "field": "amount"}, "target": 1000}],
        "reward": {"kind": "points", "amount": 1}}),
    )
    .await;
    create_mission(
        &server,
        &json!({"id": "big-payment", "name": "b", "status": "active",
        "steps": [{"event_type": "payment", "filters": [{"field": "amount", "op": "gte", "value": 100}], "target": 1}],
        "reward": {"kind": "points", "amount": 1}}),
    )
    .await;
    create_mission(
        &server,
        &json!({"id": "text", "name": "t", "status": "active",
        "steps": [{"event_type": "payment", "filters": [{"field": "amount", "op": "eq", "value": "250"}], "target": 1}],
        "reward": {"kind": "points", "amount": 1}}),
    )
    .await;
    let r =
        ingest(&server, &[payment("as-text", "u", json!("250"), 1), payment("as-number", "v", json!(250), 1)]).await;
    assert_eq!(r["accepted"], 2, "{r}");
    let u = |mission: &'static str| progress(&server, "u", mission);
    assert_eq!(u("sum").await["steps"][0]["value"], json!(0));
    assert_eq!(u("big-payment").await["status"], "not_started");
    assert_eq!(u("text").await["status"], "completed");
    let v = |mission: &'static str| progress(&server, "v", mission);
    assert_eq!(v("sum").await["steps"][0]["value"], json!(250));
    assert_eq!(v("big-payment").await["status"], "completed");
    assert_eq!(v("text").await["status"], "not_started");
}

/// Any RFC 3339 timestamp parses; a valid one outside the range questline accepts is refused
/// for its range: in the future for `occurred_at`, out of range before 1970.
pub async fn event_times_follow_the_timestamp_rule(backend: Backend) {
    let server = start(backend).await;
    create_mission(&server, &swiggy("swiggy-500")).await;
    let at = |id: &str, occurred_at: &str| {
        let mut e = payment(id, "u", json!(250), 1);
        e["occurred_at"] = json!(occurred_at);
        e
    };
    let fine = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1)).strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let batch = [
        at("year-9999", "9999-12-31T23:59:59Z"),
        at("year-0", "0000-01-01T00:00:00Z"),
        at("not-a-time", "2026-02-30T00:00:00Z"),
        at("twelve-digits", &format!("{fine}.123456789012Z")),
        payment("plain", "u", json!(250), 2),
    ];
    let r = ingest(&server, &batch).await;
    assert_eq!(r["accepted"], 2, "{r}");
    let errors: Vec<&str> = r["rejected"].as_array().unwrap().iter().map(|r| r["error"].as_str().unwrap()).collect();
    assert_eq!(
        errors,
        [
            "occurred_at: more than 5 minutes in the future",
            &format!("occurred_at: {}", questline_core::time::OUT_OF_RANGE),
            "occurred_at: not an RFC 3339 timestamp",
        ]
    );
    assert_eq!(progress(&server, "u", "swiggy-500").await["steps"][0]["value"], json!(500));
}
