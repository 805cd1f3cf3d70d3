//! The worker's and the lanes' metrics, read back from a recorder of the test's own: what
//! an operator's dashboard would show after one round of work.

use crate::{at, job};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use questline_queue::{Backend, MemoryQueue, Outcome, SqlQueue, Worker, WorkerConfig};
use questline_store::sqlite::SqliteStore;
use std::sync::Arc;

/// The counter or histogram `name` for `kind` (0 or empty if never recorded).
fn counter(snapshot: &[(String, String, DebugValue)], name: &str, kind: &str) -> u64 {
    snapshot
        .iter()
        .filter(|(n, k, _)| n == name && k == kind)
        .map(|(_, _, v)| match v {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

fn samples(snapshot: &[(String, String, DebugValue)], name: &str, kind: &str) -> Vec<f64> {
    snapshot
        .iter()
        .filter(|(n, k, _)| n == name && k == kind)
        .flat_map(|(_, _, v)| match v {
            DebugValue::Histogram(samples) => samples.iter().map(|s| s.into_inner()).collect::<Vec<_>>(),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .collect()
}

/// One round on `queue`: 3 jobs that succeed (one enqueued twice under a unique key), one
/// that fails with attempts left, one that fails its last attempt.
async fn one_round(queue: Arc<dyn Backend>) {
    let now = at(0);
    queue
        .enqueue(
            vec![
                job("ok", "1").unique_key("once"),
                job("ok", "1 again").unique_key("once"),
                job("ok", "2").run_at(at(-5)),
                job("ok", "3"),
                job("flaky", "f").max_attempts(2),
                job("doomed", "d").max_attempts(1),
            ],
            now,
        )
        .await
        .unwrap();
    let worker = Worker::new(queue, WorkerConfig::default())
        .handle("ok", |_| async { Outcome::Done })
        .handle("flaky", |_| async { Outcome::retry("503") })
        .handle("doomed", |_| async { Outcome::retry("503") });
    assert_eq!(worker.run_once(at(2)).await.unwrap().len(), 5);
}

/// Every series recorded, as (name, kind, value); each must name `lane`.
fn recorded(lane: &str, make: impl AsyncFnOnce() -> Arc<dyn Backend>) -> Vec<(String, String, DebugValue)> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // A local recorder is per thread: one thread runs everything here.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    metrics::with_local_recorder(&recorder, || runtime.block_on(async { one_round(make().await).await }));
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key().clone();
            let labelled = key.labels().find(|l| l.key() == "lane").map(|l| l.value().to_owned());
            assert_eq!(labelled.as_deref(), Some(lane), "{key:?}");
            let kind = key.labels().find(|l| l.key() == "kind").map(|l| l.value().to_owned()).unwrap_or_default();
            (key.name().to_owned(), kind, value)
        })
        .collect()
}

fn check(snapshot: &[(String, String, DebugValue)]) {
    assert_eq!(counter(snapshot, "questline_jobs_enqueued_total", "ok"), 3, "a deduplicated enqueue is not counted");
    assert_eq!(counter(snapshot, "questline_jobs_started_total", "ok"), 3);
    assert_eq!(counter(snapshot, "questline_jobs_succeeded_total", "ok"), 3);
    assert_eq!(counter(snapshot, "questline_jobs_retried_total", "flaky"), 1);
    assert_eq!(counter(snapshot, "questline_jobs_dead_total", "flaky"), 0);
    assert_eq!(counter(snapshot, "questline_jobs_dead_total", "doomed"), 1);
    assert_eq!(counter(snapshot, "questline_jobs_succeeded_total", "doomed"), 0);
    // Enqueued (or due) at 0, started at 2: 2 s each; the one due at -5 waited from its enqueue.
    let latency = samples(snapshot, "questline_job_start_latency_seconds", "ok");
    assert_eq!(latency, [2.0, 2.0, 2.0]);
}

#[test]
fn the_memory_lane_and_its_worker_count_what_happened() {
    check(&recorded("memory", async || {
        let queue: Arc<dyn Backend> = Arc::new(MemoryQueue::new(crate::lane::config()));
        queue
    }));
}

#[test]
fn the_sql_lane_and_its_worker_count_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("q.db").display());
    check(&recorded("sqlite", async || {
        let store = Arc::new(SqliteStore::connect(&url).await.unwrap());
        let queue: Arc<dyn Backend> = Arc::new(SqlQueue::open(store, crate::lane::config()).await.unwrap());
        queue
    }));
}
