//! The SQL lane's statements, written once and compiled once per backend (as the store's
//! `shared/` is): `super::Db` is SQLite's or PostgreSQL's `sqlx` database, and the few
//! words that differ come from the backend module (`SKIP_LOCKED`, `FOR_UPDATE`).
//! Statements are built with `QueryBuilder`, which writes each backend's placeholders.
//!
//! The state machine is not here: writes other than claiming read the rows they change
//! (locked on PostgreSQL), run them through `crate::transition`, and write them back.

use super::{Db, FOR_UPDATE, SKIP_LOCKED};
use crate::error::{QueueError, Result};
use crate::model::{AttemptError, Claim, ClaimRequest, Concurrency, Depth, Job, JobId, JobState, ListFilter, add};
use crate::sql::Rows;
use jiff::Timestamp;
use sqlx::{QueryBuilder, Row};

pub(crate) type Conn = <Db as sqlx::Database>::Connection;
type DbRow = <Db as sqlx::Database>::Row;

/// Rows per multi-row statement: 500 rows of up to 17 values stay under SQLite's 32766 and
/// PostgreSQL's 65535 bound parameters.
const CHUNK: usize = 500;

/// Every column, in the order [`decode`] reads them by name.
const COLUMNS: &str = "id, tenant_id, kind, payload, state, attempt, max_attempts, run_at, priority, errors, \
                       unique_key, concurrency_key, concurrency_limit, created_at, finished_at, claims, crashes, \
                       leased_until";

/// Inserts jobs (already made, with their ids); a job whose unique key an unfinished job
/// holds is skipped. Returns the ids inserted.
pub(crate) async fn insert(conn: &mut Conn, jobs: &[Job]) -> Result<Vec<JobId>> {
    let mut inserted = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(CHUNK) {
        let mut q = QueryBuilder::<Db>::new(format!("INSERT INTO queue_jobs ({COLUMNS}) "));
        q.push_values(chunk, |mut row, job| {
            let (ckey, climit) = match &job.concurrency {
                Some(c) => (Some(c.key.clone()), Some(i64::from(c.limit))),
                None => (None, None),
            };
            row.push_bind(job.id.as_str().to_owned())
                .push_bind(job.tenant_id.clone())
                .push_bind(job.kind.clone())
                .push_bind(job.payload.to_string())
                .push_bind(job.state.as_str())
                .push_bind(i64::from(job.attempt))
                .push_bind(i64::from(job.max_attempts))
                .push_bind(micros(job.run_at))
                .push_bind(i64::from(job.priority))
                .push_bind(errors_json(&job.errors))
                .push_bind(job.unique_key.clone())
                .push_bind(ckey)
                .push_bind(climit)
                .push_bind(micros(job.created_at))
                .push_bind(job.finished_at.map(micros))
                .push_bind(i64::from(job.claims))
                .push_bind(i64::from(job.crashes))
                .push_bind(job.leased_until.map(micros));
        });
        // No conflict target: the arbiter is the partial unique index on the unique key.
        q.push(" ON CONFLICT DO NOTHING RETURNING id");
        let ids: Vec<String> = q.build_query_scalar().fetch_all(&mut *conn).await?;
        inserted.extend(ids.into_iter().map(JobId::new));
    }
    Ok(inserted)
}

/// Moves periodic schedule `schedule`'s last tick to `tick` if it is behind; returns
/// whether it moved (this transaction then owns the tick). On PostgreSQL a concurrent
/// transaction moving the same schedule waits for this one, then finds the tick taken.
pub(crate) async fn advance_tick(conn: &mut Conn, schedule: &str, tick: Timestamp) -> Result<bool> {
    let mut q = QueryBuilder::<Db>::new("INSERT INTO queue_periodic (name, last_tick) VALUES (");
    q.push_bind(schedule.to_owned()).push(", ").push_bind(micros(tick));
    q.push(
        ") ON CONFLICT (name) DO UPDATE SET last_tick = excluded.last_tick \
         WHERE queue_periodic.last_tick < excluded.last_tick RETURNING name",
    );
    Ok(q.build().fetch_optional(&mut *conn).await?.is_some())
}

