//! The net-event rule: an original minus everything reversed of it.
//!
//! A reversal's `attributes.amount` is the amount reversed; absent means all of it. An
//! original reversed in full, or whose net amount is zero or less, counts as if it had never
//! happened. The result depends only on the *set* of originals and reversals, never on their
//! arrival order — that is invariant 2.

use crate::decimal;
use crate::event::Event;
use rust_decimal::Decimal;
use std::borrow::Cow;
use std::collections::HashMap;

/// The attribute a reversal reduces.
pub const AMOUNT: &str = "amount";

/// How much of an original its reversals take back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reversed {
    #[default]
    Nothing,
    Partly(Decimal),
    All,
}

impl Reversed {
    pub fn and(self, reversal: &Event) -> Reversed {
        match (self, reversal.attributes().get(AMOUNT).and_then(decimal::of_value)) {
            (Reversed::All, _) | (_, None) => Reversed::All,
            (Reversed::Nothing, Some(a)) => Reversed::Partly(a),
            (Reversed::Partly(b), Some(a)) => Reversed::Partly(a.saturating_add(b)),
        }
    }
}

/// The net form of `original` given what was reversed of it, or `None` if nothing is left.
/// Borrowed when nothing was reversed (the common case: no copy of its attributes).
pub fn net_event(original: &Event, reversed: Reversed) -> Option<Cow<'_, Event>> {
    match reversed {
        Reversed::Nothing => Some(Cow::Borrowed(original)),
        Reversed::All => None,
        Reversed::Partly(r) => {
            let amount = original.attributes().get(AMOUNT).and_then(decimal::of_value)?;
            let net = amount.saturating_sub(r);
            if net <= Decimal::ZERO {
                return None;
            }
            Some(Cow::Owned(original.clone().with_attribute(AMOUNT, decimal::to_value(net))))
        }
    }
}

/// The net events of a set of originals and reversals, sorted in fold order. Reversals of
/// events not in `originals` are ignored (their original has not arrived yet), and so is a
/// reversal that names another user than its original: a user's progress moves only with
/// that user's own events.
pub fn net_events<'a>(originals: impl IntoIterator<Item = &'a Event>, reversals: &[Event]) -> Vec<Cow<'a, Event>> {
    let mut reversed: HashMap<(&str, &str), Reversed> = HashMap::new();
    for r in reversals {
        if let Some(target) = r.reverses() {
            let entry = reversed.entry((r.user_id(), target)).or_default();
            *entry = entry.and(r);
        }
    }
    let mut out: Vec<Cow<'a, Event>> = originals
        .into_iter()
        .filter(|e| e.reverses().is_none())
        .filter_map(|e| {
            let r = reversed.get(&(e.user_id(), e.id())).copied().unwrap_or_default();
            net_event(e, r)
        })
        .collect();
    out.sort_by(|a, b| (a.occurred_at(), a.id()).cmp(&(b.occurred_at(), b.id())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(id: &str, amount: Option<&str>, reverses: Option<&str>) -> Event {
        let mut e = Event::builder(id, "payment", "u", "2026-11-22T10:00:00Z".parse().unwrap());
        if let Some(a) = amount {
            e = e.attribute("amount", serde_json::from_str::<serde_json::Value>(a).unwrap());
        }
        if let Some(r) = reverses {
            e = e.reverses(r);
        }
        e.build()
    }

    #[test]
    fn partial_full_and_excess_reversals() {
        let originals =
            [ev("a", Some("300"), None), ev("b", Some("100"), None), ev("c", None, None), ev("d", Some("50"), None)];
        let reversals = [
            ev("r1", Some("100.5"), Some("a")),
            ev("r2", None, Some("b")),
            ev("r3", Some("1"), Some("c")),
            ev("r4", Some("30"), Some("d")),
            ev("r5", Some("20"), Some("d")),
            ev("r6", None, Some("not-yet-arrived")),
        ];
        let other_user = ev("r7", None, Some("a")).to_builder().user_id("someone-else").build();
        let reversals = [reversals.as_slice(), &[other_user]].concat();
        let net = net_events(&originals, &reversals);
        assert_eq!(net.len(), 1);
        assert_eq!(net[0].id(), "a");
        assert_eq!(net[0].attributes()["amount"], json!(199.5));
    }
}
