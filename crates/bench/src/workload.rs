//! The generated event stream: a pure function of `(seed, slot)`, so that the engine phase,
//! the reference phase and a resend all see exactly the same events without holding them in
//! memory, and a soak can run for as long as it likes.
//!
//! Each slot is one of:
//! - a **fresh** event (80% payments, 12% logins, 8% article reads) of a user drawn with a
//!   heavy head (a few users send much of the traffic, as in real apps);
//! - a **duplicate** (2%): an earlier fresh slot's event resent verbatim, same id;
//! - a **reversal** (1%): a refund (or a chargeback) of an earlier payment, in full or in
//!   part, of the same user.
//!
//! Time sweeps forward over the last `SPAN` as the slots advance, with a little jitter, and
//! 0.5% of fresh events are late (up to 6 hours behind the sweep, as card settlements are),
//! so the engine sees both the in-order fast path and out-of-order refolds. `occurred_at` is
//! never after the run's start, well inside the API's 5-minute skew limit.

use crate::missions::Attrs;
use jiff::{SignedDuration, Timestamp};
use std::fmt::Write;

/// How far back the generated traffic reaches.
pub const SPAN: SignedDuration = SignedDuration::from_hours(24 * 7);
/// A late event is up to this far behind the sweep.
const MAX_LATENESS_MS: u64 = 6 * 3600 * 1000;
/// A duplicate resends one of this many slots before it.
const DUPLICATE_REACH: u64 = 5_000;
/// A reversal reverses a payment up to this many slots before it.
const REVERSAL_REACH: u64 = 20_000;

pub const DUPLICATE_SHARE: f64 = 0.02;
pub const REVERSAL_SHARE: f64 = 0.01;
const LATE_SHARE: f64 = 0.005;

pub const MERCHANTS: [(&str, &str); 40] = [
    ("swiggy", "food"),
    ("zomato", "food"),
    ("amazon", "shopping"),
    ("flipkart", "shopping"),
    ("bigbasket", "grocery"),
    ("swiggy-instamart", "grocery"),
    ("uber", "travel"),
    ("ola", "travel"),
    ("zepto", "grocery"),
    ("myntra", "fashion"),
    ("blinkit", "grocery"),
    ("irctc", "travel"),
    ("makemytrip", "travel"),
    ("bookmyshow", "entertainment"),
    ("netflix", "entertainment"),
    ("spotify", "entertainment"),
    ("jio", "bills"),
    ("airtel", "bills"),
    ("tata-power", "bills"),
    ("dominos", "food"),
    ("mcdonalds", "food"),
    ("starbucks", "food"),
    ("nykaa", "fashion"),
    ("ajio", "fashion"),
    ("croma", "electronics"),
    ("reliance-digital", "electronics"),
    ("dmart", "grocery"),
    ("indigo", "travel"),
    ("rapido", "travel"),
    ("pharmeasy", "health"),
    ("apollo-pharmacy", "health"),
    ("1mg", "health"),
    ("lenskart", "fashion"),
    ("urban-company", "services"),
    ("practo", "health"),
    ("cred", "bills"),
    ("hotstar", "entertainment"),
    ("decathlon", "shopping"),
    ("ikea", "shopping"),
    ("pepperfry", "shopping"),
];
pub const INSTRUMENTS: [&str; 3] = ["card", "upi", "wallet"];
pub const TOPICS: [&str; 6] = ["savings", "credit", "investing", "tax", "insurance", "offers"];
const PLATFORMS: [&str; 3] = ["android", "ios", "web"];

/// Types of the events the generator sends.
pub const PAYMENT: &str = "payment";
pub const LOGIN: &str = "login";
pub const READ: &str = "article_read";

#[derive(Debug, Clone)]
pub struct Workload {
    seed: u64,
    users: u64,
    /// Slots the sweep is spread over (past it, time stays at the end of the span).
    horizon: u64,
    start: Timestamp,
    prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    Fresh,
    Duplicate,
    Reversal,
}

/// One generated event, in the shapes both the HTTP body and the reference's rows need.
#[derive(Debug, Clone, PartialEq)]
pub struct GenEvent {
    pub id: String,
    pub event_type: &'static str,
    pub user: u64,
    pub occurred_at: Timestamp,
    pub attrs: Attrs,
    /// For a reversal: the id it reverses, and the slot that event came from.
    pub reverses: Option<(String, u64)>,
    pub kind: SlotKind,
}

impl Workload {
    /// `end` is the latest `occurred_at` the traffic may carry (the run's start).
    pub fn new(seed: u64, users: u64, horizon: u64, end: Timestamp) -> Self {
        Workload {
            seed,
            users: users.max(1),
            horizon: horizon.max(1),
            start: end - SPAN,
            prefix: format!("{:04x}", seed & 0xffff),
        }
    }

