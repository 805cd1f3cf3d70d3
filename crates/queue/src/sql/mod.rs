//! The durable lane: jobs in the questline store's own database (SQLite or PostgreSQL).
//!
//! The lane owns no connection pool: writes run in the store's units of work
//! ([`Store::begin`]; on SQLite that is the store's single writer, so the queue and ingest
//! never collide on the file lock), reads in its read snapshots
//! ([`Store::begin_foreign_read`]). A producer that is already in a unit of work enqueues
//! on its connection ([`SqlQueue::enqueue_in`]), so that a job commits with the business
//! rows it belongs to, or not at all.
//!
//! The table is this crate's own (`migrations/`, versions from 1001, applied by
//! [`migrate`] through [`Store::apply_migrations`]).
//!
//! Codemap: `shared.rs` (the statements, compiled once per backend), `sqlite.rs` and
//! `postgres.rs` (the words that differ; PostgreSQL's `LISTEN`).

mod postgres;
mod sqlite;

pub use postgres::CHANNEL;

use crate::backend::{Backend, QueueConfig, wake};
use crate::error::{QueueError, Result};
use crate::memory::as_read;
use crate::model::{Ack, Claim, ClaimRequest, Depth, Job, JobId, JobState, ListFilter, NewJob, Page, add};
use crate::transition;
use async_trait::async_trait;
use jiff::Timestamp;
use questline_store::{Connection, Store, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Which rows a rewrite (`shared::rewrite`: read, run through the state machine, write
/// back) reads. Defined here, once, as both backends' copies of `shared` take it.
#[derive(Clone, Copy)]
pub(crate) enum Rows<'a> {
    /// These jobs, those that exist.
    Ids(&'a [JobId]),
    /// Up to `limit` running jobs whose lease lapsed before `now`, oldest lease first.
    Lapsed { now: Timestamp, limit: usize },
}

/// A unit of work that lost a race (deadlock, serialization failure) is run again, up to
/// this many times in all.
const WRITE_TRIES: u32 = 3;

/// Lapsed jobs one rescue handles; the worker rescues again on its next round.
const RESCUE_BATCH: usize = 500;

/// Applies the queue's migrations to the store's database (idempotent; concurrent starts
/// on PostgreSQL are safe, the migrator holds an advisory lock).
pub async fn migrate(store: &dyn Store) -> Result<()> {
    let mut sqlite = sqlx::migrate!("./migrations/sqlite");
    sqlite.set_ignore_missing(true);
    let mut postgres = sqlx::migrate!("./migrations/postgres");
    postgres.set_ignore_missing(true);
    Ok(store.apply_migrations(&sqlite, &postgres).await?)
}

/// Calls `$f` (a function both `sqlite` and `postgres` have, taking the connection first)
/// of the backend `$conn` is of.
macro_rules! on {
    ($conn:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $conn {
            Connection::Sqlite(c) => sqlite::$f(c, $($arg),*).await,
            Connection::Postgres(c) => postgres::$f(c, $($arg),*).await,
        }
    };
}

/// Runs `$body` (which uses the unit's connection as `$conn`) in a unit of work of its own
/// and commits it; a lost race runs it again.
macro_rules! in_unit {
    ($store:expr, |$conn:ident| $body:expr) => {{
        let mut tries = 0;
        loop {
            tries += 1;
            let result: Result<_> = async {
                let mut unit = $store.begin().await?;
                let value = {
                    let $conn = unit.connection();
                    $body
                };
                unit.commit().await?;
                Ok(value)
            }
            .await;
            match result {
                Err(QueueError::Store(e)) if e.is_retryable() && tries < WRITE_TRIES => continue,
                other => break other,
            }
        }
    }};
}

/// The SQL lane. On SQLite, do not call its methods while holding a unit of work of the
/// same store: they would wait for the writer the unit holds. Enqueue in the unit with
/// [`SqlQueue::enqueue_in`] instead.
pub struct SqlQueue {
    store: Arc<dyn Store>,
    config: QueueConfig,
    wakeups: watch::Sender<u64>,
    /// PostgreSQL only: where to `LISTEN` for other processes' enqueues.
    listen_url: Option<String>,
    /// `sqlite` or `postgres`.
    lane: &'static str,
}

impl SqlQueue {
    /// The lane on `store`'s database; applies the queue's migrations first.
    pub async fn open(store: Arc<dyn Store>, config: QueueConfig) -> Result<Self> {
        migrate(&*store).await?;
        let lane = match store.begin_foreign_read().await?.connection() {
            Connection::Sqlite(_) => "sqlite",
            Connection::Postgres(_) => "postgres",
        };
        Ok(Self { store, config, wakeups: watch::channel(0).0, listen_url: None, lane })
    }

    /// Also hear other processes' enqueues: on PostgreSQL, [`Backend::listen`] then runs
    /// `LISTEN` on a connection of its own to `database_url`. (SQLite has no `NOTIFY`;
    /// another process's jobs are found by the workers' poll.)
    pub fn listening(mut self, database_url: &str) -> Self {
        if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            self.listen_url = Some(database_url.to_owned());
        }
        self
    }

    /// Enqueues jobs in the caller's unit of work (from [`questline_store::UnitOfWork::connection`]):
    /// they commit with it or not at all. Returns one job per input, as
    /// [`Backend::enqueue`] does. Workers in this process are woken now (on SQLite their
    /// claim then waits for the writer, so it sees the jobs once the unit commits);
    /// PostgreSQL's listeners hear of the jobs when the unit commits.
    pub async fn enqueue_in(&self, conn: Connection<'_>, jobs: Vec<NewJob>, now: Timestamp) -> Result<Vec<Job>> {
        let jobs = self.make(jobs, now);
        let ids: Vec<JobId> = jobs.iter().map(|j| j.id.clone()).collect();
        let out = match conn {
            Connection::Sqlite(c) => enqueue_sqlite(c, jobs).await?,
            Connection::Postgres(c) => enqueue_postgres(c, jobs).await?,
        };
        // Counted when written into the unit: a unit rolled back afterwards is not seen here.
        count_new(self.lane, &ids, &out);
        wake(&self.wakeups);
        Ok(out)
    }

    fn make(&self, jobs: Vec<NewJob>, now: Timestamp) -> Vec<Job> {
        jobs.into_iter()
            .map(|new| {
                let max_attempts = self.config.policies.get(&new.kind).max_attempts;
                Job::from_new(new, JobId::generate(), max_attempts, now)
            })
            .collect()
    }

    /// Reads in a snapshot of their own.
    async fn read<T>(&self, f: impl AsyncFnOnce(Connection<'_>) -> Result<T>) -> Result<T> {
        let mut snapshot = self.store.begin_foreign_read().await?;
        f(snapshot.connection()).await
    }

    /// Changes the one job `id` with `change` in a unit of work of its own.
    async fn update(
        &self,
        id: &JobId,
        action: &'static str,
        change: impl Fn(Job) -> Result<Job, JobState> + Send + Sync,
    ) -> Result<Job> {
        let step =
            |job: Job| change(job).map(Some).map_err(|state| QueueError::WrongState { id: id.clone(), state, action });
        let changed = in_unit!(self.store, |conn| on!(conn, rewrite(Rows::Ids(std::slice::from_ref(id)), step))?)?;
        changed.into_iter().next().ok_or_else(|| QueueError::NotFound(id.clone()))
    }
}

/// Inserts made jobs, and answers for those a unique key turned away with the job that
/// holds the key.
macro_rules! enqueue_on {
    ($name:ident, $backend:ident) => {
        async fn $name(conn: &mut $backend::Conn, jobs: Vec<Job>) -> Result<Vec<Job>> {
            let inserted = $backend::insert(&mut *conn, &jobs).await?;
            let inserted: std::collections::HashSet<JobId> = inserted.into_iter().collect();
            let mut out = Vec::with_capacity(jobs.len());
            for job in jobs {
                if inserted.contains(&job.id) {
                    out.push(job);
                    continue;
                }
                let holder = match &job.unique_key {
                    Some(key) => $backend::holder_of(&mut *conn, &job.tenant_id, key).await?,
                    None => None,
                };
                // Only a unique key turns a job away. Its holder can be gone only if it
                // finished between the insert and this read: a lost race, run again.
                let lost =
                    || StoreError::Retryable(format!("the holder of job {}'s unique key finished meanwhile", job.id));
                out.push(holder.ok_or_else(lost)?);
            }
            if !inserted.is_empty() {
                $backend::notify(&mut *conn).await?;
            }
            Ok(out)
        }
    };
}

/// Counts the jobs of `out` that are the ones made (`ids`), not existing holders of a key.
fn count_new(lane: &'static str, ids: &[JobId], out: &[Job]) {
    ids.iter().zip(out).filter(|(id, job)| **id == job.id).for_each(|(_, job)| crate::metrics::enqueued(lane, job));
}

enqueue_on!(enqueue_sqlite, sqlite);
enqueue_on!(enqueue_postgres, postgres);

#[async_trait]
impl Backend for SqlQueue {
    fn lane(&self) -> &'static str {
        self.lane
    }

    async fn enqueue(&self, jobs: Vec<NewJob>, now: Timestamp) -> Result<Vec<Job>> {
        let jobs = self.make(jobs, now);
        let ids: Vec<JobId> = jobs.iter().map(|j| j.id.clone()).collect();
        let out = in_unit!(self.store, |conn| match conn {
            Connection::Sqlite(c) => enqueue_sqlite(c, jobs.clone()).await?,
            Connection::Postgres(c) => enqueue_postgres(c, jobs.clone()).await?,
        })?;
        count_new(self.lane, &ids, &out);
        wake(&self.wakeups);
        Ok(out)
    }

    async fn enqueue_tick(&self, schedule: &str, tick: Timestamp, job: NewJob, now: Timestamp) -> Result<Option<Job>> {
        let jobs = self.make(vec![job], now);
        let out = in_unit!(self.store, |conn| match conn {
            Connection::Sqlite(c) => match sqlite::advance_tick(c, schedule, tick).await? {
                true => enqueue_sqlite(c, jobs.clone()).await?.pop(),
                false => None,
            },
            Connection::Postgres(c) => match postgres::advance_tick(c, schedule, tick).await? {
                true => enqueue_postgres(c, jobs.clone()).await?.pop(),
                false => None,
            },
        })?;
        if let Some(job) = &out {
            crate::metrics::enqueued(self.lane, job);
            wake(&self.wakeups);
        }
        Ok(out)
    }

    async fn claim(&self, request: &ClaimRequest, now: Timestamp) -> Result<Vec<Job>> {
        if request.kinds.is_empty() || request.limit == 0 {
            return Ok(Vec::new());
        }
        in_unit!(self.store, |conn| on!(conn, claim_due(request, now))?)
    }

    async fn complete(&self, acks: Vec<Ack>, now: Timestamp) -> Result<Vec<Job>> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        // Successes are written without being read; only the rest are read, decided by the
        // state machine and written back.
        let (done, others): (Vec<&Ack>, Vec<&Ack>) =
            acks.iter().partition(|a| matches!(a.outcome, crate::Outcome::Done));
        let done: Vec<Claim> = done.into_iter().map(|a| a.claim.clone()).collect();
        let ids: Vec<JobId> = others.iter().map(|a| a.claim.id.clone()).collect();
        let by_id: HashMap<&JobId, &Ack> = others.iter().map(|a| (&a.claim.id, *a)).collect();
        // An ack whose claim no longer holds leaves its job alone.
        let settle = |job: Job| {
            let Some(ack) = by_id.get(&job.id).filter(|a| job.is_held_by(&a.claim)) else { return Ok(None) };
            let policy = self.config.policies.get(&job.kind);
            Ok(Some(transition::settle(job, &ack.outcome, policy, now, rand::random())))
        };
        let done = in_unit!(self.store, |conn| on!(conn, complete(&done, &ids, settle, now))?)?;
        if done.iter().any(|j| j.state.is_waiting()) {
            wake(&self.wakeups);
        }
        Ok(done)
    }

    async fn heartbeat(&self, claims: &[Claim], lease: Duration, now: Timestamp) -> Result<Vec<Claim>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let until = add(now, lease);
        in_unit!(self.store, |conn| on!(conn, heartbeat(claims, until))?)
    }

    async fn rescue(&self, now: Timestamp) -> Result<Vec<Job>> {
        let lapsed = Rows::Lapsed { now, limit: RESCUE_BATCH };
        let rescue = |job| Ok(Some(transition::rescue(job, self.config.max_crashes, now)));
        let rescued = in_unit!(self.store, |conn| on!(conn, rewrite(lapsed, rescue))?)?;
        if !rescued.is_empty() {
            wake(&self.wakeups);
        }
        Ok(rescued)
    }

    async fn get(&self, id: &JobId, now: Timestamp) -> Result<Option<Job>> {
        let job = self.read(async |conn| on!(conn, get(id))).await?;
        Ok(job.map(|j| as_read(j, now)))
    }

    async fn depth(&self, now: Timestamp) -> Result<Vec<Depth>> {
        let mut depth = self.read(async |conn| on!(conn, depth(now))).await?;
        depth.sort();
        Ok(depth)
    }

    async fn list(&self, filter: &ListFilter, now: Timestamp) -> Result<Page> {
        let mut items = self.read(async |conn| on!(conn, list(filter, now))).await?;
        let size = filter.page_size();
        let next_cursor = (items.len() > size).then(|| {
            items.truncate(size);
            items[size - 1].id.clone()
        });
        Ok(Page { items: items.into_iter().map(|j| as_read(j, now)).collect(), next_cursor })
    }

    async fn retry_now(&self, id: &JobId, now: Timestamp) -> Result<Job> {
        // A dead job's unique key is free, and may have been taken since.
        let job = self.get(id, now).await?.ok_or_else(|| QueueError::NotFound(id.clone()))?;
        if let (JobState::Dead, Some(key)) = (job.state, &job.unique_key) {
            let holder = self.read(async |conn| on!(conn, holder_of(&job.tenant_id, key))).await?;
            if let Some(holder) = holder {
                return Err(QueueError::UniqueKeyTaken { id: id.clone(), holder: holder.id });
            }
        }
        let job = self.update(id, "retried", |job| transition::retry_now(job, now)).await?;
        wake(&self.wakeups);
        Ok(as_read(job, now))
    }

    async fn cancel(&self, id: &JobId, now: Timestamp) -> Result<Job> {
        let job = self.update(id, "cancelled", |job| transition::cancel(job, now)).await?;
        Ok(as_read(job, now))
    }

    async fn prune(&self, finished_before: Timestamp, dead_before: Option<Timestamp>) -> Result<u64> {
        in_unit!(self.store, |conn| on!(conn, prune(finished_before, dead_before))?)
    }

    fn wakeups(&self) -> watch::Receiver<u64> {
        self.wakeups.subscribe()
    }

    async fn maintain(&self) -> Result<()> {
        if self.lane != "postgres" {
            return Ok(());
        }
        in_unit!(self.store, |conn| on!(conn, refresh_statistics())?)?;
        Ok(())
    }

    async fn listen(&self, stop: CancellationToken) -> Result<()> {
        match &self.listen_url {
            Some(url) => postgres::listen(url, &self.wakeups, &stop).await,
            None => {
                stop.cancelled().await;
                Ok(())
            }
        }
    }
}
