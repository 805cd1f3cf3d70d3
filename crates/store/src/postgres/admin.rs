//! Creating and dropping whole databases on a server: how a test or a benchmark gets a
//! database of its own, so that runs in parallel share nothing. The service never calls it.

use crate::{Result, StoreError};
use sqlx::{Connection, Executor, PgConnection};

/// `url` with its database (the path) replaced by `database`; user, host, port and query
/// parameters are kept.
pub fn database_url(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (before_query, query) = match rest.find('?') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    format!("{scheme}://{authority}/{database}{query}")
}

/// Creates the database `name` through the server `admin_url` names (any database there
/// that the user may connect to, e.g. `postgres`), and returns the URL of the new one.
/// `name` must be a plain lower-case identifier: it cannot be a bound parameter.
pub async fn create_database(admin_url: &str, name: &str) -> Result<String> {
    check_name(name)?;
    let mut conn = PgConnection::connect(admin_url).await?;
    conn.execute(format!("CREATE DATABASE \"{name}\"").as_str()).await?;
    conn.close().await?;
    Ok(database_url(admin_url, name))
}

/// Drops the database `name` if it exists, ending any session still connected to it.
pub async fn drop_database(admin_url: &str, name: &str) -> Result<()> {
    check_name(name)?;
    let mut conn = PgConnection::connect(admin_url).await?;
    conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str()).await?;
    conn.close().await?;
    Ok(())
}

/// Whether `err` says the server could not be reached at all (nothing listening, network
/// down), as opposed to a server that answered and refused.
pub fn unreachable(err: &StoreError) -> bool {
    matches!(err, StoreError::Database(sqlx::Error::Io(_)))
}

fn check_name(name: &str) -> Result<()> {
    let plain = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        Ok(())
    } else {
        let why = format!("database name {name:?}: expected at most 63 of [a-z0-9_], not starting with a digit");
        Err(StoreError::Database(sqlx::Error::Configuration(why.into())))
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
    fn only_plain_names_are_accepted() {
        assert!(check_name("questline_test_0a1b").is_ok());
        for bad in ["", "1abc", "Upper", "a-b", "a\"; DROP", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
