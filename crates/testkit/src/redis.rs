//! The Redis server of the tests that need one (the queue's Redis lane), under the same
//! rule as PostgreSQL: no Redis, no pass. Each test keeps its keys under a namespace of its
//! own ([`fresh_namespace`]) and deletes only those, so tests share a server (even a
//! developer's) without touching each other's keys or anyone else's; nothing ever runs
//! `FLUSHALL`.
//!
//! `QUESTLINE_SKIP_REDIS=1` is the one way to run without Redis, and it is loud: see
//! [`skipped`]. `scripts/test` ignores it, as it ignores `QUESTLINE_SKIP_POSTGRES`.

use std::io::Write;

/// Where the tests find Redis unless `QUESTLINE_TEST_REDIS_URL` says otherwise.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// The variable naming the Redis server. `scripts/test` exports it.
pub const URL_VAR: &str = "QUESTLINE_TEST_REDIS_URL";

/// Set to `1` to run without Redis: its tests then say `SKIPPED` and return.
pub const SKIP_VAR: &str = "QUESTLINE_SKIP_REDIS";

/// The Redis server tests use: `QUESTLINE_TEST_REDIS_URL`, or [`DEFAULT_URL`].
pub fn url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Whether the Redis test `test` should return without running, i.e. whether
/// `QUESTLINE_SKIP_REDIS=1` is set; if so, says so in one line on standard error first.
pub fn skipped(test: &str) -> bool {
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        // Through the handle, not `eprintln!`, which the harness captures for passing tests.
        let _ = writeln!(std::io::stderr().lock(), "SKIPPED ({SKIP_VAR}=1): redis test {test} did not run");
        true
    } else {
        false
    }
}

/// A namespace no other test uses: `questline-test-<uuid>`.
pub fn fresh_namespace() -> String {
    format!("questline-test-{}", uuid::Uuid::now_v7().simple())
}

impl Namespace {
    /// A fresh namespace ([`fresh_namespace`]), its keys deleted when it drops.
    pub fn fresh() -> Self {
        Namespace(fresh_namespace())
    }
}

/// The failure of a Redis test whose server cannot be reached.
pub fn unavailable(why: &str) -> ! {
    panic!(
        "cannot reach Redis at {} ({why}). A Redis test fails without Redis: run scripts/test (it starts a \
         server), point {URL_VAR} at one, or set {SKIP_VAR}=1 to skip these tests.",
        url()
    )
}

/// A test's Redis namespace: its keys are deleted when the test ends (and kept, to be looked
/// at, when it failed).
pub struct Namespace(pub String);

impl Drop for Namespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("left the Redis keys {}:* to be looked at", self.0);
            return;
        }
        // Drop cannot await and may run inside a runtime: a thread with a runtime of its own.
        let pattern = format!("{}:*", self.0);
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(delete_keys(&pattern))
        })
        .join();
        if !matches!(deleted, Ok(Ok(()))) {
            eprintln!("could not delete the Redis keys of a test namespace: {deleted:?}");
        }
    }
}

/// Deletes the keys matching `pattern` (only those: never `FLUSHALL` a shared server).
pub async fn delete_keys(pattern: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("UNLINK").arg(&keys).query_async::<()>(&mut conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
