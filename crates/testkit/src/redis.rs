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

/// The failure of a Redis test whose server cannot be reached.
pub fn unavailable(why: &str) -> ! {
    panic!(
        "cannot reach Redis at {} ({why}). A Redis test fails without Redis: run scripts/test (it starts a \
         server), point {URL_VAR} at one, or set {SKIP_VAR}=1 to skip these tests.",
        url()
    )
}