/// The unfinished job of `tenant` holding `key`, if any.
pub(crate) async fn holder_of(conn: &mut Conn, tenant: &str, key: &str) -> Result<Option<Job>> {
    let mut q = QueryBuilder::<Db>::new(format!("SELECT {COLUMNS} FROM queue_jobs WHERE tenant_id = "));
    q.push_bind(tenant.to_owned()).push(" AND unique_key = ").push_bind(key.to_owned());
    q.push(" AND state IN ('scheduled', 'available', 'running', 'retrying')");
    q.build().fetch_optional(&mut *conn).await?.map(|r| decode(&r)).transpose()
}

/// Makes the scheduled and retrying jobs due at `now` available, so that a claim's pick
/// scans only available jobs (its index), never past jobs whose time has not come. Rows
/// another claim is promoting are skipped (PostgreSQL), not waited for.
pub(crate) async fn promote(conn: &mut Conn, now: Timestamp) -> Result<()> {
    let mut q = QueryBuilder::<Db>::new(
        "UPDATE queue_jobs SET state = 'available' WHERE id IN (SELECT id FROM queue_jobs \
         WHERE state IN ('scheduled', 'retrying') AND run_at <= ",
    );
    q.push_bind(micros(now)).push(SKIP_LOCKED).push(")");
    q.build().execute(&mut *conn).await?;
    Ok(())
}

/// Claims available jobs (call [`promote`] first) in ONE statement: picks them in claim
/// order (PostgreSQL: `FOR UPDATE
/// SKIP LOCKED`, so concurrent claims pass each other), leaves out jobs whose concurrency
/// key is saturated before the limit is applied (so a flooding key cannot crowd the others
/// out of the pick), ranks the rest within their key so that the pick itself stays within
/// each limit, and marks them running with one more attempt and a lease. Without `keyed`,
/// jobs with a concurrency key are left alone: a claim may count a key's running jobs only
/// where no other claim counts them at once (PostgreSQL: under the claim lock).
pub(crate) async fn claim(conn: &mut Conn, request: &ClaimRequest, now: Timestamp, keyed: bool) -> Result<Vec<Job>> {
    if request.kinds.is_empty() || request.limit == 0 {
        return Ok(Vec::new());
    }
    let mut q = QueryBuilder::<Db>::new(
        "WITH running AS ( \
             SELECT tenant_id, concurrency_key, count(*) AS n FROM queue_jobs \
             WHERE state = 'running' AND concurrency_key IS NOT NULL \
             GROUP BY tenant_id, concurrency_key \
         ), \
         picked AS ( \
             SELECT id FROM queue_jobs j \
             WHERE state = 'available' AND run_at <= ",
    );
    q.push_bind(micros(now)).push(" AND kind IN (");
    let mut kinds = q.separated(", ");
    for kind in &request.kinds {
        kinds.push_bind(kind.clone());
    }
    q.push(
        ") AND NOT EXISTS (SELECT 1 FROM running r WHERE r.tenant_id = j.tenant_id \
             AND r.concurrency_key = j.concurrency_key AND r.n >= j.concurrency_limit) \
         ",
    );
    if !keyed {
        q.push("AND concurrency_key IS NULL ");
    }
    q.push("ORDER BY priority, run_at, id LIMIT ");
    q.push_bind(i64::try_from(request.limit).unwrap_or(i64::MAX));
    q.push(SKIP_LOCKED);
    q.push(
        "), \
         ranked AS ( \
             SELECT j.id, j.tenant_id, j.concurrency_key, j.concurrency_limit, \
                    row_number() OVER (PARTITION BY j.tenant_id, j.concurrency_key \
                                       ORDER BY j.priority, j.run_at, j.id) AS rank \
             FROM queue_jobs j JOIN picked p ON p.id = j.id \
         ), \
         allowed AS ( \
             SELECT k.id FROM ranked k LEFT JOIN running r \
                 ON r.tenant_id = k.tenant_id AND r.concurrency_key = k.concurrency_key \
             WHERE k.concurrency_key IS NULL OR coalesce(r.n, 0) + k.rank <= k.concurrency_limit \
         ) \
         UPDATE queue_jobs SET state = 'running', attempt = attempt + 1, claims = claims + 1, leased_until = ",
    );
    q.push_bind(micros(add(now, request.lease)));
    q.push(format!(" WHERE id IN (SELECT id FROM allowed) RETURNING {COLUMNS}"));
    let rows = q.build().fetch_all(&mut *conn).await?;
    let mut jobs = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
    // RETURNING keeps no order.
    jobs.sort_by(|a, b| (a.priority, a.run_at, &a.id).cmp(&(b.priority, b.run_at, &b.id)));
    Ok(jobs)
}

