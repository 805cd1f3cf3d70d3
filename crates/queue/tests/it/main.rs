//! The queue's conformance suite: the same tests, run on every lane.
//!
//! Each test in the conformance modules is an `async fn(&Lane)`; the [`conformance!`] list
//! instantiates it per lane, as `memory::MODULE::TEST`, `sqlite::MODULE::TEST`,
//! `postgres::MODULE::TEST` and `redis::MODULE::TEST` (`cargo test -p questline-queue
//! postgres::` runs one lane). Every test owns its queue: a fresh in-memory one, a SQLite
//! file in its own temporary directory, a PostgreSQL database made for it, or a Redis key
//! namespace of its own, so tests share nothing.
//!
//! Without a reachable PostgreSQL the `postgres::` tests FAIL, unless
//! `QUESTLINE_SKIP_POSTGRES=1` says to skip them (each says so on standard error); the same
//! for Redis (`redis::`, `outbox::`) and `QUESTLINE_SKIP_REDIS=1`.
//!
//! Time is the tests' own: every backend call takes `now`, and the tests pass instants of
//! 2024 ([`at`]); only the worker tests run on the real clock.
//!
//! Beside the suite: `policy` (property tests of the backoff) and `sql` (what only the SQL
//! lanes have: transactional enqueue, migrations beside the store's), `outbox` (SQL-born
//! jobs relayed to Redis, on SQLite and PostgreSQL).

mod lane;

// The conformance suite.
mod basics;
mod keys;
mod leases;
mod periodic;
mod retries;
mod worker;

// Not per lane.
mod metrics;
mod outbox;
mod policy;
mod sql;

pub use lane::{Lane, LaneKind};

use jiff::Timestamp;
use questline_queue::{Ack, Backend, ClaimRequest, Job, NewJob, Outcome};
use serde_json::json;
use std::time::Duration;

/// Instantiates each listed test once per lane.
macro_rules! conformance {
    (@lane $name:ident, $lane:expr, $($module:ident: [$($test:ident),* $(,)?]),* $(,)?) => {
        mod $name {
            $(mod $module {
                $(
                    // Multi-threaded: several tests race claims against each other.
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $test() {
                        let test = concat!(stringify!($module), "::", stringify!($test));
                        let Some(lane) = $crate::Lane::fresh($lane, test).await else { return };
                        $crate::$module::$test(&lane).await;
                    }
                )*
            })*
        }
    };
    (sql: { $($list:tt)* }) => {
        conformance!(@lane sqlite_only, $crate::LaneKind::Sqlite, $($list)*);
        conformance!(@lane postgres_only, $crate::LaneKind::Postgres, $($list)*);
    };
    ($($list:tt)*) => {
        conformance!(@lane memory, $crate::LaneKind::Memory, $($list)*);
        conformance!(@lane sqlite, $crate::LaneKind::Sqlite, $($list)*);
        conformance!(@lane postgres, $crate::LaneKind::Postgres, $($list)*);
        conformance!(@lane redis, $crate::LaneKind::Redis, $($list)*);
    };
}

conformance! {
    basics: [
        enqueue_claim_complete,
        claims_go_by_priority_then_run_at,
        a_delayed_job_is_not_claimed_early,
        a_backlog_of_delayed_jobs_does_not_hide_a_due_one,
        claims_take_only_the_kinds_asked_for,
        lists_page_by_id_and_filter,
        depth_counts_unfinished_jobs_by_kind_and_state,
        prune_deletes_old_finished_jobs_and_keeps_dead_letters,
    ],
    retries: [
        backoff_is_persisted_as_run_at_and_errors_are_kept,
        retry_after_overrides_the_backoff,
        snooze_gives_the_attempt_back,
        reschedule_comes_back_first_without_spending_an_attempt,
        discard_goes_straight_to_dead,
        past_max_attempts_a_job_is_dead,
        retry_now_redrives_a_dead_job,
        retry_now_runs_a_waiting_job_now,
        cancel_stops_a_job_that_has_not_started,
    ],
    keys: [
        a_unique_key_deduplicates_while_the_job_is_unfinished,
        a_concurrency_key_caps_running_jobs,
        a_flooding_key_does_not_starve_the_others,
    ],
    leases: [
        two_claimers_never_get_the_same_job,
        concurrent_claimers_keep_a_concurrency_limit,
        a_lapsed_lease_is_rescued_and_runs_again,
        a_job_that_keeps_crashing_is_quarantined,
        heartbeats_keep_a_lease,
    ],
    periodic: [
        a_tick_is_enqueued_once_whoever_asks,
        two_workers_run_each_tick_once,
        two_workers_run_each_cron_tick_once,
    ],
    worker: [
        a_worker_drains_every_job_exactly_once,
        prefetched_jobs_wait_for_a_slot_and_go_back_unstarted,
        shutdown_releases_unfinished_work,
        a_worker_wakes_on_enqueue_without_waiting_for_its_poll,
        run_once_persists_a_failure_as_a_retry,
        a_dead_workers_job_runs_again_after_its_lease,
        a_batch_handler_takes_many_jobs_in_one_call,
        heartbeats_keep_a_long_job_from_being_rescued,
    ],
}

conformance! {
    sql: {
        sql: [
            a_rolled_back_unit_leaves_no_job,
            a_committed_unit_makes_its_jobs_claimable,
            the_store_reopens_beside_the_queue_migrations,
            a_burst_of_jobs_gets_fresh_statistics,
        ],
        outbox: [
            a_rolled_back_unit_relays_nothing,
            a_committed_unit_arrives_on_redis,
            a_relay_that_dies_after_pushing_creates_no_duplicate,
            the_relay_loop_feeds_a_redis_worker,
        ],
    }
}

/// An instant `secs` seconds into 2024.
pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_704_067_200 + secs).expect("timestamp")
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A job of `kind` with a payload naming it.
pub fn job(kind: &str, name: &str) -> NewJob {
    NewJob::new(kind, json!({ "name": name }))
}

pub fn name(job: &Job) -> &str {
    job.payload["name"].as_str().expect("a named job")
}

/// The default lease in tests.
pub const LEASE: Duration = Duration::from_secs(30);

/// Claims up to `limit` jobs of `kinds` at `now`.
pub async fn claim(queue: &dyn Backend, kinds: &[&str], limit: usize, now: Timestamp) -> Vec<Job> {
    let request = ClaimRequest { kinds: kinds.iter().map(|k| (*k).to_owned()).collect(), limit, lease: LEASE };
    queue.claim(&request, now).await.expect("claim")
}

/// Enqueues one job at `now`.
pub async fn enqueue(queue: &dyn Backend, new: NewJob, now: Timestamp) -> Job {
    queue.enqueue(vec![new], now).await.expect("enqueue").remove(0)
}

/// Acknowledges one claimed job; returns it as it then stands (`None`: the claim no longer held).
pub async fn ack(queue: &dyn Backend, job: &Job, outcome: Outcome, now: Timestamp) -> Option<Job> {
    let mut done = queue.complete(vec![Ack { claim: job.claim(), outcome }], now).await.expect("complete");
    assert!(done.len() <= 1);
    done.pop()
}

pub async fn get(queue: &dyn Backend, job: &Job, now: Timestamp) -> Job {
    queue.get(&job.id, now).await.expect("get").expect("the job exists")
}
