//! The reference: what the storage alone can do with the same rows, no engine, no HTTP.
//!
//! On a fresh database of the same backend, opened once with `questline_store::connect` so
//! that the real migrations make the real schema (tables, keys, indexes), the same events
//! are written in the same batches by `clients` concurrent tasks, each batch in ONE
//! transaction of plain multi-row statements, as an engine at its leanest would:
//!
//! 1. `INSERT INTO events (…8 columns…) VALUES …, … ON CONFLICT (tenant_id, id) DO NOTHING`
//!    — every event of the batch, duplicates included (the storage must refuse them);
//! 2. `INSERT INTO user_progress (…4 columns…) VALUES …, … ON CONFLICT (tenant_id, user_id)
//!    DO UPDATE SET missions, updated_at` — ONE row per user whose progress the batch
//!    changes, in key order: users with an event that some mission's step filters satisfy
//!    (`--reference-progress qualifying`, the default; a reversal changes what its original
//!    satisfied), or that some mission listens to (`listening`), or none (`none`). The row is
//!    a JSON text as large as the engine's average user row in this run;
//! 3. `COMMIT`.
//!
//! It does not read anything back (no stored progress, no ledger lookups for reversals or
//! late events), decide anything, nor write rewards: that is the engine's work, and the
//! share of the reference it reaches is what that work costs. SQLite: one writer connection
//! with the store's own settings (WAL, `synchronous = FULL`, 64 MiB cache), since SQLite
//! admits one writer. PostgreSQL: a pool of `clients` connections.

use crate::database::{Backend, FreshDb};
use crate::missions::{Attrs, BenchMission};
use crate::sampler::{self, Sample};
use crate::workload::{SlotKind, Workload};
use crate::{Plan, Result};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, QueryBuilder, SqlitePool};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Rows per statement, as the SQLite store chunks them.
const CHUNK: usize = 500;
const TENANT: &str = "default";

/// Which progress rows the reference writes per batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgressRows {
    Qualifying,
    Listening,
    None,
}

pub struct ReferenceRun {
    pub elapsed: Duration,
    pub events: u64,
    pub progress_rows: u64,
    pub latency: Histogram<u64>,
    pub samples: Vec<Sample>,
}

enum Pool {
    Sqlite(SqlitePool),
    /// With each table's column types, for the casts.
    Postgres(PgPool, HashMap<String, String>),
}

/// One value of a row; how it is bound depends on the column's type.
enum V {
    Text(String),
    OptText(Option<String>),
    Time(Timestamp),
}

struct Rows {
    events: Vec<[V; 8]>,
    progress: Vec<[V; 4]>,
}

pub async fn run(
    db: &FreshDb,
    workload: &Workload,
    missions: &[BenchMission],
    plan: &Plan,
    events: u64,
    state_bytes: usize,
) -> Result<ReferenceRun> {
    // The real schema, from the real migrations.
    drop(questline_store::connect(&db.url).await?);
    let pool = match db.backend {
        Backend::Sqlite => Pool::Sqlite(sqlite_pool(&db.url).await?),
        Backend::Postgres => {
            let pool =
                sqlx::postgres::PgPoolOptions::new().max_connections(plan.clients as u32).connect(&db.url).await?;
            let types: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT table_name::text, column_name::text, udt_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name IN ('events', 'user_progress')",
            )
            .fetch_all(&pool)
            .await?;
            Pool::Postgres(pool, types.into_iter().map(|(t, c, ty)| (format!("{t}.{c}"), ty)).collect())
        }
    };
    let pool = Arc::new(pool);
    let bar = if plan.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(events).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} reference rows  {per_sec}  eta {eta}")
                .expect("static template"),
        )
    };

    let done = Arc::new(AtomicU64::new(0));
    let progress_rows = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?));
    let stop = CancellationToken::new();
    #[expect(clippy::disallowed_methods, reason = "the handle is awaited at the end of the phase")]
    let sampling = tokio::spawn(sampler::sample(done.clone(), Duration::from_secs(1), stop.clone(), |_| {}));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..plan.clients {
        let (pool, next, done, progress_rows, latency, bar) =
            (pool.clone(), next.clone(), done.clone(), progress_rows.clone(), latency.clone(), bar.clone());
        let (workload, missions, plan) = (workload.clone(), missions.to_vec(), plan.clone());
        tasks.spawn(async move {
            loop {
                let start = next.fetch_add(1, Ordering::Relaxed) * plan.batch;
                if start >= events {
                    return Ok::<_, crate::Error>(());
                }
                let slots = start..(start + plan.batch).min(events);
                let t = Instant::now();
                let rows = rows(&workload, &missions, &plan, slots.clone(), state_bytes);
                let n_progress = rows.progress.len() as u64;
                write(&pool, &rows).await?;
                latency.lock().expect("latency lock").saturating_record(t.elapsed().as_micros().max(1) as u64);
                done.fetch_add(slots.end - slots.start, Ordering::Relaxed);
                progress_rows.fetch_add(n_progress, Ordering::Relaxed);
                bar.inc(slots.end - slots.start);
            }
        });
    }
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined? {
            result = Err(e);
            tasks.abort_all();
        }
    }
    let elapsed = started.elapsed();
    stop.cancel();
    let samples = sampling.await?;
    bar.finish_and_clear();
    result?;
    match Arc::try_unwrap(pool) {
        Ok(Pool::Sqlite(p)) => p.close().await,
        Ok(Pool::Postgres(p, _)) => p.close().await,
        Err(_) => {}
    }
    let latency = Arc::try_unwrap(latency).map_err(|_| "a writer outlived the phase")?;
    Ok(ReferenceRun {
        elapsed,
        events: done.load(Ordering::Relaxed),
        progress_rows: progress_rows.load(Ordering::Relaxed),
        latency: latency.into_inner().map_err(|_| "latency lock poisoned")?,
        samples,
    })
}

