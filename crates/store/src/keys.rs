//! API keys as stored: a name, a role, and the hash of a secret that is shown once.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// `POST /v1/events` only.
    Ingest,
    /// `GET` only.
    Read,
    /// `POST /v1/messages` only.
    Send,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Ingest => "ingest",
            Self::Read => "read",
            Self::Send => "send",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "admin" => Self::Admin,
            "ingest" => Self::Ingest,
            "read" => Self::Read,
            "send" => Self::Send,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub secret_hash: String,
    pub created_at: Timestamp,
}
