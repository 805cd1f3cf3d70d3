//! The worker runtime on the real clock: draining, graceful shutdown, waking on enqueue,
//! and the step-by-step entry point.

use crate::{Lane, LaneKind, enqueue, job};
use jiff::Timestamp;
use questline_queue::{Job, JobId, JobState, ListFilter, Outcome, Worker, WorkerConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a test waits for something the worker should do in milliseconds.
const DEADLINE: Duration = Duration::from_secs(20);

/// Runs of each job, and a signal on each.
#[derive(Default)]
struct Runs {
    by_id: Mutex<HashMap<JobId, u32>>,
    changed: Notify,
}

impl Runs {
    fn record(&self, job: &Job) {
        *self.by_id.lock().unwrap().entry(job.id.clone()).or_default() += 1;
        self.changed.notify_waiters();
    }

    fn total(&self) -> usize {
        self.by_id.lock().unwrap().values().map(|&n| n as usize).sum()
    }

    /// Waits until `done` holds of the runs, or fails the test after [`DEADLINE`].
    async fn wait_until(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let changed = self.changed.notified();
            if done(self) {
                return;
            }
            // Re-checked at least every 50 ms, in case a signal came between check and wait.
            let next = (tokio::time::Instant::now() + Duration::from_millis(50)).min(deadline);
            if tokio::time::Instant::now() >= deadline {
                panic!("timed out waiting for {what}: {} runs", self.total());
            }
            let _ = tokio::time::timeout_at(next, changed).await;
        }
    }
}

fn config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 4,
        claim_batch: 8,
        lease: Duration::from_secs(30),
        heartbeat: Duration::from_secs(5),
        poll: Duration::from_millis(100),
        grace: Duration::from_secs(5),
        ..WorkerConfig::default()
    }
}

pub async fn a_worker_drains_every_job_exactly_once(lane: &Lane) {
    const JOBS: usize = 120;
    let runs = Arc::new(Runs::default());
    let recorder = runs.clone();
    let worker = Arc::new(Worker::new(lane.queue.clone(), config()).handle("noop", move |job: Job| {
        let runs = recorder.clone();
        async move {
            runs.record(&job);
            Outcome::Done
        }
    }));
    let news = (0..JOBS).map(|i| job("noop", &i.to_string())).collect();
    let enqueued = lane.queue.enqueue(news, Timestamp::now()).await.unwrap();

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let running = worker.clone();
    let stop = shutdown.clone();
    let run = tasks.spawn(async move { running.run(stop).await });
    runs.wait_until("every job to run", |r| r.total() >= JOBS).await;
    shutdown.cancel();
    run.await.unwrap().unwrap();

    let by_id = runs.by_id.lock().unwrap().clone();
    assert_eq!(by_id.len(), JOBS);
    assert!(by_id.values().all(|&n| n == 1), "each job ran exactly once");
    for job in &enqueued {
        let stored = lane.queue.get(&job.id, Timestamp::now()).await.unwrap().unwrap();
        assert_eq!(stored.state, JobState::Succeeded, "acknowledged before run returned");
    }
}

pub async fn shutdown_releases_unfinished_work(lane: &Lane) {
    let runs = Arc::new(Runs::default());
    let recorder = runs.clone();
    // A handler that never ends by itself.
    let worker = Arc::new(
        Worker::new(lane.queue.clone(), WorkerConfig { grace: Duration::from_millis(200), ..config() }).handle(
            "stuck",
            move |job: Job| {
                let runs = recorder.clone();
                async move {
                    runs.record(&job);
                    std::future::pending::<Outcome>().await
                }
            },
        ),
    );
    let now = Timestamp::now();
    let enqueued = lane.queue.enqueue(vec![job("stuck", "a"), job("stuck", "b")], now).await.unwrap();

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (running, stop) = (worker.clone(), shutdown.clone());
    let run = tasks.spawn(async move { running.run(stop).await });
    runs.wait_until("both jobs to start", |r| r.total() == 2).await;
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, run).await.expect("run returns after its grace period").unwrap().unwrap();

    for job in &enqueued {
        let stored = lane.queue.get(&job.id, Timestamp::now()).await.unwrap().unwrap();
        assert_eq!(stored.state, JobState::Available, "released, due again");
        assert_eq!(stored.attempt, 0, "the attempt was given back");
        assert!(stored.errors.is_empty());
    }
    let available = ListFilter { state: Some(JobState::Available), ..ListFilter::default() };
    assert_eq!(lane.queue.list(&available, Timestamp::now()).await.unwrap().items.len(), 2);
}

