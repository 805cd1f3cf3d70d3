//! The one interface every lane implements and the worker runs on.
//!
//! Every method that decides by the clock takes `now`, so tests drive time. Lanes keep the
//! state as of their last write and never rewrite rows as time passes: a scheduled job
//! whose `run_at` has come is simply claimable, and reads report it `available`
//! ([`crate::Job::state_at`]).

use crate::error::Result;
use crate::model::{Ack, Claim, ClaimRequest, Depth, Job, JobId, ListFilter, NewJob, Page};
use crate::policy::Policies;
use async_trait::async_trait;
use jiff::Timestamp;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How a lane is set up.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Retry policies by kind: a job's default `max_attempts` at enqueue, and the backoff
    /// when an attempt fails.
    pub policies: Policies,
    /// A job whose worker died this many times holding it is quarantined (dead).
    pub max_crashes: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self { policies: Policies::default(), max_crashes: 3 }
    }
}

/// A job queue: the durable (SQL) lane, the in-memory one, or the Redis one.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The lane's name in metrics and logs: `memory`, `sqlite`, `postgres` or `redis`.
    fn lane(&self) -> &'static str;

    /// Enqueues jobs in one go. A job whose unique key an unfinished job of its tenant
    /// holds is not added: that job is returned in its place. Returns one job per input,
    /// in order.
    async fn enqueue(&self, jobs: Vec<NewJob>, now: Timestamp) -> Result<Vec<Job>>;

    /// Enqueues `job` as periodic schedule `schedule`'s run for the tick that starts at
    /// `tick`, unless this tick or a later one was enqueued already, by this process or any
    /// other: one job per tick however many workers hold the schedule. Returns the job if
    /// this call enqueued it.
    async fn enqueue_tick(&self, schedule: &str, tick: Timestamp, job: NewJob, now: Timestamp) -> Result<Option<Job>>;

    /// Claims up to `limit` due jobs of these kinds, by priority then `run_at`, never more
    /// running at once per concurrency key than its limit: each becomes `running` with one
    /// more attempt and a lease until `now + lease`. Two claims never return the same job.
    async fn claim(&self, request: &ClaimRequest, now: Timestamp) -> Result<Vec<Job>>;

    /// Applies many handler outcomes at once. An ack whose claim no longer holds (its lease
    /// lapsed and the job was rescued, or claimed again) changes nothing and is left out of
    /// the jobs returned.
    async fn complete(&self, acks: Vec<Ack>, now: Timestamp) -> Result<Vec<Job>>;

    /// Extends the leases of these claims to `now + lease`. Returns the claims still held
    /// (a claim that lapsed and was rescued is not renewed: its worker should stop).
    async fn heartbeat(&self, claims: &[Claim], lease: Duration, now: Timestamp) -> Result<Vec<Claim>>;

    /// Running jobs whose lease lapsed before `now` go back to `retrying` (the attempt
    /// counts, with a "lease lapsed" error), or to `dead` after [`QueueConfig::max_crashes`]
    /// such crashes. Returns them as they now stand.
    async fn rescue(&self, now: Timestamp) -> Result<Vec<Job>>;

    async fn get(&self, id: &JobId, now: Timestamp) -> Result<Option<Job>>;

    /// How many unfinished jobs there are, by kind and state as a reader at `now` sees it
    /// (the queue depth an operator watches). Kinds and states with none are left out.
    async fn depth(&self, now: Timestamp) -> Result<Vec<Depth>>;

    /// A page of jobs by id.
    async fn list(&self, filter: &ListFilter, now: Timestamp) -> Result<Page>;

    /// A dead or waiting job runs now.
    async fn retry_now(&self, id: &JobId, now: Timestamp) -> Result<Job>;

    /// A job that has not started never runs.
    async fn cancel(&self, id: &JobId, now: Timestamp) -> Result<Job>;

    /// Deletes succeeded and cancelled jobs finished before `finished_before`, and dead ones
    /// too if `dead_before` is given (dead letters are kept longer, to be looked at).
    /// Returns how many were deleted.
    async fn prune(&self, finished_before: Timestamp, dead_before: Option<Timestamp>) -> Result<u64>;

    /// Changes whenever jobs may have become due: a worker waits on it between claims
    /// (and polls as a fallback, for what it cannot hear: a delayed job's time coming,
    /// another process's enqueue on SQLite).
    fn wakeups(&self) -> watch::Receiver<u64>;

    /// Keeps what the lane's own planning rests on fresh; the worker calls it with every
    /// rescue. PostgreSQL: the job table's statistics after a burst (see
    /// `sql::postgres::refresh_statistics`). Others: nothing.
    async fn maintain(&self) -> Result<()> {
        Ok(())
    }

    /// Feeds [`Backend::wakeups`] from outside the process until `stop` (PostgreSQL:
    /// `LISTEN`; Redis: `SUBSCRIBE`); the worker runs it in its task tracker. Lanes with
    /// nothing to listen to wait for `stop`.
    async fn listen(&self, stop: CancellationToken) -> Result<()> {
        stop.cancelled().await;
        Ok(())
    }
}

/// Bumps a wakeup channel (whether anyone listens or not).
pub(crate) fn wake(tx: &watch::Sender<u64>) {
    tx.send_modify(|n| *n = n.wrapping_add(1));
}
