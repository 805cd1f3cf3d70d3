//! questline's task scheduler: one job model, one retry policy and one worker over two
//! lanes behind one [`Backend`] trait — the durable SQL lane ([`SqlQueue`], on the store's
//! SQLite or PostgreSQL database) and the in-memory lane ([`MemoryQueue`], for tests and
//! work that may be lost). A Redis lane is to come behind the same trait.
//!
//! # Why written here, not on riverqueue or apalis
//!
//! Three requirements decided it. (1) A retry must be persisted as the job's next `run_at`
//! in the same write that records the failure; a library whose retries sleep inside the
//! worker loses the backoff (and the attempt) when the process dies. (2) Enqueueing must
//! share the business transaction of questline's own store, so a completion and its
//! settlement job commit together or not at all ([`SqlQueue::enqueue_in`] on
//! [`questline_store::UnitOfWork::connection`]); riverqueue has transactional insert, but on
//! its own schema and connections, beside the store's single SQLite writer rather than on
//! it. (3) The same model must later run on Redis, which neither offers. What the peers do
//! well is taken as design: River's claim-and-mark-running in one `FOR UPDATE SKIP LOCKED`
//! statement and batched completion, graphile-worker's batching, Sidekiq's lesson on
//! quarantining jobs that keep crashing their worker.
//!
//! # Model
//!
//! A [`Job`] is `scheduled`/`available` → `running` (claimed under a lease, kept alive by
//! heartbeats) → `succeeded`, `retrying` (next `run_at` = backoff, or the handler's own
//! `Retry-After`), or `dead` (out of attempts, [`Outcome::Discard`]ed, or quarantined after
//! [`QueueConfig::max_crashes`] lapsed leases), every attempt's error kept. A snooze gives
//! the attempt back. Unique keys deduplicate while a job is unfinished; concurrency keys cap
//! how many of one key run at once. Time is always a parameter (`now`), so tests control the
//! clock; only the [`Worker`] reads it.
//!
//! Codemap: `model.rs` (the types), `policy.rs` (backoff, pure), `transition.rs` (the state
//! machine, pure, shared by every lane), `backend.rs` (the trait), `memory.rs`, `sql/` (the
//! SQL lane: statements once for both databases), `worker.rs` (the runtime), `metrics.rs`.

#![forbid(unsafe_code)]

mod backend;
mod error;
mod memory;
mod metrics;
mod model;
mod policy;
pub mod sql;
mod transition;
mod worker;

pub use backend::{Backend, QueueConfig};
pub use error::{QueueError, Result};
pub use memory::MemoryQueue;
pub use model::{
    Ack, AttemptError, Claim, ClaimRequest, Concurrency, DEFAULT_PAGE, DEFAULT_TENANT, Depth, Job, JobId, JobState,
    ListFilter, MAX_PAGE, NewJob, Outcome, Page,
};
pub use policy::{Jitter, Policies, RetryPolicy};
pub use sql::SqlQueue;
pub use transition::LEASE_LAPSED;
pub use worker::{BatchHandler, Handler, MakeJob, Worker, WorkerConfig};