    pub fn user_id(user: u64) -> String {
        format!("u-{user}")
    }

    pub fn kind(&self, slot: u64) -> SlotKind {
        let f = self.unit(slot, 1);
        if slot > 0 && f < DUPLICATE_SHARE {
            SlotKind::Duplicate
        } else if slot > 0 && f < DUPLICATE_SHARE + REVERSAL_SHARE && self.reversal_target(slot).is_some() {
            SlotKind::Reversal
        } else {
            SlotKind::Fresh
        }
    }

    /// The event sent in `slot`.
    pub fn event(&self, slot: u64) -> GenEvent {
        match self.kind(slot) {
            SlotKind::Fresh => self.fresh(slot),
            SlotKind::Duplicate => {
                let mut e = self.event(self.duplicate_source(slot));
                e.kind = SlotKind::Duplicate;
                e
            }
            SlotKind::Reversal => self.reversal(slot),
        }
    }

    /// The fresh slot a duplicate resends: never itself a duplicate, so it is a real event.
    pub fn duplicate_source(&self, slot: u64) -> u64 {
        let mut j = slot.saturating_sub(1 + self.hash(slot, 2) % DUPLICATE_REACH);
        while j > 0 && self.kind(j) == SlotKind::Duplicate {
            j -= 1;
        }
        j
    }

    /// The earlier fresh payment a reversal slot reverses, if one is in reach.
    fn reversal_target(&self, slot: u64) -> Option<u64> {
        let mut j = slot.checked_sub(1 + self.hash(slot, 3) % REVERSAL_REACH)?;
        for _ in 0..64 {
            // `unit(j, 1)` past the duplicate and reversal shares is exactly "fresh".
            if self.unit(j, 1) >= DUPLICATE_SHARE + REVERSAL_SHARE && self.fresh_type(j) == PAYMENT {
                return Some(j);
            }
            j = j.checked_sub(1)?;
        }
        None
    }