/// The store's own SQLite settings (see `questline_store::sqlite`).
async fn sqlite_pool(url: &str) -> Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(url)?
        .foreign_keys(true)
        .synchronous(SqliteSynchronous::Full)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(5))
        .pragma("cache_size", "-65536");
    Ok(SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await?)
}

/// The rows one batch writes.
fn rows(
    workload: &Workload,
    missions: &[BenchMission],
    plan: &Plan,
    slots: std::ops::Range<u64>,
    state_bytes: usize,
) -> Rows {
    let which = plan.reference_progress;
    let received_at = Timestamp::now();
    let mut events = Vec::with_capacity((slots.end - slots.start) as usize);
    // user -> the last event that changed their progress in this batch.
    let mut last: BTreeMap<String, (Timestamp, String)> = BTreeMap::new();
    for slot in slots {
        let e = workload.event(slot);
        events.push([
            V::Text(TENANT.into()),
            V::Text(e.id.clone()),
            V::Text(e.event_type.into()),
            V::Text(Workload::user_id(e.user)),
            V::Time(e.occurred_at),
            V::Text(e.attrs.to_json()),
            V::OptText(e.reverses.as_ref().map(|(id, _)| id.clone())),
            V::Time(received_at),
        ]);
        if e.kind == SlotKind::Duplicate {
            continue;
        }
        // A reversal changes what its original counted for.
        let (event_type, attrs): (&str, Attrs) = match &e.reverses {
            Some((_, target)) => {
                let o = workload.event(*target);
                (o.event_type, o.attrs)
            }
            None => (e.event_type, e.attrs.clone()),
        };
        let hit = missions.iter().any(|m| match which {
            ProgressRows::Qualifying => m.qualifies(event_type, &attrs),
            ProgressRows::Listening => m.listens(event_type),
            ProgressRows::None => false,
        });
        if hit {
            last.insert(Workload::user_id(e.user), (e.occurred_at, e.id.clone()));
        }
    }
    // In key order (the map's), so that concurrent batches lock shared rows in one order.
    let progress = last
        .into_iter()
        .map(|(user, (at, id))| {
            [V::Text(TENANT.into()), V::Text(user), V::Text(state_json(at, &id, state_bytes)), V::Time(received_at)]
        })
        .collect();
    // By id, so that two concurrent batches that share an id (a duplicate and its original)
    // wait on each other's key in the same order instead of deadlocking.
    events.sort_by(|a, b| match (&a[1], &b[1]) {
        (V::Text(x), V::Text(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    });
    Rows { events, progress }
}

/// A user's progress row shaped like the engine's, padded to `bytes`.
fn state_json(at: Timestamp, id: &str, bytes: usize) -> String {
    let mut s = format!(
        r#"{{"m":{{"state":{{"steps":[{{"value":1}}],"completions":0,"last":{{"at":"{at}","id":"{id}"}}}},"updated_at":"{at}"}}"#
    );
    if s.len() + 2 < bytes {
        let pad = bytes - s.len() - 12;
        s.push_str(&format!(r#","pad":"{}""#, "x".repeat(pad.max(1))));
    }
    s.push('}');
    s
}

const EVENT_COLUMNS: [&str; 8] =
    ["tenant_id", "id", "type", "user_id", "occurred_at", "attributes", "reverses", "received_at"];
const PROGRESS_COLUMNS: [&str; 4] = ["tenant_id", "user_id", "missions", "updated_at"];
const EVENTS_CONFLICT: &str = " ON CONFLICT (tenant_id, id) DO NOTHING";
const PROGRESS_CONFLICT: &str = " ON CONFLICT (tenant_id, user_id) DO UPDATE SET \
     missions = excluded.missions, updated_at = excluded.updated_at";

async fn write(pool: &Pool, rows: &Rows) -> Result<()> {
    match pool {
        Pool::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            for chunk in rows.events.chunks(CHUNK) {
                sqlite_insert("events", &EVENT_COLUMNS, chunk, EVENTS_CONFLICT).build().execute(&mut *tx).await?;
            }
            for chunk in rows.progress.chunks(CHUNK) {
                sqlite_insert("user_progress", &PROGRESS_COLUMNS, chunk, PROGRESS_CONFLICT)
                    .build()
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }
        Pool::Postgres(pool, types) => {
            // Rows are in key order, so two batches lock shared rows in the same order; a
            // deadlock or serialization failure is still retried, as the store does.
            let mut attempt = 0;
            loop {
                attempt += 1;
                match pg_write(pool, types, rows).await {
                    Err(sqlx::Error::Database(e))
                        if attempt < 5 && matches!(e.code().as_deref(), Some("40001" | "40P01")) => {}
                    other => return Ok(other?),
                }
            }
        }
    }
}

fn sqlite_insert<'a, const N: usize>(
    table: &str,
    columns: &[&str; N],
    rows: &'a [[V; N]],
    conflict: &str,
) -> QueryBuilder<'a, sqlx::Sqlite> {
    // SQLite's affinity: INTEGER columns take microseconds, TEXT ones RFC 3339 (as the
    // store writes them: `occurred_at`/`received_at` are integers, `updated_at` is text).
    let mut qb = QueryBuilder::new(format!("INSERT INTO {table} ({}) ", columns.join(", ")));
    qb.push_values(rows, |mut b, row| {
        for (col, v) in columns.iter().zip(row) {
            match v {
                V::Text(s) => b.push_bind(s.as_str()),
                V::OptText(s) => b.push_bind(s.as_deref()),
                V::Time(t) if table == "events" && *col != "updated_at" => b.push_bind(t.as_microsecond()),
                V::Time(t) => b.push_bind(format!("{t:.9}")),
            };
        }
    });
    qb.push(conflict);
    qb
}

async fn pg_write(pool: &PgPool, types: &HashMap<String, String>, rows: &Rows) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    for chunk in rows.events.chunks(CHUNK) {
        pg_insert("events", &EVENT_COLUMNS, chunk, EVENTS_CONFLICT, types).build().execute(&mut *tx).await?;
    }
    for chunk in rows.progress.chunks(CHUNK) {
        pg_insert("user_progress", &PROGRESS_COLUMNS, chunk, PROGRESS_CONFLICT, types)
            .build()
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Every value bound as text and cast to the column's type, so the reference follows the
/// PostgreSQL schema whatever it chose (bigint microseconds or timestamptz, text or jsonb).
fn pg_insert<'a, const N: usize>(
    table: &str,
    columns: &[&str; N],
    rows: &'a [[V; N]],
    conflict: &str,
    types: &HashMap<String, String>,
) -> QueryBuilder<'a, sqlx::Postgres> {
    let mut qb = QueryBuilder::new(format!("INSERT INTO {table} ({}) ", columns.join(", ")));
    qb.push_values(rows, |mut b, row| {
        for (col, v) in columns.iter().zip(row) {
            let ty = types.get(&format!("{table}.{col}")).map_or("text", String::as_str);
            let text = match v {
                V::Text(s) => Some(s.clone()),
                V::OptText(s) => s.clone(),
                V::Time(t) if ty.starts_with("int") => Some(t.as_microsecond().to_string()),
                V::Time(t) => Some(format!("{t:.9}")),
            };
            b.push_bind(text).push_unseparated(format!("::{ty}"));
        }
    });
    qb.push(conflict);
    qb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_padded_to_the_engines_size() {
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let s = state_json(at, "txn-1", 3000);
        assert!((2990..=3010).contains(&s.len()), "{}", s.len());
        serde_json::from_str::<serde_json::Value>(&s).unwrap();
        // Never smaller than one mission's state, however small the engine's rows.
        let small = state_json(at, "txn-1", 10);
        assert!(small.len() < 200, "{}", small.len());
        serde_json::from_str::<serde_json::Value>(&small).unwrap();
    }
}
