//! The worker runtime: claims jobs in batches for the kinds it has handlers for, runs each
//! under a concurrency limit, heartbeats what it holds, acknowledges outcomes in batches,
//! rescues lapsed leases, and stops gracefully.
//!
//! Named steps, each a task in one `TaskTracker` that [`Worker::run`] waits for:
//! - the **claim loop** (in `run` itself): waits for room (a free slot, or room to hold a
//!   job ahead: [`WorkerConfig::prefetch`]), claims up to that many jobs, starts each as a
//!   slot frees; with nothing due it sleeps until a wakeup (an enqueue in this
//!   process, PostgreSQL `NOTIFY`, a Redis `PUBLISH`) or the poll interval, never spinning;
//! - a **job task** per job, or per batch of a batch kind ([`Worker::handle_batch`]): the
//!   handler, in a `JoinSet` of its own so that a panic becomes a failed attempt, and
//!   abandoned (released) if shutdown's grace runs out;
//! - the **acker**: takes every outcome ready and completes them in one call;
//! - the **heartbeat**: renews the leases of every job held, in one call per beat;
//! - the **rescuer**: hands lapsed leases (other workers that died) back to the queue, and
//!   reports the queue depth;
//! - a **scheduler** per periodic schedule ([`Worker::every`]): at each tick, enqueues the
//!   tick's job through [`Backend::enqueue_tick`], which lets one worker of all win it;
//! - the backend's **listener** ([`Backend::listen`]).
//!
//! No transaction is held while a handler runs: the claim commits before it starts, the
//! acknowledgement is a transaction of its own after it ends. [`Worker::run_once`] is the
//! step-by-step entry point for tests: one batch, run to the end, acknowledged.

use crate::backend::Backend;
use crate::cadence::Cadence;
use crate::error::{QueueError, Result};
use crate::metrics;
use crate::model::{Ack, Claim, ClaimRequest, Job, JobId, NewJob, Outcome};
use jiff::Timestamp;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// What runs a job of one kind.
pub type Handler = Arc<dyn Fn(Job) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// What runs many jobs of one kind in one call: one outcome per job, in order.
pub type BatchHandler = Arc<dyn Fn(Vec<Job>) -> Pin<Box<dyn Future<Output = Vec<Outcome>> + Send>> + Send + Sync>;

/// How jobs of one kind run: one per call, or up to `max` per call.
#[derive(Clone)]
enum Run {
    One(Handler),
    Batch { handler: BatchHandler, max: usize },
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs running at once.
    pub concurrency: usize,
    /// Jobs claimed ahead of free slots, waiting in the worker to start (their leases
    /// renewed meanwhile; released at once on shutdown): one claim then serves more jobs
    /// than `concurrency`, so a worker of quick jobs is not bound by a claim's round trip
    /// per `concurrency` jobs. They are held from other workers while they wait: 0 claims
    /// only for free slots.
    pub prefetch: usize,
    /// Jobs claimed at most per claim.
    pub claim_batch: usize,
    /// Acknowledgements completed at most per call.
    pub ack_batch: usize,
    /// How long a claim holds without a heartbeat.
    pub lease: Duration,
    /// How often held leases are renewed (well inside `lease`).
    pub heartbeat: Duration,
    /// How often to look for due jobs when no wakeup comes (a delayed job's time, another
    /// process's enqueue on SQLite).
    pub poll: Duration,
    /// How often to rescue jobs whose worker died.
    pub rescue: Duration,
    /// On shutdown, how long running jobs may take to finish before they are released.
    pub grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            prefetch: 0,
            claim_batch: 100,
            ack_batch: 500,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            rescue: Duration::from_secs(5),
            grace: Duration::from_secs(10),
        }
    }
}

/// Pause after a failed claim or acknowledgement before the next try.
const PAUSE: Duration = Duration::from_millis(200);
/// An acknowledgement that keeps failing is given up after this many tries; its jobs'
/// leases then lapse and the rescuer retries them (at least once, never lost).
const ACK_TRIES: u32 = 5;

/// Makes the job of a periodic schedule's tick (which starts at the instant given).
pub type MakeJob = Arc<dyn Fn(Timestamp) -> NewJob + Send + Sync>;

/// A periodic schedule: a job per tick of its cadence (every worker agrees on the ticks).
#[derive(Clone)]
struct Schedule {
    name: String,
    cadence: Cadence,
    make: MakeJob,
}

