//! Ingest: validation at the edge, then micro-batching in front of the
//! one-transaction-per-batch apply ([`apply_batch`]).
//!
//! [`Service::ingest`] parses each event (rejecting bad ones with a reason, by index), splits
//! the valid ones by lane (a hash of the user id, so each user's events stay in one lane, in
//! arrival order) and waits. A request split over several lanes commits in several
//! transactions: when some of them fail, the answer says which events were recorded
//! ([`Outcome::NotApplied`] for the others) instead of failing the whole request. Each lane is a task that takes the first waiting request,
//! gathers whatever else arrives within a short linger up to a size cap, applies them all in
//! ONE transaction, and answers every request only after the commit. Many small concurrent
//! requests so cost one commit (one fsync) instead of one each.
//!
//! Shutdown drains: the lanes stop taking requests, finish every batch already queued and
//! answer it, and only then does [`Service::shutdown`] return.

mod apply;

pub use apply::{Applied, Recorded, apply_batch};

use super::index::MissionIndex;
use crate::notify::UnitJobs;
use crate::{Result, Service, ServiceError};
use jiff::Timestamp;
use questline_core::batch;
use questline_core::event::Event;
use questline_core::id::TenantId;
use questline_core::pointer::FieldError;
use questline_store::{Store, StoreError};
use serde_json::Value;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Most events in one request.
pub const MAX_BATCH: usize = 1000;

/// How micro-batches are formed.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Parallel lanes; each prepares its batches on a snapshot and writes them in its own
    /// transactions. On SQLite, whose one writer serializes the writes, lanes still prepare
    /// (read and decide) in parallel: about one per core.
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

/// What became of each event of a request, in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// New: recorded in the ledger and applied.
    Accepted,
    /// Its id was seen before (earlier, or earlier in this request): no effect.
    Duplicate,
    /// Invalid; nothing of it was recorded. The pointer is relative to the event.
    Rejected(FieldError),
    /// Valid, but its part of the request failed (another part was committed): not recorded;
    /// sending it again is safe.
    NotApplied(NotApplied),
}

/// Why a valid event was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotApplied {
    /// Its batch kept losing races with concurrent work.
    Busy,
    /// The process began stopping before its part was handed to a lane.
    ShuttingDown,
    /// Its batch failed (a bug; logged).
    Failed,
}

/// Why a batch failed, shared by every request in it. Nothing of a failed batch is committed.
#[derive(Debug, Clone)]
enum BatchFailure {
    Busy,
    ShuttingDown,
    Internal(String),
}

impl BatchFailure {
    fn not_applied(&self) -> NotApplied {
        match self {
            BatchFailure::Busy => NotApplied::Busy,
            BatchFailure::ShuttingDown => NotApplied::ShuttingDown,
            BatchFailure::Internal(_) => NotApplied::Failed,
        }
    }
}

impl From<BatchFailure> for ServiceError {
    fn from(f: BatchFailure) -> Self {
        match f {
            BatchFailure::Busy => ServiceError::Busy,
            BatchFailure::ShuttingDown => ServiceError::ShuttingDown,
            BatchFailure::Internal(why) => ServiceError::Internal(why),
        }
    }
}

/// One request's share of a lane's batch.
struct Job {
    tenant: TenantId,
    events: Vec<Event>,
    now: Timestamp,
    reply: oneshot::Sender<std::result::Result<Vec<Recorded>, BatchFailure>>,
}

pub(crate) struct Ingestor {
    lanes: Vec<mpsc::Sender<Job>>,
    stopping: CancellationToken,
    tasks: TaskTracker,
}

