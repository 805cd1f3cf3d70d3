//! Integration tests of the SQLite store. Each test owns a fresh database file in its own
//! temporary directory, so tests run in parallel without sharing anything.

mod budget;
mod keys;
mod ledger;
mod missions;
mod open;
mod progress;

use jiff::Timestamp;
use questline_core::event::Event;
use questline_core::mission::{Mission, MissionStatus};
use questline_store::sqlite::SqliteStore;
use serde_json::json;
use tempfile::TempDir;

/// Every test writes to the default tenant unless it is testing tenant isolation.
pub const T: &str = questline_core::DEFAULT_TENANT;

/// A database file that lives as long as the value.
pub struct TestDb {
    dir: TempDir,
}

impl TestDb {
    /// A fresh directory; the database file is created by the first `open`.
    pub fn fresh() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("questline.db")
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path().display())
    }

    pub async fn open(&self) -> SqliteStore {
        SqliteStore::connect(&self.url()).await.expect("open store")
    }
}

pub fn ts(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

/// An instant `secs` seconds into 2024.
pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_704_067_200 + secs).expect("timestamp")
}

pub fn event(id: &str, user: &str, event_type: &str, secs: i64) -> Event {
    Event {
        id: id.to_owned(),
        event_type: event_type.to_owned(),
        user_id: user.to_owned(),
        occurred_at: at(secs),
        attributes: serde_json::Map::new(),
        reverses: None,
    }
}

pub fn reversal(id: &str, user: &str, reverses: &str, secs: i64) -> Event {
    Event { reverses: Some(reverses.to_owned()), ..event(id, user, "refund", secs) }
}

/// A one-step payment mission, built from JSON as the API would receive it.
pub fn mission(id: &str, status: MissionStatus, max_rewards: Option<u64>) -> Mission {
    let mut value = json!({
        "id": id,
        "status": status.as_str(),
        "name": format!("Mission {id}"),
        "steps": [{ "event_type": "payment", "aggregate": { "fn": "sum", "field": "amount" }, "target": 500 }],
        "reward": { "kind": "cash", "amount": 50, "currency": "INR" },
        "rewards_granted": 0,
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
    });
    if let Some(max) = max_rewards {
        value["budget"] = json!({ "max_rewards": max });
    }
    serde_json::from_value(value).expect("mission fixture")
}
