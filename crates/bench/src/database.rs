//! A fresh database per phase, of the chosen backend, and the counts read back after a run.
//!
//! SQLite: a file in a temporary directory (on the same disk as everything else here).
//! PostgreSQL: `CREATE DATABASE questline_bench_…` on the server `--postgres-url` names,
//! dropped at the end unless `--keep-db`.

use crate::Result;
use serde::Serialize;
use sqlx::Connection;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A database made for one phase of the run.
pub struct FreshDb {
    pub backend: Backend,
    pub url: String,
    /// SQLite: the directory holding the file (removed on drop unless kept).
    dir: Option<tempfile::TempDir>,
    /// PostgreSQL: the server's URL and the database's name, to drop it.
    postgres: Option<(String, String)>,
}

impl FreshDb {
    /// `tag` names the phase (`engine`, `reference`).
    pub async fn create(backend: Backend, postgres_url: &str, sqlite_dir: Option<&Path>, tag: &str) -> Result<FreshDb> {
        match backend {
            Backend::Sqlite => {
                let parent = sqlite_dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
                std::fs::create_dir_all(&parent)?;
                let dir = tempfile::Builder::new().prefix("questline-bench-").tempdir_in(&parent)?;
                let url = format!("sqlite://{}", dir.path().join(format!("{tag}.db")).display());
                Ok(FreshDb { backend, url, dir: Some(dir), postgres: None })
            }
            Backend::Postgres => {
                let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
                let name = format!("questline_bench_{tag}_{}_{stamp}", std::process::id());
                let mut conn = sqlx::PgConnection::connect(postgres_url).await.map_err(|e| {
                    format!("cannot reach PostgreSQL at {postgres_url}: {e} (is it running? see docs/BENCHMARKS.md)")
                })?;
                // The name is made here of [a-z0-9_]: nothing from outside goes into the SQL.
                sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut conn).await?;
                conn.close().await?;
                let url = with_database(postgres_url, &name);
                Ok(FreshDb { backend, url, dir: None, postgres: Some((postgres_url.to_owned(), name)) })
            }
        }
    }

    /// Where the SQLite file lives, for the report.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        self.url.strip_prefix("sqlite://").map(PathBuf::from)
    }

    /// Removes the database, or leaves it (and says where) if `keep`.
    pub async fn finish(mut self, keep: bool) -> Result<()> {
        if keep {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("kept {}", kept.display());
            } else {
                eprintln!("kept {}", self.url);
            }
            return Ok(());
        }
        if let Some((server, name)) = self.postgres.take() {
            let mut conn = sqlx::PgConnection::connect(&server).await?;
            sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await?;
            conn.close().await?;
        }
        Ok(())
    }
}

/// `postgres://user@host:port/db?opts` with `db` replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// What a phase left in its database.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub ledger_rows: u64,
    /// Progress rows: one per user.
    pub progress_rows: u64,
    pub rewards: u64,
    /// Mean size of a user's progress row (every mission's state), bytes.
    pub avg_state_bytes: f64,
    /// Size of the database on disk (SQLite: file plus WAL), MiB.
    pub size_mib: Option<f64>,
}

pub async fn counts(db: &FreshDb) -> Result<Counts> {
    let (ledger, progress, rewards, avg_state): (i64, i64, i64, Option<f64>);
    match db.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await?;
            (ledger, progress, rewards, avg_state) = sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM user_progress), \
                 (SELECT COUNT(*) FROM rewards), (SELECT AVG(LENGTH(missions)) FROM user_progress)",
            )
            .fetch_one(&mut conn)
            .await?;
            conn.close().await?;
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await?;
            (ledger, progress, rewards, avg_state) = sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM user_progress), \
                 (SELECT COUNT(*) FROM rewards), (SELECT AVG(OCTET_LENGTH(missions))::float8 FROM user_progress)",
            )
            .fetch_one(&mut conn)
            .await?;
            conn.close().await?;
        }
    }
    let size_mib = db.sqlite_path().map(|p| {
        let wal = PathBuf::from(format!("{}-wal", p.display()));
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        (len(&p) + len(&wal)) as f64 / (1024.0 * 1024.0)
    });
    Ok(Counts {
        ledger_rows: ledger as u64,
        progress_rows: progress as u64,
        rewards: rewards as u64,
        avg_state_bytes: avg_state.unwrap_or(0.0),
        size_mib,
    })
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b"),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(with_database("postgres://h:5432", "b"), "postgres://h:5432/b");
        assert_eq!(with_database("postgres://u:p@h/db?sslmode=disable", "b"), "postgres://u:p@h/b?sslmode=disable");
    }
}