/// The jobs this worker holds, for the heartbeat.
type Held = Arc<Mutex<HashMap<JobId, Claim>>>;

pub struct Worker {
    backend: Arc<dyn Backend>,
    handlers: HashMap<String, Run>,
    schedules: Vec<Schedule>,
    config: WorkerConfig,
}

impl Worker {
    pub fn new(backend: Arc<dyn Backend>, config: WorkerConfig) -> Self {
        Self { backend, handlers: HashMap::new(), schedules: Vec::new(), config }
    }

    /// Runs jobs of `kind` with `handler`.
    pub fn handle<F, Fut>(mut self, kind: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |job| Box::pin(handler(job)));
        self.handlers.insert(kind.into(), Run::One(handler));
        self
    }

    /// Runs jobs of `kind` many at a time: `handler` gets up to `max` of the jobs one claim
    /// returned, and answers one outcome per job, in order (a job it gives no outcome for
    /// fails its attempt). The batch holds one concurrency slot per job, so a batch is at
    /// most [`WorkerConfig::concurrency`] jobs.
    pub fn handle_batch<F, Fut>(mut self, kind: impl Into<String>, max: usize, handler: F) -> Self
    where
        F: Fn(Vec<Job>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Outcome>> + Send + 'static,
    {
        let handler: BatchHandler = Arc::new(move |jobs| Box::pin(handler(jobs)));
        self.handlers.insert(kind.into(), Run::Batch { handler, max: max.max(1) });
        self
    }

    /// Claimed jobs grouped into what runs them: a job of its own for each of a kind run one
    /// at a time, up to `max` (and at most `concurrency`) together for a batch kind.
    fn group<T>(&self, claimed: Vec<(Job, T)>, concurrency: usize) -> Vec<(Run, Vec<(Job, T)>)> {
        let mut groups: Vec<(Run, Vec<(Job, T)>)> = Vec::new();
        let mut open: HashMap<String, usize> = HashMap::new();
        for (job, extra) in claimed {
            match &self.handlers[&job.kind] {
                run @ Run::One(_) => groups.push((run.clone(), vec![(job, extra)])),
                run @ Run::Batch { max, .. } => match open.get(&job.kind) {
                    Some(&i) if groups[i].1.len() < (*max).min(concurrency) => groups[i].1.push((job, extra)),
                    _ => {
                        open.insert(job.kind.clone(), groups.len());
                        groups.push((run.clone(), vec![(job, extra)]));
                    }
                },
            }
        }
        groups
    }

    /// Enqueues `make(tick)` once per `interval` tick while the worker runs, as the
    /// schedule `name`: however many workers run the same schedule, each tick is enqueued
    /// once. A tick missed while no worker ran is not made up. The job runs on whichever
    /// worker has a handler for its kind.
    pub fn every(
        self,
        name: impl Into<String>,
        interval: Duration,
        make: impl Fn(Timestamp) -> NewJob + Send + Sync + 'static,
    ) -> Self {
        self.periodic(name, Cadence::every(interval), make)
    }

    /// Enqueues `make(tick)` once per tick of `cadence` (an interval, or a cron expression:
    /// [`Cadence::cron`]), as the schedule `name`, like [`Worker::every`]. A cron schedule
    /// does not run a tick that began before the worker started.
    pub fn periodic(
        mut self,
        name: impl Into<String>,
        cadence: Cadence,
        make: impl Fn(Timestamp) -> NewJob + Send + Sync + 'static,
    ) -> Self {
        self.schedules.push(Schedule { name: name.into(), cadence, make: Arc::new(make) });
        self
    }

    fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.handlers.keys().cloned().collect();
        kinds.sort();
        kinds
    }

    /// One step, for tests: claims one batch due at `now`, runs every job to its end, and
    /// acknowledges them at `now` in one call. Returns the jobs as they then stand.
    pub async fn run_once(&self, now: Timestamp) -> Result<Vec<Job>> {
        let request = ClaimRequest {
            kinds: self.kinds(),
            limit: self.config.claim_batch.min(self.config.concurrency).max(1),
            lease: self.config.lease,
        };
        let claimed = self.backend.claim(&request, now).await?;
        let lane = self.backend.lane();
        claimed.iter().for_each(|job| metrics::started(lane, job, now));
        let mut running = JoinSet::new();
        for (run, jobs) in self.group(claimed.into_iter().map(|j| (j, ())).collect(), usize::MAX) {
            running.spawn(run_handler(run, jobs.into_iter().map(|(j, ())| j).collect()));
        }
        let acks: Vec<Ack> = running.join_all().await.into_iter().flatten().collect();
        let done = self.backend.complete(acks, now).await?;
        done.iter().for_each(|job| metrics::settled(lane, job));
        Ok(done)
    }

    /// Runs until `shutdown` is cancelled; then stops claiming, lets running jobs finish for
    /// up to [`WorkerConfig::grace`], releases the rest (back to available, the attempt not
    /// spent), acknowledges everything, and returns once every task has ended.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<()> {
        let tracker = TaskTracker::new();
        // Ends the helpers (listener, heartbeat, rescuer) once the jobs are acknowledged.
        let helpers = CancellationToken::new();
        let held: Held = Arc::default();
        let (acks, ack_rx) = mpsc::unbounded_channel();

        let backend = self.backend.clone();
        let stop = helpers.clone();
        tracker.spawn(async move {
            if let Err(e) = backend.listen(stop).await {
                tracing::warn!(error = %e, "queue: listener stopped; polling only");
            }
        });
        tracker.spawn(heartbeats(self.backend.clone(), held.clone(), self.config.clone(), helpers.clone()));
        tracker.spawn(rescuer(self.backend.clone(), self.config.rescue, helpers.clone()));
        let acker = tracker.spawn(acker(self.backend.clone(), ack_rx, self.config.ack_batch));
        for schedule in &self.schedules {
            tracker.spawn(scheduler(self.backend.clone(), schedule.clone(), helpers.clone()));
        }

        let jobs = TaskTracker::new();
        let release = CancellationToken::new();
        self.claim_loop(&shutdown, &jobs, &held, &acks, &release).await;

        // Shutdown: nothing new is claimed; running jobs get the grace period.
        jobs.close();
        tokio::select! {
            () = jobs.wait() => {}
            () = tokio::time::sleep(self.config.grace) => {
                tracing::info!(jobs = jobs.len(), "queue: grace period over; releasing the jobs still running");
                release.cancel();
                jobs.wait().await;
            }
        }
        drop(acks);
        if acker.await.is_err() {
            tracing::error!("queue: the acknowledging task panicked");
        }
        helpers.cancel();
        tracker.close();
        tracker.wait().await;
        Ok(())
    }

    async fn claim_loop(
        &self,
        shutdown: &CancellationToken,
        jobs: &TaskTracker,
        held: &Held,
        acks: &mpsc::UnboundedSender<Ack>,
        release: &CancellationToken,
    ) {
        let kinds = self.kinds();
        let concurrency = self.config.concurrency.max(1);
        // Running jobs take a slot; held ones (running, or claimed and waiting) take room.
        let slots = Arc::new(Semaphore::new(concurrency));
        let room = Arc::new(Semaphore::new(concurrency + self.config.prefetch));
        let mut wakeups = self.backend.wakeups();
        loop {
            // Wait for room for one job, then take all the other room there is, up to a batch.
            let first = tokio::select! {
                // Shutdown first: free room must not start one more claim after it.
                biased;
                () = shutdown.cancelled() => return,
                permit = room.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let mut permits = vec![first];
            while permits.len() < self.config.claim_batch.max(1) {
                match room.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            // Seen before claiming: a wakeup during the claim makes the wait below return.
            wakeups.borrow_and_update();
            let request = ClaimRequest { kinds: kinds.clone(), limit: permits.len(), lease: self.config.lease };
            let now = Timestamp::now();
            let claimed = match self.backend.claim(&request, now).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(error = %e, "queue: claim failed");
                    drop(permits);
                    if pause(shutdown, PAUSE).await {
                        return;
                    }
                    continue;
                }
            };
            if claimed.is_empty() {
                drop(permits);
                tokio::select! {
                    _ = wakeups.changed() => {}
                    () = tokio::time::sleep(self.config.poll) => {}
                    () = shutdown.cancelled() => return,
                }
                continue;
            }
            // One permit per job; unused ones go back when the rest of `permits` drops.
            let claimed: Vec<(Job, OwnedSemaphorePermit)> = claimed.into_iter().zip(permits.drain(..)).collect();
            for (job, _) in &claimed {
                lock(held).insert(job.id.clone(), job.claim());
            }
            for (run, group) in self.group(claimed, concurrency) {
                let (group, permits): (Vec<Job>, Vec<OwnedSemaphorePermit>) = group.into_iter().unzip();
                let span = match &group[..] {
                    [job] => tracing::info_span!("job", id = %job.id, kind = %job.kind, attempt = job.attempt),
                    jobs => {
                        let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
                        tracing::info_span!("jobs", ids = ?ids, kind = %jobs[0].kind)
                    }
                };
                let lane = self.backend.lane();
                let (slots, shutdown) = (slots.clone(), shutdown.clone());
                let (held, acks, release) = (held.clone(), acks.clone(), release.clone());
                let task = async move {
                    // A prefetched job waits here for a slot, or goes back at shutdown unstarted.
                    let n = u32::try_from(group.len()).unwrap_or(u32::MAX);
                    let slot = tokio::select! {
                        biased;
                        slot = slots.acquire_many_owned(n) => slot.expect("the semaphore is never closed"),
                        () = shutdown.cancelled() => {
                            give_back(group, &held, &acks);
                            return;
                        }
                    };
                    let started = Timestamp::now();
                    group.iter().for_each(|job| metrics::started(lane, job, started));
                    run_jobs(run, group, permits, held, acks, release).await;
                    drop(slot);
                };
                jobs.spawn(task.instrument(span));
            }
        }
    }
}

