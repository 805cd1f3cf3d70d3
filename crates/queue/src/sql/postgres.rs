//! The SQL lane on PostgreSQL: many processes on one database.
//!
//! - Claims pick with `FOR UPDATE SKIP LOCKED`, so concurrent claimers pass each other's
//!   rows. While jobs with a concurrency key are available, claims that may take them are
//!   serialized by a transaction-scoped advisory lock: that is what makes a key's limit
//!   exact across processes (two claims counting the same running jobs at once could each
//!   take the last slot). Claims without the lock leave keyed jobs alone.
//! - Other writes read their rows `FOR UPDATE` in id order before writing them back.
//! - Enqueues `NOTIFY` [`CHANNEL`] inside their transaction, so listeners hear of a job
//!   exactly when it commits, and never of a rolled-back one.

#[allow(clippy::duplicate_mod, reason = "the shared SQL, compiled once per backend")]
#[path = "shared.rs"]
mod shared;

pub(super) use shared::*;

use crate::backend::wake;
use crate::{ClaimRequest, Job, Result};
use jiff::Timestamp;
use sqlx::postgres::PgListener;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

type Db = sqlx::Postgres;

const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";
const FOR_UPDATE: &str = " FOR UPDATE";

/// The `LISTEN`/`NOTIFY` channel on which enqueues announce new jobs.
pub const CHANNEL: &str = "questline_queue_jobs";

/// The advisory lock key claims take (an arbitrary constant of this crate's: "queue").
const CLAIM_LOCK: i64 = 0x0071_7565_7565;

/// A claim. Claims of jobs without a concurrency key run side by side, passing each
/// other's rows (`SKIP LOCKED`); only while an available job of the kinds asked for has a
/// key does a claim take the claim lock first, and then it may take keyed jobs too.
///
/// A claim commits without waiting for its WAL to reach the disk (`synchronous_commit =
/// off`, for this transaction only): a claim lost in a crash leaves its jobs available, to
/// run again — what a worker dying with them does anyway — and never an inconsistency,
/// since any later durable commit (an acknowledgement of the same jobs) flushes the WAL
/// before it, claim included. It saves a disk flush (~3.4 ms here) per claim.
pub(super) async fn claim_due(conn: &mut Conn, request: &ClaimRequest, now: Timestamp) -> Result<Vec<Job>> {
    sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *conn).await?;
    promote(&mut *conn, now).await?;
    let keyed = any_keyed(&mut *conn, &request.kinds).await?;
    if keyed {
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CLAIM_LOCK).execute(&mut *conn).await?;
    }
    claim(conn, request, now, keyed).await
}

pub(super) async fn notify(conn: &mut Conn) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, '')").bind(CHANNEL).execute(&mut *conn).await?;
    Ok(())
}

/// Bumps `wakeups` on every notification until `stop`. A lost connection is reopened (after
/// a pause, so a database that is down is not hammered); meanwhile workers fall back to
/// their poll interval.
pub(super) async fn listen(url: &str, wakeups: &watch::Sender<u64>, stop: &CancellationToken) -> Result<()> {
    const PAUSE: Duration = Duration::from_secs(1);
    while !stop.is_cancelled() {
        let mut listener = match PgListener::connect(url).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "queue: cannot LISTEN; polling until the database answers");
                tokio::select! { () = stop.cancelled() => break, () = tokio::time::sleep(PAUSE) => continue }
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "queue: LISTEN failed; polling meanwhile");
            tokio::select! { () = stop.cancelled() => break, () = tokio::time::sleep(PAUSE) => continue }
        }
        // After (re)connecting, something may have been missed: wake once.
        wake(wakeups);
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                received = listener.try_recv() => match received {
                    Ok(Some(_)) => wake(wakeups),
                    // The connection dropped (`PgListener` would reconnect, but a notification
                    // sent meanwhile is lost): wake once for it.
                    Ok(None) => wake(wakeups),
                    Err(e) => {
                        tracing::warn!(error = %e, "queue: LISTEN connection lost; reconnecting");
                        break;
                    }
                },
            }
        }
    }
    Ok(())
}

/// Whether an available job of these kinds has a concurrency key (one probe of an index).
async fn any_keyed(conn: &mut Conn, kinds: &[String]) -> Result<bool> {
    if kinds.is_empty() {
        return Ok(false);
    }
    let mut q = sqlx::QueryBuilder::<Db>::new(
        "SELECT 1 FROM queue_jobs WHERE state = 'available' AND concurrency_key IS NOT NULL AND kind IN (",
    );
    let mut list = q.separated(", ");
    for kind in kinds {
        list.push_bind(kind.clone());
    }
    q.push(") LIMIT 1");
    Ok(q.build().fetch_optional(&mut *conn).await?.is_some())
}

/// Analyzes the job table when it changed by more than a fifth since its statistics were
/// taken (and by at least [`ANALYZE_AFTER`] rows): a burst of enqueues into a table the
/// planner believes small makes it read every available job and sort them (bitmap scan)
/// on every claim instead of walking the claim-order index to the first few. Measured on
/// 100,000 bulk-enqueued jobs before autovacuum's first look: claims of ~100 ms, a drain of
/// ~250 jobs/s; after an `ANALYZE`, ~6,800 jobs/s. Autovacuum gets there too, but a minute
/// or more later. Returns whether it analyzed.
pub(super) async fn refresh_statistics(conn: &mut Conn) -> Result<bool> {
    let stale: Option<(i64, f32)> = sqlx::query_as(
        "SELECT s.n_mod_since_analyze, c.reltuples FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
         WHERE s.relid = 'queue_jobs'::regclass",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some((changed, rows)) = stale else { return Ok(false) };
    if changed < ANALYZE_AFTER || (changed as f64) < 0.2 * f64::from(rows.max(0.0)) {
        return Ok(false);
    }
    sqlx::query("ANALYZE queue_jobs").execute(&mut *conn).await?;
    tracing::debug!(changed, rows, "queue: job table analyzed");
    Ok(true)
}

/// Rows changed before a burst is worth new statistics.
const ANALYZE_AFTER: i64 = 1000;
