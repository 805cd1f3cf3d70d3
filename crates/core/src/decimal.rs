//! Exact decimal reading of JSON numbers.
//!
//! serde_json is built with `arbitrary_precision`, so a number keeps its source text and
//! `0.1` stays `0.1` rather than the nearest binary float.

use rust_decimal::Decimal;
use serde_json::Value;
use std::str::FromStr;

/// The exact decimal value of a JSON number, or `None` for anything else (including numbers
/// beyond `Decimal`'s 28 digits).
pub fn of_value(value: &Value) -> Option<Decimal> {
    match value {
        Value::Number(n) => parse(&n.to_string()),
        _ => None,
    }
}

/// Parses decimal text, accepting scientific notation (`1e3`) as JSON allows.
pub fn parse(text: &str) -> Option<Decimal> {
    Decimal::from_str_exact(text).or_else(|_| Decimal::from_scientific(text)).ok().map(|d| d.normalize())
}

/// A JSON number carrying exactly `d`.
pub fn to_value(d: Decimal) -> Value {
    let text = d.normalize().to_string();
    Value::Number(serde_json::Number::from_str(&text).expect("a Decimal prints as a JSON number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_source_digits() {
        let v: Value = serde_json::from_str("0.1").unwrap();
        assert_eq!(of_value(&v), Some(Decimal::new(1, 1)));
        let v: Value = serde_json::from_str("1e2").unwrap();
        assert_eq!(of_value(&v), Some(Decimal::from(100)));
        assert_eq!(of_value(&Value::String("1".into())), None);
    }

    #[test]
    fn round_trips_through_json() {
        let d = Decimal::new(12345, 3);
        assert_eq!(to_value(d).to_string(), "12.345");
    }
}
