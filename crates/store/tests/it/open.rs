//! Opening a database: migrations on a fresh database, reopening, what survives.

use crate::{T, TestDb, event, insert_mission, mid, mission};
use questline_core::mission::MissionStatus;
use questline_store::{StoreError, connect};

pub async fn migrates_a_fresh_database_and_reopens_it(db: &TestDb) {
    let store = db.open().await;
    store.ping().await.unwrap();
    // The migration seeded the default tenant.
    assert_eq!(store.missions_revision(&T).await.unwrap(), 0);
    insert_mission(&*store, &T, &mission("m1", MissionStatus::Draft, None)).await.unwrap();
    store.close().await;

    // Migrations already applied: reopening must neither fail nor re-run them.
    let store = db.open().await;
    store.ping().await.unwrap();
    assert_eq!(store.missions_revision(&T).await.unwrap(), 1);
    store.close().await;
}

pub async fn committed_data_survives_reopening_and_rolled_back_data_does_not(db: &TestDb) {
    let store = db.open().await;
    insert_mission(&*store, &T, &mission("m1", MissionStatus::Active, Some(3))).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.insert_events(&T, &[event("kept", "u1", "payment", 1)], crate::at(10)).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.insert_events(&T, &[event("dropped", "u1", "payment", 2)], crate::at(10)).await.unwrap();
    drop(tx);
    store.close().await;

    let store = db.open().await;
    assert_eq!(store.get_mission(&T, &mid("m1")).await.unwrap(), Some(mission("m1", MissionStatus::Active, Some(3))));
    let mut tx = store.begin().await.unwrap();
    let found = tx.events_by_id(&T, &["kept".into(), "dropped".into()]).await.unwrap();
    assert_eq!(found, vec![crate::received(event("kept", "u1", "payment", 1), 10)]);
    // The rolled-back id is still free.
    assert_eq!(tx.insert_events(&T, &[event("dropped", "u1", "payment", 2)], crate::at(11)).await.unwrap(), vec![true]);
    tx.commit().await.unwrap();
    store.close().await;
}

pub async fn connect_dispatches_on_the_url_scheme(db: &TestDb) {
    let store = connect(&db.url()).await.unwrap();
    store.ping().await.unwrap();
    let err = connect("mysql://localhost/x").await.err().expect("mysql is not supported");
    assert!(matches!(&err, StoreError::UnsupportedUrl(url) if url == "mysql://localhost/x"), "{err:?}");
    assert!(err.to_string().contains("sqlite://PATH or postgres://"), "{err}");
}
