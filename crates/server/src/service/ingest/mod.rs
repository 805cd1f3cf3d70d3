//! Ingest: micro-batching in front of the one-transaction-per-batch apply ([`apply`]).
//!
//! HTTP requests hand their validated events to [`Ingestor::ingest`], which splits them by
//! lane (a hash of the user id, so each user's events stay in one lane, in arrival order) and
//! waits. Each lane is a task that takes the first waiting request, gathers whatever else
//! arrives within a short linger up to a size cap, applies them all in ONE transaction, and
//! answers every request only after the commit. Many small concurrent requests so cost one
//! commit (one fsync) instead of one each.

mod apply;

pub use apply::Applied;

use super::index::MissionIndex;
use jiff::Timestamp;
use questline_core::event::Event;
use questline_store::{Store, StoreError};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How micro-batches are formed.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Parallel lanes; each applies its own transactions. SQLite has one writer, so more
    /// than one lane only adds contention there.
    pub lanes: usize,
    /// Most events in one transaction (a request is never split across transactions).
    pub max_events: usize,
    /// How long a lane waits for more requests after the first, when they are few.
    pub linger: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { lanes: 1, max_events: 5000, linger: Duration::from_millis(1) }
    }
}

/// One request's share of a lane's batch.
struct Job {
    tenant: String,
    events: Vec<Event>,
    now: Timestamp,
    reply: oneshot::Sender<Result<Vec<bool>, Arc<StoreError>>>,
}

/// Why events were not applied. Nothing of a failed batch is committed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The batch this request was part of failed; shared by every request in it.
    #[error("{0}")]
    Store(Arc<StoreError>),
    /// The server is stopping and takes no new work.
    #[error("ingest is shutting down")]
    ShuttingDown,
}

pub struct Ingestor {
    lanes: Vec<mpsc::Sender<Job>>,
}

impl Ingestor {
    /// Starts the lanes (tokio tasks). They stop when the ingestor is dropped, after
    /// finishing what was queued.
    pub fn new(store: Arc<dyn Store>, missions: Arc<MissionIndex>, config: BatchConfig) -> Self {
        let lanes = (0..config.lanes.max(1))
            .map(|_| {
                // Bounded: a lane that falls behind pushes back on its callers.
                let (tx, rx) = mpsc::channel(1024);
                tokio::spawn(run_lane(rx, store.clone(), missions.clone(), config));
                tx
            })
            .collect();
        Ingestor { lanes }
    }

    /// Applies `events` (already validated) for `tenant`; returns, per event in input order,
    /// whether it was new. Returns only after everything is committed.
    pub async fn ingest(&self, tenant: &str, events: Vec<Event>, now: Timestamp) -> Result<Vec<bool>, IngestError> {
        let n = self.lanes.len();
        let mut parts: Vec<(Vec<usize>, Vec<Event>)> = vec![(Vec::new(), Vec::new()); n];
        for (i, e) in events.into_iter().enumerate() {
            let lane = if n == 1 { 0 } else { lane_of(&e.user_id, n) };
            parts[lane].0.push(i);
            parts[lane].1.push(e);
        }
        let mut waiting = Vec::new();
        for (lane, (positions, events)) in parts.into_iter().enumerate().filter(|(_, (p, _))| !p.is_empty()) {
            let (reply, answer) = oneshot::channel();
            let job = Job { tenant: tenant.to_owned(), events, now, reply };
            self.lanes[lane].send(job).await.map_err(|_| IngestError::ShuttingDown)?;
            waiting.push((positions, answer));
        }
        let total = waiting.iter().map(|(p, _)| p.len()).sum();
        let mut new = vec![false; total];
        for (positions, answer) in waiting {
            let flags = answer.await.map_err(|_| IngestError::ShuttingDown)?.map_err(IngestError::Store)?;
            for (p, flag) in positions.into_iter().zip(flags) {
                new[p] = flag;
            }
        }
        Ok(new)
    }
}

fn lane_of(user: &str, lanes: usize) -> usize {
    let mut h = std::hash::DefaultHasher::new();
    user.hash(&mut h);
    (h.finish() % lanes as u64) as usize
}

async fn run_lane(
    mut rx: mpsc::Receiver<Job>,
    store: Arc<dyn Store>,
    missions: Arc<MissionIndex>,
    config: BatchConfig,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut size = jobs[0].events.len();
        let deadline = tokio::time::Instant::now() + config.linger;
        while size < config.max_events {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) => {
                    size += job.events.len();
                    jobs.push(job);
                }
                Ok(None) | Err(_) => break,
            }
        }
        metrics::histogram!("questline_batch_events").record(size as f64);
        // Tenants never share a transaction.
        while !jobs.is_empty() {
            let tenant = jobs[0].tenant.clone();
            let (mine, rest): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.tenant == tenant);
            jobs = rest;
            apply_jobs(&store, &missions, &tenant, mine).await;
        }
    }
}

/// Applies several requests' events as one batch and answers each.
async fn apply_jobs(store: &Arc<dyn Store>, missions: &Arc<MissionIndex>, tenant: &str, jobs: Vec<Job>) {
    let now = jobs.iter().map(|j| j.now).max().unwrap_or_else(Timestamp::now);
    let mut events = Vec::with_capacity(jobs.iter().map(|j| j.events.len()).sum());
    let mut bounds = Vec::with_capacity(jobs.len());
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        let start = events.len();
        events.extend(job.events);
        bounds.push(start..events.len());
        replies.push(job.reply);
    }
    let n = events.len();
    // Its own task, so that a bug that panics fails this batch (rolled back, answered 500)
    // rather than the lane and every batch after it.
    let (store, missions, tenant_owned) = (store.clone(), missions.clone(), tenant.to_owned());
    let task = tokio::spawn(async move { apply::apply(&*store, &missions, &tenant_owned, &events, now).await });
    let result = match task.await {
        Ok(result) => result,
        Err(join) => Err(StoreError::Corrupt(format!("applying a batch panicked: {join}"))),
    };
    match result {
        Ok(applied) => {
            for (range, reply) in bounds.into_iter().zip(replies) {
                // A caller that went away still had its events committed.
                let _ = reply.send(Ok(applied.new[range].to_vec()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, events = n, "batch failed; nothing of it was committed");
            let e = Arc::new(e);
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
