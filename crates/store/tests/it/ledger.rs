//! The event ledger: duplicate detection, lookups, and exact attribute payloads.

use crate::{T, TestDb, at, event, received, reversal, tenant, uid};
use questline_core::event::Event;
use std::sync::Arc;

fn ids(events: &[Event]) -> Vec<&str> {
    events.iter().map(Event::id).collect()
}

pub async fn duplicates_within_a_slice_and_across_batches(db: &TestDb) {
    let store = db.open().await;

    let mut tx = store.begin().await.unwrap();
    let batch = [event("a", "u", "payment", 1), event("b", "u", "payment", 2), event("a", "u", "payment", 3)];
    assert_eq!(tx.insert_events(&T, &batch, at(10)).await.unwrap(), vec![true, true, false]);
    // The first occurrence is the one stored.
    assert_eq!(tx.events_by_id(&T, &["a".into()]).await.unwrap(), vec![received(event("a", "u", "payment", 1), 10)]);
    // Later in the same transaction.
    let again = [event("b", "u", "payment", 9), event("c", "u", "payment", 4)];
    assert_eq!(tx.insert_events(&T, &again, at(10)).await.unwrap(), vec![false, true]);
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let later = [event("c", "u", "payment", 4), event("d", "u", "payment", 5), event("a", "u", "payment", 1)];
    assert_eq!(tx.insert_events(&T, &later, at(20)).await.unwrap(), vec![false, true, false]);
    // Another tenant has its own ledger.
    assert_eq!(tx.insert_events(&tenant("other"), &[event("a", "u", "payment", 1)], at(20)).await.unwrap(), vec![true]);
    tx.commit().await.unwrap();
}

pub async fn large_batches_span_chunks_exactly(db: &TestDb) {
    let store = db.open().await;
    let mut tx = store.begin().await.unwrap();
    let stored: Vec<Event> = (0..300).map(|i| event(&format!("e{i:04}"), "u", "payment", i)).collect();
    assert!(tx.insert_events(&T, &stored, at(0)).await.unwrap().iter().all(|&new| new));
    tx.commit().await.unwrap();

    // 1200 events: every third is already stored, and the last 100 repeat ids from the
    // first chunk, so duplicates cross chunk boundaries both ways.
    let mut batch: Vec<Event> = (0..1100).map(|i| event(&format!("e{:04}", i * 3), "u", "payment", i)).collect();
    batch.extend((0..100).map(|i| event(&format!("e{:04}", i * 3), "u", "payment", 5000 + i)));
    let expected: Vec<bool> = (0..1200).map(|i| i < 1100 && i * 3 >= 300).collect();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.insert_events(&T, &batch, at(1)).await.unwrap(), expected);
    let all: Vec<String> = (0..3300).map(|i| format!("e{i:04}")).collect();
    let found = tx.events_by_id(&T, &all).await.unwrap();
    assert_eq!(found.len(), 300 + 1000, "300 stored before, 1000 new");
    tx.commit().await.unwrap();
}

pub async fn concurrent_batches_count_each_id_once(db: &TestDb) {
    let store = Arc::new(db.open().await);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8_i64 {
        let store = store.clone();
        tasks.spawn(async move {
            // Task t takes ids 10t..10t+30: each id is offered by up to three tasks.
            let batch: Vec<Event> =
                (10 * t..10 * t + 30).map(|i| event(&format!("id{i}"), "u", "payment", i)).collect();
            let mut tx = store.begin().await.unwrap();
            let new = tx.insert_events(&T, &batch, at(0)).await.unwrap();
            tx.commit().await.unwrap();
            new.iter().filter(|&&n| n).count()
        });
    }
    let total: usize = tasks.join_all().await.into_iter().sum();
    assert_eq!(total, 100, "ids 0..100 are distinct; each counts once");

    let mut tx = store.begin().await.unwrap();
    let found = tx.events_by_id(&T, &(0..110).map(|i| format!("id{i}")).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(found.len(), 100);
}

pub async fn lookups_by_id_reversal_and_user(db: &TestDb) {
    let store = db.open().await;
    let mut tx = store.begin().await.unwrap();
    let batch = [
        event("p2", "alice", "payment", 20),
        event("p1", "alice", "payment", 10),
        event("l1", "alice", "login", 15),
        event("p3", "bob", "payment", 5),
        reversal("r1", "alice", "p1", 30),
        reversal("r0", "alice", "p1", 25),
        reversal("r3", "bob", "p3", 40),
    ];
    tx.insert_events(&T, &batch, at(100)).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_eq!(ids(&tx.events_by_id(&T, &["p2".into(), "p1".into(), "nope".into()]).await.unwrap()), ["p1", "p2"]);
    assert_eq!(ids(&tx.reversals_of(&T, &["p1".into(), "p2".into()]).await.unwrap()), ["r0", "r1"]);
    assert!(tx.reversals_of(&tenant("other"), &["p1".into()]).await.unwrap().is_empty());
    let originals = tx.user_originals(&T, &uid("alice"), &["payment".into(), "refund".into()]).await.unwrap();
    assert_eq!(ids(&originals), ["p1", "p2"], "originals only, by occurred_at");
    assert_eq!(ids(&tx.user_originals(&T, &uid("alice"), &["login".into()]).await.unwrap()), ["l1"]);
    assert!(tx.user_originals(&T, &uid("alice"), &[]).await.unwrap().is_empty());
    drop(tx);

    let (originals, reversals) = store.user_ledger(&T, &uid("alice"), &["payment".into()]).await.unwrap();
    assert_eq!(ids(&originals), ["p1", "p2"]);
    assert_eq!(ids(&reversals), ["r0", "r1"]);
    let (originals, reversals) = store.user_ledger(&T, &uid("alice"), &["login".into()]).await.unwrap();
    assert_eq!((ids(&originals), ids(&reversals)), (vec!["l1"], vec![]));
}

pub async fn attributes_keep_exact_numbers(db: &TestDb) {
    let store = db.open().await;
    let attributes = r#"{"amount": 0.30, "big": 123456789012345678901234567890.5, "merchant": {"name": "Swiggy"}}"#;
    let e = event("x", "u", "payment", 1).to_builder().attributes(serde_json::from_str(attributes).unwrap()).build();
    let mut tx = store.begin().await.unwrap();
    tx.insert_events(&T, std::slice::from_ref(&e), at(0)).await.unwrap();
    let back = tx.events_by_id(&T, &["x".into()]).await.unwrap();
    assert_eq!(back, vec![received(e, 0)]);
    assert_eq!(back[0].attributes()["amount"].to_string(), "0.30");
    assert_eq!(back[0].attributes()["big"].to_string(), "123456789012345678901234567890.5");
    assert_eq!(back[0].attributes().keys().collect::<Vec<_>>(), ["amount", "big", "merchant"]);
}

pub async fn reads_do_not_wait_for_an_open_batch(db: &TestDb) {
    let store = db.open().await;
    let mut tx = store.begin().await.unwrap();
    tx.insert_events(&T, &[event("p1", "u", "payment", 1)], at(0)).await.unwrap();
    // The writer is busy; a read must answer from the last committed snapshot.
    let (originals, _) = store.user_ledger(&T, &uid("u"), &["payment".into()]).await.unwrap();
    assert!(originals.is_empty(), "uncommitted rows are invisible to readers");
    tx.commit().await.unwrap();
    let (originals, _) = store.user_ledger(&T, &uid("u"), &["payment".into()]).await.unwrap();
    assert_eq!(ids(&originals), ["p1"]);
}
