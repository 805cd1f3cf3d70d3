//! The business layer without HTTP: a [`Service`] on a real SQLite file, with a clock the test
//! sets, driven the way a broker source or a worker will drive it.

use jiff::Timestamp;
use questline_core::event::Event;
use questline_core::id::{MissionId, TenantId, UserId};
use questline_service::ingest::{BatchConfig, Outcome, Recorded};
use questline_service::{Clock, Service, ServiceError};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// A clock that says what the test tells it.
struct TestClock(Mutex<Timestamp>);

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

async fn service(dir: &tempfile::TempDir, now: &str) -> (Service, Arc<TestClock>) {
    let url = format!("sqlite://{}", dir.path().join("q.db").display());
    let store = questline_store::connect(&url).await.unwrap();
    let clock = Arc::new(TestClock(Mutex::new(ts(now))));
    (Service::new(store, BatchConfig::default(), clock.clone()), clock)
}

fn payment(id: &str, user: &str, amount: u32, at: &str) -> Value {
    json!({"id": id, "type": "payment", "user_id": user, "occurred_at": at,
           "attributes": {"amount": amount}})
}

fn mission() -> Value {
    json!({"id": "spend-500", "name": "Spend 500", "status": "active",
           "steps": [{"event_type": "payment", "aggregate": {"fn": "sum", "field": "amount"}, "target": 500}],
           "reward": {"kind": "cash", "amount": 50, "currency": "INR"}, "budget": {"max_rewards": 1}})
}

#[tokio::test]
async fn a_batch_applied_directly_counts_once_and_the_budget_ends_the_mission() {
    let dir = tempfile::tempdir().unwrap();
    let (service, _clock) = service(&dir, "2026-11-22T10:00:00Z").await;
    let tenant = TenantId::default_tenant();
    let created = service.create_mission(&tenant, mission()).await.unwrap();
    assert_eq!(created.created_at, ts("2026-11-22T10:00:00Z"), "the service's clock stamps what it makes");

    let now = ts("2026-11-22T10:00:00Z");
    let events: Vec<Event> =
        [payment("p1", "u1", 300, "2026-11-22T09:00:00Z"), payment("p2", "u1", 250, "2026-11-22T09:30:00Z")]
            .iter()
            .map(|v| Event::parse(v, now).unwrap())
            .collect();
    let applied = service.apply_batch(&tenant, &events).await.unwrap();
    assert_eq!(applied.outcomes, vec![Recorded::New, Recorded::New]);
    assert_eq!((applied.completions, applied.rewards_granted), (1, 1));
    let again = service.apply_batch(&tenant, &events).await.unwrap();
    assert_eq!(again.outcomes, vec![Recorded::Duplicate, Recorded::Duplicate], "a redelivered batch is all duplicates");
    assert_eq!(again.completions, 0);

    let progress = service.user_mission(&tenant, &UserId::new("u1"), &MissionId::new("spend-500")).await.unwrap();
    assert_eq!(progress.completions, 1);
    let mission = service.mission(&tenant, &MissionId::new("spend-500")).await.unwrap();
    assert_eq!(mission.status.as_str(), "ended", "the grant that spent the budget ended the mission");
    assert_eq!(mission.rewards_granted, 1);
}

#[tokio::test]
async fn ingest_judges_the_future_by_the_service_clock_and_rejects_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let (service, clock) = service(&dir, "2026-11-22T10:00:00Z").await;
    let tenant = TenantId::default_tenant();
    let raw = [payment("early", "u1", 10, "2026-11-22T10:30:00Z"), json!({"id": "bad", "type": "payment"})];
    let outcomes = service.ingest(&tenant, &raw).await.unwrap();
    assert!(matches!(&outcomes[0], Outcome::Rejected(e) if e.pointer == "/occurred_at"), "{outcomes:?}");
    assert!(matches!(&outcomes[1], Outcome::Rejected(e) if e.pointer == "/user_id"), "{outcomes:?}");

    *clock.0.lock().unwrap() = ts("2026-11-22T10:30:00Z");
    let outcomes = service.ingest(&tenant, &raw[..1]).await.unwrap();
    assert_eq!(outcomes, vec![Outcome::Accepted], "half an hour later the same event is no longer in the future");
    assert_eq!(service.ingest(&tenant, &raw[..1]).await.unwrap(), vec![Outcome::Duplicate]);
}

