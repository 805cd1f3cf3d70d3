//! Events as the engine sees them, and their validation at the edge.
//!
//! Validation takes `now` as a parameter (the engine reads no clock) and says why an event is
//! rejected as a [`FieldError`]: the JSON pointer of the field at fault within the event
//! (`/occurred_at`, `/attributes/amount`; empty for the event as a whole) and the reason.

use crate::pointer::{FieldError, escape};
use crate::time::TimeError;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest accepted event id, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Largest accepted `attributes` object, serialized.
pub const MAX_ATTRIBUTES_BYTES: usize = 16 * 1024;
/// How far ahead of the server's clock `occurred_at` may be.
pub const MAX_CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(5);
/// The reason for an `occurred_at` past [`MAX_CLOCK_SKEW`], also one past [`crate::time::MAX`].
const FUTURE: &str = "more than 5 minutes in the future";

/// A valid event: an original (a payment, a login) or, with `reverses`, a reversal of one.
///
/// Made only by [`Event::parse`] (validation at the edge) or [`Event::recorded`] (read back
/// from the ledger, which holds only events that passed it), so its fields stay private.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    id: String,
    event_type: String,
    user_id: String,
    occurred_at: Timestamp,
    attributes: Map<String, Value>,
    reverses: Option<String>,
    /// When the ledger recorded it; `None` for an event not recorded yet (being ingested now,
    /// or simulated). Decides which missions it counts for: those active when it arrived.
    received_at: Option<Timestamp>,
}

/// An event as the ledger recorded it, to rebuild an [`Event`] with [`Event::recorded`].
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub id: String,
    pub event_type: String,
    pub user_id: String,
    pub occurred_at: Timestamp,
    pub attributes: Map<String, Value>,
    pub reverses: Option<String>,
    pub received_at: Timestamp,
}

/// The total order in which a user's events are folded: by time, ties broken by id, so that
/// every arrival order folds the same way.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventKey {
    pub at: Timestamp,
    pub id: String,
}

/// Lets the fold take events and references to them alike (`&[Event]`, `Cow<Event>`).
impl AsRef<Event> for Event {
    fn as_ref(&self) -> &Event {
        self
    }
}

impl Event {
    /// An event read back from the ledger. The ledger holds only events that passed
    /// [`Event::parse`], so this trusts its fields.
    pub fn recorded(event: RecordedEvent) -> Event {
        let RecordedEvent { id, event_type, user_id, occurred_at, attributes, reverses, received_at } = event;
        Event { id, event_type, user_id, occurred_at, attributes, reverses, received_at: Some(received_at) }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    pub fn occurred_at(&self) -> Timestamp {
        self.occurred_at
    }

    pub fn attributes(&self) -> &Map<String, Value> {
        &self.attributes
    }

    /// The id of the event this one reverses; `None` for an original.
    pub fn reverses(&self) -> Option<&str> {
        self.reverses.as_deref()
    }

    /// When the ledger recorded it; `None` for an event not recorded yet.
    pub fn received_at(&self) -> Option<Timestamp> {
        self.received_at
    }

    pub fn key(&self) -> EventKey {
        EventKey { at: self.occurred_at, id: self.id.clone() }
    }

    /// This event as the ledger records it when received at `at` (to the microsecond, as
    /// stored), so that a live fold applies the same "received while active" rule as a
    /// recomputation from the ledger.
    pub fn received(mut self, at: Timestamp) -> Event {
        self.received_at = Timestamp::from_microsecond(at.as_microsecond()).ok();
        self
    }

    /// This event with `attributes[key]` set to `value`: the net form of an original.
    pub(crate) fn with_attribute(mut self, key: &str, value: Value) -> Event {
        self.attributes.insert(key.to_owned(), value);
        self
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
        let id = required_name(obj, "id")?;
        let event_type = required_name(obj, "type")?;
        let user_id = required_name(obj, "user_id")?;
        let occurred_at = crate::time::parse(&required_text(obj, "occurred_at")?).map_err(|e| {
            let reason = match e {
                TimeError::TooLate => FUTURE,
                other => other.reason(),
            };
            FieldError::new("/occurred_at", reason)
        })?;
        // The ledger keeps microseconds; folding what it will store keeps live folds and
        // recomputations from the ledger identical.
        let occurred_at = Timestamp::from_microsecond(occurred_at.as_microsecond())
            .map_err(|_| FieldError::new("/occurred_at", "out of range"))?;
        if occurred_at > now + MAX_CLOCK_SKEW {
            return Err(FieldError::new("/occurred_at", FUTURE));
        }
        let attributes = match obj.get("attributes") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => {
                let size = serde_json::to_vec(map).map(|v| v.len()).unwrap_or(usize::MAX);
                if size > MAX_ATTRIBUTES_BYTES {
                    return Err(FieldError::new("/attributes", format!("larger than {MAX_ATTRIBUTES_BYTES} bytes")));
                }
                // Rejected, not dropped: a sum or a comparison would silently skip it.
                for (key, value) in map {
                    if let Some(at) = crate::decimal::first_inexact(value, &format!("/attributes/{}", escape(key))) {
                        return Err(FieldError::new(at, crate::decimal::NOT_EXACT));
                    }
                }
                map.clone()
            }
            Some(_) => return Err(FieldError::new("/attributes", "must be a JSON object")),
        };
        let reverses = match obj.get("reverses") {
            None | Some(Value::Null) => None,
            Some(_) => Some(required_name(obj, "reverses")?),
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

/// Builds events for tests, skipping validation at the edge (with the `testing` feature).
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone)]
#[must_use]
pub struct EventBuilder(Event);

#[cfg(any(test, feature = "testing"))]
impl Event {
    /// An event not recorded yet, with no attributes and reversing nothing: for tests.
    pub fn builder(
        id: impl Into<String>,
        event_type: impl Into<String>,
        user_id: impl Into<String>,
        occurred_at: Timestamp,
    ) -> EventBuilder {
        EventBuilder(Event {
            id: id.into(),
            event_type: event_type.into(),
            user_id: user_id.into(),
            occurred_at,
            attributes: Map::new(),
            reverses: None,
            received_at: None,
        })
    }

