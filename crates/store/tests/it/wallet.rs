//! Settlement's rows: balances and their entries, entitlements, and the rewards due.

use crate::{T, TestDb, at, uid};
use questline_core::mission::spec::RewardKind;
use questline_core::reward::{Reward, RewardStatus};
use questline_core::wallet::{BalanceEntry, Entitlement};
use rust_decimal::Decimal;

fn entry(id: &str, amount: &str, after: &str, key: Option<&str>, reward: Option<&str>) -> BalanceEntry {
    BalanceEntry {
        id: id.into(),
        user_id: "u".into(),
        currency: "coins".into(),
        amount: amount.parse().unwrap(),
        balance_after: after.parse().unwrap(),
        reason: "test".into(),
        reward_id: reward.map(str::to_owned),
        idempotency_key: key.map(str::to_owned),
        expires_at: None,
        expiry_of: None,
        created_at: at(1),
    }
}

fn reward(id: &str, hold_until: i64) -> Reward {
    Reward {
        id: id.into(),
        mission_id: format!("m-{id}"),
        user_id: "u".into(),
        completion: 1,
        kind: RewardKind::Points,
        amount: Some(Decimal::from(5)),
        currency: None,
        code: None,
        name: None,
        status: RewardStatus::Pending,
        hold_until: at(hold_until),
        attempts: 0,
        settled_at: None,
        failure: None,
        expires_after: None,
        created_at: at(0),
        updated_at: at(0),
    }
}

pub async fn entries_move_a_balance_exactly_and_are_found_by_key_or_reward(db: &TestDb) {
    let store = db.open().await;
    let mut unit = store.begin().await.unwrap();
    let coins = [(uid("u"), "coins".to_owned())];
    assert_eq!(unit.lock_balances(&T, &coins, at(1)).await.unwrap(), [Decimal::ZERO]);
    unit.insert_entries(&T, &[entry("e1", "10.10", "10.10", Some("k1"), None)]).await.unwrap();
    unit.insert_entries(&T, &[entry("e2", "0.20", "10.30", None, Some("r1"))]).await.unwrap();
    assert_eq!(unit.lock_balances(&T, &coins, at(2)).await.unwrap()[0].to_string(), "10.30");
    let by_key = unit.find_entry(&T, &uid("u"), "coins", Some("k1"), None).await.unwrap();
    assert_eq!(by_key.map(|e| e.id), Some("e1".to_owned()));
    let by_reward = unit.find_entry(&T, &uid("u"), "coins", None, Some("r1")).await.unwrap();
    assert_eq!(by_reward.map(|e| e.id), Some("e2".to_owned()));
    assert_eq!(unit.find_entry(&T, &uid("u"), "gems", Some("k1"), None).await.unwrap(), None, "keys are per balance");
    // One entry per key and per reward, whatever the caller forgets to check.
    assert!(unit.insert_entries(&T, &[entry("e3", "1", "11.30", Some("k1"), None)]).await.is_err());
    drop(unit);

    let mut unit = store.begin().await.unwrap();
    let both = [(uid("u"), "coins".to_owned()), (uid("v"), "coins".to_owned())];
    assert_eq!(unit.lock_balances(&T, &both, at(1)).await.unwrap(), [Decimal::ZERO, Decimal::ZERO]);
    // Many entries in one call: each balance ends at its last entry.
    let of_v = BalanceEntry { user_id: "v".into(), ..entry("e9", "3", "3", None, None) };
    let entries = [entry("e1", "10.10", "10.10", Some("k1"), None), of_v, entry("e2", "-0.10", "10.00", None, None)];
    unit.insert_entries(&T, &entries).await.unwrap();
    unit.commit().await.unwrap();
    assert_eq!(store.balances(&T, &uid("v")).await.unwrap()[0].balance.to_string(), "3");
    let balances = store.balances(&T, &uid("u")).await.unwrap();
    assert_eq!(balances.len(), 1);
    assert_eq!((balances[0].currency.as_str(), balances[0].balance.to_string()), ("coins", "10.00".to_owned()));
    let page = store.balance_entries(&T, &uid("u"), "coins", None, 1).await.unwrap();
    assert_eq!(page.items.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["e2"]);
    let rest = store.balance_entries(&T, &uid("u"), "coins", page.next_after.as_deref(), 5).await.unwrap();
    assert_eq!((rest.items.len(), rest.items[0].amount.to_string(), rest.next_after), (1, "10.10".to_owned(), None));
    store.close().await;
}

