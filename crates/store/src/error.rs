//! The store's one error type, and the one place that sorts database errors.
//!
//! Every `sqlx::Error` becomes a [`StoreError`] through the `From` impl below, so `?` is all
//! a backend writes: whether a failure is worth a rerun is decided here, once, for every
//! statement of every backend (`COMMIT` included), not remembered at each call site.

/// What went wrong in the store, sorted by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row with this key exists already (a mission or key id that is taken, a second live
    /// reward for one completion). The unit of work stays usable.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database refused or failed; not the caller's fault, and a rerun will not help.
    #[error("database: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value did not decode: a bug or a hand-edited database.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The transaction lost a race with another one (deadlock, serialization failure, a
    /// locked SQLite file) and was rolled back: running it again can succeed.
    #[error("transaction conflict, retry: {0}")]
    Retryable(String),
    #[error("unsupported database url {0:?}: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// Whether running the whole unit of work again can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// PostgreSQL: `deadlock_detected`. The server picked this transaction as the victim.
const PG_DEADLOCK_DETECTED: &str = "40P01";
/// PostgreSQL: `serialization_failure` (REPEATABLE READ or SERIALIZABLE lost a race).
const PG_SERIALIZATION_FAILURE: &str = "40001";
/// SQLite primary result codes `SQLITE_BUSY` and `SQLITE_LOCKED`. With one writer
/// connection and a busy timeout they should not surface; if they do (another process on
/// the file held the lock past the timeout), the work was not done and can be tried again.
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if lost_a_race(db.as_ref()) => Self::Retryable(db.message().to_owned()),
            // Every connection stayed busy for the pool's whole timeout: overload, which a
            // later try can get through, not a fault of this statement.
            sqlx::Error::PoolTimedOut => Self::Retryable("no database connection became free in time".to_owned()),
            // A unique violation is a `Conflict` only where a caller asked for it (the
            // inserts say `ON CONFLICT DO NOTHING` and report the skipped row); anywhere
            // else it is a bug, and stays a `Database` error.
            _ => Self::Database(err),
        }
    }
}

fn lost_a_race(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return matches!(pg.code(), PG_DEADLOCK_DETECTED | PG_SERIALIZATION_FAILURE);
    }
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // Extended codes (e.g. `SQLITE_BUSY_SNAPSHOT` = 517) carry the primary in the low byte.
        let primary = db.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
        return matches!(primary, Some(SQLITE_BUSY | SQLITE_LOCKED));
    }
    false
}
