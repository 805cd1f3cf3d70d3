//! The outbox: jobs for the Redis lane born inside a SQL unit of work. A producer in a unit
//! (settling a reward, say) cannot write to Redis in its transaction: a job pushed before
//! the commit would run for a unit that may roll back, one pushed after it is lost if the
//! process dies in between. So [`Outbox::enqueue_in`] writes the job as a row of
//! `queue_outbox` on the unit's connection (it commits with the business rows or not at
//! all), and a relay ([`Outbox::relay_once`], [`Outbox::run`]) moves committed rows to Redis
//! and deletes them, a batch at a time.
//!
//! The job's id is made at enqueue and kept in the row, and Redis's enqueue script makes no
//! second job for an id it has: a relay that dies after pushing and before deleting (or two
//! relays racing on the same rows) pushes the rows again and creates nothing new. So no job
//! is lost up to Redis, none is sent for a rolled-back unit, and none is made twice. The
//! relay holds no transaction while it talks to Redis: it reads the rows in a snapshot,
//! pushes, then deletes them in a unit of its own.

use crate::error::Result;
use crate::model::{Concurrency, Job, JobId, NewJob};
use crate::redis::RedisQueue;
use jiff::Timestamp;
use questline_store::{Connection, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Rows a relay moves per round.
pub const RELAY_BATCH: usize = 500;

/// The outbox of one Redis queue (one namespace) in one store's database.
pub struct Outbox {
    store: Arc<dyn Store>,
    queue: Arc<RedisQueue>,
    /// Enqueues in this process ring it; the relay also polls, for other processes' rows.
    enqueued: tokio::sync::Notify,
}

impl Outbox {
    /// The outbox of `queue` in `store`'s database; applies the queue's migrations first
    /// (the table is one of them).
    pub async fn open(store: Arc<dyn Store>, queue: Arc<RedisQueue>) -> Result<Self> {
        crate::sql::migrate(&*store).await?;
        Ok(Self { store, queue, enqueued: tokio::sync::Notify::new() })
    }

    pub fn queue(&self) -> &Arc<RedisQueue> {
        &self.queue
    }

    /// Writes jobs for the Redis queue into the caller's unit of work: they reach Redis after
    /// the unit commits, through the relay, or never if it rolls back. Returns the jobs as
    /// they will be enqueued (their ids are final). Unique keys are decided on Redis when
    /// the job arrives: if an unfinished job holds the key then, that job stands instead.
    pub async fn enqueue_in(&self, conn: Connection<'_>, jobs: Vec<NewJob>, now: Timestamp) -> Result<Vec<Job>> {
        let jobs = self.queue.make(jobs, now);
        let namespace = self.queue.prefix();
        match conn {
            Connection::Sqlite(c) => sqlite::insert(c, namespace, &jobs).await?,
            Connection::Postgres(c) => postgres::insert(c, namespace, &jobs).await?,
        }
        self.enqueued.notify_one();
        Ok(jobs)
    }

    /// Up to `limit` committed rows, oldest first, as the jobs they stand for.
    pub async fn pending(&self, limit: usize) -> Result<Vec<Job>> {
        let mut snapshot = self.store.begin_foreign_read().await?;
        let namespace = self.queue.prefix();
        match snapshot.connection() {
            Connection::Sqlite(c) => sqlite::pending(c, namespace, limit).await,
            Connection::Postgres(c) => postgres::pending(c, namespace, limit).await,
        }
    }

    /// Pushes jobs to Redis; a job whose id Redis has already is left as it is. Returns the
    /// jobs that stand on Redis.
    pub async fn push(&self, jobs: Vec<Job>) -> Result<Vec<Job>> {
        self.queue.insert(jobs).await
    }

    /// Deletes the rows of jobs Redis has.
    pub async fn forget(&self, ids: &[JobId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut unit = self.store.begin().await?;
        match unit.connection() {
            Connection::Sqlite(c) => sqlite::delete(c, ids).await?,
            Connection::Postgres(c) => postgres::delete(c, ids).await?,
        }
        unit.commit().await?;
        Ok(())
    }

    /// One round: up to [`RELAY_BATCH`] rows pushed to Redis, then deleted. Returns how many
    /// rows it moved.
    pub async fn relay_once(&self) -> Result<usize> {
        let jobs = self.pending(RELAY_BATCH).await?;
        if jobs.is_empty() {
            return Ok(0);
        }
        let ids: Vec<JobId> = jobs.iter().map(|j| j.id.clone()).collect();
        self.push(jobs).await?;
        self.forget(&ids).await?;
        Ok(ids.len())
    }

    /// Relays until `stop`: rounds back to back while rows are waiting, then a nap until an
    /// enqueue in this process or `poll` (other processes' rows). A failed round is logged and
    /// tried again after the poll: its rows stay in the outbox meanwhile.
    pub async fn run(&self, poll: Duration, stop: CancellationToken) {
        loop {
            match self.relay_once().await {
                Ok(RELAY_BATCH) => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "queue: outbox relay failed; its rows wait for the next round"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.enqueued.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }
}

/// The outbox's statements for one backend, written once (`$db` is its `sqlx` database).
macro_rules! outbox_sql {
    ($name:ident, $db:ty) => {
        mod $name {
            use super::*;
            use sqlx::{QueryBuilder, Row};

            type Conn = <$db as sqlx::Database>::Connection;

            /// Rows per multi-row statement, well under both databases' bound parameters.
            const CHUNK: usize = 500;

            pub(super) async fn insert(conn: &mut Conn, namespace: &str, jobs: &[Job]) -> Result<()> {
                for chunk in jobs.chunks(CHUNK) {
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO queue_outbox (id, namespace, tenant_id, kind, payload, run_at, priority, \
                         max_attempts, unique_key, concurrency_key, concurrency_limit, created_at) ",
                    );
                    q.push_values(chunk, |mut row, job| {
                        row.push_bind(job.id.to_string())
                            .push_bind(namespace.to_owned())
                            .push_bind(job.tenant_id.clone())
                            .push_bind(job.kind.clone())
                            .push_bind(job.payload.to_string())
                            .push_bind(job.run_at.as_microsecond())
                            .push_bind(i64::from(job.priority))
                            .push_bind(i64::from(job.max_attempts))
                            .push_bind(job.unique_key.clone())
                            .push_bind(job.concurrency.as_ref().map(|c| c.key.clone()))
                            .push_bind(job.concurrency.as_ref().map(|c| i64::from(c.limit)))
                            .push_bind(job.created_at.as_microsecond());
                    });
                    q.build().execute(&mut *conn).await?;
                }
                Ok(())
            }

            pub(super) async fn pending(conn: &mut Conn, namespace: &str, limit: usize) -> Result<Vec<Job>> {
                let mut q = QueryBuilder::<$db>::new(
                    "SELECT id, tenant_id, kind, payload, run_at, priority, max_attempts, unique_key, \
                     concurrency_key, concurrency_limit, created_at FROM queue_outbox WHERE namespace = ",
                );
                q.push_bind(namespace.to_owned()).push(" ORDER BY id LIMIT ");
                q.push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
                let mut jobs = Vec::new();
                for row in q.build().fetch_all(&mut *conn).await? {
                    jobs.push(decode(
                        row.try_get("id")?,
                        NewJob {
                            kind: row.try_get("kind")?,
                            payload: parse(&row.try_get::<String, _>("payload")?)?,
                            tenant_id: row.try_get("tenant_id")?,
                            run_at: Some(instant(row.try_get("run_at")?)?),
                            priority: small(row.try_get("priority")?)?,
                            max_attempts: Some(count(row.try_get("max_attempts")?)?),
                            unique_key: row.try_get("unique_key")?,
                            concurrency: match (
                                row.try_get::<Option<String>, _>("concurrency_key")?,
                                row.try_get::<Option<i64>, _>("concurrency_limit")?,
                            ) {
                                (Some(key), Some(limit)) => Some(Concurrency { key, limit: count(limit)? }),
                                _ => None,
                            },
                        },
                        instant(row.try_get("created_at")?)?,
                    ));
                }
                Ok(jobs)
            }

            pub(super) async fn delete(conn: &mut Conn, ids: &[JobId]) -> Result<()> {
                for chunk in ids.chunks(CHUNK) {
                    let mut q = QueryBuilder::<$db>::new("DELETE FROM queue_outbox WHERE id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(id.to_string());
                    }
                    q.push(")");
                    q.build().execute(&mut *conn).await?;
                }
                Ok(())
            }
        }
    };
}

outbox_sql!(sqlite, sqlx::Sqlite);
outbox_sql!(postgres, sqlx::Postgres);

/// The job a row stands for: made as at its enqueue (`Job::from_new` at `created_at`).
fn decode(id: String, new: NewJob, created_at: Timestamp) -> Job {
    let max_attempts = new.max_attempts.unwrap_or(1);
    Job::from_new(new, JobId::new(id), max_attempts, created_at)
}

fn corrupt(what: String) -> crate::QueueError {
    crate::QueueError::Corrupt(format!("outbox row: {what}"))
}

fn parse(payload: &str) -> Result<serde_json::Value> {
    serde_json::from_str(payload).map_err(|e| corrupt(format!("payload: {e}")))
}

fn instant(us: i64) -> Result<Timestamp> {
    Timestamp::from_microsecond(us).map_err(|e| corrupt(format!("instant {us}: {e}")))
}

fn small(n: i64) -> Result<i16> {
    i16::try_from(n).map_err(|_| corrupt(format!("priority {n}")))
}

fn count(n: i64) -> Result<u32> {
    u32::try_from(n).map_err(|_| corrupt(format!("count {n}")))
}
