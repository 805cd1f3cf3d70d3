//! Progress and rewards inside a batch, and the user-facing reads of them.

use crate::{T, TestDb, at, mid, tenant, ts, uid};
use jiff::Timestamp;
use questline_core::event::EventKey;
use questline_core::id::{MissionId, UserId};
use questline_core::mission::spec::RewardKind;
use questline_core::progress::{ProgressState, StepState};
use questline_core::reward::{Reward, RewardStatus};
use questline_store::{MissionProgress, StoreError, StoredProgress, UserProgress};
use rust_decimal::Decimal;

/// A user's state in a mission: one step at `value`.
fn state(mission: &str, user: &str, value: &str, completions: u32, updated_at: Timestamp) -> MissionProgress {
    let state = ProgressState {
        steps: vec![StepState { value: value.parse().unwrap(), ..StepState::default() }],
        completions,
        last: Some(EventKey { at: updated_at, id: format!("{mission}-{user}") }),
        ..ProgressState::default()
    };
    MissionProgress { state, updated_at }
}

/// A user's whole progress row: these (mission, state) pairs.
fn user(user: &str, missions: &[(&str, MissionProgress)]) -> UserProgress {
    UserProgress {
        user_id: user.into(),
        missions: missions.iter().map(|(m, p)| (mid(m), p.clone())).collect(),
        version: 0,
    }
}

/// One mission of a user's row as `user_progress` reads it.
fn stored(p: &UserProgress, mission: &str) -> StoredProgress {
    let MissionProgress { state, updated_at } = p.missions[&mid(mission)].clone();
    StoredProgress { mission_id: mid(mission), user_id: p.user_id.clone(), state, updated_at }
}

/// What `lock_progress` returned, less the empty rows PostgreSQL makes for users without
/// progress (SQLite leaves them out), with versions cleared for comparing with what was
/// saved. Checks that every empty one is among `may_be_empty` and has version 0, and that
/// every saved one has a version.
fn with_progress(locked: Vec<UserProgress>, may_be_empty: &[&str]) -> Vec<UserProgress> {
    let (empty, full): (Vec<_>, Vec<_>) = locked.into_iter().partition(|p| p.missions.is_empty());
    for p in &empty {
        assert!(may_be_empty.contains(&p.user_id.as_str()), "{:?} came back empty", p.user_id);
        assert_eq!(p.version, 0, "{:?}: an empty row is as good as none", p.user_id);
    }
    full.into_iter()
        .map(|p| {
            assert!(p.version > 0, "{:?} was saved, so it has a version", p.user_id);
            UserProgress { version: 0, ..p }
        })
        .collect()
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
        hold_until: created_at,
        attempts: 0,
        settled_at: None,
        failure: None,
        expires_after: None,
        created_at,
        updated_at: created_at,
    }
}

fn key(mission: &str, user: &str) -> (MissionId, UserId) {
    (mission.into(), user.into())
}

