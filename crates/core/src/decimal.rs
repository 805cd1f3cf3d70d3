//! Exact decimal reading of JSON numbers.
//!
//! serde_json is built with `arbitrary_precision`, so a number keeps its source text and
//! `0.1` stays `0.1` rather than the nearest binary float.
//!
//! One rule for every number questline reads (event attributes, mission targets, filter
//! values, reward amounts): it must be held **exactly** by a [`Decimal`], that is be an
//! integer below 2⁹⁶ (≈ 7.9·10²⁸) scaled by at most 28 decimal places. A number that is not
//! (`1e400`, `1e-400`, a 30-digit integer, 29 decimal places) is rejected with
//! [`NOT_EXACT`], never rounded or dropped. A string is never a number.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::str::FromStr;

/// Why a number is refused.
pub const NOT_EXACT: &str = "not representable as an exact decimal (at most 28 significant digits and 28 decimal places, magnitude below 7.9e28)";

/// The exact decimal value of a JSON number, or `None` for anything else (strings included,
/// and numbers that no `Decimal` holds exactly).
pub fn of_value(value: &Value) -> Option<Decimal> {
    match value {
        // The number's own text (serde_json's `arbitrary_precision`): no allocation, and no
        // rounding through a float. This runs for every numeric filter and sum of every event.
        Value::Number(n) => parse(n.as_str()),
        _ => None,
    }
}

/// The pointer (below `pointer`) of the first number within `value`, nested in arrays and
/// objects too, that no `Decimal` holds exactly.
pub fn first_inexact(value: &Value, pointer: &str) -> Option<String> {
    match value {
        Value::Number(n) if parse(n.as_str()).is_none() => Some(pointer.to_owned()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| first_inexact(v, &format!("{pointer}/{i}"))),
        Value::Object(map) => {
            map.iter().find_map(|(k, v)| first_inexact(v, &format!("{pointer}/{}", crate::pointer::escape(k))))
        }
        _ => None,
    }
}

/// The exact value of JSON number text (scientific notation included, as JSON allows), or
/// `None` if no `Decimal` holds it exactly. Never rounds.
pub fn parse(text: &str) -> Option<Decimal> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let exponent = match exponent {
        None => 0,
        Some(e) => parse_exponent(e)?,
    };
    // The value is `digits × 10^(exponent - frac.len())`; leading zeros say nothing and
    // trailing ones only move the exponent.
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let significant = digits.trim_end_matches('0');
    if significant.is_empty() {
        return Some(Decimal::ZERO);
    }
    if significant.len() > 29 {
        return None;
    }
    let shift = exponent
        .saturating_sub(i64::try_from(frac.len()).ok()?)
        .saturating_add(i64::try_from(digits.len() - significant.len()).ok()?);
    let m: i128 = significant.parse().ok()?;
    let (m, scale) = if shift >= 0 {
        // At least one significant digit: 10^29 is already past the maximum.
        if shift > 28 {
            return None;
        }
        (m.checked_mul(10_i128.pow(u32::try_from(shift).ok()?))?, 0)
    } else {
        (m, u32::try_from(shift.unsigned_abs()).ok().filter(|s| *s <= 28)?)
    };
    let m = if negative { -m } else { m };
    Decimal::try_from_i128_with_scale(m, scale).ok().map(|d| d.normalize())
}

/// An exponent's value, saturated far beyond any that matters (`1e99999999999999999999`).
fn parse_exponent(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude = digits.trim_start_matches('0');
    let magnitude: i64 = if magnitude.len() > 12 { 1_000_000_000_000 } else { magnitude.parse().unwrap_or(0) };
    Some(if negative { -magnitude } else { magnitude })
}

/// A JSON number carrying exactly `d`.
pub fn to_value(d: Decimal) -> Value {
    let text = d.normalize().to_string();
    Value::Number(serde_json::Number::from_str(&text).expect("a Decimal prints as a JSON number"))
}

/// `#[serde(deserialize_with = "decimal::exact")]`: a JSON number (not a string) that a
/// `Decimal` holds exactly, by [`parse`]. Reading the number as a [`serde_json::Number`]
/// keeps serde_json's private representation of it out of error paths.
pub fn exact<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
    let n = serde_json::Number::deserialize(deserializer)?;
    with_scale(n.as_str()).ok_or_else(|| serde::de::Error::custom(NOT_EXACT))
}

/// [`parse`], keeping the scale the text was written with where a `Decimal` can (`512.30`
/// stays `512.30`, as a mission's definition is returned the way it was written).
fn with_scale(text: &str) -> Option<Decimal> {
    let value = parse(text)?;
    Some(Decimal::from_str_exact(text).ok().filter(|d| *d == value).unwrap_or(value))
}

