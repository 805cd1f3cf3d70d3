//! Webhook endpoints as stored: where to deliver, which events, how to retry, and the secret
//! sealed by the service (the store never sees it in the clear).

use jiff::Timestamp;
use std::time::Duration;

/// One endpoint of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    /// Event types, as the API names them (`reward.fulfil`, …), in the order given.
    pub events: Vec<String>,
    pub max_attempts: u32,
    /// The delay after the first failed attempt (millisecond precision).
    pub retry_initial: Duration,
    /// No delay between attempts exceeds this (millisecond precision).
    pub retry_max: Duration,
    /// The secret as the service sealed it: opaque text to the store.
    pub sealed_secret: String,
    pub created_at: Timestamp,
}

/// The event type whose endpoint decides cash and voucher rewards; at most one endpoint of a
/// tenant subscribes to it (a unique index holds that).
pub const FULFIL_EVENT: &str = "reward.fulfil";

impl Webhook {
    /// Whether it is the tenant's fulfilment endpoint.
    pub fn fulfils(&self) -> bool {
        self.events.iter().any(|e| e == FULFIL_EVENT)
    }
}
