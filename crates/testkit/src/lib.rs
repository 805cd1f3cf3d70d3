//! Test helpers shared by questline's integration tests: the real `questline` binary started
//! on port 0 ([`TestServer`]), on a database of its own of either [`Backend`].
//!
//! A dev-dependency only; it knows questline from the outside (its CLI, its HTTP API, its
//! database URLs), not from its crates, so that tests keep speaking to what users run.
//!
//! - [`server`]: [`TestServer`] and [`ServerOptions`]. The binary's path is the caller's
//!   to give: `env!("CARGO_BIN_EXE_questline")` exists only in the server crate's own tests.
//! - [`postgres`]: a fresh PostgreSQL database per test, dropped at the end.
//! - [`redis`]: the Redis server, a key namespace per test, and `QUESTLINE_SKIP_REDIS`.
//! - [`smtp`]: [`smtp::SmtpSink`], a private SMTP server (aiosmtpd) per test that records what
//!   it receives and refuses what it is told to, and `QUESTLINE_SKIP_SMTP`.
//! - [`poll`]: [`eventually`] (and [`eventually_blocking`]), waiting for what a test expects
//!   with a deadline.
//!
//! # PostgreSQL
//!
//! Databases are created on the server `QUESTLINE_TEST_POSTGRES_URL` names (default
//! [`postgres::DEFAULT_ADMIN_URL`], `postgres://postgres@127.0.0.1:5432/postgres`; `scripts/test`
//! exports it, starting a private server when none runs). A PostgreSQL test never passes
//! without running: an unreachable server fails it. To run without PostgreSQL, set
//! `QUESTLINE_SKIP_POSTGRES=1`: each PostgreSQL test then prints one `SKIPPED` line on
//! standard error and returns (see [`postgres::skipped`]).

pub mod poll;
pub mod postgres;
pub mod redis;
pub mod server;
pub mod smtp;

pub use poll::{eventually, eventually_blocking};
pub use server::{ADMIN_KEY, DEADLINE, Database, Role, ServerOptions, TestServer, expect_problem, send};

/// The storage backends a server can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A file of the server's own (in its temporary directory).
    Sqlite,
    /// A database of the server's own, created on the PostgreSQL of [`postgres::admin_url`].
    Postgres,
}

impl Backend {
    /// Whether the test `test` on this backend should return without running: only
    /// PostgreSQL tests, only under `QUESTLINE_SKIP_POSTGRES=1`, and never silently (see
    /// [`postgres::skipped`]).
    pub fn skipped(self, test: &str) -> bool {
        match self {
            Backend::Sqlite => false,
            Backend::Postgres => postgres::skipped(test),
        }
    }
}