/// One job, or one batch: the handler's outcomes, or releases if shutdown's grace ran out
/// first.
async fn run_jobs(
    run: Run,
    jobs: Vec<Job>,
    permits: Vec<OwnedSemaphorePermit>,
    held: Held,
    acks: mpsc::UnboundedSender<Ack>,
    release: CancellationToken,
) {
    let claims: Vec<Claim> = jobs.iter().map(Job::claim).collect();
    let done = tokio::select! {
        done = run_handler(run, jobs) => done,
        () = release.cancelled() => {
            tracing::info!("queue: released unfinished at shutdown");
            claims.iter().map(|claim| Ack { claim: claim.clone(), outcome: Outcome::Snooze(Duration::ZERO) }).collect()
        }
    };
    let mut held = lock(&held);
    for claim in &claims {
        held.remove(&claim.id);
    }
    drop(held);
    for ack in done {
        // The acker outlives every job task (`run` drops the last sender after they end).
        let _ = acks.send(ack);
    }
    drop(permits);
}

/// Hands jobs that never started back to the queue (available again, the attempt not spent).
fn give_back(jobs: Vec<Job>, held: &Held, acks: &mpsc::UnboundedSender<Ack>) {
    tracing::info!(jobs = jobs.len(), "queue: released unstarted at shutdown");
    let mut held = lock(held);
    for job in &jobs {
        held.remove(&job.id);
    }
    drop(held);
    for job in jobs {
        let _ = acks.send(Ack { claim: job.claim(), outcome: Outcome::Snooze(Duration::ZERO) });
    }
}