pub async fn an_entitlement_is_granted_once(db: &TestDb) {
    let store = db.open().await;
    let badge = |mission: &str| Entitlement {
        code: "early-bird".into(),
        kind: RewardKind::Badge,
        mission_id: Some(mission.into()),
        reward_id: None,
        granted_at: at(3),
    };
    let mut unit = store.begin().await.unwrap();
    assert_eq!(unit.insert_entitlements(&T, &[(uid("u"), badge("m1")), (uid("w"), badge("m1"))]).await.unwrap(), 2);
    assert_eq!(unit.insert_entitlements(&T, &[(uid("u"), badge("m2"))]).await.unwrap(), 0);
    unit.commit().await.unwrap();
    let held = store.entitlements(&T, &uid("u")).await.unwrap();
    assert_eq!(held, vec![badge("m1")], "the first grant stays");
    assert!(store.entitlements(&T, &uid("other")).await.unwrap().is_empty());
    store.close().await;
}

pub async fn due_rewards_are_the_pending_ones_past_their_hold(db: &TestDb) {
    let store = db.open().await;
    let mut unit = store.begin().await.unwrap();
    unit.insert_rewards(&T, &[reward("late", 20), reward("soon", 5), reward("now", 10)]).await.unwrap();
    unit.commit().await.unwrap();
    let mut unit = store.begin().await.unwrap();
    let due: Vec<String> = unit.due_rewards(&T, at(10), 10).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(due, ["soon", "now"], "soonest first, the hold's end included");
    let mut granted = unit.lock_rewards(&T, &["soon".to_owned()]).await.unwrap().remove(0);
    granted.status = RewardStatus::Granted;
    granted.attempts = 1;
    granted.settled_at = Some(at(10));
    granted.updated_at = at(10);
    unit.save_settlements(&T, std::slice::from_ref(&granted)).await.unwrap();
    unit.commit().await.unwrap();
    let mut unit = store.begin().await.unwrap();
    let due: Vec<String> = unit.due_rewards(&T, at(30), 1).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(due, ["now"], "granted ones are not due, and the limit holds");
    assert_eq!(unit.lock_rewards(&T, &["soon".to_owned()]).await.unwrap(), [granted]);
    let ids = ["soon", "none", "late", "soon"].map(String::from);
    let locked: Vec<String> = unit.lock_rewards(&T, &ids).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(locked, ["late", "soon"], "those that exist, once each, in id order");
    drop(unit);
    store.close().await;
}

pub async fn expired_credits_are_found_until_marked(db: &TestDb) {
    let store = db.open().await;
    let mut unit = store.begin().await.unwrap();
    let coins = [(uid("u"), "coins".to_owned())];
    unit.lock_balances(&T, &coins, at(1)).await.unwrap();
    let soon = BalanceEntry { expires_at: Some(at(5)), ..entry("e1", "10", "10", None, None) };
    let later = BalanceEntry { expires_at: Some(at(50)), ..entry("e2", "5", "15", None, None) };
    let taken = BalanceEntry { expiry_of: Some("e1".into()), ..entry("e3", "-10", "5", None, None) };
    unit.insert_entries(&T, &[soon.clone(), later.clone()]).await.unwrap();
    assert!(unit.expiring_balances(&T, at(4), 10).await.unwrap().is_empty(), "nothing expired yet");
    assert_eq!(unit.expiring_balances(&T, at(5), 10).await.unwrap(), coins);
    let (ledger, processed) = unit.balance_ledger(&T, &uid("u"), "coins").await.unwrap();
    assert_eq!((ledger, processed.len()), (vec![soon.clone(), later.clone()], 0));

    unit.insert_entries(&T, std::slice::from_ref(&taken)).await.unwrap();
    unit.mark_expired(&T, &["e1".into()], at(6)).await.unwrap();
    // A credit's rest is taken back once, whatever the caller forgets to check.
    let again = BalanceEntry { expiry_of: Some("e1".into()), ..entry("e4", "-1", "4", None, None) };
    assert!(unit.insert_entries(&T, &[again]).await.is_err());
    drop(unit);

    let mut unit = store.begin().await.unwrap();
    unit.insert_entries(&T, &[soon, later, taken.clone()]).await.unwrap();
    unit.mark_expired(&T, &["e1".into()], at(6)).await.unwrap();
    assert!(unit.expiring_balances(&T, at(49), 10).await.unwrap().is_empty(), "e1 was dealt with");
    assert_eq!(unit.expiring_balances(&T, at(60), 10).await.unwrap(), coins);
    let (ledger, processed) = unit.balance_ledger(&T, &uid("u"), "coins").await.unwrap();
    assert_eq!(ledger.last(), Some(&taken));
    assert_eq!(processed.into_iter().collect::<Vec<_>>(), ["e1"]);
    unit.commit().await.unwrap();
    let entries = store.balance_entries(&T, &uid("u"), "coins", None, 10).await.unwrap().items;
    assert_eq!(entries[0].expiry_of.as_deref(), Some("e1"), "read back with what it took back");
    store.close().await;
}
