//! Opening a database: migrations on a fresh file, reopening, durability settings.

use crate::{T, TestDb, event, mission};
use questline_core::mission::MissionStatus;
use questline_store::{Store, StoreError, connect};
use sqlx::Connection;

#[tokio::test]
async fn migrates_a_fresh_file_and_reopens_it() {
    let db = TestDb::fresh();
    assert!(!db.path().exists());
    let store = db.open().await;
    assert!(db.path().exists(), "connect creates the file");
    store.ping().await.unwrap();
    // The migration seeded the default tenant.
    assert_eq!(store.missions_revision(T).await.unwrap(), 0);
    store.close().await;

    // Migrations already applied: reopening must neither fail nor re-run them.
    let store = db.open().await;
    store.ping().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn the_file_is_in_wal_mode() {
    let db = TestDb::fresh();
    let store = db.open().await;
    let mut conn = sqlx::SqliteConnection::connect(&db.url()).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap();
    assert_eq!(mode, "wal");
    conn.close().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn committed_data_survives_reopening_and_rolled_back_data_does_not() {
    let db = TestDb::fresh();
    let store = db.open().await;
    store.insert_mission(T, &mission("m1", MissionStatus::Active, Some(3))).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.insert_events(T, &[event("kept", "u1", "payment", 1)], crate::at(10)).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.insert_events(T, &[event("dropped", "u1", "payment", 2)], crate::at(10)).await.unwrap();
    drop(tx);
    store.close().await;

    let store = db.open().await;
    assert_eq!(store.get_mission(T, "m1").await.unwrap(), Some(mission("m1", MissionStatus::Active, Some(3))));
    let mut tx = store.begin().await.unwrap();
    let found = tx.events_by_id(T, &["kept".into(), "dropped".into()]).await.unwrap();
    assert_eq!(found, vec![event("kept", "u1", "payment", 1)]);
    // The rolled-back id is still free.
    assert_eq!(tx.insert_events(T, &[event("dropped", "u1", "payment", 2)], crate::at(11)).await.unwrap(), vec![true]);
    tx.commit().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn connect_dispatches_on_the_url_scheme() {
    let db = TestDb::fresh();
    let store = connect(&db.url()).await.unwrap();
    store.ping().await.unwrap();
    assert!(matches!(connect("postgres://localhost/x").await, Err(StoreError::UnsupportedUrl(_))));
}
