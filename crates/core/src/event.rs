//! Events as the engine sees them, and their validation at the edge.
//!
//! Validation takes `now` as a parameter (the engine reads no clock) and says why an event is
//! rejected as a [`FieldError`]: the JSON pointer of the field at fault within the event
//! (`/occurred_at`, `/attributes/amount`; empty for the event as a whole) and the reason.

use crate::pointer::{FieldError, escape};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest accepted event id, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Largest accepted `attributes` object, serialized.
pub const MAX_ATTRIBUTES_BYTES: usize = 16 * 1024;
/// How far ahead of the server's clock `occurred_at` may be.
pub const MAX_CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(5);

/// A valid event: an original (a payment, a login) or, with `reverses`, a reversal of one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub user_id: String,
    pub occurred_at: Timestamp,
    #[serde(default)]
    pub attributes: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverses: Option<String>,
    /// When the ledger recorded it; `None` for an event not recorded yet (being ingested now,
    /// or simulated). Decides which missions it counts for: those active when it arrived.
    #[serde(skip)]
    pub received_at: Option<Timestamp>,
}

/// The total order in which a user's events are folded: by time, ties broken by id, so that
/// every arrival order folds the same way.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventKey {
    pub at: Timestamp,
    pub id: String,
}

impl Event {
    pub fn key(&self) -> EventKey {
        EventKey { at: self.occurred_at, id: self.id.clone() }
    }

    /// Parses and validates one event of an ingest batch; the error names the field at
    /// fault by its pointer within the event.
    pub fn parse(value: &Value, now: Timestamp) -> Result<Event, FieldError> {
        let Value::Object(obj) = value else {
            return Err(FieldError::new("", "must be a JSON object"));
        };
        const KNOWN: [&str; 6] = ["id", "type", "user_id", "occurred_at", "attributes", "reverses"];
        if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(FieldError::new(format!("/{}", escape(unknown)), "unknown field"));
        }
        let id = required_text(obj, "id")?;
        if id.chars().count() > MAX_ID_CHARS {
            return Err(FieldError::new("/id", format!("longer than {MAX_ID_CHARS} characters")));
        }
        let event_type = required_text(obj, "type")?;
        let user_id = required_text(obj, "user_id")?;
        let occurred_at = required_text(obj, "occurred_at")?
            .parse::<Timestamp>()
            .map_err(|_| FieldError::new("/occurred_at", "not an RFC 3339 timestamp"))?;
        // The ledger keeps microseconds; folding what it will store keeps live folds and
        // recomputations from the ledger identical.
        let occurred_at = Timestamp::from_microsecond(occurred_at.as_microsecond())
            .map_err(|_| FieldError::new("/occurred_at", "out of range"))?;
        if occurred_at > now + MAX_CLOCK_SKEW {
            return Err(FieldError::new("/occurred_at", "more than 5 minutes in the future"));
        }
        let attributes = match obj.get("attributes") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => {
                let size = serde_json::to_vec(map).map(|v| v.len()).unwrap_or(usize::MAX);
                if size > MAX_ATTRIBUTES_BYTES {
                    return Err(FieldError::new("/attributes", format!("larger than {MAX_ATTRIBUTES_BYTES} bytes")));
                }
                map.clone()
            }
            Some(_) => return Err(FieldError::new("/attributes", "must be a JSON object")),
        };
        let reverses = match obj.get("reverses") {
            None | Some(Value::Null) => None,
            Some(_) => Some(required_text(obj, "reverses")?),
        };
        if reverses.as_deref() == Some(id.as_str()) {
            return Err(FieldError::new("/reverses", "an event cannot reverse itself"));
        }
        if let (Some(_), Some(amount)) = (&reverses, attributes.get("amount")) {
            match crate::decimal::of_value(amount) {
                Some(a) if a > rust_decimal::Decimal::ZERO => {}
                _ => {
                    return Err(FieldError::new("/attributes/amount", "a reversal's amount must be a positive number"));
                }
            }
        }
        Ok(Event { id, event_type, user_id, occurred_at, attributes, reverses, received_at: None })
    }
}

fn required_text(obj: &Map<String, Value>, field: &str) -> Result<String, FieldError> {
    let error = |detail: &str| FieldError::new(format!("/{field}"), detail);
    match obj.get(field) {
        None | Some(Value::Null) => Err(error("required")),
        Some(Value::String(s)) if s.trim().is_empty() => Err(error("must not be empty")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(error("must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-11-22T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn accepts_a_complete_event() {
        let e = Event::parse(
            &json!({"id": "t1", "type": "payment", "user_id": "u", "occurred_at": "2026-11-22T09:00:00+05:30",
                    "attributes": {"amount": 250}}),
            now(),
        )
        .unwrap();
        assert_eq!(e.occurred_at, "2026-11-22T03:30:00Z".parse::<Timestamp>().unwrap());
        let fine = json!({"id": "t", "type": "p", "user_id": "u", "occurred_at": "2026-11-22T09:00:00.123456789Z"});
        assert_eq!(Event::parse(&fine, now()).unwrap().occurred_at.to_string(), "2026-11-22T09:00:00.123456Z");
    }

    #[test]
    fn names_the_field_at_fault() {
        let base = json!({"id": "t1", "type": "payment", "user_id": "u", "occurred_at": "2026-11-22T09:00:00Z"});
        let with = |k: &str, v: Value| {
            let mut e = base.clone();
            e[k] = v;
            Event::parse(&e, now()).unwrap_err().to_string()
        };
        assert_eq!(with("occurred_at", Value::Null), "/occurred_at: required");
        assert_eq!(with("id", json!("x".repeat(129))), "/id: longer than 128 characters");
        assert_eq!(
            with("occurred_at", json!("2026-11-22T10:06:00Z")),
            "/occurred_at: more than 5 minutes in the future"
        );
        assert_eq!(with("attributes", json!([1])), "/attributes: must be a JSON object");
        assert_eq!(with("attributes", json!({"big": "x".repeat(17000)})), "/attributes: larger than 16384 bytes");
        assert_eq!(with("user_id", json!(7)), "/user_id: must be a string");
        assert_eq!(with("colour", json!("red")), "/colour: unknown field");
        assert_eq!(with("a/b~c", json!(1)), "/a~1b~0c: unknown field");
        let not_an_object = Event::parse(&json!([1]), now()).unwrap_err();
        assert_eq!((not_an_object.pointer.as_str(), not_an_object.detail.as_str()), ("", "must be a JSON object"));
    }
}
