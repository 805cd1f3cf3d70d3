//! Messages to users (SMS, e-mail, push, WhatsApp, IVR): what a valid one is, and where its
//! sending stands. Which provider sends it is [`route`]'s to decide.
//!
//! A message names a template and its data, or carries its body; the template is rendered
//! by the service (templates are configuration), so this module only checks the shape:
//! the channel, an address the channel can reach, a deadline still ahead, a priority.

pub mod route;

use crate::pointer::{FieldError, ValidationErrors, escape};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The longest message id: the idempotency key.
pub const MAX_ID_CHARS: usize = 128;
/// The longest body, after rendering (a long e-mail; an SMS provider splits into segments).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The most a template's data may hold, encoded.
pub const MAX_DATA_BYTES: usize = 16 * 1024;
/// The longest e-mail subject.
pub const MAX_SUBJECT_CHARS: usize = 998;
/// The longest push token (APNs tokens are 64 hex digits, FCM's about 160 characters).
pub const MAX_PUSH_TOKEN_CHARS: usize = 4096;
/// The highest priority number; lower is sent first.
pub const MAX_PRIORITY: u8 = 9;
/// The priority of a message that names none.
pub const DEFAULT_PRIORITY: u8 = 5;

/// How a message reaches its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Email,
    Push,
    Whatsapp,
    Ivr,
}

impl Channel {
    pub const ALL: [Channel; 5] = [Channel::Sms, Channel::Email, Channel::Push, Channel::Whatsapp, Channel::Ivr];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Email => "email",
            Channel::Push => "push",
            Channel::Whatsapp => "whatsapp",
            Channel::Ivr => "ivr",
        }
    }

    pub fn parse(text: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// Why `to` is not an address of this channel, if it is not: a phone number in E.164
    /// for SMS, WhatsApp and IVR; an e-mail address; a device token for push.
    pub fn address_problem(self, to: &str) -> Option<String> {
        match self {
            Channel::Sms | Channel::Whatsapp | Channel::Ivr => (!is_e164(to))
                .then(|| "not a phone number in E.164 form (+, a country code, at most 15 digits in all)".to_owned()),
            Channel::Email => (!is_email(to)).then(|| "not an e-mail address (local-part@domain)".to_owned()),
            Channel::Push => {
                let ok = !to.is_empty()
                    && to.chars().count() <= MAX_PUSH_TOKEN_CHARS
                    && to.chars().all(|c| c.is_ascii_graphic());
                (!ok).then(|| format!("not a device token (1 to {MAX_PUSH_TOKEN_CHARS} visible ASCII characters)"))
            }
        }
    }
}

/// `+` and 8 to 15 digits, the first not 0 (ITU-T E.164: a country code of 1 to 3 digits,
/// at most 15 in all; no number anywhere is shorter than 8 with its country code).
pub fn is_e164(text: &str) -> bool {
    let Some(digits) = text.strip_prefix('+') else { return false };
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

/// An address SMTP can deliver to: a dot-atom local part (RFC 5321's common form; quoted
/// local parts are refused) and a domain of LDH labels with at least one dot.
pub fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else { return false };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let local_ok =
        (1..=64).contains(&local.len()) && local.split('.').all(|part| !part.is_empty() && part.chars().all(atext));
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    local_ok && domain.len() <= 253 && domain.contains('.') && domain.split('.').all(label_ok) && text.len() <= 254
}

/// What a message says: a template and its data, or a body as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    Template { name: String, data: Map<String, Value> },
    Body(String),
}

/// A message as a client asks for it, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRequest {
    pub id: String,
    pub channel: Channel,
    pub to: String,
    pub content: Content,
    /// E-mail only; a template may give one instead.
    pub subject: Option<String>,
    /// Unsent by then, it is `expired`; `None`: no deadline.
    pub deadline: Option<Timestamp>,
    /// 0 (first) to [`MAX_PRIORITY`].
    pub priority: u8,
    pub user_id: Option<String>,
}