pub async fn progress_round_trips_exactly_and_upserts(db: &TestDb) {
    let store = db.open().await;
    // 0.1 + 0.2 as decimals: exactly 0.3, and it must stay "0.3" through JSON and the database.
    let sum = Decimal::from_str_exact("0.1").unwrap() + Decimal::from_str_exact("0.2").unwrap();
    let mut first = state("m1", "u", "0", 0, ts("2024-01-01T00:00:00.000001Z"));
    first.state.steps[0].value = sum;
    let other = state("m2", "u", "123456789.000000001", 2, at(5));
    let u = user("u", &[("m1", first), ("m2", other.clone())]);
    let w = user("w", &[("m1", state("m1", "w", "1", 0, at(1))), ("m3", state("m3", "w", "7", 1, at(2)))]);

    let mut tx = store.begin().await.unwrap();
    tx.save_progress(&T, &[u.clone(), w.clone()]).await.unwrap();
    // Sorted and unique, as callers pass them; "nobody" has no row.
    let locked = tx.lock_progress(&T, &[uid("nobody"), uid("u"), uid("w")]).await.unwrap();
    let users: Vec<&str> = locked.iter().map(|p| p.user_id.as_str()).collect();
    assert!(users == ["u", "w"] || users == ["nobody", "u", "w"], "by user id: {users:?}");
    let locked = with_progress(locked, &["nobody"]);
    assert_eq!(locked, vec![u.clone(), w.clone()], "missing users are absent or empty");
    assert_eq!(locked[0].missions[&mid("m1")].state.steps[0].value.to_string(), "0.3");
    assert_eq!(locked[0].missions[&mid("m2")].state.steps[0].value.to_string(), "123456789.000000001");

    // Saving again replaces the whole row: a mission left out of it is gone.
    let updated = state("m1", "u", "0.30", 1, at(9));
    let u = user("u", &[("m1", updated.clone()), ("m2", other.clone())]);
    let w = user("w", &[("m3", state("m3", "w", "8", 2, at(10)))]);
    tx.save_progress(&T, &[u.clone(), w.clone()]).await.unwrap();
    let locked = tx.lock_progress(&T, &[uid("u"), uid("w")]).await.unwrap();
    assert_eq!(locked.iter().map(|p| p.version).collect::<Vec<_>>(), [2, 2], "each save bumps the version");
    assert_eq!(
        tx.lock_versions(&T, &[uid("nobody"), uid("u"), uid("w")]).await.unwrap(),
        [0, 2, 2],
        "versions in the order asked, 0 without a row"
    );
    assert_eq!(with_progress(locked, &[]), vec![u.clone(), w.clone()]);
    // Another tenant sees none of it.
    let elsewhere = tx.lock_progress(&tenant("other"), &[uid("u")]).await.unwrap();
    assert!(with_progress(elsewhere, &["u"]).is_empty());
    tx.commit().await.unwrap();

    // The readers see what was committed, by mission id.
    assert_eq!(store.user_progress(&T, &uid("u"), None).await.unwrap(), vec![stored(&u, "m1"), stored(&u, "m2")]);
    assert_eq!(store.user_progress(&T, &uid("u"), Some(&mid("m2"))).await.unwrap(), vec![stored(&u, "m2")]);
    assert!(store.user_progress(&T, &uid("u"), Some(&mid("m3"))).await.unwrap().is_empty());
    assert_eq!(store.user_progress(&T, &uid("w"), None).await.unwrap(), vec![stored(&w, "m3")]);
    assert!(store.user_progress(&T, &uid("nobody"), None).await.unwrap().is_empty());
    assert!(store.user_progress(&tenant("other"), &uid("u"), None).await.unwrap().is_empty());
    let m1 = store.user_progress(&T, &uid("u"), Some(&mid("m1"))).await.unwrap();
    assert_eq!(m1[0].state.steps[0].value.to_string(), "0.30", "scale survives too");
    let m2 = store.user_progress(&T, &uid("u"), Some(&mid("m2"))).await.unwrap();
    assert_eq!(m2[0].state.steps[0].value.to_string(), "123456789.000000001");

    // A later unit reads (and locks) what this one committed.
    let mut tx = store.begin().await.unwrap();
    assert_eq!(with_progress(tx.lock_progress(&T, &[uid("u")]).await.unwrap(), &[]), vec![u]);
    tx.commit().await.unwrap();
}

/// More users than one statement's worth (SQLite's chunks of 500), some with two missions.
pub async fn many_progress_rows_in_one_batch(db: &TestDb) {
    let store = db.open().await;
    let mut rows: Vec<UserProgress> = (0..1203)
        .map(|i| {
            let name = format!("u{i}");
            let mut p = user(&name, &[("m", state("m", &name, &format!("{i}.5"), 0, at(i)))]);
            if i % 3 == 0 {
                p.missions.insert(mid("n"), state("n", &name, &format!("-{i}.25"), 1, at(i + 1)));
            }
            p
        })
        .collect();
    rows.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    let names: Vec<String> = (0..1300).map(|i| format!("u{i}")).collect();
    let mut users: Vec<UserId> = names.iter().map(|n| uid(n)).collect();
    users.sort();
    let missing: Vec<&str> = names[1203..].iter().map(String::as_str).collect();

    let mut tx = store.begin().await.unwrap();
    tx.save_progress(&T, &rows).await.unwrap();
    let locked = tx.lock_progress(&T, &users).await.unwrap();
    assert!(locked.len() == 1203 || locked.len() == 1300, "{} users", locked.len());
    assert_eq!(with_progress(locked, &missing), rows);
    tx.commit().await.unwrap();

    let last = rows.iter().find(|p| p.user_id.as_str() == "u1202").unwrap();
    assert_eq!(store.user_progress(&T, &uid("u1202"), None).await.unwrap(), vec![stored(last, "m")]);
    let first = rows.iter().find(|p| p.user_id.as_str() == "u0").unwrap();
    assert_eq!(store.user_progress(&T, &uid("u0"), None).await.unwrap(), vec![stored(first, "m"), stored(first, "n")]);
}

