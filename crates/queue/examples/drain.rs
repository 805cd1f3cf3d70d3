//! A quick drain: enqueue N no-op jobs, then time one worker (concurrency C) running them
//! all, on the Redis lane and on the SQL lane on PostgreSQL, in the same run, on the same
//! machine. The figure in `docs/queue-redis.md` comes from here:
//!
//! ```sh
//! cargo run --release -p questline-queue --example drain -- 100000 16 [analyze]
//! ```
//!
//! PostgreSQL and Redis are found as the tests find them (`QUESTLINE_TEST_POSTGRES_URL`,
//! `QUESTLINE_TEST_REDIS_URL`, defaults on 127.0.0.1); the PostgreSQL database is one made
//! for the run and dropped after it, the Redis keys are under a namespace of the run's own
//! and deleted after it.

use jiff::Timestamp;
use questline_queue::{Backend, NewJob, Outcome, QueueConfig, RedisQueue, SqlQueue, Worker, WorkerConfig};
use questline_store::postgres::PostgresStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let jobs: usize = args.next().map_or(100_000, |n| n.parse().expect("jobs: a number"));
    let concurrency: usize = args.next().map_or(16, |n| n.parse().expect("concurrency: a number"));
    // `analyze`: refresh PostgreSQL's statistics after the enqueue, as autovacuum would a
    // while later (without it, the claim's plan on a table that just grew by the whole
    // backlog sorts the backlog on every claim).
    let analyze = args.next().is_some_and(|a| a == "analyze");
    println!("draining {jobs} no-op jobs, one worker of concurrency {concurrency}");

    let namespace = questline_testkit::redis::fresh_namespace();
    let redis =
        RedisQueue::open(&questline_testkit::redis::url(), &namespace, QueueConfig::default()).await.expect("Redis");
    let (enqueue, drain) = measure(Arc::new(redis), jobs, concurrency, None).await;
    report("redis", jobs, enqueue, drain);
    questline_testkit::redis::delete_keys(&format!("{namespace}:*")).await.expect("the run's keys deleted");

    let db = questline_testkit::postgres::fresh_database().await;
    let store = Arc::new(PostgresStore::connect(db.url()).await.expect("PostgreSQL"));
    let sql = SqlQueue::open(store, QueueConfig::default()).await.expect("the SQL lane").listening(db.url());
    let analyze = analyze.then(|| db.url().to_owned());
    let (enqueue, drain) = measure(Arc::new(sql), jobs, concurrency, analyze).await;
    report("postgres", jobs, enqueue, drain);
}

/// Enqueues `jobs` in batches of 1,000, then runs one worker until every job has run and
/// been acknowledged. Returns the two durations.
async fn measure(
    queue: Arc<dyn Backend>,
    jobs: usize,
    concurrency: usize,
    analyze: Option<String>,
) -> (Duration, Duration) {
    let started = Instant::now();
    let news: Vec<NewJob> = (0..jobs).map(|i| NewJob::new("noop", serde_json::json!({ "i": i }))).collect();
    for batch in news.chunks(1000) {
        queue.enqueue(batch.to_vec(), Timestamp::now()).await.expect("enqueue");
    }
    let enqueue = started.elapsed();
    if let Some(url) = analyze {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("PostgreSQL");
        sqlx::query("ANALYZE queue_jobs").execute(&mut conn).await.expect("ANALYZE");
        println!("(statistics refreshed: ANALYZE queue_jobs)");
    }

    let ran = Arc::new(AtomicUsize::new(0));
    let all_ran = Arc::new(Notify::new());
    let (counter, signal) = (ran.clone(), all_ran.clone());
    let config = WorkerConfig { concurrency, ..WorkerConfig::default() };
    let worker = Worker::new(queue.clone(), config).handle("noop", move |_| {
        let (counter, signal) = (counter.clone(), signal.clone());
        async move {
            if counter.fetch_add(1, Ordering::Relaxed) + 1 == jobs {
                signal.notify_one();
            }
            Outcome::Done
        }
    });
    let started = Instant::now();
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let stop = shutdown.clone();
    let run = tasks.spawn(async move { worker.run(stop).await });
    // Progress every 10 s, on standard error: a slow lane shows its pace before it ends.
    let (progress, lane) = (ran.clone(), queue.lane());
    let ticker = tasks.spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(10));
        every.tick().await;
        loop {
            every.tick().await;
            eprintln!(
                "{lane:>9}: {} of {jobs} run after {:.0} s",
                progress.load(Ordering::Relaxed),
                started.elapsed().as_secs_f64()
            );
        }
    });
    all_ran.notified().await;
    ticker.abort();
    // `run` returns once every outcome is acknowledged.
    shutdown.cancel();
    run.await.expect("the worker task").expect("the worker");
    let drain = started.elapsed();
    let left = queue.depth(Timestamp::now()).await.expect("depth");
    assert!(left.is_empty(), "jobs left: {left:?}");
    (enqueue, drain)
}

fn report(lane: &str, jobs: usize, enqueue: Duration, drain: Duration) {
    let rate = |d: Duration| jobs as f64 / d.as_secs_f64();
    println!(
        "{lane:>9}: enqueue {:>6.2} s ({:>8.0} jobs/s)   drain {:>6.2} s ({:>8.0} jobs/s)",
        enqueue.as_secs_f64(),
        rate(enqueue),
        drain.as_secs_f64(),
        rate(drain)
    );
}
