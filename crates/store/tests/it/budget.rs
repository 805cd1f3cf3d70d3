//! Budgets: locked, counted by the caller, written back; ending a mission bumps the revision.

use crate::{T, TestDb, at, insert_mission, mid, mission, tenant};
use questline_core::mission::MissionStatus;
use questline_store::BudgetRow;
use std::sync::Arc;

/// What the engine does with a budget (`core::batch::take_budgets`), in miniature: take one
/// if any is left, and end the mission with the last.
async fn take_one(store: &dyn questline_store::Store, secs: i64) -> bool {
    let mut unit = store.begin().await.unwrap();
    let rows = unit.lock_budgets(&T, &[mid("m")]).await.unwrap();
    let BudgetRow { granted, max_rewards, .. } = rows[0].clone();
    let taken = max_rewards.is_none_or(|max| granted < max);
    if taken {
        let spent = max_rewards == Some(granted + 1);
        unit.set_budget(&T, &mid("m"), granted + 1, spent.then(|| at(secs))).await.unwrap();
    }
    unit.commit().await.unwrap();
    taken
}

/// 16 concurrent units each take one of a budget of 5: the row lock (PostgreSQL) or the
/// single writer (SQLite) makes each count from what the previous one committed.
pub async fn concurrent_units_never_overspend(db: &TestDb) {
    let store = Arc::new(db.open().await);
    insert_mission(&**store, &T, &mission("m", MissionStatus::Active, Some(5))).await.unwrap();
    let revision = store.missions_revision(&T).await.unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.spawn(async move { take_one(&**store, 100 + i).await });
    }
    let taken = tasks.join_all().await.into_iter().filter(|&t| t).count();
    assert_eq!(taken, 5);

    let m = store.get_mission(&T, &mid("m")).await.unwrap().unwrap();
    assert_eq!(m.status, MissionStatus::Ended);
    assert_eq!(m.rewards_granted, 5);
    assert!(m.updated_at > at(0), "ending moves updated_at so a stale edit cannot revive it");
    assert_eq!(store.missions_revision(&T).await.unwrap(), revision + 1, "only the ending write bumps");
    assert!(store.active_missions(&T).await.unwrap().is_empty());
}

pub async fn set_budget_counts_and_ending_bumps_the_revision(db: &TestDb) {
    let store = db.open().await;
    let m = mission("m", MissionStatus::Active, Some(2));
    insert_mission(&*store, &T, &m).await.unwrap();
    let revision = store.missions_revision(&T).await.unwrap();

    let mut unit = store.begin().await.unwrap();
    unit.set_budget(&T, &mid("m"), 1, None).await.unwrap();
    assert_eq!(unit.missions_revision(&T).await.unwrap(), revision, "a count alone bumps nothing");
    unit.commit().await.unwrap();
    let after_one = store.get_mission(&T, &mid("m")).await.unwrap().unwrap();
    assert_eq!((after_one.status, after_one.rewards_granted), (MissionStatus::Active, 1));
    assert_eq!(after_one.updated_at, m.updated_at, "a count leaves updated_at alone");

    // A rolled-back count gives the reward back.
    let mut unit = store.begin().await.unwrap();
    unit.set_budget(&T, &mid("m"), 2, Some(at(2))).await.unwrap();
    drop(unit);
    assert_eq!(store.get_mission(&T, &mid("m")).await.unwrap().unwrap().rewards_granted, 1);

    let mut unit = store.begin().await.unwrap();
    unit.set_budget(&T, &mid("m"), 2, Some(at(3))).await.unwrap();
    // The bump and the end are visible inside the unit that made them.
    assert_eq!(unit.missions_revision(&T).await.unwrap(), revision + 1);
    assert_eq!(unit.get_mission(&T, &mid("m")).await.unwrap().unwrap().status, MissionStatus::Ended);
    assert_eq!(store.missions_revision(&T).await.unwrap(), revision, "not visible outside before commit");
    unit.commit().await.unwrap();
    let ended = store.get_mission(&T, &mid("m")).await.unwrap().unwrap();
    assert_eq!((ended.status, ended.rewards_granted, ended.updated_at), (MissionStatus::Ended, 2, at(3)));
    assert_eq!(store.missions_revision(&T).await.unwrap(), revision + 1);

    // Ending an unknown mission bumps nothing.
    let mut unit = store.begin().await.unwrap();
    unit.set_budget(&T, &mid("missing"), 1, Some(at(4))).await.unwrap();
    unit.commit().await.unwrap();
    assert_eq!(store.missions_revision(&T).await.unwrap(), revision + 1);
}

pub async fn lock_budgets_reads_known_missions_in_id_order(db: &TestDb) {
    let store = db.open().await;
    insert_mission(&*store, &T, &mission("b", MissionStatus::Active, Some(3))).await.unwrap();
    insert_mission(&*store, &T, &mission("a", MissionStatus::Active, None)).await.unwrap();
    insert_mission(&*store, &tenant("other"), &mission("c", MissionStatus::Active, None)).await.unwrap();

    let mut unit = store.begin().await.unwrap();
    unit.set_budget(&T, &mid("b"), 2, None).await.unwrap();
    let rows = unit.lock_budgets(&T, &[mid("b"), mid("missing"), mid("a"), mid("b"), mid("c")]).await.unwrap();
    assert_eq!(
        rows,
        vec![
            BudgetRow { mission_id: mid("a"), granted: 0, max_rewards: None },
            BudgetRow { mission_id: mid("b"), granted: 2, max_rewards: Some(3) },
        ],
        "by id, once each, this tenant's only, the unit's own write seen"
    );
    assert!(unit.lock_budgets(&T, &[]).await.unwrap().is_empty());
    unit.commit().await.unwrap();
}