impl MessageRequest {
    /// Checks a message document: every problem, each with its pointer.
    pub fn parse(value: &Value, now: Timestamp) -> Result<MessageRequest, ValidationErrors> {
        let Value::Object(obj) = value else {
            return Err(ValidationErrors(vec![FieldError::new("", "must be a JSON object")]));
        };
        let mut errors = Vec::new();
        const KNOWN: [&str; 10] =
            ["id", "channel", "to", "template", "data", "body", "subject", "deadline", "priority", "user_id"];
        for unknown in obj.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
            errors.push(FieldError::new(format!("/{}", escape(unknown)), "unknown field"));
        }
        let id = text(obj, "id", MAX_ID_CHARS, &mut errors);
        let channel = match obj.get("channel") {
            Some(Value::String(c)) => Channel::parse(c).or_else(|| {
                let known: Vec<&str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
                errors.push(FieldError::new("/channel", format!("unknown channel; one of {}", known.join(", "))));
                None
            }),
            Some(_) => {
                errors.push(FieldError::new("/channel", "must be a string"));
                None
            }
            None => {
                errors.push(FieldError::new("/channel", "required"));
                None
            }
        };
        let to = text(obj, "to", MAX_PUSH_TOKEN_CHARS, &mut errors);
        if let (Some(channel), Some(to)) = (channel, &to)
            && let Some(problem) = channel.address_problem(to)
        {
            errors.push(FieldError::new("/to", problem));
        }
        let content = content(obj, &mut errors);
        let subject = match obj.get("subject") {
            None | Some(Value::Null) => None,
            Some(_) => {
                let subject = text(obj, "subject", MAX_SUBJECT_CHARS, &mut errors);
                if channel.is_some_and(|c| c != Channel::Email) {
                    errors.push(FieldError::new("/subject", "only e-mail messages have a subject"));
                }
                if subject.as_deref().is_some_and(|s| s.contains(['\r', '\n'])) {
                    errors.push(FieldError::new("/subject", "must be one line"));
                }
                subject
            }
        };
        let deadline = match obj.get("deadline") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match crate::time::parse(s) {
                Ok(at) if at <= now => {
                    errors.push(FieldError::new("/deadline", "in the past: a message must be sendable by then"));
                    None
                }
                Ok(at) => Some(at),
                Err(e) => {
                    errors.push(FieldError::new("/deadline", e.reason()));
                    None
                }
            },
            Some(_) => {
                errors.push(FieldError::new("/deadline", "must be an RFC 3339 timestamp string"));
                None
            }
        };
        let priority = match obj.get("priority") {
            None | Some(Value::Null) => DEFAULT_PRIORITY,
            Some(v) => match v.as_u64() {
                Some(p) if p <= u64::from(MAX_PRIORITY) => p as u8,
                _ => {
                    errors.push(FieldError::new("/priority", format!("must be an integer from 0 to {MAX_PRIORITY}")));
                    DEFAULT_PRIORITY
                }
            },
        };
        let user_id = match obj.get("user_id") {
            None | Some(Value::Null) => None,
            Some(_) => text(obj, "user_id", crate::event::MAX_ID_CHARS, &mut errors),
        };
        match (id, channel, to, content) {
            (Some(id), Some(channel), Some(to), Some(content)) if errors.is_empty() => {
                Ok(MessageRequest { id, channel, to, content, subject, deadline, priority, user_id })
            }
            _ => Err(ValidationErrors(errors)),
        }
    }
}

/// A required, non-empty, storable string of at most `max` characters.
fn text(obj: &Map<String, Value>, key: &str, max: usize, errors: &mut Vec<FieldError>) -> Option<String> {
    let pointer = format!("/{key}");
    match obj.get(key) {
        Some(Value::String(s)) if s.is_empty() => errors.push(FieldError::new(pointer, "must not be empty")),
        Some(Value::String(s)) if s.chars().count() > max => {
            errors.push(FieldError::new(pointer, format!("longer than {max} characters")))
        }
        Some(Value::String(s)) if !crate::id::storable(s) => {
            errors.push(FieldError::new(pointer, "must not contain U+0000"))
        }
        Some(Value::String(s)) => return Some(s.clone()),
        Some(_) => errors.push(FieldError::new(pointer, "must be a string")),
        None => errors.push(FieldError::new(pointer, "required")),
    }
    None
}

