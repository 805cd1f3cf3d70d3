//! Missions: conflicts, pagination, optimistic updates, draft deletion, revisions.

use crate::{T, TestDb, insert_mission, mid, mission, tenant, ts, uid, update_mission};
use questline_core::id::{MissionId, TenantId};
use questline_core::mission::MissionStatus;
use questline_store::{Store, StoreError};

async fn delete_draft(store: &dyn Store, tenant: &TenantId, id: &MissionId) -> bool {
    let mut unit = store.begin().await.unwrap();
    let deleted = unit.delete_draft_mission(tenant, id).await.unwrap();
    unit.commit().await.unwrap();
    deleted
}

pub async fn insert_round_trips_and_a_taken_id_conflicts(db: &TestDb) {
    let store = db.open().await;
    let mut m = mission("m1", MissionStatus::Draft, Some(7));
    m.spec.description = Some("exact 0.1 + 0.2".into());
    m.spec.steps[0].target = "512.30".parse().unwrap();
    m.created_at = ts("2024-03-01T12:00:00.123456789Z");
    m.updated_at = m.created_at;
    insert_mission(&*store, &T, &m).await.unwrap();
    let back = store.get_mission(&T, &mid("m1")).await.unwrap().unwrap();
    assert_eq!(back, m);
    assert_eq!(back.spec.steps[0].target.to_string(), "512.30");

    let revision = store.missions_revision(&T).await.unwrap();
    let err = insert_mission(&*store, &T, &mission("m1", MissionStatus::Active, None)).await.unwrap_err();
    assert!(matches!(&err, StoreError::Conflict(msg) if msg.contains("m1")), "{err:?}");
    assert_eq!(store.missions_revision(&T).await.unwrap(), revision, "a failed insert bumps nothing");
    assert_eq!(store.get_mission(&T, &mid("m1")).await.unwrap().unwrap(), m, "the original is untouched");
    assert_eq!(store.get_mission(&T, &mid("nope")).await.unwrap(), None);
}

pub async fn tenants_are_separate_and_created_on_first_write(db: &TestDb) {
    let store = db.open().await;
    assert_eq!(store.missions_revision(&tenant("acme")).await.unwrap(), 0);
    insert_mission(&*store, &tenant("acme"), &mission("m1", MissionStatus::Active, None)).await.unwrap();
    // The same id in another tenant is no conflict.
    insert_mission(&*store, &T, &mission("m1", MissionStatus::Draft, None)).await.unwrap();
    assert_eq!(store.missions_revision(&tenant("acme")).await.unwrap(), 1);
    assert_eq!(store.active_missions(&tenant("acme")).await.unwrap().len(), 1);
    assert!(store.active_missions(&T).await.unwrap().is_empty());
    assert_eq!(store.get_mission(&tenant("acme"), &mid("m1")).await.unwrap().unwrap().status, MissionStatus::Active);
}

pub async fn lists_page_by_id(db: &TestDb) {
    let store = db.open().await;
    for (i, id) in ["e", "a", "d", "b", "c"].into_iter().enumerate() {
        let status = if i % 2 == 0 { MissionStatus::Active } else { MissionStatus::Draft };
        insert_mission(&*store, &T, &mission(id, status, None)).await.unwrap();
    }
    let ids = |page: &questline_store::Page<_>| {
        page.items.iter().map(|m: &questline_core::mission::Mission| m.id.clone()).collect::<Vec<_>>()
    };

    let first = store.list_missions(&T, None, None, 2).await.unwrap();
    assert_eq!((ids(&first), first.next_after.as_deref()), (vec!["a".into(), "b".into()], Some("b")));
    let second = store.list_missions(&T, None, first.next_after.as_deref(), 2).await.unwrap();
    assert_eq!((ids(&second), second.next_after.as_deref()), (vec!["c".into(), "d".into()], Some("d")));
    let last = store.list_missions(&T, None, second.next_after.as_deref(), 2).await.unwrap();
    assert_eq!((ids(&last), last.next_after), (vec!["e".into()], None));
    // Exactly a page left: no promise of another.
    let exact = store.list_missions(&T, None, Some("c"), 2).await.unwrap();
    assert_eq!((ids(&exact), exact.next_after), (vec!["d".into(), "e".into()], None));

    let active = store.list_missions(&T, Some(MissionStatus::Active), None, 10).await.unwrap();
    assert_eq!((ids(&active), active.next_after), (vec!["c".into(), "d".into(), "e".into()], None));
    let drafts = store.list_missions(&T, Some(MissionStatus::Draft), Some("a"), 10).await.unwrap();
    assert_eq!(ids(&drafts), vec!["b".to_owned()]);
    let active_ids: Vec<_> = store.active_missions(&T).await.unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(active_ids, ["c", "d", "e"]);
}