/// Runs the handler in a task of its own, so that a panic is the attempt's failure rather
/// than the worker's; dropping the future (a release) aborts it. One ack per job, in order.
async fn run_handler(run: Run, jobs: Vec<Job>) -> Vec<Ack> {
    let claims: Vec<Claim> = jobs.iter().map(Job::claim).collect();
    let mut one = JoinSet::new();
    match run {
        Run::One(handler) => {
            one.spawn(async move {
                let mut outcomes = Vec::with_capacity(jobs.len());
                for job in jobs {
                    outcomes.push(handler(job).await);
                }
                outcomes
            });
        }
        Run::Batch { handler, .. } => {
            one.spawn(handler(jobs));
        }
    }
    let outcomes = match one.join_next().await {
        Some(Ok(outcomes)) => outcomes,
        Some(Err(e)) if e.is_panic() => {
            tracing::error!("queue: handler panicked");
            vec![Outcome::retry("the handler panicked"); claims.len()]
        }
        _ => vec![Outcome::retry("the handler was cancelled"); claims.len()],
    };
    let mut outcomes = outcomes.into_iter();
    claims
        .into_iter()
        .map(|claim| {
            let outcome = outcomes.next().unwrap_or_else(|| Outcome::retry("the batch handler gave no outcome for it"));
            Ack { claim, outcome }
        })
        .collect()
}

