//! Progress and rewards inside a batch, and the user-facing reads of them.

use crate::{T, TestDb, at, mid, tenant, ts, uid};
use jiff::Timestamp;
use questline_core::event::EventKey;
use questline_core::id::{MissionId, UserId};
use questline_core::mission::spec::RewardKind;
use questline_core::progress::{ProgressState, StepState};
use questline_core::reward::{Reward, RewardStatus};
use questline_store::{StoreError, StoredProgress};
use rust_decimal::Decimal;

fn progress(mission: &str, user: &str, value: &str, completions: u32, updated_at: Timestamp) -> StoredProgress {
    let state = ProgressState {
        steps: vec![StepState { value: value.parse().unwrap(), ..StepState::default() }],
        completions,
        last: Some(EventKey { at: updated_at, id: format!("{mission}-{user}") }),
        ..ProgressState::default()
    };
    StoredProgress { mission_id: mission.into(), user_id: user.into(), state, updated_at }
}

fn reward(id: &str, completion: u32, amount: Option<&str>, created_at: Timestamp) -> Reward {
    Reward {
        id: id.into(),
        mission_id: "m".into(),
        user_id: "u".into(),
        completion,
        kind: RewardKind::Cash,
        amount: amount.map(|a| a.parse().unwrap()),
        currency: Some("INR".into()),
        code: None,
        name: None,
        status: RewardStatus::Pending,
        created_at,
        updated_at: created_at,
    }
}

fn key(mission: &str, user: &str) -> (MissionId, UserId) {
    (mission.into(), user.into())
}

pub async fn progress_round_trips_exactly_and_upserts(db: &TestDb) {
    let store = db.open().await;
    // 0.1 + 0.2 as decimals: exactly 0.3, and it must stay "0.3" through JSON and SQLite.
    let sum = Decimal::from_str_exact("0.1").unwrap() + Decimal::from_str_exact("0.2").unwrap();
    let mut first = progress("m1", "u", "0", 0, ts("2024-01-01T00:00:00.000001Z"));
    first.state.steps[0].value = sum;
    let other = progress("m2", "u", "123456789.000000001", 2, at(5));

    let mut tx = store.begin().await.unwrap();
    tx.save_progress(&T, &[first.clone(), other.clone()]).await.unwrap();
    let loaded =
        tx.load_progress(&T, &[key("m1", "u"), key("m1", "u"), key("m1", "nobody"), key("m2", "u")]).await.unwrap();
    let mut loaded_sorted = loaded.clone();
    loaded_sorted.sort_by(|a, b| a.mission_id.cmp(&b.mission_id));
    assert_eq!(loaded_sorted, vec![first.clone(), other.clone()], "repeated and missing pairs are handled");
    let value = &loaded_sorted[0].state.steps[0].value;
    assert_eq!(value.to_string(), "0.3");
    assert_eq!(loaded_sorted[1].state.steps[0].value.to_string(), "123456789.000000001");

    // Saving again replaces the row.
    let updated = progress("m1", "u", "0.30", 1, at(9));
    tx.save_progress(&T, std::slice::from_ref(&updated)).await.unwrap();
    assert_eq!(tx.load_progress(&T, &[key("m1", "u")]).await.unwrap(), vec![updated.clone()]);
    assert!(tx.load_progress(&tenant("other"), &[key("m1", "u")]).await.unwrap().is_empty());
    tx.commit().await.unwrap();

    assert_eq!(store.user_progress(&T, &uid("u"), None).await.unwrap(), vec![updated.clone(), other.clone()]);
    assert_eq!(store.user_progress(&T, &uid("u"), Some(&mid("m2"))).await.unwrap(), vec![other]);
    assert!(store.user_progress(&T, &uid("nobody"), None).await.unwrap().is_empty());
    let stored = store.user_progress(&T, &uid("u"), Some(&mid("m1"))).await.unwrap();
    assert_eq!(stored[0].state.steps[0].value.to_string(), "0.30", "scale survives too");
}

pub async fn many_progress_rows_in_one_batch(db: &TestDb) {
    let store = db.open().await;
    let rows: Vec<StoredProgress> =
        (0..1203).map(|i| progress("m", &format!("u{i}"), &format!("{i}.5"), 0, at(i))).collect();
    let keys: Vec<_> = (0..1300).map(|i| key("m", &format!("u{i}"))).collect();
    let mut tx = store.begin().await.unwrap();
    tx.save_progress(&T, &rows).await.unwrap();
    let mut loaded = tx.load_progress(&T, &keys).await.unwrap();
    loaded.sort_by_key(|p| p.updated_at);
    assert_eq!(loaded, rows);
    tx.commit().await.unwrap();
}

pub async fn a_repeated_pair_saves_the_later_row(db: &TestDb) {
    let store = db.open().await;
    let earlier = progress("m", "u", "1", 0, at(1));
    let later = progress("m", "u", "2", 1, at(2));
    let other = progress("m", "v", "3", 0, at(3));
    let mut tx = store.begin().await.unwrap();
    tx.save_progress(&T, &[earlier, other.clone(), later.clone()]).await.unwrap();
    tx.save_progress(&T, &[]).await.unwrap();
    let mut loaded = tx.load_progress(&T, &[key("m", "u"), key("m", "v")]).await.unwrap();
    loaded.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    assert_eq!(loaded, vec![later, other]);
    assert!(tx.load_progress(&T, &[]).await.unwrap().is_empty());
    tx.commit().await.unwrap();
}

