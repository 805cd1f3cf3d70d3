//! What only the SQLite backend has: a file, created on first open, in WAL mode.

use crate::{Backend, TestDb};
use sqlx::Connection;

#[tokio::test]
async fn connect_creates_the_file() {
    let db = TestDb::fresh(Backend::Sqlite, "sqlite_files").await.unwrap();
    let path = db.sqlite_path().unwrap();
    assert!(!path.exists());
    let store = db.open().await;
    assert!(path.exists(), "connect creates the file");
    store.close().await;
}

#[tokio::test]
async fn the_file_is_in_wal_mode() {
    let db = TestDb::fresh(Backend::Sqlite, "sqlite_files").await.unwrap();
    let store = db.open().await;
    let mut conn = sqlx::SqliteConnection::connect(&db.url()).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap();
    assert_eq!(mode, "wal");
    conn.close().await.unwrap();
    store.close().await;
}