fn content(obj: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<Content> {
    let present = |key| obj.get(key).is_some_and(|v| !v.is_null());
    match (present("template"), present("body")) {
        (true, true) => {
            errors.push(FieldError::new("/body", "give a template or a body, not both"));
            None
        }
        (false, false) => {
            errors.push(FieldError::new("/template", "required: a template (with its data) or a body"));
            None
        }
        (false, true) => {
            if present("data") {
                errors.push(FieldError::new("/data", "data is for a template; this message has a body"));
            }
            let body = text(obj, "body", usize::MAX, errors)?;
            if body.len() > MAX_BODY_BYTES {
                errors.push(FieldError::new("/body", format!("larger than {MAX_BODY_BYTES} bytes")));
                return None;
            }
            Some(Content::Body(body))
        }
        (true, false) => {
            let name = text(obj, "template", MAX_ID_CHARS, errors);
            let data = match obj.get("data") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(map)) => {
                    let size = serde_json::to_vec(map).map(|v| v.len()).unwrap_or(usize::MAX);
                    if size > MAX_DATA_BYTES {
                        errors.push(FieldError::new("/data", format!("larger than {MAX_DATA_BYTES} bytes")));
                    }
                    map.clone()
                }
                Some(_) => {
                    errors.push(FieldError::new("/data", "must be a JSON object"));
                    Map::new()
                }
            };
            Some(Content::Template { name: name?, data })
        }
    }
}

/// Where a message's sending stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Queued,
    /// A slot is booked for it at a provider (more than a moment ahead): see `booking`.
    Sending,
    Sent,
    Failed,
    Expired,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Failed => "failed",
            MessageStatus::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<MessageStatus> {
        [Self::Queued, Self::Sending, Self::Sent, Self::Failed, Self::Expired].into_iter().find(|s| s.as_str() == text)
    }

    /// Nothing more happens to a message in this state.
    pub fn is_final(self) -> bool {
        matches!(self, MessageStatus::Sent | MessageStatus::Failed | MessageStatus::Expired)
    }
}

/// A message as questline keeps it: what to send, and what happened so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub channel: Channel,
    pub to: String,
    pub subject: Option<String>,
    /// As rendered when the message was accepted.
    pub body: String,
    pub template: Option<String>,
    pub deadline: Option<Timestamp>,
    pub priority: u8,
    pub user_id: Option<String>,
    pub status: MessageStatus,
    /// The provider that sent it, or whose slot it waits for (`sending`).
    pub provider: Option<String>,
    /// What sending it added to the provider's bill (zero on paid-for capacity).
    pub cost: Option<rust_decimal::Decimal>,
    pub currency: Option<String>,
    pub attempts: Vec<Attempt>,
    /// While `sending`: the slot it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking: Option<Booking>,
    pub sent_at: Option<Timestamp>,
    pub created_at: Timestamp,
    /// A digest of the request that made it: the same id with another request is a conflict.
    pub fingerprint: String,
}

/// One try at a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub provider: String,
    pub at: Timestamp,
    /// `sent`, `rate_limited`, `failed` (a retry may help), `rejected` (it cannot).
    pub outcome: String,
    /// The provider's HTTP status or SMTP reply code, if it answered.
    pub status: Option<u16>,
    pub detail: Option<String>,
}

/// A send slot a provider's limiter gave a message, kept on the message while it waits for
/// it outside a job's claim (so that whichever process runs the job next sends in it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Booking {
    pub provider: String,
    pub at: Timestamp,
    /// The limiter that holds the slot: a process's own (gone when it restarts, so its
    /// bookings with it) or one shared through Redis. A booking of another limiter is not
    /// kept: its slot is unknown to the limiter deciding now.
    #[serde(default)]
    pub limiter: String,
}

/// What a run of the dispatcher records of a message: the attempt it made (or the reason it
/// ended without one), the status that leads to, on `sent` what it cost, on `sending` the
/// slot booked. Data rather than a closure, so that many are written in one transaction
/// and one can be written again alone.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageUpdate {
    /// `None` for a booking, which is not an attempt.
    pub attempt: Option<Attempt>,
    pub status: MessageStatus,
    /// On `sent`: what it added to the provider's bill, and its currency.
    pub charge: Option<(rust_decimal::Decimal, String)>,
    /// On `sending`: the slot it waits for. Any other update lets a booking go.
    pub booking: Option<Booking>,
}

