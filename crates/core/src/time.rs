//! Reading RFC 3339 timestamps, one rule for events and missions alike.
//!
//! Any RFC 3339 timestamp parses, with any number of fractional digits (those past the
//! nanosecond are dropped; an event keeps microseconds, see [`crate::event`]). A valid
//! timestamp outside the range questline accepts, [`MIN`] to [`MAX`], is refused for being out
//! of range, not for its syntax: `9999-12-31T23:59:59Z` is a time, only too late.

use jiff::Timestamp;
use jiff::fmt::temporal::Pieces;
use std::borrow::Cow;

/// The earliest time accepted: the Unix epoch. Nothing an engagement engine counts happened
/// before it, and every backend stores it alike.
pub const MIN: Timestamp = Timestamp::UNIX_EPOCH;
/// The latest time accepted: `9999-12-30T22:00:00.999999999Z`, the last instant jiff represents (the
/// last one that is still in year 9999 at every UTC offset).
pub const MAX: Timestamp = Timestamp::MAX;

/// Why a text is not an accepted time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeError {
    /// Not an RFC 3339 timestamp at all.
    Syntax,
    /// A valid timestamp before [`MIN`].
    TooEarly,
    /// A valid timestamp after [`MAX`].
    TooLate,
}

impl TimeError {
    /// The reason, as an API answers it.
    pub fn reason(self) -> &'static str {
        match self {
            TimeError::Syntax => "not an RFC 3339 timestamp",
            TimeError::TooEarly | TimeError::TooLate => OUT_OF_RANGE,
        }
    }
}

/// The reason given for a valid timestamp outside [`MIN`]..=[`MAX`].
pub const OUT_OF_RANGE: &str = "out of range: must be from 1970-01-01T00:00:00Z to 9999-12-30T22:00:00.999999999Z";

/// Parses an RFC 3339 timestamp in the accepted range.
pub fn parse(text: &str) -> Result<Timestamp, TimeError> {
    let text = truncate_fraction(text);
    let at = match text.parse::<Timestamp>() {
        Ok(at) => at,
        Err(_) => return Err(beyond_range(&text)),
    };
    if at < MIN {
        return Err(TimeError::TooEarly);
    }
    Ok(at)
}

/// Why jiff refused `text`: a well-formed date, time and offset it cannot represent is out of
/// range; anything else is not a timestamp.
fn beyond_range(text: &str) -> TimeError {
    let Ok(pieces) = Pieces::parse(text) else { return TimeError::Syntax };
    let (Some(time), Some(offset)) = (pieces.time(), pieces.offset()) else { return TimeError::Syntax };
    match offset.to_numeric_offset().to_timestamp(pieces.date().to_datetime(time)) {
        // Representable after all: refused for another reason.
        Ok(_) => TimeError::Syntax,
        Err(_) if pieces.date().year() > 0 => TimeError::TooLate,
        Err(_) => TimeError::TooEarly,
    }
}

/// `text` with at most 9 fractional digits of seconds (jiff's nanoseconds): RFC 3339 allows
/// any number of them.
fn truncate_fraction(text: &str) -> Cow<'_, str> {
    let Some(dot) = text.find(['.', ',']) else { return Cow::Borrowed(text) };
    let digits = text[dot + 1..].bytes().take_while(u8::is_ascii_digit).count();
    if digits <= 9 {
        return Cow::Borrowed(text);
    }
    Cow::Owned(format!("{}{}", &text[..dot + 10], &text[dot + 1 + digits..]))
}

/// `#[serde(deserialize_with = "time::option")]`: an optional timestamp read by [`parse`].
pub fn option<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Timestamp>, D::Error> {
    use serde::Deserialize;
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) => parse(&text).map(Some).map_err(|e| serde::de::Error::custom(e.reason())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_number_of_fractional_digits() {
        assert_eq!(parse("2026-11-22T09:00:00.123456789012Z").unwrap().to_string(), "2026-11-22T09:00:00.123456789Z");
        assert_eq!(parse("2026-11-22T09:00:00.1Z").unwrap().to_string(), "2026-11-22T09:00:00.1Z");
        assert_eq!(parse("2026-11-22T09:00:00Z").unwrap().to_string(), "2026-11-22T09:00:00Z");
        assert_eq!(
            parse("2026-11-22T14:30:00.99999999999999999999+05:30").unwrap().to_string(),
            "2026-11-22T09:00:00.999999999Z"
        );
    }

    #[test]
    fn a_valid_timestamp_out_of_range_says_so() {
        assert_eq!(parse("9999-12-31T23:59:59Z"), Err(TimeError::TooLate));
        assert_eq!(parse("9999-12-31T23:59:59.999999999999-05:00"), Err(TimeError::TooLate));
        assert_eq!(parse("0000-01-01T00:00:00Z"), Err(TimeError::TooEarly));
        assert_eq!(parse("1969-12-31T23:59:59.999999Z"), Err(TimeError::TooEarly));
        assert_eq!(parse("1970-01-01T00:00:00Z"), Ok(MIN));
        assert_eq!(parse("9999-12-30T22:00:00.999999999999Z"), Ok(MAX));
        assert_eq!(parse("9999-12-30T22:00:01Z"), Err(TimeError::TooLate));
        assert_eq!(TimeError::TooLate.reason(), OUT_OF_RANGE);
    }

    #[test]
    fn anything_else_is_not_a_timestamp() {
        for text in
            ["", "yesterday", "2026-11-22", "2026-11-22T09:00:00", "2026-13-01T00:00:00Z", "2026-11-22T09:00:00.Z"]
        {
            assert_eq!(parse(text), Err(TimeError::Syntax), "{text}");
        }
    }

    #[test]
    fn deserializes_with_the_same_rule() {
        #[derive(Debug, serde::Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "option")]
            at: Option<Timestamp>,
        }
        let read = |v: serde_json::Value| serde_json::from_value::<T>(v).map(|t| t.at).map_err(|e| e.to_string());
        assert_eq!(read(serde_json::json!({})), Ok(None));
        assert_eq!(read(serde_json::json!({"at": null})), Ok(None));
        assert_eq!(read(serde_json::json!({"at": "1970-01-01T00:00:00.0000000000001Z"})), Ok(Some(MIN)));
        assert_eq!(read(serde_json::json!({"at": "9999-12-31T23:59:59Z"})), Err(OUT_OF_RANGE.to_owned()));
        assert_eq!(read(serde_json::json!({"at": "soon"})), Err("not an RFC 3339 timestamp".to_owned()));
        assert!(read(serde_json::json!({"at": 5})).is_err());
    }
}
