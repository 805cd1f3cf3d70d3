//! A PostgreSQL database of one test's own: created as `questline_test_<uuid>` on the server
//! [`admin_url`] names, dropped when its [`PostgresDatabase`] guard is dropped.
//!
//! No PostgreSQL, no pass: [`fresh_database`] fails the test when the server cannot be
//! reached. `QUESTLINE_SKIP_POSTGRES=1` is the one way to run without it, and it is loud:
//! see [`skipped`].

use sqlx::{Connection, Executor, PgConnection};
use std::io::Write;
use std::time::Duration;

/// Where the tests create their databases unless `QUESTLINE_TEST_POSTGRES_URL` says otherwise.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The variable naming the PostgreSQL server (any database on it the user may connect to,
/// with the right to create databases). `scripts/test` exports it.
pub const URL_VAR: &str = "QUESTLINE_TEST_POSTGRES_URL";

/// Set to `1` to run without PostgreSQL: its tests then say `SKIPPED` and return.
pub const SKIP_VAR: &str = "QUESTLINE_SKIP_POSTGRES";

/// How long creating or dropping a database may take before the test gives up.
const DEADLINE: Duration = Duration::from_secs(10);

/// The PostgreSQL server tests create their databases on: `QUESTLINE_TEST_POSTGRES_URL`, or
/// [`DEFAULT_ADMIN_URL`].
pub fn admin_url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// Whether the PostgreSQL test `test` should return without running, i.e. whether
/// `QUESTLINE_SKIP_POSTGRES=1` is set; if so, says so in one line on standard error first.
/// Call it first thing in a PostgreSQL test: `if postgres::skipped("module::test") { return }`.
pub fn skipped(test: &str) -> bool {
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        // Through the stderr handle, not `eprintln!`: the test harness captures (and hides)
        // what a passing test prints with the macros, and a skip must be seen.
        let _ = writeln!(std::io::stderr().lock(), "SKIPPED ({SKIP_VAR}=1): postgres test {test} did not run");
        true
    } else {
        false
    }
}

/// A database of the caller's own; dropped (with any session still on it) when the guard
/// is dropped, unless the thread is panicking: a failed test leaves it behind, named on
/// standard error, to be looked at.
#[derive(Debug)]
pub struct PostgresDatabase {
    url: String,
    admin_url: String,
    name: String,
}

/// Creates a fresh, empty database on [`admin_url`]'s server. Panics, failing the test, if
/// the server cannot be reached or refuses.
pub async fn fresh_database() -> PostgresDatabase {
    let admin_url = admin_url();
    let name = format!("questline_test_{}", uuid::Uuid::now_v7().simple());
    match tokio::time::timeout(DEADLINE, run(&admin_url, &format!("CREATE DATABASE \"{name}\""))).await {
        Ok(Ok(())) => PostgresDatabase { url: database_url(&admin_url, &name), admin_url, name },
        Ok(Err(e)) => unavailable(&admin_url, &e.to_string()),
        Err(_) => unavailable(&admin_url, &format!("no answer within {DEADLINE:?}")),
    }
}

fn unavailable(admin_url: &str, why: &str) -> ! {
    panic!(
        "cannot create a PostgreSQL test database on {} ({why}). A PostgreSQL test fails without PostgreSQL: \
         run scripts/test (it starts a server), point {URL_VAR} at one, or set {SKIP_VAR}=1 to skip these tests.",
        redact(admin_url)
    )
}

impl PostgresDatabase {
    /// The new database's URL: the admin URL with its database replaced.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("left test database {} on {} to be looked at", self.name, redact(&self.admin_url));
            return;
        }
        // Drop cannot await, and may run inside a runtime (which cannot be blocked on from
        // within): a thread of its own with a runtime of its own does the work.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(async { tokio::time::timeout(DEADLINE, run(&admin_url, &sql)).await })
        })
        .join();
        match dropped {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("could not drop test database {}: {e}", self.name),
            Ok(Err(_)) => eprintln!("could not drop test database {}: no answer within {DEADLINE:?}", self.name),
            Err(_) => eprintln!("could not drop test database {}: the dropping thread panicked", self.name),
        }
    }
}

/// Runs one statement on a connection of its own (`CREATE DATABASE` and `DROP DATABASE` may
/// not run in a transaction, nor on the database they name).
async fn run(admin_url: &str, sql: &str) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect(admin_url).await?;
    conn.execute(sql).await?;
    conn.close().await
}

/// `url` with its database (the path) replaced by `database`; user, host, port and query
/// parameters are kept.
fn database_url(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (before_query, query) = rest.find('?').map_or((rest, ""), |i| rest.split_at(i));
    let authority = before_query.split('/').next().unwrap_or_default();
    format!("{scheme}://{authority}/{database}{query}")
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if scheme_end < at => match url[scheme_end + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_replaces_only_the_database() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(database_url("postgresql://u:p@h", "t1"), "postgresql://u:p@h/t1");
        assert_eq!(database_url("postgres://h:1/db?sslmode=disable", "t1"), "postgres://h:1/t1?sslmode=disable");
        assert_eq!(database_url("postgres://h?sslmode=disable", "t1"), "postgres://h/t1?sslmode=disable");
    }

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(redact("postgres://u:secret@h:1/db"), "postgres://u:***@h:1/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }
}