pub async fn a_worker_wakes_on_enqueue_without_waiting_for_its_poll(lane: &Lane) {
    let runs = Arc::new(Runs::default());
    let recorder = runs.clone();
    // A poll interval far beyond the deadline: only a wakeup can start the job in time.
    let config = WorkerConfig { poll: Duration::from_secs(600), ..config() };
    let worker = Arc::new(Worker::new(lane.queue.clone(), config).handle("ping", move |job: Job| {
        let runs = recorder.clone();
        async move {
            runs.record(&job);
            Outcome::Done
        }
    }));
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (running, stop) = (worker.clone(), shutdown.clone());
    let run = tasks.spawn(async move { running.run(stop).await });
    // Let the worker find nothing and go to sleep.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // On PostgreSQL and Redis the job comes from another process, so only NOTIFY (or a
    // PUBLISH) can tell this one. SQLite has no NOTIFY: there the enqueue is this process's own.
    let producer = match lane.kind {
        LaneKind::Postgres | LaneKind::Redis => lane.other_process().await,
        LaneKind::Memory | LaneKind::Sqlite => lane.queue.clone(),
    };
    enqueue(&*producer, job("ping", "wake up"), Timestamp::now()).await;
    runs.wait_until("the job to run", |r| r.total() == 1).await;
    shutdown.cancel();
    run.await.unwrap().unwrap();
}

pub async fn run_once_persists_a_failure_as_a_retry(lane: &Lane) {
    let worker = Worker::new(lane.queue.clone(), config())
        .handle("flaky", |_job: Job| async { Outcome::retry_after("503", Duration::from_secs(90)) })
        .handle("boom", |_job: Job| async { panic!("handler bug") });
    let now = Timestamp::from_second(1_704_067_200).unwrap();
    let flaky = enqueue(&*lane.queue, job("flaky", "f"), now).await;
    let boom = enqueue(&*lane.queue, job("boom", "b"), now).await;
    let done = worker.run_once(now).await.unwrap();
    assert_eq!(done.len(), 2);
    let flaky = lane.queue.get(&flaky.id, now).await.unwrap().unwrap();
    assert_eq!((flaky.state, flaky.run_at), (JobState::Retrying, now + Duration::from_secs(90)));
    // A panicking handler fails its attempt; the worker lives on.
    let boom = lane.queue.get(&boom.id, now).await.unwrap().unwrap();
    assert_eq!(boom.state, JobState::Retrying);
    assert_eq!(boom.errors[0].error, "the handler panicked");
    assert!(worker.run_once(now).await.unwrap().is_empty(), "nothing is due until the backoff passes");
}

