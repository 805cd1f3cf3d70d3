//! The unit of work: mission, key and ledger writes, and other crates' rows, in one commit.

use crate::{T, TestDb, at, event, mid, mission, received, uid};
use questline_core::mission::MissionStatus;
use questline_store::{Connection, NewApiKey, Role, StoreError, UnitOfWork};

/// A scratch table of a "foreign" crate (a job queue, say), made outside the store.
async fn create_jobs_table(unit: &mut dyn UnitOfWork) {
    let sql = "CREATE TABLE jobs (id TEXT PRIMARY KEY, payload TEXT NOT NULL)";
    match unit.connection() {
        Connection::Sqlite(conn) => sqlx::query(sql).execute(conn).await.map(drop),
        Connection::Postgres(conn) => sqlx::query(sql).execute(conn).await.map(drop),
    }
    .unwrap();
}

async fn enqueue(unit: &mut dyn UnitOfWork, id: &str) {
    match unit.connection() {
        Connection::Sqlite(conn) => {
            sqlx::query("INSERT INTO jobs (id, payload) VALUES (?, 'x')").bind(id).execute(conn).await.map(drop)
        }
        Connection::Postgres(conn) => {
            sqlx::query("INSERT INTO jobs (id, payload) VALUES ($1, 'x')").bind(id).execute(conn).await.map(drop)
        }
    }
    .unwrap();
}

async fn jobs(unit: &mut dyn UnitOfWork) -> Vec<String> {
    let sql = "SELECT id FROM jobs ORDER BY id";
    match unit.connection() {
        Connection::Sqlite(conn) => sqlx::query_scalar(sql).fetch_all(conn).await,
        Connection::Postgres(conn) => sqlx::query_scalar(sql).fetch_all(conn).await,
    }
    .unwrap()
}

pub async fn a_mission_write_and_an_ingest_commit_together(db: &TestDb) {
    let store = db.open().await;
    let revision = store.missions_revision(&T).await.unwrap();
    let mut unit = store.begin().await.unwrap();
    unit.insert_mission(&T, &mission("m", MissionStatus::Active, None)).await.unwrap();
    assert_eq!(unit.insert_events(&T, &[event("e1", "u", "payment", 1)], at(2)).await.unwrap(), vec![true]);
    // Nothing is visible outside before the commit.
    assert_eq!(store.get_mission(&T, &mid("m")).await.unwrap(), None);
    assert!(store.user_ledger(&T, &uid("u"), &["payment".into()]).await.unwrap().0.is_empty());
    unit.commit().await.unwrap();

    assert!(store.get_mission(&T, &mid("m")).await.unwrap().is_some());
    assert_eq!(store.missions_revision(&T).await.unwrap(), revision + 1);
    let (originals, _) = store.user_ledger(&T, &uid("u"), &["payment".into()]).await.unwrap();
    assert_eq!(originals, vec![received(event("e1", "u", "payment", 1), 2)]);
}

pub async fn dropping_a_unit_rolls_back_missions_keys_and_events(db: &TestDb) {
    let store = db.open().await;
    let revision = store.missions_revision(&T).await.unwrap();
    let key = NewApiKey {
        id: "k".into(),
        name: "k".into(),
        role: Role::Admin,
        secret_hash: "hash-k".into(),
        created_at: at(0),
    };
    let mut unit = store.begin().await.unwrap();
    unit.insert_mission(&T, &mission("m", MissionStatus::Active, None)).await.unwrap();
    unit.insert_key(&T, &key).await.unwrap();
    unit.insert_events(&T, &[event("e1", "u", "payment", 1)], at(2)).await.unwrap();
    assert_eq!(unit.missions_revision(&T).await.unwrap(), revision + 1);
    drop(unit);

    assert_eq!(store.get_mission(&T, &mid("m")).await.unwrap(), None);
    assert_eq!(store.missions_revision(&T).await.unwrap(), revision);
    assert_eq!(store.key_by_hash("hash-k").await.unwrap(), None);
    assert!(store.user_ledger(&T, &uid("u"), &["payment".into()]).await.unwrap().0.is_empty());
    // The ids are still free.
    let mut unit = store.begin().await.unwrap();
    unit.insert_mission(&T, &mission("m", MissionStatus::Active, None)).await.unwrap();
    assert_eq!(unit.insert_events(&T, &[event("e1", "u", "payment", 1)], at(3)).await.unwrap(), vec![true]);
    unit.commit().await.unwrap();
}

pub async fn foreign_sql_commits_with_the_unit(db: &TestDb) {
    let store = db.open().await;
    let mut unit = store.begin().await.unwrap();
    create_jobs_table(&mut *unit).await;
    unit.commit().await.unwrap();

    let mut unit = store.begin().await.unwrap();
    unit.insert_mission(&T, &mission("m", MissionStatus::Active, None)).await.unwrap();
    enqueue(&mut *unit, "job-1").await;
    // The store's calls and the foreign SQL interleave on the one transaction.
    unit.insert_events(&T, &[event("e1", "u", "payment", 1)], at(2)).await.unwrap();
    enqueue(&mut *unit, "job-2").await;
    unit.commit().await.unwrap();

    let mut unit = store.begin().await.unwrap();
    assert_eq!(jobs(&mut *unit).await, ["job-1", "job-2"]);
    assert!(unit.get_mission(&T, &mid("m")).await.unwrap().is_some());
}

pub async fn foreign_sql_rolls_back_with_the_unit(db: &TestDb) {
    let store = db.open().await;
    let mut unit = store.begin().await.unwrap();
    create_jobs_table(&mut *unit).await;
    unit.commit().await.unwrap();

    let mut unit = store.begin().await.unwrap();
    unit.insert_mission(&T, &mission("m", MissionStatus::Active, None)).await.unwrap();
    enqueue(&mut *unit, "job-1").await;
    drop(unit);

    let mut unit = store.begin().await.unwrap();
    assert!(jobs(&mut *unit).await.is_empty(), "the job rolled back with the mission");
    assert_eq!(unit.get_mission(&T, &mid("m")).await.unwrap(), None);
}

/// A `Conflict` is an answer, not a failure: on PostgreSQL too, where an error would abort
/// the transaction, the unit goes on and commits.
pub async fn a_conflict_in_a_unit_leaves_it_usable(db: &TestDb) {
    let store = db.open().await;
    let mut unit = store.begin().await.unwrap();
    unit.insert_mission(&T, &mission("m", MissionStatus::Active, None)).await.unwrap();
    let err = unit.insert_mission(&T, &mission("m", MissionStatus::Draft, None)).await.unwrap_err();
    assert!(matches!(&err, StoreError::Conflict(msg) if msg.contains("m")), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(unit.insert_events(&T, &[event("e1", "u", "payment", 1)], at(2)).await.unwrap(), vec![true]);
    unit.commit().await.unwrap();
    assert_eq!(store.get_mission(&T, &mid("m")).await.unwrap().unwrap().status, MissionStatus::Active);
}
