//! The outbox: jobs for the Redis lane born in a SQL unit of work reach Redis after the
//! commit, never for a rolled-back unit, and once each, even when a relay dies half-way.
//! Run on SQLite and PostgreSQL (the unit's database), with the real Redis.

use crate::lane::{RedisNamespace, open_redis};
use crate::{Lane, at, claim, job};
use questline_core::event::Event;
use questline_core::id::TenantId;
use questline_queue::outbox::Outbox;
use questline_queue::{Backend, JobState, ListFilter};
use questline_store::{Store, UnitOfWork};
use std::sync::Arc;

/// The lane's store, an outbox on it, and the Redis queue it relays to (`None`: Redis
/// tests are skipped).
async fn outbox(lane: &Lane, test: &str) -> Option<(Arc<dyn Store>, Outbox, RedisNamespace)> {
    if questline_testkit::redis::skipped(test) {
        return None;
    }
    let (_, store) = lane.sql.as_ref().expect("a SQL lane");
    let namespace = RedisNamespace(questline_testkit::redis::fresh_namespace());
    let queue = Arc::new(open_redis(&namespace.0).await);
    let outbox = Outbox::open(store.clone(), queue).await.expect("open the outbox");
    Some((store.clone(), outbox, namespace))
}

fn event(id: &str) -> Event {
    Event::builder(id, "payment", "u1", at(0)).build()
}

async fn on_redis(outbox: &Outbox) -> Vec<questline_queue::Job> {
    outbox.queue().list(&ListFilter::default(), at(10)).await.unwrap().items
}

pub async fn a_rolled_back_unit_relays_nothing(lane: &Lane) {
    let Some((store, outbox, _namespace)) = outbox(lane, "outbox::a_rolled_back_unit_relays_nothing").await else {
        return;
    };
    let mut unit: Box<dyn UnitOfWork> = store.begin().await.unwrap();
    unit.insert_events(&TenantId::default_tenant(), &[event("e1")], at(0)).await.unwrap();
    let made = outbox.enqueue_in(unit.connection(), vec![job("notify", "n1")], at(0)).await.unwrap();
    assert_eq!(made.len(), 1);
    drop(unit);

    assert!(outbox.pending(100).await.unwrap().is_empty(), "the row rolled back with its unit");
    assert_eq!(outbox.relay_once().await.unwrap(), 0);
    assert!(on_redis(&outbox).await.is_empty(), "nothing reached Redis");
    assert!(outbox.queue().get(&made[0].id, at(1)).await.unwrap().is_none());
}

pub async fn a_committed_unit_arrives_on_redis(lane: &Lane) {
    let Some((store, outbox, _namespace)) = outbox(lane, "outbox::a_committed_unit_arrives_on_redis").await else {
        return;
    };
    let mut unit = store.begin().await.unwrap();
    unit.insert_events(&TenantId::default_tenant(), &[event("e1")], at(0)).await.unwrap();
    let made = outbox
        .enqueue_in(
            unit.connection(),
            vec![job("notify", "now").priority(1), job("notify", "later").run_at(at(60)).tenant("t2")],
            at(0),
        )
        .await
        .unwrap();
    assert!(outbox.pending(100).await.unwrap().is_empty(), "nothing to relay before the commit");
    unit.commit().await.unwrap();

    assert_eq!(outbox.relay_once().await.unwrap(), 2);
    assert!(outbox.pending(100).await.unwrap().is_empty(), "relayed rows are deleted");
    let arrived = on_redis(&outbox).await;
    assert_eq!(arrived.iter().map(|j| &j.id).collect::<Vec<_>>(), made.iter().map(|j| &j.id).collect::<Vec<_>>());
    // As they were made in the unit: ids, tenants, times, state.
    let later = outbox.queue().get(&made[1].id, at(1)).await.unwrap().unwrap();
    assert_eq!(later, made[1], "the job on Redis is the one made at enqueue");
    assert_eq!((later.state, later.tenant_id.as_str(), later.run_at), (JobState::Scheduled, "t2", at(60)));
    let claimed = claim(&**outbox.queue(), &["notify"], 10, at(1)).await;
    assert_eq!(claimed.iter().map(|j| &j.id).collect::<Vec<_>>(), [&made[0].id], "the due one runs");
}

pub async fn a_relay_that_dies_after_pushing_creates_no_duplicate(lane: &Lane) {
    let test = "outbox::a_relay_that_dies_after_pushing_creates_no_duplicate";
    let Some((store, outbox, _namespace)) = outbox(lane, test).await else { return };
    let mut unit = store.begin().await.unwrap();
    let made = outbox
        .enqueue_in(unit.connection(), (0..3).map(|i| job("notify", &i.to_string())).collect(), at(0))
        .await
        .unwrap();
    unit.commit().await.unwrap();

    // A relay pushes the rows to Redis, then dies before deleting them.
    let rows = outbox.pending(100).await.unwrap();
    assert_eq!(rows.len(), 3);
    outbox.push(rows).await.unwrap();
    // One of the jobs even runs meanwhile.
    let running = claim(&**outbox.queue(), &["notify"], 1, at(1)).await.remove(0);
    assert_eq!(outbox.pending(100).await.unwrap().len(), 3, "the rows are still there");

    // The next relay (this process restarted, or another one) moves them again.
    assert_eq!(outbox.relay_once().await.unwrap(), 3);
    assert!(outbox.pending(100).await.unwrap().is_empty());
    let arrived = on_redis(&outbox).await;
    assert_eq!(arrived.len(), 3, "one job per row, not two: {arrived:?}");
    let mut ids: Vec<_> = arrived.iter().map(|j| j.id.clone()).collect();
    ids.sort();
    let mut expected: Vec<_> = made.iter().map(|j| j.id.clone()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    let again = outbox.queue().get(&running.id, at(2)).await.unwrap().unwrap();
    assert_eq!((again.state, again.attempt), (JobState::Running, 1), "the running job was left alone");
    assert_eq!(claim(&**outbox.queue(), &["notify"], 10, at(2)).await.len(), 2, "each of the others once");
}

pub async fn the_relay_loop_feeds_a_redis_worker(lane: &Lane) {
    use questline_queue::{Outcome, Worker, WorkerConfig};
    use std::time::Duration;
    let Some((store, outbox, _namespace)) = outbox(lane, "outbox::the_relay_loop_feeds_a_redis_worker").await else {
        return;
    };
    let outbox = Arc::new(outbox);
    let ran = Arc::new(tokio::sync::Notify::new());
    let signal = ran.clone();
    // A poll far beyond the deadline: the relay's push must wake the worker.
    let config = WorkerConfig { poll: Duration::from_secs(600), ..WorkerConfig::default() };
    let worker = Worker::new(outbox.queue().clone(), config).handle("notify", move |_| {
        let signal = signal.clone();
        async move {
            signal.notify_one();
            Outcome::Done
        }
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    let (relay, relay_stop) = (outbox.clone(), stop.clone());
    tasks.spawn(async move { relay.run(Duration::from_millis(50), relay_stop).await });
    let worker_stop = stop.clone();
    tasks.spawn(async move { worker.run(worker_stop).await });

    let now = jiff::Timestamp::now();
    let mut unit = store.begin().await.unwrap();
    let made = outbox.enqueue_in(unit.connection(), vec![job("notify", "welcome")], now).await.unwrap();
    unit.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), ran.notified()).await.expect("the job ran on Redis");
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    let done = outbox.queue().get(&made[0].id, jiff::Timestamp::now()).await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert!(outbox.pending(10).await.unwrap().is_empty());
}