pub async fn a_dead_workers_job_runs_again_after_its_lease(lane: &Lane) {
    // A worker that died holding the job: claimed with a 1 s lease, never acknowledged.
    let now = Timestamp::now();
    let orphan = enqueue(&*lane.queue, job("work", "orphan"), now).await;
    let request = questline_queue::ClaimRequest { kinds: vec!["work".into()], limit: 1, lease: Duration::from_secs(1) };
    assert_eq!(lane.queue.claim(&request, now).await.unwrap().len(), 1);

    let runs = Arc::new(Runs::default());
    let recorder = runs.clone();
    let config = WorkerConfig { rescue: Duration::from_millis(100), ..config() };
    let worker = Arc::new(Worker::new(lane.other_process().await, config).handle("work", move |job: Job| {
        let runs = recorder.clone();
        async move {
            runs.record(&job);
            Outcome::Done
        }
    }));
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (running, stop) = (worker.clone(), shutdown.clone());
    let run = tasks.spawn(async move { running.run(stop).await });
    runs.wait_until("the orphan to run after its lease", |r| r.total() == 1).await;
    shutdown.cancel();
    run.await.unwrap().unwrap();

    let done = lane.queue.get(&orphan.id, Timestamp::now()).await.unwrap().unwrap();
    assert_eq!((done.state, done.attempt, done.crashes), (JobState::Succeeded, 2, 1));
    assert_eq!(done.errors.iter().map(|e| e.error.as_str()).collect::<Vec<_>>(), [questline_queue::LEASE_LAPSED]);
    assert!(Timestamp::now() >= now + Duration::from_secs(1), "not before the lease lapsed");
}

pub async fn a_batch_handler_takes_many_jobs_in_one_call(lane: &Lane) {
    let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();
    let seen = sizes.clone();
    let config = WorkerConfig { concurrency: 8, claim_batch: 8, ..config() };
    let worker = Worker::new(lane.queue.clone(), config)
        .handle_batch("bulk", 3, move |jobs: Vec<Job>| {
            seen.lock().unwrap().push(jobs.len());
            let outcomes = jobs
                .iter()
                .map(|j| if crate::name(j) == "bad" { Outcome::retry("bad record") } else { Outcome::Done })
                .collect();
            async move { outcomes }
        })
        .handle_batch("short", 10, |_jobs: Vec<Job>| async { Vec::new() });
    let now = Timestamp::from_second(1_704_067_200).unwrap();
    let mut news: Vec<_> = (0..6).map(|i| job("bulk", &i.to_string())).collect();
    news.push(job("bulk", "bad"));
    news.push(job("short", "forgotten"));
    let enqueued = lane.queue.enqueue(news, now).await.unwrap();
    assert_eq!(worker.run_once(now).await.unwrap().len(), 8);

    let mut sizes = sizes.lock().unwrap().clone();
    sizes.sort();
    assert_eq!(sizes, [1, 3, 3], "7 jobs in batches of at most 3");
    for job in &enqueued {
        let stored = lane.queue.get(&job.id, now).await.unwrap().unwrap();
        match crate::name(job) {
            "bad" => assert_eq!((stored.state, stored.errors[0].error.as_str()), (JobState::Retrying, "bad record")),
            "forgotten" => {
                assert_eq!(stored.state, JobState::Retrying, "no outcome is a failed attempt");
                assert_eq!(stored.errors[0].error, "the batch handler gave no outcome for it");
            }
            _ => assert_eq!(stored.state, JobState::Succeeded),
        }
    }
}

pub async fn heartbeats_keep_a_long_job_from_being_rescued(lane: &Lane) {
    // A job that runs 2 leases long. Its worker heartbeats every 200 ms (a beat may come
    // 1.3 s late before the lease lapses); another worker rescues lapsed leases every
    // 100 ms. The job must run once, undisturbed.
    let lease = Duration::from_millis(1500);
    let runs = Arc::new(Runs::default());
    let recorder = runs.clone();
    let slow = WorkerConfig { lease, heartbeat: Duration::from_millis(200), ..config() };
    let worker = Arc::new(Worker::new(lane.queue.clone(), slow).handle("long", move |job: Job| {
        let runs = recorder.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            runs.record(&job);
            Outcome::Done
        }
    }));
    // The rescuer has no handlers: it only watches leases.
    let watcher = Arc::new(Worker::new(
        lane.other_process().await,
        WorkerConfig { rescue: Duration::from_millis(100), ..config() },
    ));
    let long = enqueue(&*lane.queue, job("long", "long"), Timestamp::now()).await;

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    for w in [worker, watcher] {
        let stop = shutdown.clone();
        tasks.spawn(async move { w.run(stop).await });
    }
    runs.wait_until("the long job to finish", |r| r.total() == 1).await;
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;

    let done = lane.queue.get(&long.id, Timestamp::now()).await.unwrap().unwrap();
    assert_eq!((done.state, done.attempt, done.crashes), (JobState::Succeeded, 1, 0));
    assert!(done.errors.is_empty(), "never rescued: {:?}", done.errors);
}

