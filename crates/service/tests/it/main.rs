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
