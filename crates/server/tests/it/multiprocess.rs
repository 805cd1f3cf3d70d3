//! Two `questline serve` processes on one PostgreSQL database, fed the same and overlapping
//! batches at once: every event counts once, the budget is never overspent, and both
//! processes report the same progress — the one computed here from the distinct events.

use crate::fixtures::{create_mission, ingest, ok, progress, rewards};
use crate::start_with;
use jiff::{SignedDuration, Timestamp};
use questline_testkit::{ServerOptions, TestServer, postgres};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;

/// Few users with many events each, so that concurrent batches often carry different new
/// events of the same user: the case where, without per-user serialization, two batches
/// would both fold onto the same stored progress and one would overwrite the other.
const USERS: usize = 6;
const PAYMENTS_PER_USER: usize = 40;
/// Clients per server, each sending every event once, in its own order and batch sizes.
const CLIENTS_PER_SERVER: usize = 3;
const LOGIN_TARGET: usize = 3;
const BUDGET: u64 = 5;

fn user(u: usize) -> String {
    format!("mp-u{u:02}")
}

/// A JSON number from its exact text (serde_json keeps it with `arbitrary_precision`).
fn number(text: &str) -> Value {
    serde_json::from_str(text).expect("a JSON number")
}

fn ago(minutes: i64) -> String {
    (Timestamp::now() - SignedDuration::from_mins(minutes)).to_string()
}

/// Payments with decimal amounts, full and partial refunds (some arriving before their
/// payment, depending on the shuffle), and logins; plus the net spend each user should end
/// with, computed from the events by the net-event rule.
fn workload() -> (Vec<Value>, BTreeMap<String, Decimal>, BTreeMap<String, usize>) {
    let mut events = Vec::new();
    let mut spend = BTreeMap::new();
    let mut logins = BTreeMap::new();
    for u in 0..USERS {
        let uid = user(u);
        let mut net = Decimal::ZERO;
        for k in 0..PAYMENTS_PER_USER {
            let id = format!("mp-pay-{u}-{k}");
            let amount = Decimal::from_str(&format!("{}.{:02}", 10 * (k % 9 + 1) + u, (7 * k + u) % 100)).unwrap();
            events.push(json!({"id": id, "type": "payment", "user_id": uid, "occurred_at": ago(60 + k as i64),
                               "attributes": {"amount": number(&amount.to_string())}}));
            let refunded = if k % 7 == 2 && u % 2 == 0 {
                events.push(json!({"id": format!("mp-ref-{u}-{k}"), "type": "refund", "user_id": uid,
                                   "occurred_at": ago(30), "reverses": id}));
                amount
            } else if k % 5 == 4 {
                let part = Decimal::from_str("5.5").unwrap();
                events.push(json!({"id": format!("mp-ref-{u}-{k}"), "type": "refund", "user_id": uid,
                                   "occurred_at": ago(30), "reverses": id, "attributes": {"amount": number("5.5")}}));
                part
            } else {
                Decimal::ZERO
            };
            if amount - refunded > Decimal::ZERO {
                net += amount - refunded;
            }
        }
        spend.insert(uid.clone(), net);
        // Every user reaches the target, so the budget runs out before they all do.
        let n = LOGIN_TARGET + u % 3;
        for k in 0..n {
            events.push(json!({"id": format!("mp-login-{u}-{k}"), "type": "login", "user_id": uid,
                               "occurred_at": ago(20 + k as i64)}));
        }
        logins.insert(uid, n);
    }
    (events, spend, logins)
}

/// Sends every event: first its own half, then the other, each shuffled, in batches of
/// random size; returns the summed `accepted` and `duplicates`.
async fn client(server: Arc<TestServer>, halves: Arc<[Vec<Value>; 2]>, own: usize, seed: u64) -> (u64, u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<&Value> = Vec::new();
    for half in [&halves[own], &halves[1 - own]] {
        let mut part: Vec<&Value> = half.iter().collect();
        part.shuffle(&mut rng);
        order.extend(part);
    }
    let (mut accepted, mut duplicates) = (0, 0);
    let mut rest = order.as_slice();
    while !rest.is_empty() {
        let (batch, tail) = rest.split_at(rng.random_range(1..=40).min(rest.len()));
        rest = tail;
        let mut batch: Vec<Value> = batch.iter().map(|e| (*e).clone()).collect();
        // Some batches carry a redelivery of their own first event.
        if rng.random_bool(0.2) {
            batch.push(batch[0].clone());
        }
        let answer = ingest(&server, &batch).await;
        assert_eq!(answer["rejected"], json!([]), "{answer}");
        accepted += answer["accepted"].as_u64().unwrap();
        duplicates += answer["duplicates"].as_u64().unwrap();
    }
    (accepted, duplicates)
}