/// Reads the jobs `rows` names (locked until commit on PostgreSQL), runs each through
/// `change` (a step of `crate::transition`; `None` leaves the job as it is), writes back
/// the changed ones in one statement and returns them.
pub(crate) async fn rewrite(
    conn: &mut Conn,
    rows: Rows<'_>,
    mut change: impl FnMut(Job) -> Result<Option<Job>> + Send,
) -> Result<Vec<Job>> {
    let jobs = match rows {
        Rows::Ids(ids) => fetch(&mut *conn, ids, true).await?,
        Rows::Lapsed { now, limit } => lapsed(&mut *conn, now, limit).await?,
    };
    let mut changed = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Some(job) = change(job)? {
            changed.push(job);
        }
    }
    if !changed.is_empty() {
        write_back(conn, &changed).await?;
    }
    Ok(changed)
}

/// These jobs (those that exist), locked until commit on PostgreSQL when `lock`.
async fn fetch(conn: &mut Conn, ids: &[JobId], lock: bool) -> Result<Vec<Job>> {
    let mut sorted: Vec<&JobId> = ids.iter().collect();
    // One lock order for every writer, so two batches cannot deadlock on each other.
    sorted.sort();
    sorted.dedup();
    let mut jobs = Vec::with_capacity(sorted.len());
    for chunk in sorted.chunks(CHUNK) {
        let mut q = QueryBuilder::<Db>::new(format!("SELECT {COLUMNS} FROM queue_jobs WHERE id IN ("));
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(id.as_str().to_owned());
        }
        q.push(") ORDER BY id");
        if lock {
            q.push(FOR_UPDATE);
        }
        for row in q.build().fetch_all(&mut *conn).await? {
            jobs.push(decode(&row)?);
        }
    }
    Ok(jobs)
}

/// Up to `limit` running jobs whose lease lapsed before `now`, locked (PostgreSQL: skipping
/// those another rescuer holds).
async fn lapsed(conn: &mut Conn, now: Timestamp, limit: usize) -> Result<Vec<Job>> {
    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT {COLUMNS} FROM queue_jobs WHERE state = 'running' AND leased_until < "
    ));
    q.push_bind(micros(now)).push(" ORDER BY leased_until, id LIMIT ");
    q.push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
    q.push(SKIP_LOCKED);
    q.build().fetch_all(&mut *conn).await?.iter().map(decode).collect()
}