impl Service {
    /// Validates `raw` events and applies the valid ones for `tenant`; answers only after
    /// they are committed. At most [`MAX_BATCH`] events.
    pub async fn ingest(&self, tenant: &TenantId, raw: &[Value]) -> Result<Vec<Outcome>> {
        let now = self.clock.now();
        if raw.is_empty() || raw.len() > MAX_BATCH {
            return Err(ServiceError::invalid(
                "/events",
                format!("must hold 1 to {MAX_BATCH} events, got {}", raw.len()),
            ));
        }
        let mut outcomes = Vec::with_capacity(raw.len());
        let mut events = Vec::with_capacity(raw.len());
        for v in raw {
            match Event::parse(v, now) {
                Ok(e) => {
                    events.push(e);
                    outcomes.push(Outcome::Accepted);
                }
                Err(error) => outcomes.push(Outcome::Rejected(error)),
            }
        }
        // Reversals whose original is in this same request and can never apply: refused here,
        // before the request is split over lanes (a lane sees only its own part; the lane's
        // batch refuses those whose original was recorded before).
        let screened = batch::screen_reversals(&events, &[]);
        if screened.iter().any(Option::is_some) {
            let mut valid = outcomes.iter_mut().filter(|o| **o == Outcome::Accepted).collect::<Vec<_>>();
            let mut kept = Vec::with_capacity(events.len());
            for ((event, refusal), outcome) in events.into_iter().zip(screened).zip(valid.iter_mut()) {
                match refusal {
                    Some(reason) => **outcome = Outcome::Rejected(reason),
                    None => kept.push(event),
                }
            }
            events = kept;
        }
        let rejected = outcomes.len() - events.len();
        metrics::counter!("questline_events_rejected_total").increment(rejected as u64);
        if events.is_empty() {
            return Ok(outcomes);
        }
        let results = self.ingestor.ingest(tenant, events, now).await?;
        // Nothing recorded: the request failed as a whole, and says so plainly.
        if let Some(failure) = results.iter().map(|r| r.as_ref().err()).reduce(|a, b| a.and(b)).flatten() {
            return Err(failure.clone().into());
        }
        let mut results = results.into_iter();
        for outcome in outcomes.iter_mut().filter(|o| **o == Outcome::Accepted) {
            match results.next() {
                Some(Ok(Recorded::New)) => {}
                Some(Ok(Recorded::Duplicate)) => *outcome = Outcome::Duplicate,
                Some(Ok(Recorded::Refused(reason))) => *outcome = Outcome::Rejected(reason),
                Some(Err(failure)) => *outcome = Outcome::NotApplied(failure.not_applied()),
                None => *outcome = Outcome::NotApplied(NotApplied::Failed),
            }
        }
        Ok(outcomes)
    }
}

impl Ingestor {
    /// Starts the lanes (tasks on the current runtime).
    pub(crate) fn new(
        store: Arc<dyn Store>,
        missions: Arc<MissionIndex>,
        config: BatchConfig,
        jobs: Option<Arc<dyn UnitJobs>>,
    ) -> Self {
        let stopping = CancellationToken::new();
        let tasks = TaskTracker::new();
        let lanes = (0..config.lanes.max(1))
            .map(|_| {
                // Bounded: a lane that falls behind pushes back on its callers.
                let (tx, rx) = mpsc::channel(1024);
                let lane = Lane {
                    store: store.clone(),
                    missions: missions.clone(),
                    jobs: jobs.clone(),
                    config,
                    tasks: tasks.clone(),
                };
                tasks.spawn(lane.run(rx, stopping.clone()));
                tx
            })
            .collect();
        Ingestor { lanes, stopping, tasks }
    }

