//! The queue's error type, sorted by what the caller can do about it.

use crate::model::{JobId, JobState};
use questline_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database failed; [`StoreError::is_retryable`] says whether trying again can help.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no job {0}")]
    NotFound(JobId),
    /// The job is in a state the operation does not apply to (e.g. cancelling a running job).
    #[error("job {id} is {}: it cannot be {action}", state.as_str())]
    WrongState { id: JobId, state: JobState, action: &'static str },
    /// Re-driving a dead job would make two unfinished jobs with one unique key.
    #[error("job {id} cannot run again: job {holder} holds its unique key")]
    UniqueKeyTaken { id: JobId, holder: JobId },
    /// The Redis lane's server failed or could not be reached (the message of the client's
    /// error: kept as text so that this type does not depend on the optional `redis` feature).
    #[error("redis: {0}")]
    Redis(String),
    /// A stored row did not decode: a bug or a hand-edited database.
    #[error("corrupt job row: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for QueueError {
    fn from(err: sqlx::Error) -> Self {
        Self::Store(StoreError::from(err))
    }
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;