/// Completes every outcome that is ready in one call, until every sender is gone.
async fn acker(backend: Arc<dyn Backend>, mut rx: mpsc::UnboundedReceiver<Ack>, batch: usize) {
    let mut acks = Vec::with_capacity(batch);
    while rx.recv_many(&mut acks, batch.max(1)).await > 0 {
        let mut tries = 0;
        loop {
            tries += 1;
            match backend.complete(acks.clone(), Timestamp::now()).await {
                Ok(done) => {
                    for job in &done {
                        metrics::settled(backend.lane(), job);
                        tracing::debug!(id = %job.id, kind = %job.kind, state = job.state.as_str(), "queue: job acknowledged");
                    }
                    break;
                }
                Err(e) if tries < ACK_TRIES => {
                    tracing::warn!(error = %e, jobs = acks.len(), "queue: acknowledgement failed; trying again");
                    tokio::time::sleep(PAUSE).await;
                }
                Err(e) => {
                    let ids: Vec<&str> = acks.iter().map(|a| a.claim.id.as_str()).collect();
                    tracing::error!(error = %e, ?ids, "queue: acknowledgement given up; the leases will lapse and the jobs run again");
                    break;
                }
            }
        }
        acks.clear();
    }
}

/// Renews the leases of every job held, once per beat.
async fn heartbeats(backend: Arc<dyn Backend>, held: Held, config: WorkerConfig, stop: CancellationToken) {
    loop {
        if pause(&stop, config.heartbeat).await {
            return;
        }
        let claims: Vec<Claim> = lock(&held).values().cloned().collect();
        if claims.is_empty() {
            continue;
        }
        match backend.heartbeat(&claims, config.lease, Timestamp::now()).await {
            Ok(kept) if kept.len() < claims.len() => {
                for lost in claims.iter().filter(|c| !kept.contains(c)) {
                    tracing::warn!(id = %lost.id, "queue: lease lost (it lapsed and the job was rescued); its outcome will be ignored");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "queue: heartbeat failed"),
        }
    }
}

/// Hands jobs whose worker died back to the queue, and reports the queue depth, every
/// `every`.
async fn rescuer(backend: Arc<dyn Backend>, every: Duration, stop: CancellationToken) {
    let mut shown = std::collections::BTreeSet::new();
    loop {
        match backend.depth(Timestamp::now()).await {
            Ok(depth) => metrics::depth(backend.lane(), &depth, &mut shown),
            Err(e) => tracing::debug!(error = %e, "queue: depth not read"),
        }
        match backend.rescue(Timestamp::now()).await {
            Ok(rescued) => {
                for job in &rescued {
                    metrics::settled(backend.lane(), job);
                    tracing::warn!(id = %job.id, kind = %job.kind, crashes = job.crashes, state = job.state.as_str(), "queue: lease lapsed; job rescued");
                }
            }
            Err(QueueError::Store(e)) if e.is_retryable() => {}
            Err(e) => tracing::warn!(error = %e, "queue: rescue failed"),
        }
        if let Err(e) = backend.maintain().await {
            tracing::debug!(error = %e, "queue: maintenance failed");
        }
        if pause(&stop, every).await {
            return;
        }
    }
}

/// Enqueues each tick of `schedule` (if no other worker did) until `stop`.
async fn scheduler(backend: Arc<dyn Backend>, schedule: Schedule, stop: CancellationToken) {
    let started = Timestamp::now();
    loop {
        let now = Timestamp::now();
        let tick = schedule.cadence.current(now).filter(|&t| t >= started || schedule.cadence.catches_up());
        if let Some(tick) = tick {
            let job = (schedule.make)(tick).run_at(tick);
            match backend.enqueue_tick(&schedule.name, tick, job, now).await {
                Ok(Some(job)) => {
                    tracing::debug!(id = %job.id, schedule = %schedule.name, %tick, "queue: periodic job enqueued")
                }
                Ok(None) => {}
                Err(e) => {
                    // Tried again within the same tick, which is not lost unless the failure lasts.
                    tracing::warn!(error = %e, schedule = %schedule.name, "queue: periodic enqueue failed");
                    if pause(&stop, PAUSE).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let Some(next) = schedule.cadence.next(now) else {
            tracing::info!(schedule = %schedule.name, "queue: the schedule never ticks again");
            return;
        };
        let until_next = next.duration_since(Timestamp::now()).unsigned_abs();
        if pause(&stop, until_next.max(Duration::from_micros(1))).await {
            return;
        }
    }
}

/// Sleeps for `d`; true if `stop` came first.
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}

fn lock(held: &Held) -> std::sync::MutexGuard<'_, HashMap<JobId, Claim>> {
    held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