    fn fresh_type(&self, slot: u64) -> &'static str {
        match self.unit(slot, 4) {
            f if f < 0.80 => PAYMENT,
            f if f < 0.92 => LOGIN,
            _ => READ,
        }
    }

    /// The sweep: slot `i` of `horizon` sits `i/horizon` of the way through the span.
    fn sweep_time(&self, slot: u64) -> Timestamp {
        let span_ms = SPAN.as_millis() as u64;
        let along = (u128::from(slot.min(self.horizon)) * u128::from(span_ms) / u128::from(self.horizon)) as u64;
        // A few seconds of jitter behind the sweep, never ahead of `end`.
        let jitter = self.hash(slot, 5) % 5_000;
        self.start + SignedDuration::from_millis(along.saturating_sub(jitter) as i64)
    }

    fn fresh(&self, slot: u64) -> GenEvent {
        let event_type = self.fresh_type(slot);
        // A heavy head: P(user < x) = sqrt(x / users).
        let u = self.unit(slot, 6);
        let user = ((u * u) * self.users as f64) as u64 % self.users;
        let mut occurred_at = self.sweep_time(slot);
        if self.unit(slot, 7) < LATE_SHARE {
            let late = self.hash(slot, 8) % MAX_LATENESS_MS;
            occurred_at = occurred_at.saturating_sub(SignedDuration::from_millis(late as i64)).unwrap_or(occurred_at);
        }
        let attrs = match event_type {
            PAYMENT => {
                // Log-uniform from ₹10 to ₹20,000.
                let cents = (1_000f64 * 2_000f64.powf(self.unit(slot, 9))) as u64;
                let m = self.unit(slot, 10);
                let (merchant, category) = MERCHANTS[((m * m) * MERCHANTS.len() as f64) as usize % MERCHANTS.len()];
                let instrument = match self.unit(slot, 11) {
                    f if f < 0.45 => INSTRUMENTS[0],
                    f if f < 0.90 => INSTRUMENTS[1],
                    _ => INSTRUMENTS[2],
                };
                Attrs::Payment { cents, merchant, category, instrument }
            }
            LOGIN => Attrs::Login { platform: PLATFORMS[(self.hash(slot, 12) % 3) as usize] },
            _ => Attrs::Read {
                article: self.hash(slot, 13) % 500,
                topic: TOPICS[(self.hash(slot, 14) % TOPICS.len() as u64) as usize],
            },
        };
        let prefix = match event_type {
            PAYMENT => "txn",
            LOGIN => "login",
            _ => "read",
        };
        GenEvent {
            id: format!("{prefix}-{}-{slot}", self.prefix),
            event_type,
            user,
            occurred_at,
            attrs,
            reverses: None,
            kind: SlotKind::Fresh,
        }
    }

    fn reversal(&self, slot: u64) -> GenEvent {
        let target = self.reversal_target(slot).expect("kind() checked that the slot has a target");
        let original = self.fresh(target);
        let Attrs::Payment { cents, .. } = original.attrs else { unreachable!("reversal targets are payments") };
        // Half are partial: 10% to 90% of the amount, at least one paisa.
        let partial = (self.unit(slot, 15) < 0.5).then(|| (cents * (10 + self.hash(slot, 16) % 81) / 100).max(1));
        let chargeback = self.unit(slot, 17) < 0.1;
        // After the original (as a refund is), and no later than the sweep allows.
        let occurred_at = self.sweep_time(slot).max(original.occurred_at);
        GenEvent {
            id: format!("{}-{}-{slot}", if chargeback { "cb" } else { "refund" }, self.prefix),
            event_type: if chargeback { "chargeback" } else { "refund" },
            user: original.user,
            occurred_at,
            attrs: Attrs::Reversal { cents: partial },
            reverses: Some((original.id, target)),
            kind: SlotKind::Reversal,
        }
    }

    /// A 64-bit hash of `(seed, slot, salt)` (splitmix64 over a mix of the three).
    fn hash(&self, slot: u64, salt: u64) -> u64 {
        let mut z = self
            .seed
            .wrapping_add(slot.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)`.
    fn unit(&self, slot: u64, salt: u64) -> f64 {
        (self.hash(slot, salt) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl GenEvent {
    /// Appends the event as the API's JSON.
    pub fn write_json(&self, out: &mut String) {
        // Ids, types and user ids are generated from safe characters: no escaping needed.
        let _ = write!(
            out,
            r#"{{"id":"{}","type":"{}","user_id":"u-{}","occurred_at":"{}","attributes":"#,
            self.id, self.event_type, self.user, self.occurred_at
        );
        self.attrs.write_json(out);
        if let Some((reverses, _)) = &self.reverses {
            let _ = write!(out, r#","reverses":"{reverses}""#);
        }
        out.push('}');
    }
}

/// The body of `POST /v1/events` for `slots`.
pub fn batch_body(workload: &Workload, slots: std::ops::Range<u64>) -> String {
    let mut body = String::with_capacity(256 * (slots.end - slots.start) as usize + 16);
    body.push_str(r#"{"events":["#);
    for (n, slot) in slots.enumerate() {
        if n > 0 {
            body.push(',');
        }
        workload.event(slot).write_json(&mut body);
    }
    body.push_str("]}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Workload {
        Workload::new(7, 1_000, 100_000, "2026-01-10T00:00:00Z".parse().unwrap())
    }

    #[test]
    fn the_stream_is_a_function_of_the_seed() {
        let (a, b) = (workload(), workload());
        for slot in [0, 1, 99, 5_000, 77_777] {
            assert_eq!(a.event(slot), b.event(slot));
        }
        let other = Workload::new(8, 1_000, 100_000, "2026-01-10T00:00:00Z".parse().unwrap());
        assert_ne!(a.event(10), other.event(10));
    }

    #[test]
    fn shares_of_duplicates_and_reversals_are_as_specified() {
        let w = workload();
        let n = 100_000;
        let count = |k: SlotKind| (0..n).filter(|s| w.kind(*s) == k).count() as f64 / n as f64;
        assert!((count(SlotKind::Duplicate) - DUPLICATE_SHARE).abs() < 0.003);
        assert!((count(SlotKind::Reversal) - REVERSAL_SHARE).abs() < 0.003);
    }

    #[test]
    fn duplicates_resend_an_earlier_fresh_or_reversal_event_and_reversals_reverse_payments() {
        let w = workload();
        for slot in (1..20_000).filter(|s| w.kind(*s) != SlotKind::Fresh) {
            let e = w.event(slot);
            match w.kind(slot) {
                SlotKind::Duplicate => {
                    let source = w.duplicate_source(slot);
                    assert!(source < slot && w.kind(source) != SlotKind::Duplicate);
                    assert_eq!(e.id, w.event(source).id);
                }
                _ => {
                    let (id, target) = e.reverses.clone().unwrap();
                    let original = w.event(target);
                    assert_eq!((original.id, original.event_type, original.user), (id, PAYMENT, e.user));
                    assert!(e.occurred_at >= original.occurred_at);
                }
            }
        }
    }

    #[test]
    fn events_are_never_after_the_end_and_bodies_are_valid_json() {
        let w = workload();
        let end: Timestamp = "2026-01-10T00:00:00Z".parse().unwrap();
        assert!((0..200_000).step_by(97).all(|s| w.event(s).occurred_at <= end));
        let body: serde_json::Value = serde_json::from_str(&batch_body(&w, 0..500)).unwrap();
        assert_eq!(body["events"].as_array().unwrap().len(), 500);
    }
}