/// [`exact`], for an optional field (`null` or absent: `None`).
pub fn exact_option<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Decimal>, D::Error> {
    match Option::<serde_json::Number>::deserialize(deserializer)? {
        None => Ok(None),
        Some(n) => with_scale(n.as_str()).map(Some).ok_or_else(|| serde::de::Error::custom(NOT_EXACT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> Option<Decimal> {
        of_value(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn keeps_source_digits() {
        let v: Value = serde_json::from_str("0.1").unwrap();
        assert_eq!(of_value(&v), Some(Decimal::new(1, 1)));
        let v: Value = serde_json::from_str("1e2").unwrap();
        assert_eq!(of_value(&v), Some(Decimal::from(100)));
        assert_eq!(of_value(&Value::String("1".into())), None);
    }

    #[test]
    fn reads_exactly_what_a_decimal_holds() {
        let cases = [
            ("250", "250"),
            ("-250.50", "-250.5"),
            ("100.000000000000000000000000000000000000", "100"),
            ("0.0000000000000000000000000001", "0.0000000000000000000000000001"),
            ("1e-28", "0.0000000000000000000000000001"),
            ("79228162514264337593543950335", "79228162514264337593543950335"),
            ("-79228162514264337593543950335", "-79228162514264337593543950335"),
            ("7.9228162514264337593543950335e28", "79228162514264337593543950335"),
            ("1.2345678901234567890123456789", "1.2345678901234567890123456789"),
            ("18446744073709551616", "18446744073709551616"),
            ("1E+3", "1000"),
            ("0e400", "0"),
            ("0e-400", "0"),
            ("-0", "0"),
            ("0.05e2", "5"),
        ];
        for (text, exact) in cases {
            assert_eq!(number(text).map(|d| d.to_string()).as_deref(), Some(exact), "{text}");
        }
    }

    #[test]
    fn refuses_what_a_decimal_cannot_hold_instead_of_rounding() {
        for text in [
            "1e400",
            "-1e400",
            "1e-400",
            "123456789012345678901234567890",
            "79228162514264337593543950336",
            "0.00000000000000000000000000001",
            "1e-29",
            "1.00000000000000000000000000001",
            "9.9999999999999999999999999999",
            "1e29",
            "1e99999999999999999999999999",
            "1e-99999999999999999999999999",
        ] {
            assert_eq!(number(text), None, "{text}");
        }
    }

    #[test]
    fn finds_the_first_inexact_number_by_pointer() {
        let v: Value = serde_json::from_str(r#"{"a": 1, "b": {"c/d": [2, "1e400", 1e400]}}"#).unwrap();
        assert_eq!(first_inexact(&v, "/attributes").as_deref(), Some("/attributes/b/c~1d/2"));
        assert_eq!(first_inexact(&serde_json::json!({"a": [1.5, "x"]}), ""), None);
    }

    #[test]
    fn deserializes_numbers_only_and_exactly() {
        #[derive(Debug, serde::Deserialize)]
        struct T {
            #[serde(deserialize_with = "exact")]
            x: Decimal,
            #[serde(default, deserialize_with = "exact_option")]
            y: Option<Decimal>,
        }
        let read = |text: &str| {
            let v: Value = serde_json::from_str(text).unwrap();
            serde_json::from_value::<T>(v).map_err(|e| e.to_string())
        };
        let t = read(r#"{"x": 18446744073709551616, "y": null}"#).unwrap();
        assert_eq!((t.x, t.y), (Decimal::from(u64::MAX) + Decimal::ONE, None));
        assert_eq!(read(r#"{"x": 1e2, "y": 0.5}"#).unwrap().y, Some(Decimal::new(5, 1)));
        let written = read(r#"{"x": 512.30, "y": 100.000000000000000000000000000000}"#).unwrap();
        assert_eq!((written.x.to_string(), written.y.unwrap().to_string()), ("512.30".to_owned(), "100".to_owned()));
        assert!(read(r#"{"x": "500"}"#).unwrap_err().contains("expected a JSON number"));
        assert!(read(r#"{"x": 1, "y": "50"}"#).unwrap_err().contains("expected a JSON number"));
        assert!(read(r#"{"x": 1e400}"#).unwrap_err().starts_with(NOT_EXACT));
        assert!(read(r#"{"x": 1, "y": 123456789012345678901234567890}"#).unwrap_err().starts_with(NOT_EXACT));
    }

    #[test]
    fn round_trips_through_json() {
        let d = Decimal::new(12345, 3);
        assert_eq!(to_value(d).to_string(), "12.345");
    }
}