/// A slice that repeats a user saves the later row, whole: nothing of the earlier one is
/// merged into it.
pub async fn a_repeated_user_saves_the_later_row(db: &TestDb) {
    let store = db.open().await;
    let earlier = user("u", &[("m", state("m", "u", "1", 0, at(1)))]);
    let later = user("u", &[("m2", state("m2", "u", "2", 1, at(2)))]);
    let other = user("v", &[("m", state("m", "v", "3", 0, at(3)))]);
    let mut tx = store.begin().await.unwrap();
    tx.save_progress(&T, &[earlier, other.clone(), later.clone()]).await.unwrap();
    tx.save_progress(&T, &[]).await.unwrap();
    assert_eq!(
        with_progress(tx.lock_progress(&T, &[uid("u"), uid("v")]).await.unwrap(), &[]),
        vec![later.clone(), other]
    );
    assert!(tx.lock_progress(&T, &[]).await.unwrap().is_empty());
    tx.commit().await.unwrap();
    assert_eq!(store.user_progress(&T, &uid("u"), None).await.unwrap(), vec![stored(&later, "m2")]);
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
    let revoked = tx.revoke_rewards(&T, &["c1".into(), "nope".into()], at(9)).await.unwrap();
    assert_eq!(revoked.iter().map(|r| (r.id.as_str(), r.status)).collect::<Vec<_>>(), [("c1", RewardStatus::Revoked)]);

    // Many pairs, so that SQLite's chunks are crossed too; repeats come back once.
    let mut keys: Vec<(MissionId, UserId)> = (0..1200).map(|i| key("m1", &format!("x{i}"))).collect();
    keys.extend([key("m2", "u"), key("m1", "v"), key("m1", "u"), key("m1", "u"), key("m3", "u")]);
    let live = tx.live_rewards(&T, &keys).await.unwrap();
    let ids: Vec<&str> = live.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2", "b1"]);
    assert!(tx.live_rewards(&T, &[]).await.unwrap().is_empty());
    tx.commit().await.unwrap();
}

/// A `Conflict` is an answer, not a failure of the transaction: the batch goes on and commits.
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
    assert!(tx.revoke_rewards(&T, &["g".into()], at(2)).await.unwrap().is_empty(), "granted stays");
    assert_eq!(tx.live_rewards(&T, &[key("m", "u")]).await.unwrap(), vec![granted]);
    tx.commit().await.unwrap();
}

/// Many rewards in one call (more than one statement's worth) all go in.
pub async fn insert_rewards_inserts_them_all(db: &TestDb) {
    let store = db.open().await;
    let all: Vec<Reward> = (0..450_u32)
        .map(|i| Reward {
            user_id: format!("u{}", i % 7),
            ..reward(&format!("r{i:03}"), i + 1, Some("0.30"), at(i64::from(i)))
        })
        .collect();
    let mut tx = store.begin().await.unwrap();
    tx.insert_rewards(&T, &all[..3]).await.unwrap();
    tx.insert_rewards(&T, &all[3..]).await.unwrap();
    tx.insert_rewards(&T, &[]).await.unwrap();
    let keys: Vec<(MissionId, UserId)> = (0..7).map(|u| key("m", &format!("u{u}"))).collect();
    let mut live = tx.live_rewards(&T, &keys).await.unwrap();
    live.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(live, all);
    assert!(live.iter().all(|r| r.amount.unwrap().to_string() == "0.30"), "scale survives");
    tx.commit().await.unwrap();

    let mut listed = store.user_rewards(&T, &uid("u3")).await.unwrap();
    listed.reverse();
    let of_u3: Vec<Reward> = all.iter().filter(|r| r.user_id == "u3").cloned().collect();
    assert_eq!(listed, of_u3, "newest first");
}