impl MessageUpdate {
    /// Sent through `attempt.provider` at `attempt.at`.
    pub fn sent(attempt: Attempt, cost: rust_decimal::Decimal, currency: String) -> Self {
        Self { attempt: Some(attempt), status: MessageStatus::Sent, charge: Some((cost, currency)), booking: None }
    }

    /// An attempt that leaves the message `queued`, to be tried again.
    pub fn tried(attempt: Attempt) -> Self {
        Self { attempt: Some(attempt), status: MessageStatus::Queued, charge: None, booking: None }
    }

    /// The end of the message, `failed` or `expired`, with `attempt` saying why.
    pub fn ended(attempt: Attempt, status: MessageStatus) -> Self {
        Self { attempt: Some(attempt), status, charge: None, booking: None }
    }

    /// `sending`: a slot at `provider` is booked for it.
    pub fn booked(booking: Booking) -> Self {
        Self { attempt: None, status: MessageStatus::Sending, charge: None, booking: Some(booking) }
    }

    /// Back to `queued`: its booking given up (missed, or no longer valid).
    pub fn unbooked() -> Self {
        Self { attempt: None, status: MessageStatus::Queued, charge: None, booking: None }
    }

    /// Applies the update; a message already final is left as it is (a send repeated after
    /// a lapsed lease records, and counts, once). Whether it changed.
    pub fn apply(&self, message: &mut Message) -> bool {
        if message.status.is_final() {
            return false;
        }
        message.attempts.extend(self.attempt.clone());
        message.status = self.status;
        message.booking = self.booking.clone();
        match (&self.booking, &self.attempt) {
            (Some(booking), _) => message.provider = Some(booking.provider.clone()),
            (None, Some(attempt)) if self.status == MessageStatus::Sent => {
                message.provider = Some(attempt.provider.clone());
                message.sent_at = Some(attempt.at);
                if let Some((cost, currency)) = &self.charge {
                    message.cost = Some(*cost);
                    message.currency = Some(currency.clone());
                }
            }
            _ => message.provider = None,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-12-01T10:00:00Z".parse().unwrap()
    }

    fn pointers(value: Value) -> Vec<String> {
        MessageRequest::parse(&value, now()).unwrap_err().0.into_iter().map(|e| e.pointer).collect()
    }

    #[test]
    fn a_templated_sms_parses() {
        let m = MessageRequest::parse(
            &json!({"id": "m1", "channel": "sms", "to": "+919876543210", "template": "otp", "data": {"code": "1234"},
                    "deadline": "2026-12-01T10:05:00Z", "priority": 0, "user_id": "u-42"}),
            now(),
        )
        .unwrap();
        assert_eq!(m.channel, Channel::Sms);
        assert_eq!(m.priority, 0);
        assert_eq!(m.deadline, Some("2026-12-01T10:05:00Z".parse().unwrap()));
        assert!(
            matches!(m.content, Content::Template { ref name, ref data } if name == "otp" && data["code"] == "1234")
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_pointer() {
        let found = pointers(json!({
            "id": "", "channel": "fax", "to": "12345", "template": "otp", "body": "hi",
            "deadline": "2026-12-01T09:00:00Z", "priority": 10, "colour": "red"
        }));
        for expected in ["/colour", "/id", "/channel", "/body", "/deadline", "/priority"] {
            assert!(found.contains(&expected.to_owned()), "{expected} missing from {found:?}");
        }
    }

    #[test]
    fn addresses_are_checked_per_channel() {
        assert_eq!(pointers(json!({"id": "m", "channel": "sms", "to": "9876543210", "body": "x"})), ["/to"]);
        assert_eq!(pointers(json!({"id": "m", "channel": "email", "to": "+919876543210", "body": "x"})), ["/to"]);
        assert_eq!(pointers(json!({"id": "m", "channel": "push", "to": "a token", "body": "x"})), ["/to"]);
        for ok in ["user@example.com", "a.b+tag@mail.example.co.in"] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in ["user@localhost", "@example.com", "a..b@example.com", "a@-x.com", "a b@example.com", "a@b@c.com"] {
            assert!(!is_email(bad), "{bad}");
        }
        for ok in ["+14155552671", "+919876543210", "+4420794600"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in ["+0123456789", "+1415555267112345", "+1415-555", "14155552671", "+1234567"] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn a_subject_is_for_e_mail_only_and_one_line() {
        assert_eq!(
            pointers(json!({"id": "m", "channel": "sms", "to": "+14155552671", "body": "x", "subject": "s"})),
            ["/subject"]
        );
        assert_eq!(
            pointers(
                json!({"id": "m", "channel": "email", "to": "a@example.com", "body": "x", "subject": "a\r\nBcc: x"})
            ),
            ["/subject"]
        );
    }

    #[test]
    fn content_needs_exactly_one_of_template_and_body() {
        assert_eq!(pointers(json!({"id": "m", "channel": "sms", "to": "+14155552671"})), ["/template"]);
        assert_eq!(
            pointers(json!({"id": "m", "channel": "sms", "to": "+14155552671", "body": "x", "data": {}})),
            ["/data"]
        );
    }

    fn queued() -> Message {
        Message {
            id: "m".into(),
            channel: Channel::Sms,
            to: "+14155552671".into(),
            subject: None,
            body: "hi".into(),
            template: None,
            deadline: None,
            priority: 0,
            user_id: None,
            status: MessageStatus::Queued,
            provider: None,
            cost: None,
            currency: None,
            attempts: vec![],
            booking: None,
            sent_at: None,
            created_at: now(),
            fingerprint: String::new(),
        }
    }

    fn attempt(provider: &str, outcome: &str) -> Attempt {
        Attempt { provider: provider.into(), at: now(), outcome: outcome.into(), status: None, detail: None }
    }

    #[test]
    fn an_update_records_its_attempt_and_a_send_its_provider_and_cost() {
        let mut m = queued();
        assert!(MessageUpdate::tried(attempt("a", "rate_limited")).apply(&mut m));
        assert_eq!((m.status, m.attempts.len(), m.provider.as_deref()), (MessageStatus::Queued, 1, None));
        let cost = rust_decimal::Decimal::new(12, 2);
        assert!(MessageUpdate::sent(attempt("b", "sent"), cost, "INR".into()).apply(&mut m));
        assert_eq!(m.status, MessageStatus::Sent);
        assert_eq!((m.provider.as_deref(), m.cost, m.currency.as_deref()), (Some("b"), Some(cost), Some("INR")));
        assert_eq!(m.sent_at, Some(now()));
    }

    #[test]
    fn a_booking_makes_it_sending_and_the_next_update_lets_the_booking_go() {
        let mut m = queued();
        let booking = Booking { provider: "a".into(), at: now(), limiter: "local:1".into() };
        assert!(MessageUpdate::booked(booking.clone()).apply(&mut m));
        assert_eq!(
            (m.status, m.booking.as_ref(), m.provider.as_deref()),
            (MessageStatus::Sending, Some(&booking), Some("a"))
        );
        assert!(m.attempts.is_empty(), "a booking is not an attempt");
        // The slot was missed, the provider answered 429: routed again, queued.
        assert!(MessageUpdate::tried(attempt("a", "rate_limited")).apply(&mut m));
        assert_eq!((m.status, m.booking.as_ref(), m.provider.as_deref()), (MessageStatus::Queued, None, None));
    }

    #[test]
    fn a_final_message_is_not_changed_again() {
        let mut m = queued();
        assert!(MessageUpdate::sent(attempt("b", "sent"), rust_decimal::Decimal::ONE, "INR".into()).apply(&mut m));
        let before = m.clone();
        assert!(!MessageUpdate::sent(attempt("c", "sent"), rust_decimal::Decimal::TWO, "INR".into()).apply(&mut m));
        assert!(!MessageUpdate::ended(attempt("", "expired"), MessageStatus::Expired).apply(&mut m));
        assert_eq!(m, before);
    }
}
