//! The store's conformance suite: the same tests, run against every backend.
//!
//! Each test in the conformance modules is an `async fn(&TestDb)`; the [`conformance!`]
//! list below instantiates it once per backend, as `sqlite::MODULE::TEST` and
//! `postgres::MODULE::TEST` (`cargo test -p questline-store postgres::` runs one backend).
//! Every test owns a fresh database — a SQLite file in its own temporary directory, or a
//! PostgreSQL database created for it (see [`backend`]) — so tests run in parallel and
//! share nothing.
//!
//! Without a reachable PostgreSQL the `postgres::` tests FAIL, unless
//! `QUESTLINE_SKIP_POSTGRES=1` says to skip them (each then says so loudly on standard
//! error); `scripts/test` starts a server when none is running.
//!
//! `upgrade` starts from a database an older release made (only its migrations applied,
//! rows as it wrote them) and checks what a store opened on it reads.
//!
//! Beside the suite: `pg_concurrency` (many connection pools on one database, as many
//! processes would have, and a real deadlock) and `sqlite_files` (what only a file can
//! show).

mod backend;

// The conformance suite.
mod budget;
mod contacts;
mod keys;
mod ledger;
mod messages;
mod missions;
mod open;
mod progress;
mod unit;
mod upgrade;
mod wallet;
mod webhooks;

// Backend-specific.
mod pg_concurrency;
mod sqlite_files;

pub use backend::{Backend, TestDb};

use jiff::Timestamp;
use questline_core::event::Event;
use questline_core::id::{MissionId, TenantId, UserId};
use questline_core::mission::{Mission, MissionStatus};
use questline_store::{Store, StoreError};
use serde_json::json;
use std::sync::LazyLock;

/// Instantiates each listed test once per backend.
macro_rules! conformance {
    (@backend $name:ident, $backend:expr, $($module:ident: [$($test:ident),* $(,)?]),* $(,)?) => {
        mod $name {
            $(mod $module {
                $(
                    // Multi-threaded: several tests race transactions against each other.
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $test() {
                        let test = concat!(stringify!($module), "::", stringify!($test));
                        let Some(db) = $crate::TestDb::fresh($backend, test).await else { return };
                        $crate::$module::$test(&db).await;
                        db.finish().await;
                    }
                )*
            })*
        }
    };
    ($($list:tt)*) => {
        conformance!(@backend sqlite, $crate::Backend::Sqlite, $($list)*);
        conformance!(@backend postgres, $crate::Backend::Postgres, $($list)*);
    };
}

conformance! {
    contacts: [contacts_round_trip_per_tenant],
    messages: [messages_are_locked_and_saved_many_at_once],
    budget: [
        concurrent_units_never_overspend,
        set_budget_counts_and_ending_bumps_the_revision,
        lock_budgets_reads_known_missions_in_id_order,
    ],
    keys: [keys_lifecycle],
    ledger: [
        duplicates_within_a_slice_and_across_batches,
        large_batches_span_chunks_exactly,
        concurrent_batches_count_each_id_once,
        lookups_by_id_reversal_and_user,
        attributes_keep_exact_numbers,
        reads_do_not_wait_for_an_open_batch,
    ],
    missions: [
        insert_round_trips_and_a_taken_id_conflicts,
        tenants_are_separate_and_created_on_first_write,
        lists_page_by_id,
        ids_sort_bytewise_whatever_the_locale,
        updates_are_optimistic_and_never_touch_the_grant_count,
        only_drafts_are_deleted,
    ],
    open: [
        migrates_a_fresh_database_and_reopens_it,
        committed_data_survives_reopening_and_rolled_back_data_does_not,
        connect_dispatches_on_the_url_scheme,
    ],
    progress: [
        progress_round_trips_exactly_and_upserts,
        many_progress_rows_in_one_batch,
        a_repeated_user_saves_the_later_row,
        rewards_live_revoked_and_listed_newest_first,
        live_rewards_of_many_pairs_in_one_call,
        a_conflict_leaves_the_batch_usable,
        only_pending_rewards_are_revoked,
        live_completions_name_the_rewarded_ones,
        insert_rewards_inserts_them_all,
        insert_rewards_with_a_conflict_inserts_the_rest,
    ],
    unit: [
        a_mission_write_and_an_ingest_commit_together,
        dropping_a_unit_rolls_back_missions_keys_and_events,
        foreign_sql_commits_with_the_unit,
        foreign_sql_rolls_back_with_the_unit,
        a_conflict_in_a_unit_leaves_it_usable,
    ],
    upgrade: [old_progress_rows_survive_the_upgrade],
    wallet: [
        entries_move_a_balance_exactly_and_are_found_by_key_or_reward,
        an_entitlement_is_granted_once,
        due_rewards_are_the_pending_ones_past_their_hold,
        expired_credits_are_found_until_marked,
    ],
    webhooks: [webhooks_lifecycle_and_one_fulfilment_endpoint],
}

/// Every test writes to the default tenant unless it is testing tenant isolation.
pub static T: LazyLock<TenantId> = LazyLock::new(TenantId::default_tenant);

pub fn tenant(id: &str) -> TenantId {
    TenantId::new(id)
}

pub fn mid(id: &str) -> MissionId {
    MissionId::new(id)
}

pub fn uid(id: &str) -> UserId {
    UserId::new(id)
}

/// A mission inserted in a unit of work of its own, as the service's mission API does it.
pub async fn insert_mission(store: &dyn Store, tenant: &TenantId, mission: &Mission) -> Result<(), StoreError> {
    let mut unit = store.begin().await?;
    unit.insert_mission(tenant, mission).await?;
    unit.commit().await
}

/// A mission updated in a unit of work of its own.
pub async fn update_mission(
    store: &dyn Store,
    tenant: &TenantId,
    mission: &Mission,
    expected_updated_at: Timestamp,
) -> Result<bool, StoreError> {
    let mut unit = store.begin().await?;
    let updated = unit.update_mission(tenant, mission, expected_updated_at).await?;
    unit.commit().await?;
    Ok(updated)
}

pub fn ts(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

/// An instant `secs` seconds into 2024.
pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_704_067_200 + secs).expect("timestamp")
}

pub fn event(id: &str, user: &str, event_type: &str, secs: i64) -> Event {
    Event::builder(id, event_type, user, at(secs)).build()
}

/// `e` as the ledger returns it: stamped with when it was received.
pub fn received(e: Event, secs: i64) -> Event {
    e.to_builder().received_at(at(secs)).build()
}

pub fn reversal(id: &str, user: &str, reverses: &str, secs: i64) -> Event {
    Event::builder(id, "refund", user, at(secs)).reverses(reverses).build()
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