#[tokio::test]
async fn shutdown_drains_the_lanes_and_then_refuses_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("q.db").display());
    let store = questline_store::connect(&url).await.unwrap();
    let clock = Arc::new(TestClock(Mutex::new(ts("2026-11-22T10:00:00Z"))));
    // A long linger: the lane is still gathering its batch when shutdown begins.
    let batches = BatchConfig { linger: std::time::Duration::from_millis(200), ..BatchConfig::default() };
    let service = Arc::new(Service::new(store, batches, clock));
    let tenant = TenantId::default_tenant();
    // Requests in flight when shutdown starts are still committed and answered.
    let mut inflight = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (service, tenant) = (service.clone(), tenant.clone());
        inflight.spawn(async move {
            service.ingest(&tenant, &[payment(&format!("e{i}"), "u1", 1, "2026-11-22T09:00:00Z")]).await
        });
    }
    // On this one-threaded runtime every request runs until it waits for its answer, i.e.
    // until its events are in the lane's queue, before this test goes on.
    tokio::task::yield_now().await;
    service.shutdown().await;
    let mut answered = 0;
    while let Some(result) = inflight.join_next().await {
        match result.unwrap() {
            Ok(outcomes) => {
                assert_eq!(outcomes, vec![Outcome::Accepted]);
                answered += 1;
            }
            Err(e) => panic!("a request handed over before shutdown must be applied: {e:?}"),
        }
    }
    assert_eq!(answered, 20, "every request in flight was drained");
    let ledger = service.store().user_ledger(&tenant, &UserId::new("u1"), &["payment".to_owned()]).await.unwrap().0;
    assert_eq!(ledger.len(), answered, "every accepted event is in the ledger, and nothing else");
    let late = service.ingest(&tenant, &[payment("late", "u1", 1, "2026-11-22T09:00:00Z")]).await;
    assert!(matches!(late, Err(ServiceError::ShuttingDown)), "{late:?}");
}

/// A request whose events go to several lanes commits in several transactions: when one of
/// them fails, the answer says exactly which events were recorded, never "failed" for events
/// that are in the ledger.
#[tokio::test]
async fn a_request_split_over_lanes_says_which_events_were_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("q.db").display());
    let store = questline_store::connect(&url).await.unwrap();
    let clock = Arc::new(TestClock(Mutex::new(ts("2026-11-22T10:00:00Z"))));
    let service = Service::new(store, BatchConfig { lanes: 4, ..BatchConfig::default() }, clock);
    // A real failure inside the database for one user's events, whatever lane they take.
    let mut unit = service.store().begin().await.unwrap();
    let questline_store::Connection::Sqlite(conn) = unit.connection() else { unreachable!("a SQLite store") };
    sqlx::query(
        "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.user_id = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'poisoned for the test'); END",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    unit.commit().await.unwrap();

    let tenant = TenantId::default_tenant();
    let mut raw: Vec<Value> =
        (0..12).map(|i| payment(&format!("e{i}"), &format!("u{i}"), 1, "2026-11-22T09:00:00Z")).collect();
    raw.push(payment("p", "poison", 1, "2026-11-22T09:00:00Z"));
    let outcomes = service.ingest(&tenant, &raw).await.unwrap();
    assert!(matches!(outcomes[12], Outcome::NotApplied(_)), "{outcomes:?}");
    let recorded: Vec<usize> = (0..raw.len()).filter(|&i| outcomes[i] == Outcome::Accepted).collect();
    assert!(!recorded.is_empty(), "12 users over 4 lanes: some are in other lanes than poison's: {outcomes:?}");
    for (i, outcome) in outcomes.iter().enumerate() {
        let user = UserId::new(raw[i]["user_id"].as_str().unwrap());
        let in_ledger =
            !service.store().user_ledger(&tenant, &user, &["payment".to_owned()]).await.unwrap().0.is_empty();
        assert_eq!(in_ledger, *outcome == Outcome::Accepted, "event {i}: {outcome:?}");
    }

    // Nothing recorded at all: the plain failure.
    let only_poison = service.ingest(&tenant, &[payment("p2", "poison", 1, "2026-11-22T09:00:00Z")]).await;
    assert!(matches!(only_poison, Err(ServiceError::Internal(_))), "{only_poison:?}");
}

// --- settlement ---

fn event_at(value: Value, now: Timestamp) -> Event {
    Event::parse(&value, now).unwrap()
}

fn read(id: &str, user: &str, at: &str) -> Value {
    json!({"id": id, "type": "article_read", "user_id": user, "occurred_at": at})
}

fn reward_mission(id: &str, target: u32, reward: Value) -> Value {
    json!({"id": id, "name": id, "status": "active",
           "steps": [{"event_type": "article_read", "target": target}], "reward": reward})
}

async fn only_reward(service: &Service, user: &str) -> questline_core::reward::Reward {
    let rewards = service.user_rewards(&TenantId::default_tenant(), &UserId::new(user)).await.unwrap();
    assert_eq!(rewards.len(), 1, "{rewards:?}");
    rewards.into_iter().next().unwrap()
}

