//! Budget takes: never overspent under concurrency, and the last take ends the mission.

use crate::{T, TestDb, at, mission};
use questline_core::mission::MissionStatus;
use std::sync::Arc;

pub async fn concurrent_takes_never_overspend(db: &TestDb) {
    let store = Arc::new(db.open().await);
    store.insert_mission(T, &mission("m", MissionStatus::Active, Some(5))).await.unwrap();
    let revision = store.missions_revision(T).await.unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut tx = store.begin().await.unwrap();
            let taken = tx.take_budget(T, "m", at(100 + i)).await.unwrap();
            tx.commit().await.unwrap();
            taken
        });
    }
    let taken = tasks.join_all().await.into_iter().filter(|&t| t).count();
    assert_eq!(taken, 5);

    let m = store.get_mission(T, "m").await.unwrap().unwrap();
    assert_eq!(m.status, MissionStatus::Ended);
    assert_eq!(m.rewards_granted, 5);
    assert!(m.updated_at > at(0), "ending moves updated_at so a stale edit cannot revive it");
    assert_eq!(store.missions_revision(T).await.unwrap(), revision + 1, "only the ending take bumps");
    assert!(store.active_missions(T).await.unwrap().is_empty());
}

pub async fn takes_leave_the_mission_alone_until_the_last(db: &TestDb) {
    let store = db.open().await;
    let m = mission("m", MissionStatus::Active, Some(2));
    store.insert_mission(T, &m).await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert!(tx.take_budget(T, "m", at(1)).await.unwrap());
    let revision = tx.missions_revision(T).await.unwrap();
    tx.commit().await.unwrap();
    let after_one = store.get_mission(T, "m").await.unwrap().unwrap();
    assert_eq!((after_one.status, after_one.rewards_granted), (MissionStatus::Active, 1));
    assert_eq!(after_one.updated_at, m.updated_at);
    assert_eq!(store.missions_revision(T).await.unwrap(), revision);

    // A rolled-back take gives the reward back.
    let mut tx = store.begin().await.unwrap();
    assert!(tx.take_budget(T, "m", at(2)).await.unwrap());
    drop(tx);

    let mut tx = store.begin().await.unwrap();
    assert!(tx.take_budget(T, "m", at(3)).await.unwrap());
    // The revision bump is visible inside the transaction that made it.
    assert_eq!(tx.missions_revision(T).await.unwrap(), revision + 1);
    assert!(!tx.take_budget(T, "m", at(4)).await.unwrap());
    tx.commit().await.unwrap();
    let ended = store.get_mission(T, "m").await.unwrap().unwrap();
    assert_eq!((ended.status, ended.rewards_granted, ended.updated_at), (MissionStatus::Ended, 2, at(3)));
}

pub async fn no_budget_means_unlimited_and_unknown_missions_have_none(db: &TestDb) {
    let store = db.open().await;
    store.insert_mission(T, &mission("free", MissionStatus::Active, None)).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    for i in 0..20 {
        assert!(tx.take_budget(T, "free", at(i)).await.unwrap());
    }
    assert!(!tx.take_budget(T, "missing", at(0)).await.unwrap());
    assert!(!tx.take_budget("other", "free", at(0)).await.unwrap());
    tx.commit().await.unwrap();
    let m = store.get_mission(T, "free").await.unwrap().unwrap();
    assert_eq!((m.status, m.rewards_granted), (MissionStatus::Active, 20));
}