pub async fn rewards_live_revoked_and_listed_newest_first(db: &TestDb) {
    let store = db.open().await;
    let first = reward("r1", 1, Some("0.30"), ts("2024-01-01T00:00:00Z"));
    let second = Reward {
        kind: RewardKind::Badge,
        amount: None,
        name: Some("Reviewer".into()),
        ..reward("r2", 2, None, ts("2024-01-01T00:00:00.5Z"))
    };
    let mut tx = store.begin().await.unwrap();
    tx.insert_reward(&T, &second).await.unwrap();
    tx.insert_reward(&T, &first).await.unwrap();
    assert_eq!(
        tx.live_rewards(&T, &[key("m", "u")]).await.unwrap(),
        vec![first.clone(), second.clone()],
        "by completion"
    );
    assert_eq!(tx.live_rewards(&T, &[key("m", "u")]).await.unwrap()[0].amount.unwrap().to_string(), "0.30");

    // One live reward per completion.
    let err = tx.insert_reward(&T, &reward("r1b", 1, Some("1"), at(3))).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    tx.revoke_rewards(&T, &["r1".into()], at(7)).await.unwrap();
    assert_eq!(tx.live_rewards(&T, &[key("m", "u")]).await.unwrap(), vec![second.clone()]);
    // Once revoked, the completion may earn a reward again.
    let again = reward("r1c", 1, Some("1"), at(8));
    tx.insert_reward(&T, &again).await.unwrap();
    tx.commit().await.unwrap();

    let listed = store.user_rewards(&T, &uid("u")).await.unwrap();
    let revoked = Reward { status: RewardStatus::Revoked, updated_at: at(7), ..first };
    // Newest first; 00.5Z is after 00Z although "." sorts before "Z" as text.
    assert_eq!(listed, vec![again, second, revoked]);
    assert!(store.user_rewards(&T, &uid("nobody")).await.unwrap().is_empty());
}

/// A `Conflict` is an answer, not a failure of the transaction: the batch goes on and commits.
/// One call answers for many (mission, user) pairs, in (mission, user, completion) order,
/// leaving out revoked rewards, other tenants and pairs without rewards.
pub async fn live_rewards_of_many_pairs_in_one_call(db: &TestDb) {
    let store = db.open().await;
    let of = |id: &str, mission: &str, user: &str, completion: u32| Reward {
        mission_id: mission.into(),
        user_id: user.into(),
        ..reward(id, completion, Some("1"), at(i64::from(completion)))
    };
    let mut tx = store.begin().await.unwrap();
    let rewards = [of("a2", "m1", "u", 2), of("a1", "m1", "u", 1), of("b1", "m2", "u", 1), of("c1", "m1", "v", 1)];
    for r in &rewards {
        tx.insert_reward(&T, r).await.unwrap();
    }
    tx.insert_reward(&tenant("other"), &of("o1", "m1", "u", 1)).await.unwrap();
    assert_eq!(tx.revoke_rewards(&T, &["c1".into(), "nope".into()], at(9)).await.unwrap(), 1);

    // Many pairs, so that SQLite's chunks are crossed too; repeats come back once.
    let mut keys: Vec<(MissionId, UserId)> = (0..1200).map(|i| key("m1", &format!("x{i}"))).collect();
    keys.extend([key("m2", "u"), key("m1", "v"), key("m1", "u"), key("m1", "u"), key("m3", "u")]);
    let live = tx.live_rewards(&T, &keys).await.unwrap();
    let ids: Vec<&str> = live.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2", "b1"]);
    assert!(tx.live_rewards(&T, &[]).await.unwrap().is_empty());
    tx.commit().await.unwrap();
}

pub async fn a_conflict_leaves_the_batch_usable(db: &TestDb) {
    let store = db.open().await;
    let first = reward("r1", 1, Some("5"), at(1));
    let mut tx = store.begin().await.unwrap();
    tx.insert_reward(&T, &first).await.unwrap();
    let err = tx.insert_reward(&T, &first).await.unwrap_err();
    assert!(matches!(&err, StoreError::Conflict(msg) if msg.contains("r1")), "{err:?}");
    assert_eq!(tx.insert_events(&T, &[crate::event("e", "u", "payment", 1)], at(2)).await.unwrap(), vec![true]);
    tx.commit().await.unwrap();
    assert_eq!(store.user_rewards(&T, &uid("u")).await.unwrap(), vec![first]);
    let (originals, _) = store.user_ledger(&T, &uid("u"), &["payment".into()]).await.unwrap();
    assert_eq!(originals.len(), 1);
}

pub async fn only_pending_rewards_are_revoked(db: &TestDb) {
    let store = db.open().await;
    let granted = Reward { status: RewardStatus::Granted, ..reward("g", 1, Some("5"), at(1)) };
    let mut tx = store.begin().await.unwrap();
    tx.insert_reward(&T, &granted).await.unwrap();
    assert_eq!(tx.revoke_rewards(&T, &["g".into()], at(2)).await.unwrap(), 0, "granted stays");
    assert_eq!(tx.live_rewards(&T, &[key("m", "u")]).await.unwrap(), vec![granted]);
    tx.commit().await.unwrap();
}