/// Writes back what the state machine changed in these jobs (read, and on PostgreSQL
/// locked, earlier in the same transaction), many in one statement.
async fn write_back(conn: &mut Conn, jobs: &[Job]) -> Result<()> {
    for chunk in jobs.chunks(CHUNK) {
        let mut q = QueryBuilder::<Db>::new(
            "UPDATE queue_jobs SET state = v.column2, attempt = v.column3, max_attempts = v.column4, \
             run_at = v.column5, errors = v.column6, finished_at = v.column7, crashes = v.column8, \
             leased_until = v.column9, priority = v.column10 FROM (",
        );
        q.push_values(chunk, |mut row, job| {
            row.push_bind(job.id.as_str().to_owned())
                .push_bind(job.state.as_str())
                .push_bind(i64::from(job.attempt))
                .push_bind(i64::from(job.max_attempts))
                .push_bind(micros(job.run_at))
                .push_bind(errors_json(&job.errors))
                .push_bind(job.finished_at.map(micros))
                .push_bind(i64::from(job.crashes))
                .push_bind(job.leased_until.map(micros))
                .push_bind(i64::from(job.priority));
        });
        q.push(") AS v WHERE queue_jobs.id = v.column1");
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Extends the leases of the claims still held; returns them.
/// Acknowledges jobs done under these claims in one statement per chunk, without reading
/// them first: each still held (running, under the same claim) becomes succeeded, finished
/// at `now`, its lease gone — what `transition::settle` does for `Outcome::Done`, fenced by
/// the claim token like a heartbeat. Then the other acknowledgements go through
/// [`rewrite`] with `change`. Returns the jobs changed.
pub(crate) async fn complete(
    conn: &mut Conn,
    done: &[Claim],
    others: &[JobId],
    change: impl FnMut(Job) -> Result<Option<Job>> + Send,
    now: Timestamp,
) -> Result<Vec<Job>> {
    let mut sorted: Vec<&Claim> = done.iter().collect();
    // The one lock order of every writer, as far as the plan follows it.
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    sorted.dedup_by(|a, b| a.id == b.id);
    let mut changed = Vec::with_capacity(done.len() + others.len());
    for chunk in sorted.chunks(CHUNK) {
        let mut q =
            QueryBuilder::<Db>::new("UPDATE queue_jobs SET state = 'succeeded', leased_until = NULL, finished_at = ");
        q.push_bind(micros(now)).push(" FROM (");
        q.push_values(chunk, |mut row, claim| {
            row.push_bind(claim.id.as_str().to_owned()).push_bind(i64::from(claim.claims));
        });
        q.push(format!(
            ") AS v WHERE queue_jobs.id = v.column1 AND queue_jobs.claims = v.column2 \
             AND queue_jobs.state = 'running' RETURNING {}",
            COLUMNS.split(", ").map(|c| format!("queue_jobs.{c}")).collect::<Vec<_>>().join(", ")
        ));
        for row in q.build().fetch_all(&mut *conn).await? {
            changed.push(decode(&row)?);
        }
    }
    if !others.is_empty() {
        changed.extend(rewrite(conn, crate::sql::Rows::Ids(others), change).await?);
    }
    Ok(changed)
}

pub(crate) async fn heartbeat(conn: &mut Conn, claims: &[Claim], until: Timestamp) -> Result<Vec<Claim>> {
    let mut held = Vec::with_capacity(claims.len());
    for chunk in claims.chunks(CHUNK) {
        let mut q = QueryBuilder::<Db>::new("UPDATE queue_jobs SET leased_until = ");
        q.push_bind(micros(until)).push(" FROM (");
        q.push_values(chunk, |mut row, claim| {
            row.push_bind(claim.id.as_str().to_owned()).push_bind(i64::from(claim.claims));
        });
        q.push(
            ") AS v WHERE queue_jobs.id = v.column1 AND queue_jobs.claims = v.column2 \
             AND queue_jobs.state = 'running' RETURNING id, claims",
        );
        for row in q.build().fetch_all(&mut *conn).await? {
            held.push(Claim { id: JobId::new(row.try_get::<String, _>("id")?), claims: count(&row, "claims")? });
        }
    }
    Ok(held)
}

pub(crate) async fn get(conn: &mut Conn, id: &JobId) -> Result<Option<Job>> {
    let mut q = QueryBuilder::<Db>::new(format!("SELECT {COLUMNS} FROM queue_jobs WHERE id = "));
    q.push_bind(id.as_str().to_owned());
    q.build().fetch_optional(&mut *conn).await?.map(|r| decode(&r)).transpose()
}

/// A page (one more row than asked, to know whether another page follows).
pub(crate) async fn list(conn: &mut Conn, filter: &ListFilter, now: Timestamp) -> Result<Vec<Job>> {
    let mut q = QueryBuilder::<Db>::new(format!("SELECT {COLUMNS} FROM queue_jobs WHERE 1 = 1"));
    if let Some(tenant) = &filter.tenant_id {
        q.push(" AND tenant_id = ").push_bind(tenant.clone());
    }
    if let Some(kind) = &filter.kind {
        q.push(" AND kind = ").push_bind(kind.clone());
    }
    if let Some(after) = &filter.after {
        q.push(" AND id > ").push_bind(after.as_str().to_owned());
    }
    // The state a reader sees (`Job::state_at`): scheduled and retrying jobs whose time
    // came are available.
    match filter.state {
        Some(JobState::Available) => {
            q.push(" AND (state = 'available' OR (state IN ('scheduled', 'retrying') AND run_at <= ");
            q.push_bind(micros(now)).push("))");
        }
        Some(state @ (JobState::Scheduled | JobState::Retrying)) => {
            q.push(" AND state = ").push_bind(state.as_str()).push(" AND run_at > ").push_bind(micros(now));
        }
        Some(state) => {
            q.push(" AND state = ").push_bind(state.as_str());
        }
        None => {}
    }
    q.push(" ORDER BY id LIMIT ").push_bind(i64::try_from(filter.page_size() + 1).unwrap_or(i64::MAX));
    q.build().fetch_all(&mut *conn).await?.iter().map(decode).collect()
}

/// Unfinished jobs by kind and state as read at `now`.
pub(crate) async fn depth(conn: &mut Conn, now: Timestamp) -> Result<Vec<Depth>> {
    let mut q = QueryBuilder::<Db>::new("SELECT kind, CASE WHEN state IN ('scheduled', 'retrying') AND run_at <= ");
    q.push_bind(micros(now));
    q.push(
        " THEN 'available' ELSE state END AS shown, count(*) AS jobs FROM queue_jobs \
         WHERE state IN ('scheduled', 'available', 'running', 'retrying') GROUP BY kind, shown",
    );
    let mut depth = Vec::new();
    for row in q.build().fetch_all(&mut *conn).await? {
        let shown: String = row.try_get("shown")?;
        let state = JobState::parse(&shown).ok_or_else(|| QueueError::Corrupt(format!("job state {shown:?}")))?;
        let jobs: i64 = row.try_get("jobs")?;
        depth.push(Depth { kind: row.try_get("kind")?, state, jobs: u64::try_from(jobs).unwrap_or(0) });
    }
    Ok(depth)
}

pub(crate) async fn prune(conn: &mut Conn, finished_before: Timestamp, dead_before: Option<Timestamp>) -> Result<u64> {
    let mut q = QueryBuilder::<Db>::new(
        "DELETE FROM queue_jobs WHERE finished_at IS NOT NULL AND ((state IN ('succeeded', 'cancelled') AND finished_at < ",
    );
    q.push_bind(micros(finished_before)).push(")");
    if let Some(dead) = dead_before {
        q.push(" OR (state = 'dead' AND finished_at < ").push_bind(micros(dead)).push(")");
    }
    q.push(")");
    Ok(q.build().execute(&mut *conn).await?.rows_affected())
}

// --- rows ---

fn decode(row: &DbRow) -> Result<Job> {
    let state: String = row.try_get("state")?;
    let state = JobState::parse(&state).ok_or_else(|| QueueError::Corrupt(format!("job state {state:?}")))?;
    let payload: String = row.try_get("payload")?;
    let errors: String = row.try_get("errors")?;
    let concurrency = match (row.try_get::<Option<String>, _>("concurrency_key")?, count_opt(row, "concurrency_limit")?)
    {
        (Some(key), Some(limit)) => Some(Concurrency { key, limit }),
        _ => None,
    };
    let priority: i64 = row.try_get("priority")?;
    Ok(Job {
        id: JobId::new(row.try_get::<String, _>("id")?),
        tenant_id: row.try_get("tenant_id")?,
        kind: row.try_get("kind")?,
        payload: serde_json::from_str(&payload).map_err(|e| QueueError::Corrupt(format!("payload: {e}")))?,
        state,
        attempt: count(row, "attempt")?,
        max_attempts: count(row, "max_attempts")?,
        run_at: instant(row.try_get("run_at")?)?,
        priority: i16::try_from(priority).map_err(|_| QueueError::Corrupt(format!("priority {priority}")))?,
        errors: serde_json::from_str::<Vec<AttemptError>>(&errors)
            .map_err(|e| QueueError::Corrupt(format!("errors: {e}")))?,
        unique_key: row.try_get("unique_key")?,
        concurrency,
        created_at: instant(row.try_get("created_at")?)?,
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(instant).transpose()?,
        claims: count(row, "claims")?,
        crashes: count(row, "crashes")?,
        leased_until: row.try_get::<Option<i64>, _>("leased_until")?.map(instant).transpose()?,
    })
}

fn count(row: &DbRow, column: &str) -> Result<u32> {
    let n: i64 = row.try_get(column)?;
    u32::try_from(n).map_err(|_| QueueError::Corrupt(format!("{column} {n}")))
}

fn count_opt(row: &DbRow, column: &str) -> Result<Option<u32>> {
    let n: Option<i64> = row.try_get(column)?;
    n.map(|n| u32::try_from(n).map_err(|_| QueueError::Corrupt(format!("{column} {n}")))).transpose()
}

fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

fn instant(us: i64) -> Result<Timestamp> {
    Timestamp::from_microsecond(us).map_err(|e| QueueError::Corrupt(format!("instant {us}: {e}")))
}

fn errors_json(errors: &[AttemptError]) -> String {
    serde_json::to_string(errors).expect("attempt errors serialize")
}
