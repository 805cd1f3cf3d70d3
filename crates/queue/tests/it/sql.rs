//! What only the SQL lanes have: enqueue inside the store's unit of work, and the queue's
//! migrations beside the store's.

use crate::{Lane, LaneKind, at, claim, job};
use questline_core::event::Event;
use questline_core::id::TenantId;
use questline_queue::{Backend, JobState, ListFilter};
use questline_store::postgres::PostgresStore;
use questline_store::sqlite::SqliteStore;
use questline_store::{Connection, Store, UnitOfWork};

fn sql(lane: &Lane) -> (&questline_queue::SqlQueue, &dyn Store) {
    let (queue, store) = lane.sql.as_ref().expect("a SQL lane");
    (queue, &**store)
}

fn tenant() -> TenantId {
    TenantId::default_tenant()
}

fn event(id: &str) -> Event {
    Event::builder(id, "payment", "u1", at(0)).build()
}

async fn known_events(store: &dyn Store) -> Vec<String> {
    store.begin_read().await.unwrap().known_ids(&tenant(), &["e1".to_owned()]).await.unwrap()
}

async fn count(lane: &Lane) -> usize {
    lane.queue.list(&ListFilter::default(), at(0)).await.unwrap().items.len()
}

pub async fn a_rolled_back_unit_leaves_no_job(lane: &Lane) {
    let (queue, store) = sql(lane);
    let mut unit: Box<dyn UnitOfWork> = store.begin().await.unwrap();
    unit.insert_events(&tenant(), &[event("e1")], at(0)).await.unwrap();
    let enqueued = queue.enqueue_in(unit.connection(), vec![job("settle", "r1")], at(0)).await.unwrap();
    drop(unit);
    assert_eq!(count(lane).await, 0, "the job rolled back with its unit");
    assert!(lane.queue.get(&enqueued[0].id, at(0)).await.unwrap().is_none());
    assert!(claim(&*lane.queue, &["settle"], 10, at(1)).await.is_empty());
    assert!(known_events(store).await.is_empty(), "and so did the business rows");
}

pub async fn a_committed_unit_makes_its_jobs_claimable(lane: &Lane) {
    let (queue, store) = sql(lane);
    let mut unit = store.begin().await.unwrap();
    // Business rows and the jobs in one transaction.
    assert_eq!(unit.insert_events(&tenant(), &[event("e1")], at(0)).await.unwrap(), vec![true]);
    let enqueued = queue
        .enqueue_in(unit.connection(), vec![job("settle", "r1").unique_key("reward:r1"), job("settle", "r2")], at(0))
        .await
        .unwrap();
    // Deduplication sees the unit's own jobs.
    let again = queue.enqueue_in(unit.connection(), vec![job("settle", "dup").unique_key("reward:r1")], at(0)).await;
    assert_eq!(again.unwrap()[0].id, enqueued[0].id);
    assert_eq!(count(lane).await, 0, "nothing visible before the commit");
    unit.commit().await.unwrap();

    let claimed = claim(&*lane.queue, &["settle"], 10, at(1)).await;
    let mut ids: Vec<_> = claimed.iter().map(|j| j.id.clone()).collect();
    ids.sort();
    let mut expected: Vec<_> = enqueued.iter().map(|j| j.id.clone()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    assert!(claimed.iter().all(|j| j.state == JobState::Running));
    assert_eq!(known_events(store).await, ["e1"], "the business rows committed with them");
}

pub async fn the_store_reopens_beside_the_queue_migrations(lane: &Lane) {
    let url = lane.url().unwrap();
    // The lane opened a store and applied the queue's migrations; a store opened again (as
    // `questline migrate` or a restart does) accepts the versions it does not know, and
    // applying the queue's again changes nothing.
    let store: std::sync::Arc<dyn Store> = if url.starts_with("sqlite:") {
        std::sync::Arc::new(SqliteStore::connect(&url).await.expect("the store reopens"))
    } else {
        std::sync::Arc::new(PostgresStore::connect(&url).await.expect("the store reopens"))
    };
    questline_queue::sql::migrate(&*store).await.expect("the queue's migrations are idempotent");
    let versions = applied_versions(&*store).await;
    assert!(versions.contains(&1) && versions.contains(&2), "the store's own: {versions:?}");
    assert!(versions.contains(&1001), "the queue's: {versions:?}");
    // Both sets serve: the store reads, the queue enqueues.
    store.ping().await.unwrap();
    let reopened = questline_queue::SqlQueue::open(store, crate::lane::config()).await.unwrap();
    let job = questline_queue::Backend::enqueue(&reopened, vec![job("k", "x")], at(0)).await.unwrap();
    assert_eq!(job.len(), 1);
}

async fn applied_versions(store: &dyn Store) -> Vec<i64> {
    let mut snapshot = store.begin_foreign_read().await.unwrap();
    let sql = "SELECT version FROM _sqlx_migrations ORDER BY version";
    match snapshot.connection() {
        questline_store::Connection::Sqlite(c) => sqlx::query_scalar(sql).fetch_all(c).await.unwrap(),
        questline_store::Connection::Postgres(c) => sqlx::query_scalar(sql).fetch_all(c).await.unwrap(),
    }
}

/// A burst of jobs into a table the planner last saw empty: the lane's maintenance gives
/// PostgreSQL statistics that know of the burst (without them every claim read and sorted
/// every available job), and the burst is claimed in its order.
pub async fn a_burst_of_jobs_gets_fresh_statistics(lane: &Lane) {
    let (queue, store) = sql(lane);
    let burst: Vec<_> = (0..3000).map(|i| job("burst", &format!("b{i:04}"))).collect();
    queue.enqueue(burst, at(0)).await.unwrap();
    if lane.kind == LaneKind::Postgres {
        // The server's activity counters reach the statistics views within a second or so.
        questline_testkit::eventually(
            "statistics that know of the burst",
            std::time::Duration::from_secs(10),
            || async {
                queue.maintain().await.unwrap();
                let mut unit = store.begin().await.unwrap();
                let Connection::Postgres(conn) = unit.connection() else { unreachable!("a PostgreSQL lane") };
                let rows: f32 = sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = 'queue_jobs'::regclass")
                    .fetch_one(conn)
                    .await
                    .unwrap();
                if rows >= 2500.0 { Ok(()) } else { Err(format!("the statistics say {rows} rows")) }
            },
        )
        .await;
    } else {
        queue.maintain().await.unwrap();
    }
    let first = claim(&*lane.queue, &["burst"], 100, at(1)).await;
    let names: Vec<&str> = first.iter().map(crate::name).collect();
    let expected: Vec<String> = (0..100).map(|i| format!("b{i:04}")).collect();
    assert_eq!(names, expected, "claimed in the order enqueued");
}
