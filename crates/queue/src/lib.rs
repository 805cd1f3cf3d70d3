//! questline's task scheduler: one job model, one retry policy and one worker over three
//! lanes behind one [`Backend`] trait — the durable SQL lane ([`SqlQueue`], on the store's
//! SQLite or PostgreSQL database), the in-memory lane ([`MemoryQueue`], for tests and work
//! that may be lost), and with the `redis` feature the fast lane on Redis (`RedisQueue`,
//! with the `outbox` that carries jobs born in a SQL unit of work to it).
//!
//! # Why written here, not on riverqueue or apalis
//!
//! Decided by what the issue asks of the queue, not by taste:
//! - **A retry is the job's next `run_at`**, written with the failure; never a sleep inside
//!   the worker (a retry layer around the handler loses the backoff, and the attempt, when
//!   the process dies). riverqueue does this; a tower-style retry layer does not.
//! - **Enqueue shares the store's transaction** ([`SqlQueue::enqueue_in`] on
//!   [`questline_store::UnitOfWork::connection`]), so a completion and its settlement job
//!   commit together or not at all. riverqueue can insert in a caller's transaction too,
//!   but on River's own schema and migration history (shared with River for Go) and with its
//!   own maintenance services; here the queue's table is one more table of the store's
//!   database, migrated with it, and its writes run on the store's single SQLite writer.
//! - **The same model on Redis**, behind the same trait and the same conformance suite,
//!   which neither crate offers; and per-key concurrency limits across processes and
//!   quarantine after repeated crashes (what users keep asking for, research §7); River
//!   for Go sells concurrency limits in its Pro edition.
//! - **The benchmark's target is twice the best peer**, and riverqueue is that peer.
//!
//! Taken from the peers as design: River's claim-and-mark-running in one `FOR UPDATE SKIP
//! LOCKED` statement and batched completion, graphile-worker's batching, Sidekiq's lesson on
//! quarantining jobs that keep crashing their worker.
//!
//! # Model
//!
//! A [`Job`] is `scheduled`/`available` → `running` (claimed under a lease, kept alive by
//! heartbeats) → `succeeded`, `retrying` (next `run_at` = backoff, or the handler's own
//! `Retry-After`), or `dead` (out of attempts, [`Outcome::Discard`]ed, or quarantined after
//! [`QueueConfig::max_crashes`] lapsed leases), every attempt's error kept. A snooze gives
//! the attempt back. Unique keys deduplicate while a job is unfinished; concurrency keys cap
//! how many of one key run at once. Periodic schedules ([`Worker::every`], or a cron
//! expression with [`Worker::periodic`] and [`Cadence::cron`]) enqueue one job per tick however many workers hold them; batch handlers ([`Worker::handle_batch`]) take
//! many jobs of a kind in one call. Time is always a parameter (`now`), so tests control the
//! clock; only the [`Worker`] reads it.
//!
//! Codemap: `model.rs` (the types), `policy.rs` (backoff, pure), `cadence.rs` (ticks, pure), `transition.rs` (the state
//! machine, pure, shared by every lane), `backend.rs` (the trait), `memory.rs`, `sql/` (the
//! SQL lane: statements once for both databases), `redis/` (the Redis lane: Lua scripts),
//! `outbox.rs` (SQL-born jobs relayed to Redis), `worker.rs` (the runtime), `metrics.rs`.

#![forbid(unsafe_code)]

mod backend;
mod cadence;
mod error;
mod memory;
mod metrics;
mod model;
#[cfg(feature = "redis")]
pub mod outbox;
mod policy;
#[cfg(feature = "redis")]
mod redis;
pub mod sql;
mod transition;
mod worker;

#[cfg(feature = "redis")]
pub use self::redis::RedisQueue;
pub use backend::{Backend, QueueConfig};
pub use cadence::Cadence;
pub use error::{QueueError, Result};
pub use memory::MemoryQueue;
pub use model::{
    Ack, AttemptError, Claim, ClaimRequest, Concurrency, DEFAULT_PAGE, DEFAULT_TENANT, Depth, Job, JobId, JobState,
    ListFilter, MAX_PAGE, NewJob, Outcome, Page,
};
#[cfg(feature = "redis")]
pub use outbox::Outbox;
pub use policy::{Jitter, Policies, RetryPolicy};
pub use sql::SqlQueue;
pub use transition::LEASE_LAPSED;
pub use worker::{BatchHandler, Handler, MakeJob, Worker, WorkerConfig};