/// One bad reward among several (a taken id, a completion that has a live reward, or a
/// repeat within the slice) makes the call a `Conflict`, but the others are inserted and
/// the unit goes on and commits.
pub async fn insert_rewards_with_a_conflict_inserts_the_rest(db: &TestDb) {
    let store = db.open().await;
    let (r1, r2) = (reward("r1", 1, Some("5"), at(1)), reward("r2", 2, Some("5"), at(2)));
    let mut tx = store.begin().await.unwrap();
    tx.insert_rewards(&T, &[r1.clone(), r2.clone()]).await.unwrap();

    // A taken id, with a completion of its own.
    let (a, b) = (reward("a", 3, Some("1"), at(3)), reward("b", 4, Some("1"), at(4)));
    let taken_id = reward("r1", 9, Some("1"), at(9));
    let err = tx.insert_rewards(&T, &[a.clone(), taken_id, b.clone()]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // A completion with a live reward, under a new id.
    let c = reward("c", 5, Some("1"), at(5));
    let taken_completion = reward("r2-again", 2, Some("1"), at(6));
    let err = tx.insert_rewards(&T, &[taken_completion, c.clone()]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // The same new id twice in one slice: the first goes in.
    let d = reward("d", 6, Some("1"), at(7));
    let err = tx.insert_rewards(&T, &[d.clone(), reward("d", 7, Some("2"), at(8))]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // The unit is still usable: it reads, writes and commits.
    let expected = vec![r1, r2, a, b, c, d];
    assert_eq!(tx.live_rewards(&T, &[key("m", "u")]).await.unwrap(), expected, "by completion");
    assert_eq!(tx.insert_events(&T, &[crate::event("e", "u", "payment", 1)], at(10)).await.unwrap(), vec![true]);
    let e = reward("e", 8, None, at(11));
    tx.insert_rewards(&T, std::slice::from_ref(&e)).await.unwrap();
    tx.commit().await.unwrap();

    let mut listed = store.user_rewards(&T, &uid("u")).await.unwrap();
    listed.reverse();
    let mut all = expected;
    all.push(e);
    assert_eq!(listed, all, "the rows of the failed calls that did not conflict were committed");
    let (originals, _) = store.user_ledger(&T, &uid("u"), &["payment".into()]).await.unwrap();
    assert_eq!(originals.len(), 1);
}

/// `live_completions` answers which (mission, user, completion) have a live reward: revoked
/// ones and other tenants do not count; keys past one statement's worth are all answered.
pub async fn live_completions_name_the_rewarded_ones(db: &TestDb) {
    let store = db.open().await;
    let mut tx = store.begin().await.unwrap();
    tx.insert_rewards(
        &T,
        &[reward("a", 1, Some("1"), at(1)), reward("b", 2, Some("1"), at(2)), reward("c", 3, None, at(3))],
    )
    .await
    .unwrap();
    tx.insert_reward(&tenant("other"), &reward("o", 4, None, at(4))).await.unwrap();
    tx.revoke_rewards(&T, &["b".into()], at(5)).await.unwrap();
    let mut keys: Vec<(MissionId, UserId, u32)> = (0..700).map(|i| (mid("m"), uid(&format!("x{i}")), 1)).collect();
    keys.extend([1, 2, 3, 4, 5].map(|c| (mid("m"), uid("u"), c)));
    let mut live = tx.live_completions(&T, &keys).await.unwrap();
    live.sort();
    assert_eq!(live, [(mid("m"), uid("u"), 1), (mid("m"), uid("u"), 3)]);
    assert!(tx.live_completions(&T, &[]).await.unwrap().is_empty());
    tx.commit().await.unwrap();
}
