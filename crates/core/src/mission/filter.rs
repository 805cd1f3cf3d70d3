//! Filters, compiled once: the path is split, numbers are parsed to decimals and `in` lists
//! become sets, so evaluating an event does no parsing.

use super::spec::{FilterOp, FilterSpec};
use crate::decimal;
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use std::collections::HashSet;

#[derive(Debug, Clone)]
pub struct Filter {
    path: Vec<String>,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Eq(Operand),
    Ne(Operand),
    Compare(FilterOp, Decimal),
    In(OperandSet),
    NotIn(OperandSet),
    Contains(Value),
    StartsWith(String),
    Exists(bool),
}

/// A value compared by meaning: numbers as decimals (so `100` equals `100.0`), the rest as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Operand {
    Number(Decimal),
    Other(String),
}

impl Operand {
    fn of(value: &Value) -> Self {
        match decimal::of_value(value) {
            Some(d) => Operand::Number(d),
            None => Operand::Other(value.to_string()),
        }
    }
}

#[derive(Debug, Clone)]
struct OperandSet(HashSet<Operand>);

impl Filter {
    /// Compiles a filter; `pointer` locates it for error messages. Every problem is pushed to
    /// `errors`; `None` means the filter is invalid.
    pub fn compile(spec: &FilterSpec, pointer: &str, errors: &mut Vec<crate::pointer::FieldError>) -> Option<Filter> {
        use crate::pointer::FieldError;
        let mut fail = |field: &str, detail: &str| {
            errors.push(FieldError::new(format!("{pointer}/{field}"), detail));
            None
        };
        if spec.field.is_empty() || spec.field.split('.').any(str::is_empty) {
            return fail("field", "must be a dotted path of non-empty names, e.g. card.network");
        }
        let v = &spec.value;
        if let Some(at) = decimal::first_inexact(v, "value") {
            return fail(&at, decimal::NOT_EXACT);
        }
        let test = match spec.op {
            FilterOp::Eq | FilterOp::Ne if v.is_array() || v.is_object() || v.is_null() => {
                return fail("value", "must be a string, number or boolean for eq/ne");
            }
            FilterOp::Eq => Test::Eq(Operand::of(v)),
            FilterOp::Ne => Test::Ne(Operand::of(v)),
            FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte => match decimal::of_value(v) {
                Some(d) => Test::Compare(spec.op, d),
                None => return fail("value", "must be a number for gt/gte/lt/lte"),
            },
            FilterOp::In | FilterOp::NotIn => match v {
                Value::Array(items) if !items.is_empty() => {
                    let set = OperandSet(items.iter().map(Operand::of).collect());
                    if spec.op == FilterOp::In { Test::In(set) } else { Test::NotIn(set) }
                }
                _ => return fail("value", "must be a non-empty array for in/not_in"),
            },
            FilterOp::Contains if v.is_array() || v.is_object() || v.is_null() => {
                return fail("value", "must be a string, number or boolean for contains");
            }
            FilterOp::Contains => Test::Contains(v.clone()),
            FilterOp::StartsWith => match v {
                Value::String(s) => Test::StartsWith(s.clone()),
                _ => return fail("value", "must be a string for starts_with"),
            },
            FilterOp::Exists => match v {
                Value::Bool(b) => Test::Exists(*b),
                _ => return fail("value", "must be true or false for exists"),
            },
        };
        Some(Filter { path: spec.field.split('.').map(str::to_owned).collect(), test })
    }

    /// Whether the event attributes satisfy this filter. A missing field fails every test but
    /// `exists: false`, `ne` and `not_in`.
    pub fn matches(&self, attributes: &Map<String, Value>) -> bool {
        let found = lookup(attributes, &self.path);
        let Some(value) = found else {
            return matches!(self.test, Test::Exists(false) | Test::Ne(_) | Test::NotIn(_));
        };
        match &self.test {
            Test::Exists(expected) => *expected,
            Test::Eq(x) => Operand::of(value) == *x,
            Test::Ne(x) => Operand::of(value) != *x,
            Test::In(set) => set.0.contains(&Operand::of(value)),
            Test::NotIn(set) => !set.0.contains(&Operand::of(value)),
            Test::Compare(op, bound) => match decimal::of_value(value) {
                Some(d) => match op {
                    FilterOp::Gt => d > *bound,
                    FilterOp::Gte => d >= *bound,
                    FilterOp::Lt => d < *bound,
                    _ => d <= *bound,
                },
                None => false,
            },
            Test::Contains(needle) => match (value, needle) {
                (Value::String(hay), Value::String(n)) => hay.contains(n.as_str()),
                (Value::Array(items), n) => {
                    let n = Operand::of(n);
                    items.iter().any(|i| Operand::of(i) == n)
                }
                _ => false,
            },
            Test::StartsWith(prefix) => value.as_str().is_some_and(|s| s.starts_with(prefix.as_str())),
        }
    }
}