// PostgreSQL only, by nature: SQLite is one process's embedded file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_database_keep_every_invariant() {
    if postgres::skipped("multiprocess::two_processes_on_one_database_keep_every_invariant") {
        return;
    }
    let db = postgres::fresh_database().await;
    // One after the other: the second finds the first's admin key and migrations in place.
    let a = Arc::new(start_with(ServerOptions::default().database_url(db.url())).await);
    let b = Arc::new(start_with(ServerOptions::default().database_url(db.url())).await);
    let servers = [a.clone(), b.clone()];

    create_mission(
        &a,
        &json!({
            "id": "mp-spend", "name": "Spend", "status": "active",
            "steps": [{"event_type": "payment", "aggregate": {"fn": "sum", "field": "amount"}, "target": 1000000}],
            "reward": {"kind": "points", "amount": 1}
        }),
    )
    .await;
    create_mission(
        &a,
        &json!({
            "id": "mp-logins", "name": "Three logins", "status": "active",
            "steps": [{"event_type": "login", "target": LOGIN_TARGET}],
            "reward": {"kind": "points", "amount": 10},
            "budget": {"max_rewards": BUDGET}
        }),
    )
    .await;

    let (events, spend, logins) = workload();
    let distinct = events.len() as u64;
    // Two halves with every user in both. Each process first gets its own half, so the two
    // apply different new events of the same users at the same time: without per-user
    // serialization both would fold onto the same stored progress and one would overwrite
    // the other. Then each gets the other half too: the same and overlapping batches.
    let halves: Arc<[Vec<Value>; 2]> = {
        let (even, odd): (Vec<_>, Vec<_>) = events.iter().cloned().enumerate().partition(|(i, _)| i % 2 == 0);
        Arc::new([even.into_iter().map(|(_, e)| e).collect(), odd.into_iter().map(|(_, e)| e).collect()])
    };
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS_PER_SERVER {
        for (s, server) in servers.iter().enumerate() {
            clients.spawn(client(server.clone(), halves.clone(), s, (c * 2 + s) as u64));
        }
    }
    let answers = clients.join_all().await;
    let accepted: u64 = answers.iter().map(|(a, _)| a).sum();
    assert_eq!(accepted, distinct, "each distinct event is accepted exactly once across both processes");
    assert!(answers.iter().map(|(_, d)| d).sum::<u64>() >= distinct * (2 * CLIENTS_PER_SERVER as u64 - 1));

    // Everything again, to each process: nothing is new.
    for server in &servers {
        for chunk in events.chunks(500) {
            let answer = ingest(server, chunk).await;
            assert_eq!(
                (answer["accepted"].as_u64(), answer["duplicates"].as_u64()),
                (Some(0), Some(chunk.len() as u64))
            );
        }
    }

    // Progress: what the distinct net events give, and the same from both processes.
    let mut rewarded = BTreeSet::new();
    for (uid, expected) in &spend {
        let from_a = progress(&a, uid, "mp-spend").await;
        assert_eq!(from_a, progress(&b, uid, "mp-spend").await, "{uid}: both processes agree");
        let value = Decimal::from_str(&from_a["steps"][0]["value"].to_string()).unwrap();
        assert_eq!(value, *expected, "{uid}: net spend");

        let logins_a = progress(&a, uid, "mp-logins").await;
        assert_eq!(logins_a, progress(&b, uid, "mp-logins").await, "{uid}: both processes agree");
        let live: Vec<Value> = rewards(&b, uid)
            .await
            .into_iter()
            .filter(|r| r["mission_id"] == "mp-logins" && r["status"] != "revoked")
            .collect();
        assert!(live.len() <= 1, "{uid}: one completion, at most one reward: {live:?}");
        if !live.is_empty() {
            assert!(logins[uid] >= LOGIN_TARGET, "{uid} was rewarded with {} logins", logins[uid]);
            assert_eq!(logins_a["completions"], 1, "{uid}: a reward means a completion");
            rewarded.insert(uid.clone());
        }
    }

    // The budget: spent exactly, never over, though more users reached the target.
    let completers = logins.values().filter(|&&n| n >= LOGIN_TARGET).count();
    assert!(completers > BUDGET as usize, "the workload must outrun the budget");
    assert_eq!(rewarded.len() as u64, BUDGET, "rewarded users: {rewarded:?}");
    for server in &servers {
        let mission = ok(server.get("/v1/missions/mp-logins")).await;
        assert_eq!((mission["status"].as_str(), mission["rewards_granted"].as_u64()), (Some("ended"), Some(BUDGET)));
    }

    // Stop both processes before their database goes.
    drop((servers, a, b));
    drop(db);
}
