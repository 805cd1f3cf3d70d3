//! Periodic schedules: each tick is enqueued once, however many workers hold the schedule.

use crate::{Lane, at, job};
use jiff::Timestamp;
use questline_queue::{Backend, Cadence, Job, NewJob, Outcome, Worker, WorkerConfig};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub async fn a_tick_is_enqueued_once_whoever_asks(lane: &Lane) {
    let (one, two) = (lane.queue.clone(), lane.other_process().await);
    let first = one.enqueue_tick("daily", at(60), job("expire", "t60"), at(61)).await.unwrap();
    let first = first.expect("the first to ask enqueues the tick");
    assert_eq!(first.kind, "expire");
    assert!(two.enqueue_tick("daily", at(60), job("expire", "t60"), at(62)).await.unwrap().is_none(), "taken");
    assert!(one.enqueue_tick("daily", at(0), job("expire", "t0"), at(63)).await.unwrap().is_none(), "an older tick");
    assert!(two.enqueue_tick("hourly", at(60), job("other", "h"), at(64)).await.unwrap().is_some(), "schedules apart");
    assert!(two.enqueue_tick("daily", at(120), job("expire", "t120"), at(121)).await.unwrap().is_some());

    // Many asking at once, from two processes: one wins.
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..10 {
        let queue: Arc<dyn Backend> = if i % 2 == 0 { one.clone() } else { two.clone() };
        racers
            .spawn(async move { queue.enqueue_tick("daily", at(180), job("expire", "t180"), at(181)).await.unwrap() });
    }
    let won = racers.join_all().await.into_iter().flatten().count();
    assert_eq!(won, 1);
}

pub async fn two_workers_run_each_tick_once(lane: &Lane) {
    const INTERVAL: Duration = Duration::from_millis(200);
    let runs: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let config =
        WorkerConfig { poll: Duration::from_millis(50), grace: Duration::from_secs(5), ..WorkerConfig::default() };
    let make = |tick: Timestamp| NewJob::new("beat", json!({ "tick": tick.to_string() }));
    let tasks = TaskTracker::new();
    let shutdown = CancellationToken::new();
    for queue in [lane.queue.clone(), lane.other_process().await] {
        let runs = runs.clone();
        let worker =
            Worker::new(queue, config.clone()).every("beat", INTERVAL, make).handle("beat", move |job: Job| {
                let runs = runs.clone();
                async move {
                    let tick = job.payload["tick"].as_str().unwrap().to_owned();
                    *runs.lock().unwrap().entry(tick).or_default() += 1;
                    Outcome::Done
                }
            });
        let stop = shutdown.clone();
        tasks.spawn(async move { worker.run(stop).await });
    }
    tokio::time::sleep(INTERVAL * 8).await;
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;

    let runs = runs.lock().unwrap().clone();
    // About 8 ticks; a loaded machine may run fewer before the stop, but more than one.
    assert!(runs.len() >= 2, "a tick every 200 ms for 1.6 s: {runs:?}");
    assert!(runs.values().all(|&n| n == 1), "each tick ran once: {runs:?}");
}

pub async fn two_workers_run_each_cron_tick_once(lane: &Lane) {
    let runs: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let config =
        WorkerConfig { poll: Duration::from_millis(50), grace: Duration::from_secs(5), ..WorkerConfig::default() };
    let make = |tick: Timestamp| NewJob::new("cron-beat", json!({ "tick": tick.to_string() }));
    let tasks = TaskTracker::new();
    let shutdown = CancellationToken::new();
    for queue in [lane.queue.clone(), lane.other_process().await] {
        let runs = runs.clone();
        // Every second, as six cron fields (seconds first).
        let cadence = Cadence::cron("* * * * * *", jiff::tz::TimeZone::UTC).unwrap();
        let worker = Worker::new(queue, config.clone()).periodic("cron-beat", cadence, make).handle(
            "cron-beat",
            move |job: Job| {
                let runs = runs.clone();
                async move {
                    let tick = job.payload["tick"].as_str().unwrap().to_owned();
                    *runs.lock().unwrap().entry(tick).or_default() += 1;
                    Outcome::Done
                }
            },
        );
        let stop = shutdown.clone();
        tasks.spawn(async move { worker.run(stop).await });
    }
    // Three ticks (a tick a second), then stop.
    let ticks = |runs: &Mutex<HashMap<String, u32>>| runs.lock().unwrap().len();
    questline_testkit::eventually("three cron ticks", Duration::from_secs(20), || async {
        if ticks(&runs) >= 3 { Ok(()) } else { Err(format!("{} ticks", ticks(&runs))) }
    })
    .await;
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;

    let runs = runs.lock().unwrap().clone();
    assert!(runs.len() >= 3, "{runs:?}");
    assert!(runs.values().all(|&n| n == 1), "each tick ran once: {runs:?}");
    for tick in runs.keys() {
        let tick: Timestamp = tick.parse().unwrap();
        assert_eq!(tick.subsec_nanosecond(), 0, "ticks on whole seconds: {tick}");
    }
}