/// Follows a dotted path through nested objects. A JSON `null` counts as missing.
pub fn lookup<'a>(attributes: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut current = attributes.get(first)?;
    for name in rest {
        current = current.as_object()?.get(name)?;
    }
    (!current.is_null()).then_some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(spec: Value) -> Filter {
        let spec: FilterSpec = serde_json::from_value(spec).unwrap();
        Filter::compile(&spec, "", &mut Vec::new()).unwrap()
    }

    fn attrs(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn every_operator() {
        let a = attrs(json!({"amount": 250.50, "merchant": "swiggy-instamart", "card": {"network": "visa"},
                             "tags": ["food", 3]}));
        let cases = [
            (json!({"field": "amount", "op": "eq", "value": 250.5}), true),
            (json!({"field": "merchant", "op": "ne", "value": "swiggy"}), true),
            (json!({"field": "amount", "op": "gt", "value": 250.5}), false),
            (json!({"field": "amount", "op": "gte", "value": 250.5}), true),
            (json!({"field": "amount", "op": "lt", "value": 251}), true),
            (json!({"field": "amount", "op": "lte", "value": 250}), false),
            (json!({"field": "merchant", "op": "in", "value": ["swiggy", "swiggy-instamart"]}), true),
            (json!({"field": "merchant", "op": "not_in", "value": ["swiggy-instamart"]}), false),
            (json!({"field": "merchant", "op": "contains", "value": "insta"}), true),
            (json!({"field": "tags", "op": "contains", "value": 3}), true),
            (json!({"field": "merchant", "op": "starts_with", "value": "swiggy"}), true),
            (json!({"field": "card.network", "op": "eq", "value": "visa"}), true),
            (json!({"field": "card.cvv", "op": "exists", "value": false}), true),
            (json!({"field": "card", "op": "exists", "value": true}), true),
        ];
        for (spec, expected) in cases {
            assert_eq!(filter(spec.clone()).matches(&a), expected, "{spec}");
        }
    }

    #[test]
    fn a_missing_field_fails_all_but_the_negative_tests() {
        let a = attrs(json!({}));
        assert!(!filter(json!({"field": "x", "op": "eq", "value": 1})).matches(&a));
        assert!(!filter(json!({"field": "x", "op": "gte", "value": 1})).matches(&a));
        assert!(filter(json!({"field": "x", "op": "ne", "value": 1})).matches(&a));
        assert!(filter(json!({"field": "x", "op": "not_in", "value": [1]})).matches(&a));
        assert!(filter(json!({"field": "x", "op": "exists", "value": false})).matches(&a));
    }

    #[test]
    fn rejects_values_that_do_not_fit_the_operator() {
        let mut errors = Vec::new();
        let spec: FilterSpec = serde_json::from_value(json!({"field": "amount", "op": "gte", "value": "100"})).unwrap();
        assert!(Filter::compile(&spec, "/steps/0/filters/1", &mut errors).is_none());
        assert_eq!(errors[0].pointer, "/steps/0/filters/1/value");
    }

    #[test]
    fn rejects_numbers_no_decimal_holds_exactly() {
        let compile = |v: Value| {
            let mut errors = Vec::new();
            let spec: FilterSpec = serde_json::from_value(v).unwrap();
            assert!(Filter::compile(&spec, "/steps/0/filters/0", &mut errors).is_none());
            (errors[0].pointer.clone(), errors[0].detail.clone())
        };
        let huge: Value = serde_json::from_str(r#"{"field": "amount", "op": "gte", "value": 1e400}"#).unwrap();
        assert_eq!(compile(huge), ("/steps/0/filters/0/value".to_owned(), decimal::NOT_EXACT.to_owned()));
        let listed: Value = serde_json::from_str(r#"{"field": "amount", "op": "in", "value": [1, 1e-400]}"#).unwrap();
        assert_eq!(compile(listed).0, "/steps/0/filters/0/value/1");
    }

    #[test]
    fn a_string_is_never_a_number() {
        let a = attrs(json!({"amount": "250"}));
        for op in ["gt", "gte", "lt", "lte"] {
            assert!(!filter(json!({"field": "amount", "op": op, "value": 100})).matches(&a), "{op}");
        }
        assert!(!filter(json!({"field": "amount", "op": "eq", "value": 250})).matches(&a));
        assert!(filter(json!({"field": "amount", "op": "ne", "value": 250})).matches(&a));
        assert!(filter(json!({"field": "amount", "op": "eq", "value": "250"})).matches(&a));
    }
}
