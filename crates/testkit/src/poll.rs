//! Waiting for something a test expects to happen: polled, with a deadline, never a bare
//! sleep. The one place tests pause between looks.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long between two looks.
const EVERY: Duration = Duration::from_millis(20);

/// Calls `look` until it answers `Ok`, and returns that. Each `Err` says how things stand;
/// after `deadline` the test fails with `what` it waited for and the last such answer.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut look: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let until = Instant::now() + deadline;
    loop {
        match look().await {
            Ok(found) => return found,
            Err(now) if Instant::now() >= until => panic!("timed out after {deadline:?} waiting for {what}: {now}"),
            Err(_) => tokio::time::sleep(EVERY).await,
        }
    }
}

/// [`eventually`] for a test without a runtime (one that drives processes): `look` runs on
/// this thread, which sleeps between looks.
pub fn eventually_blocking<T>(what: &str, deadline: Duration, mut look: impl FnMut() -> Result<T, String>) -> T {
    let until = Instant::now() + deadline;
    loop {
        match look() {
            Ok(found) => return found,
            Err(now) if Instant::now() >= until => panic!("timed out after {deadline:?} waiting for {what}: {now}"),
            Err(_) => std::thread::sleep(EVERY),
        }
    }
}
