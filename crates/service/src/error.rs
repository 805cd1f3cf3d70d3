//! Why a business function refused or failed: one variant per cause, so that the HTTP layer
//! (or a broker source, or a worker) can answer each precisely without reading text.
//!
//! Unexpected failures ([`ServiceError::Store`], [`ServiceError::Internal`]) carry their
//! cause for the log; whoever answers a client shows none of it.

use questline_core::mission::MissionStatus;
use questline_core::pointer::{FieldError, ValidationErrors};
use questline_store::StoreError;

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input is well-formed but invalid: every problem, each with its JSON pointer.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error("no mission {0:?}")]
    MissionNotFound(String),
    #[error("no API key with id {0:?}")]
    KeyNotFound(String),
    #[error("mission id {0:?} is taken")]
    MissionIdTaken(String),
    #[error(
        "the rules of a mission that has been active are immutable ({field} changed); copy it to a new mission instead"
    )]
    RulesImmutable { field: &'static str },
    #[error("{}", transition_reason(*.from, *.to))]
    InvalidTransition { from: MissionStatus, to: MissionStatus },
    /// An optimistic write lost: the row changed since it was read.
    #[error("the mission changed while this patch was applied; read it again and retry")]
    StaleWrite,
    #[error("only draft missions can be deleted; end this one with PATCH {{\"status\": \"ended\"}}")]
    NotADraft,
    #[error("no message with id {0:?}")]
    MessageNotFound(String),
    /// The id was used for another message (the same id answers only the same request).
    #[error("message id {0:?} was used for a different message")]
    MessageIdTaken(String),
    #[error("no webhook with id {0:?}")]
    WebhookNotFound(String),
    /// The tenant's `reward.fulfil` endpoint exists already (its id).
    #[error("webhook {0} already subscribes to reward.fulfil; at most one endpoint of a tenant may")]
    FulfilmentEndpointTaken(String),
    #[error("a tenant has at most {0} webhooks; delete one first")]
    TooManyWebhooks(usize),
    /// No key to seal webhook secrets with (`QUESTLINE_SECRET_KEY`).
    #[error("webhooks need QUESTLINE_SECRET_KEY (32 bytes, base64) to seal their secrets; none is configured")]
    SecretKeyNotConfigured,
    #[error("this is the last admin key; create another admin key before deleting it")]
    LastAdminKey,
    /// No key has this secret (never had, or deleted).
    #[error("unknown or deleted API key")]
    UnknownKey,
    /// `QUESTLINE_ADMIN_KEY` names an existing key that is not an admin key.
    #[error("QUESTLINE_ADMIN_KEY is the secret of an existing key that is not an admin key")]
    AdminKeyNotAdmin,
    /// A debit larger than the balance.
    #[error(transparent)]
    InsufficientBalance(#[from] questline_core::wallet::InsufficientBalance),
    /// The database kept losing races with concurrent work; the caller may retry.
    #[error("the database is busy with conflicting work; retry")]
    Busy,
    /// This process is stopping and takes no new work.
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("store: {0}")]
    Store(StoreError),
    /// A bug (e.g. a panic while applying a batch).
    #[error("internal: {0}")]
    Internal(String),
}

impl ServiceError {
    /// One invalid field.
    pub fn invalid(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        ServiceError::Invalid(ValidationErrors(vec![FieldError::new(pointer, detail)]))
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            // Only escapes the business layer once its own retries are spent.
            StoreError::Retryable(_) => ServiceError::Busy,
            other => ServiceError::Store(other),
        }
    }
}

fn transition_reason(from: MissionStatus, to: MissionStatus) -> String {
    match (from, to) {
        (MissionStatus::Ended, _) => "an ended mission cannot change status".to_owned(),
        (_, MissionStatus::Draft) => "a mission cannot return to draft".to_owned(),
        (from, to) => format!("a mission cannot go from {} to {}", from.as_str(), to.as_str()),
    }
}