#[tokio::test]
async fn an_unlock_is_settled_once_into_an_entitlement_and_cash_waits_for_its_fulfilment() {
    use questline_core::reward::RewardStatus;
    use questline_service::wallet::Settled;
    let dir = tempfile::tempdir().unwrap();
    let (service, _clock) = service(&dir, "2026-11-22T10:00:00Z").await;
    let tenant = TenantId::default_tenant();
    service
        .create_mission(&tenant, reward_mission("read-3", 3, json!({"kind": "unlock", "code": "pro"})))
        .await
        .unwrap();
    service
        .create_mission(&tenant, reward_mission("read-1", 1, json!({"kind": "cash", "amount": 5, "currency": "INR"})))
        .await
        .unwrap();
    let now = ts("2026-11-22T10:00:00Z");
    let reads: Vec<Event> =
        (1..=3).map(|i| event_at(read(&format!("r{i}"), "u1", "2026-11-22T09:00:00Z"), now)).collect();
    service.apply_batch(&tenant, &reads).await.unwrap();

    let rewards = service.user_rewards(&tenant, &UserId::new("u1")).await.unwrap();
    let unlock = rewards.iter().find(|r| r.mission_id == "read-3").unwrap();
    let cash = rewards.iter().find(|r| r.mission_id == "read-1").unwrap();
    assert_eq!((unlock.status, unlock.hold_until), (RewardStatus::Pending, now), "no hold: due at once");

    assert_eq!(service.settle_reward(&tenant, &unlock.id).await.unwrap(), Settled::Granted);
    assert_eq!(service.settle_reward(&tenant, &unlock.id).await.unwrap(), Settled::AlreadyDone(RewardStatus::Granted));
    assert_eq!(service.settle_reward(&tenant, &cash.id).await.unwrap(), Settled::AwaitsFulfilment);
    assert_eq!(service.settle_reward(&tenant, "no-such-reward").await.unwrap(), Settled::NotFound);

    let entitlements = service.entitlements(&tenant, &UserId::new("u1")).await.unwrap();
    assert_eq!(entitlements.len(), 1, "settled once: {entitlements:?}");
    assert_eq!((entitlements[0].code.as_str(), entitlements[0].mission_id.as_deref()), ("pro", Some("read-3")));
    let rewards = service.user_rewards(&tenant, &UserId::new("u1")).await.unwrap();
    let unlock = rewards.iter().find(|r| r.mission_id == "read-3").unwrap();
    assert_eq!((unlock.status, unlock.attempts, unlock.settled_at), (RewardStatus::Granted, 1, Some(now)));
    let cash = rewards.iter().find(|r| r.mission_id == "read-1").unwrap();
    assert_eq!(cash.status, RewardStatus::Pending, "cash is the fulfilment webhook's to grant");
}

#[tokio::test]
async fn a_reversal_during_the_hold_revokes_and_after_settlement_it_does_not() {
    use questline_core::reward::RewardStatus;
    use questline_service::wallet::Settled;
    let dir = tempfile::tempdir().unwrap();
    let (service, clock) = service(&dir, "2026-11-22T10:00:00Z").await;
    let tenant = TenantId::default_tenant();
    let points = json!({"kind": "points", "amount": 7.5, "currency": "gems", "hold": "PT24H"});
    service.create_mission(&tenant, reward_mission("read-2", 2, points)).await.unwrap();
    let now = ts("2026-11-22T10:00:00Z");
    let batch = |user: &str| -> Vec<Event> {
        (1..=2).map(|i| event_at(read(&format!("{user}-r{i}"), user, "2026-11-22T09:00:00Z"), now)).collect()
    };
    service.apply_batch(&tenant, &batch("held")).await.unwrap();
    service.apply_batch(&tenant, &batch("kept")).await.unwrap();
    let held = only_reward(&service, "held").await;
    assert_eq!(held.hold_until, ts("2026-11-23T10:00:00Z"));
    assert_eq!(service.settle_reward(&tenant, &held.id).await.unwrap(), Settled::NotDue(held.hold_until));

    // During the hold, a reversal takes the completion back: revoked, never settled.
    let reversal = json!({"id": "rev-1", "type": "article_read", "user_id": "held",
                          "occurred_at": "2026-11-22T09:30:00Z", "reverses": "held-r1"});
    service.apply_batch(&tenant, &[event_at(reversal, now)]).await.unwrap();
    assert_eq!(only_reward(&service, "held").await.status, RewardStatus::Revoked);

    *clock.0.lock().unwrap() = ts("2026-11-23T10:00:00Z");
    assert_eq!(service.settle_due(&tenant, 100).await.unwrap(), 1, "only the reward still pending");
    assert!(service.balances(&tenant, &UserId::new("held")).await.unwrap().is_empty());
    let balances = service.balances(&tenant, &UserId::new("kept")).await.unwrap();
    assert_eq!(balances.len(), 1);
    assert_eq!((balances[0].currency.as_str(), balances[0].balance.to_string()), ("gems", "7.5".to_owned()));
    let kept = only_reward(&service, "kept").await;
    let entries = service.balance_entries(&tenant, &UserId::new("kept"), "gems", None, 10).await.unwrap();
    assert_eq!(entries.items.len(), 1);
    assert_eq!(entries.items[0].reward_id.as_deref(), Some(kept.id.as_str()));

    // After settlement a reversal no longer takes the reward back.
    let reversal = json!({"id": "rev-2", "type": "article_read", "user_id": "kept",
                          "occurred_at": "2026-11-22T09:30:00Z", "reverses": "kept-r1"});
    service.apply_batch(&tenant, &[event_at(reversal, now)]).await.unwrap();
    assert_eq!(only_reward(&service, "kept").await.status, RewardStatus::Granted);
}