/// Ids compare as bytes, as in Rust: not as the database's locale would sort them (which
/// may ignore punctuation or fold case). Pagination and the fold order depend on it.
pub async fn ids_sort_bytewise_whatever_the_locale(db: &TestDb) {
    let store = db.open().await;
    let bytewise = ["A", "B", "a", "a-b", "a_b", "ab", "z", "\u{e9}"];
    for id in ["z", "a_b", "B", "\u{e9}", "a", "ab", "A", "a-b"] {
        insert_mission(&*store, &T, &mission(id, MissionStatus::Active, None)).await.unwrap();
    }
    let listed: Vec<String> =
        store.list_missions(&T, None, None, 100).await.unwrap().items.into_iter().map(|m| m.id).collect();
    assert_eq!(listed, bytewise);
    let after: Vec<String> =
        store.list_missions(&T, None, Some("a"), 2).await.unwrap().items.into_iter().map(|m| m.id).collect();
    assert_eq!(after, ["a-b", "a_b"]);
    let active: Vec<String> = store.active_missions(&T).await.unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(active, bytewise);

    // Events at the same instant fold in id order.
    let mut tx = store.begin().await.unwrap();
    let events: Vec<_> = ["z", "a_b", "B", "\u{e9}", "a", "ab", "A", "a-b"]
        .into_iter()
        .map(|id| crate::event(id, "u", "payment", 7))
        .collect();
    tx.insert_events(&T, &events, crate::at(8)).await.unwrap();
    let originals = tx.user_originals(&T, &uid("u"), &["payment".into()]).await.unwrap();
    assert_eq!(originals.iter().map(|e| e.id()).collect::<Vec<_>>(), bytewise);
    tx.commit().await.unwrap();
}

pub async fn updates_are_optimistic_and_never_touch_the_grant_count(db: &TestDb) {
    let store = db.open().await;
    let original = mission("m", MissionStatus::Draft, Some(3));
    insert_mission(&*store, &T, &original).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.set_budget(&T, &mid("m"), 1, None).await.unwrap();
    tx.commit().await.unwrap();
    let revision = store.missions_revision(&T).await.unwrap();

    let mut edited = original.clone();
    edited.status = MissionStatus::Active;
    edited.spec.budget = None;
    edited.rewards_granted = 99;
    edited.activated_at = Some(ts("2024-02-01T00:00:00Z"));
    edited.updated_at = ts("2024-02-01T00:00:00.5Z");
    assert!(update_mission(&*store, &T, &edited, original.updated_at).await.unwrap());
    assert_eq!(store.missions_revision(&T).await.unwrap(), revision + 1);
    let stored = store.get_mission(&T, &mid("m")).await.unwrap().unwrap();
    assert_eq!(stored, with_grants(&edited, 1));

    // A second writer holding the old version loses.
    let mut stale = original.clone();
    stale.spec.name = "stale".into();
    stale.updated_at = ts("2024-02-02T00:00:00Z");
    assert!(!update_mission(&*store, &T, &stale, original.updated_at).await.unwrap());
    assert_eq!(store.missions_revision(&T).await.unwrap(), revision + 1);
    assert_eq!(store.get_mission(&T, &mid("m")).await.unwrap().unwrap().spec.name, edited.spec.name);
    // A vanished mission is "changed meanwhile" too.
    assert!(
        !update_mission(&*store, &T, &mission("gone", MissionStatus::Draft, None), original.updated_at).await.unwrap()
    );

    // The budget column follows the spec: with the budget removed, it is unlimited.
    let mut tx = store.begin().await.unwrap();
    let budgets = tx.lock_budgets(&T, &[mid("m")]).await.unwrap();
    assert_eq!((budgets[0].granted, budgets[0].max_rewards), (1, None));
}

fn with_grants(m: &questline_core::mission::Mission, granted: u64) -> questline_core::mission::Mission {
    questline_core::mission::Mission { rewards_granted: granted, ..m.clone() }
}

pub async fn only_drafts_are_deleted(db: &TestDb) {
    let store = db.open().await;
    insert_mission(&*store, &T, &mission("draft", MissionStatus::Draft, None)).await.unwrap();
    insert_mission(&*store, &T, &mission("live", MissionStatus::Active, None)).await.unwrap();
    let revision = store.missions_revision(&T).await.unwrap();

    assert!(!delete_draft(&*store, &T, &mid("live")).await);
    assert!(!delete_draft(&*store, &T, &mid("nope")).await);
    assert_eq!(store.missions_revision(&T).await.unwrap(), revision);
    assert!(delete_draft(&*store, &T, &mid("draft")).await);
    assert_eq!(store.missions_revision(&T).await.unwrap(), revision + 1);
    assert_eq!(store.get_mission(&T, &mid("draft")).await.unwrap(), None);
    assert!(store.get_mission(&T, &mid("live")).await.unwrap().is_some());
    // The id is free again.
    insert_mission(&*store, &T, &mission("draft", MissionStatus::Draft, None)).await.unwrap();
}