    /// Applies `events` (already validated) for `tenant`; returns, per event in input order,
    /// whether it was new, or why its lane's part failed. Returns only after every part is
    /// committed or failed.
    async fn ingest(
        &self,
        tenant: &TenantId,
        events: Vec<Event>,
        now: Timestamp,
    ) -> Result<Vec<std::result::Result<Recorded, BatchFailure>>> {
        if self.stopping.is_cancelled() {
            return Err(ServiceError::ShuttingDown);
        }
        let n = self.lanes.len();
        let mut parts: Vec<(Vec<usize>, Vec<Event>)> = vec![(Vec::new(), Vec::new()); n];
        for (i, e) in events.into_iter().enumerate() {
            let lane = if n == 1 { 0 } else { lane_of(e.user_id(), n) };
            parts[lane].0.push(i);
            parts[lane].1.push(e);
        }
        let total = parts.iter().map(|(p, _)| p.len()).sum();
        let mut results = vec![Err(BatchFailure::ShuttingDown); total];
        let mut waiting = Vec::new();
        for (lane, (positions, events)) in parts.into_iter().enumerate().filter(|(_, (p, _))| !p.is_empty()) {
            let (reply, answer) = oneshot::channel();
            let job = Job { tenant: tenant.clone(), events, now, reply };
            // A lane that stopped taking work leaves its part unsent (and so unrecorded);
            // the parts already sent are applied all the same.
            if self.lanes[lane].send(job).await.is_ok() {
                waiting.push((positions, answer));
            }
        }
        for (positions, answer) in waiting {
            match answer.await.unwrap_or(Err(BatchFailure::ShuttingDown)) {
                Ok(recorded) => {
                    for (p, r) in positions.into_iter().zip(recorded) {
                        results[p] = Ok(r);
                    }
                }
                Err(failure) => {
                    for p in positions {
                        results[p] = Err(failure.clone());
                    }
                }
            }
        }
        Ok(results)
    }

    /// Stops taking requests and waits for every lane to finish what it had queued.
    pub(crate) async fn shutdown(&self) {
        self.stopping.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

fn lane_of(user: &str, lanes: usize) -> usize {
    let mut h = std::hash::DefaultHasher::new();
    user.hash(&mut h);
    (h.finish() % lanes as u64) as usize
}

struct Lane {
    store: Arc<dyn Store>,
    missions: Arc<MissionIndex>,
    jobs: Option<Arc<dyn UnitJobs>>,
    config: BatchConfig,
    tasks: TaskTracker,
}

impl Lane {
    async fn run(self, mut rx: mpsc::Receiver<Job>, stopping: CancellationToken) {
        loop {
            let first = tokio::select! {
                biased;
                job = rx.recv() => job,
                () = stopping.cancelled() => {
                    // Take no more, but apply what callers already handed over.
                    rx.close();
                    rx.recv().await
                }
            };
            let Some(first) = first else { return };
            let mut jobs = vec![first];
            let mut size = jobs[0].events.len();
            let deadline = tokio::time::Instant::now() + self.config.linger;
            while size < self.config.max_events {
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
                self.apply_jobs(&tenant, mine).await;
            }
        }
    }

    /// Applies several requests' events as one batch and answers each.
    async fn apply_jobs(&self, tenant: &TenantId, jobs: Vec<Job>) {
        // Every job carries its request's instant; the batch is as late as the latest.
        let Some(now) = jobs.iter().map(|j| j.now).max() else { return };
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
        // Its own task, so that a bug that panics fails this batch (rolled back, answered
        // 500) rather than the lane and every batch after it.
        let (store, missions, tenant_owned) = (self.store.clone(), self.missions.clone(), tenant.clone());
        let jobs = self.jobs.clone();
        let task = self
            .tasks
            .spawn(async move { apply_batch(&*store, &missions, jobs.as_deref(), &tenant_owned, &events, now).await });
        let result = match task.await {
            Ok(Ok(applied)) => Ok(applied),
            Ok(Err(StoreError::Retryable(why))) => {
                tracing::warn!(%why, events = n, "batch kept conflicting; nothing of it was committed");
                Err(BatchFailure::Busy)
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, events = n, "batch failed; nothing of it was committed");
                Err(BatchFailure::Internal(e.to_string()))
            }
            Err(join) => {
                tracing::error!(error = %join, events = n, "applying a batch panicked; nothing of it was committed");
                Err(BatchFailure::Internal(format!("applying a batch panicked: {join}")))
            }
        };
        match result {
            Ok(applied) => {
                for (range, reply) in bounds.into_iter().zip(replies) {
                    // A caller that went away still had its events committed.
                    let _ = reply.send(Ok(applied.outcomes[range].to_vec()));
                }
            }
            Err(failure) => {
                for reply in replies {
                    let _ = reply.send(Err(failure.clone()));
                }
            }
        }
    }
}
