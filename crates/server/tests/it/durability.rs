//! Nothing acknowledged is lost: kill -9 mid-stream, restart, and every acknowledged event is
//! still in the ledger with its effect. On SQLite that is the file's durability (WAL,
//! synchronous commits); on PostgreSQL, that the answer comes only after the commit.

use crate::fixtures::*;
use crate::start;
use questline_testkit::Backend;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

pub async fn kill_9_loses_nothing_acknowledged(backend: Backend) {
    let mut server = start(backend).await;
    create_mission(
        &server,
        &json!({"id": "count", "name": "count", "status": "active", "repeat": {"max_completions": null},
        "steps": [{"event_type": "tap", "target": 1000000}], "reward": {"kind": "badge"}}),
    )
    .await;

    // Four writers stream batches until the process dies under them.
    let acknowledged: Arc<Mutex<Vec<Vec<Value>>>> = Arc::default();
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..4 {
        let acked = acknowledged.clone();
        let http = reqwest::Client::new();
        let url = server.url("/v1/events");
        let key = server.admin_key.clone().unwrap();
        writers.spawn(async move {
            for b in 0..10_000 {
                let batch: Vec<Value> = (0..50)
                    .map(|i| {
                        json!({"id": format!("w{w}-b{b}-{i}"), "type": "tap", "user_id": format!("user-{}", i % 7),
                                    "occurred_at": hours_ago(0)})
                    })
                    .collect();
                let sent = http.post(&url).bearer_auth(&key).json(&json!({"events": batch})).send().await;
                match sent {
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push(batch),
                    _ => return, // the server is gone
                }
            }
        });
    }
    // Kill once a good number of batches are in.
    let deadline = std::time::Instant::now() + questline_testkit::DEADLINE;
    while acknowledged.lock().unwrap().len() < 40 {
        assert!(std::time::Instant::now() < deadline, "writers made no progress");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.kill();
    while writers.join_next().await.is_some() {}
    server.restart().await;

    let acked = acknowledged.lock().unwrap().clone();
    let total: usize = acked.iter().map(Vec::len).sum();
    let mut per_user = std::collections::BTreeMap::<String, u64>::new();
    for batch in &acked {
        // Every acknowledged event is already in the ledger: resending it is a duplicate.
        let r = ingest(&server, batch).await;
        assert_eq!(r["duplicates"].as_u64(), Some(batch.len() as u64), "a batch acknowledged before the kill was lost");
        for e in batch {
            *per_user.entry(e["user_id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    assert!(total >= 40 * 50);
    // Progress holds at least every acknowledged event (events in flight at the kill may
    // have committed without their answer arriving: the client retries those).
    for (user, n) in per_user {
        let value = progress(&server, &user, "count").await["steps"][0]["value"].as_u64().unwrap();
        assert!(value >= n, "{user}: progress {value} < acknowledged {n}");
    }
}