    /// A builder starting from this event: for tests.
    pub fn to_builder(&self) -> EventBuilder {
        EventBuilder(self.clone())
    }
}

#[cfg(any(test, feature = "testing"))]
impl EventBuilder {
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.0.id = id.into();
        self
    }

    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.0.user_id = user_id.into();
        self
    }

    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.0.attributes.insert(key.into(), value.into());
        self
    }

    /// Replaces all the attributes.
    pub fn attributes(mut self, attributes: Map<String, Value>) -> Self {
        self.0.attributes = attributes;
        self
    }

    pub fn reverses(mut self, original: impl Into<String>) -> Self {
        self.0.reverses = Some(original.into());
        self
    }

    /// When the ledger recorded it; `None`: not recorded yet.
    pub fn received_at(mut self, at: impl Into<Option<Timestamp>>) -> Self {
        self.0.received_at = at.into();
        self
    }

    pub fn build(self) -> Event {
        self.0
    }
}

fn required_text(obj: &Map<String, Value>, field: &str) -> Result<String, FieldError> {
    let error = |detail: &str| FieldError::new(format!("/{field}"), detail);
    match obj.get(field) {
        None | Some(Value::Null) => Err(error("required")),
        Some(Value::String(s)) if s.trim().is_empty() => Err(error("must not be empty")),
        // PostgreSQL's text cannot hold U+0000 (SQLite's can): refused on every backend, so
        // that one bad event is rejected alone instead of failing the batch it shares.
        Some(Value::String(s)) if !crate::id::storable(s) => Err(error("must not contain NUL (U+0000)")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(error("must be a string")),
    }
}

/// A text field that names something (an id, a type, a user): at most [`MAX_ID_CHARS`]
/// characters, so that it fits every index that holds it, on every backend.
fn required_name(obj: &Map<String, Value>, field: &str) -> Result<String, FieldError> {
    let text = required_text(obj, field)?;
    if text.chars().count() > MAX_ID_CHARS {
        return Err(FieldError::new(format!("/{field}"), format!("longer than {MAX_ID_CHARS} characters")));
    }
    Ok(text)
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
        let finer = json!({"id": "t", "type": "p", "user_id": "u", "occurred_at": "2026-11-22T09:00:00.123456789012Z"});
        assert_eq!(Event::parse(&finer, now()).unwrap().occurred_at.to_string(), "2026-11-22T09:00:00.123456Z");
    }

    #[test]
    fn rejects_numbers_no_decimal_holds_exactly() {
        let with_attributes = |text: &str| {
            let attributes: Value = serde_json::from_str(text).unwrap();
            let e = json!({"id": "t", "type": "p", "user_id": "u", "occurred_at": "2026-11-22T09:00:00Z",
                           "attributes": attributes});
            Event::parse(&e, now()).map(|e| e.attributes().clone()).map_err(|e| (e.pointer, e.detail))
        };
        for amount in ["1e400", "-1e400", "1e-400", "123456789012345678901234567890"] {
            let error = with_attributes(&format!(r#"{{"amount": {amount}}}"#)).unwrap_err();
            assert_eq!(error, ("/attributes/amount".to_owned(), crate::decimal::NOT_EXACT.to_owned()), "{amount}");
        }
        let nested = with_attributes(r#"{"ok": 1, "cart": {"items": [{"p/rice": 2}, {"p/rice": 1e999}]}}"#);
        assert_eq!(nested.unwrap_err().0, "/attributes/cart/items/1/p~1rice");
        let fine = with_attributes(r#"{"amount": 79228162514264337593543950335, "rate": 1e-28, "s": "1e400"}"#);
        assert_eq!(fine.unwrap().len(), 3);
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
        assert_eq!(with("user_id", json!("x".repeat(129))), "/user_id: longer than 128 characters");
        assert_eq!(with("type", json!("x".repeat(129))), "/type: longer than 128 characters");
        assert_eq!(with("reverses", json!("x".repeat(129))), "/reverses: longer than 128 characters");
        assert_eq!(with("user_id", json!("u\u{0}1")), "/user_id: must not contain NUL (U+0000)");
        assert_eq!(with("id", json!("\u{0}")), "/id: must not contain NUL (U+0000)");
        assert_eq!(with("a/b~c", json!(1)), "/a~1b~0c: unknown field");
        assert_eq!(
            with("occurred_at", json!("9999-12-31T23:59:59Z")),
            "/occurred_at: more than 5 minutes in the future"
        );
        assert_eq!(
            with("occurred_at", json!("0000-01-01T00:00:00Z")),
            format!("/occurred_at: {}", crate::time::OUT_OF_RANGE)
        );
        assert_eq!(with("occurred_at", json!("22 Nov 2026")), "/occurred_at: not an RFC 3339 timestamp");
        let not_an_object = Event::parse(&json!([1]), now()).unwrap_err();
        assert_eq!((not_an_object.pointer.as_str(), not_an_object.detail.as_str()), ("", "must be a JSON object"));
    }
}