#[tokio::test]
async fn a_balance_never_goes_below_zero_and_an_idempotency_key_writes_once() {
    use questline_service::wallet::NewEntry;
    let dir = tempfile::tempdir().unwrap();
    let (service, _clock) = service(&dir, "2026-11-22T10:00:00Z").await;
    let tenant = TenantId::default_tenant();
    let user = UserId::new("u1");
    let entry = |amount: &str, key: Option<&str>| NewEntry {
        amount: amount.parse().unwrap(),
        reason: "test".into(),
        idempotency_key: key.map(str::to_owned),
    };
    let (credit, written) = service.post_entry(&tenant, &user, "coins", entry("120", Some("k1"))).await.unwrap();
    assert!(written);
    let (again, written) = service.post_entry(&tenant, &user, "coins", entry("120", Some("k1"))).await.unwrap();
    assert!(!written);
    assert_eq!(again, credit, "the first entry, answered again");
    let err = service.post_entry(&tenant, &user, "coins", entry("-120.01", None)).await.unwrap_err();
    assert!(matches!(err, ServiceError::InsufficientBalance(_)), "{err:?}");
    let (debit, _) = service.post_entry(&tenant, &user, "coins", entry("-120", None)).await.unwrap();
    assert_eq!(debit.balance_after.to_string(), "0");
    let err = service.post_entry(&tenant, &user, "Coins!", entry("0", None)).await.unwrap_err();
    let ServiceError::Invalid(errors) = err else { panic!("{err:?}") };
    let pointers: Vec<&str> = errors.0.iter().map(|e| e.pointer.as_str()).collect();
    assert_eq!(pointers, ["/currency", "/amount"]);
    let page = service.balance_entries(&tenant, &user, "coins", None, 1).await.unwrap();
    assert_eq!(page.items, vec![debit.clone()], "newest first");
    let rest = service.balance_entries(&tenant, &user, "coins", page.next_after.as_deref(), 10).await.unwrap();
    assert_eq!(rest.items, vec![credit]);
    assert_eq!(rest.next_after, None);
}

#[tokio::test]
async fn rewards_settled_together_move_one_balance_in_turn() {
    use questline_service::wallet::Settled;
    let dir = tempfile::tempdir().unwrap();
    let (service, _clock) = service(&dir, "2026-11-22T10:00:00Z").await;
    let tenant = TenantId::default_tenant();
    for (id, target) in [("read-1", 1), ("read-2", 2)] {
        let points = json!({"kind": "points", "amount": 7.5, "currency": "gems"});
        service.create_mission(&tenant, reward_mission(id, target, points)).await.unwrap();
    }
    let now = ts("2026-11-22T10:00:00Z");
    let reads: Vec<Event> =
        (1..=2).map(|i| event_at(read(&format!("r{i}"), "u1", "2026-11-22T09:00:00Z"), now)).collect();
    service.apply_batch(&tenant, &reads).await.unwrap();
    let mut ids: Vec<String> =
        service.user_rewards(&tenant, &UserId::new("u1")).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 2);
    ids.push("missing".into());
    ids.push(ids[0].clone());
    let settled = service.settle_rewards(&tenant, &ids).await.unwrap();
    assert_eq!(settled, [Settled::Granted, Settled::Granted, Settled::NotFound, Settled::Granted]);
    let balances = service.balances(&tenant, &UserId::new("u1")).await.unwrap();
    assert_eq!(balances[0].balance.to_string(), "15");
    let entries = service.balance_entries(&tenant, &UserId::new("u1"), "gems", None, 10).await.unwrap();
    let after: Vec<String> = entries.items.iter().map(|e| e.balance_after.to_string()).collect();
    assert_eq!(after, ["15", "7.5"], "each entry applies to the balance the one before left");
}