/// A prefetching worker claims ahead of its free slots, yet never runs more than its
/// concurrency at once, runs each job once, and at shutdown hands back the jobs it holds
/// unstarted with their attempt given back.
pub async fn prefetched_jobs_wait_for_a_slot_and_go_back_unstarted(lane: &Lane) {
    let runs = Arc::new(Runs::default());
    let (recorder, gate) = (runs.clone(), Arc::new(tokio::sync::Semaphore::new(0)));
    let (running_now, most) = (Arc::new(Mutex::new(0usize)), Arc::new(Mutex::new(0usize)));
    let (now_in, most_in, gate_in) = (running_now.clone(), most.clone(), gate.clone());
    let config =
        WorkerConfig { concurrency: 2, prefetch: 6, claim_batch: 8, grace: Duration::from_secs(5), ..config() };
    let worker = Arc::new(Worker::new(lane.queue.clone(), config).handle("gated", move |job: Job| {
        let (runs, now, most, gate) = (recorder.clone(), now_in.clone(), most_in.clone(), gate_in.clone());
        async move {
            {
                let mut n = now.lock().unwrap();
                *n += 1;
                let mut m = most.lock().unwrap();
                *m = (*m).max(*n);
            }
            runs.record(&job);
            // Each job waits for the test to let it finish.
            gate.acquire().await.unwrap().forget();
            *now.lock().unwrap() -= 1;
            Outcome::Done
        }
    }));
    let news = (0..12).map(|i| job("gated", &i.to_string())).collect();
    lane.queue.enqueue(news, Timestamp::now()).await.unwrap();

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (running, stop) = (worker.clone(), shutdown.clone());
    let run = tasks.spawn(async move { running.run(stop).await });
    runs.wait_until("two jobs to start", |r| r.total() == 2).await;
    // Eight held: two running, six waiting for a slot; the other four not claimed.
    let state = |s: JobState| ListFilter { state: Some(s), ..ListFilter::default() };
    questline_testkit::eventually("eight jobs held", DEADLINE, || async {
        let held = lane.queue.list(&state(JobState::Running), Timestamp::now()).await.unwrap().items.len();
        if held >= 8 { Ok(()) } else { Err(format!("{held} held")) }
    })
    .await;
    assert_eq!(lane.queue.list(&state(JobState::Available), Timestamp::now()).await.unwrap().items.len(), 4);
    // Let four finish: the waiting ones start two at a time, never more.
    gate.add_permits(4);
    runs.wait_until("six jobs to start", |r| r.total() == 6).await;
    assert_eq!(*most.lock().unwrap(), 2, "at most the concurrency at once");

    shutdown.cancel();
    gate.add_permits(2); // the two running finish within the grace period
    tokio::time::timeout(DEADLINE, run).await.expect("run returns").unwrap().unwrap();
    let by_id = runs.by_id.lock().unwrap().clone();
    assert!(by_id.values().all(|&n| n == 1), "each started job ran once: {by_id:?}");
    let succeeded = lane.queue.list(&state(JobState::Succeeded), Timestamp::now()).await.unwrap().items;
    assert_eq!(succeeded.len(), 6);
    let available = lane.queue.list(&state(JobState::Available), Timestamp::now()).await.unwrap().items;
    assert_eq!(available.len(), 6, "the unstarted held jobs went back, with the unclaimed");
    assert!(available.iter().all(|j| j.attempt == 0 && j.errors.is_empty()), "{available:?}");
}
