//! The 50 active missions of the benchmark, written once as data from which both the API's
//! JSON and a predicate come: the predicate tells the reference which (mission, user)
//! progress rows an event changes, without running the engine.
//!
//! The mix is what a payments app runs at once: merchant and category campaigns with
//! amount and instrument filters (rolling 7-day and 1-day windows, budgets), broad spending
//! goals on calendar weeks and months in Asia/Kolkata (cashback with a cap), distinct
//! merchants, login streaks and counts, article reads, and multi-step missions, sequential
//! and not. The list is interleaved so that its first few already cover every kind.

use crate::workload::{LOGIN, MERCHANTS, PAYMENT, READ};
use serde_json::{Value, json};
use std::fmt::Write;

/// An event's attributes, as generated.
#[derive(Debug, Clone, PartialEq)]
pub enum Attrs {
    Payment {
        cents: u64,
        merchant: &'static str,
        category: &'static str,
        instrument: &'static str,
    },
    Login {
        platform: &'static str,
    },
    Read {
        article: u64,
        topic: &'static str,
    },
    /// A reversal: the amount reversed, or all of it.
    Reversal {
        cents: Option<u64>,
    },
}

impl Attrs {
    pub fn write_json(&self, out: &mut String) {
        let _ = match self {
            Attrs::Payment { cents, merchant, category, instrument } => write!(
                out,
                r#"{{"amount":{},"currency":"INR","merchant":"{merchant}","category":"{category}","instrument":"{instrument}"}}"#,
                rupees(*cents)
            ),
            Attrs::Login { platform } => write!(out, r#"{{"platform":"{platform}"}}"#),
            Attrs::Read { article, topic } => write!(out, r#"{{"article_id":"a-{article}","topic":"{topic}"}}"#),
            Attrs::Reversal { cents: Some(cents) } => write!(out, r#"{{"amount":{}}}"#, rupees(*cents)),
            Attrs::Reversal { cents: None } => write!(out, "{{}}"),
        };
    }

    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(128);
        self.write_json(&mut s);
        s
    }
}

/// Paise as an exact decimal number of rupees: `12345` -> `123.45`.
fn rupees(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A filter the benchmark uses, both as the API's JSON and as a predicate.
#[derive(Debug, Clone)]
pub enum Filter {
    AmountGte(u64),
    AmountLt(u64),
    MerchantIn(Vec<&'static str>),
    CategoryEq(&'static str),
    InstrumentEq(&'static str),
    InstrumentIn(Vec<&'static str>),
    TopicEq(&'static str),
    PlatformIn(Vec<&'static str>),
}

impl Filter {
    fn json(&self) -> Value {
        let money = |c: &u64| serde_json::from_str::<Value>(&rupees(*c)).expect("a decimal is a JSON number");
        match self {
            Filter::AmountGte(c) => json!({"field": "amount", "op": "gte", "value": money(c)}),
            Filter::AmountLt(c) => json!({"field": "amount", "op": "lt", "value": money(c)}),
            Filter::MerchantIn(m) => json!({"field": "merchant", "op": "in", "value": m}),
            Filter::CategoryEq(c) => json!({"field": "category", "op": "eq", "value": c}),
            Filter::InstrumentEq(i) => json!({"field": "instrument", "op": "eq", "value": i}),
            Filter::InstrumentIn(i) => json!({"field": "instrument", "op": "in", "value": i}),
            Filter::TopicEq(t) => json!({"field": "topic", "op": "eq", "value": t}),
            Filter::PlatformIn(p) => json!({"field": "platform", "op": "in", "value": p}),
        }
    }

    fn matches(&self, attrs: &Attrs) -> bool {
        match (self, attrs) {
            (Filter::AmountGte(min), Attrs::Payment { cents, .. }) => cents >= min,
            (Filter::AmountLt(max), Attrs::Payment { cents, .. }) => cents < max,
            (Filter::MerchantIn(list), Attrs::Payment { merchant, .. }) => list.contains(merchant),
            (Filter::CategoryEq(c), Attrs::Payment { category, .. }) => category == c,
            (Filter::InstrumentEq(i), Attrs::Payment { instrument, .. }) => instrument == i,
            (Filter::InstrumentIn(list), Attrs::Payment { instrument, .. }) => list.contains(instrument),
            (Filter::TopicEq(t), Attrs::Read { topic, .. }) => topic == t,
            (Filter::PlatformIn(list), Attrs::Login { platform }) => list.contains(platform),
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub event_type: &'static str,
    pub filters: Vec<Filter>,
    pub aggregate: Value,
    pub target: Value,
}

#[derive(Debug, Clone)]
pub struct BenchMission {
    pub id: String,
    pub steps: Vec<Step>,
    /// The whole definition as `POST /v1/missions` takes it.
    pub json: Value,
}

impl BenchMission {
    /// Whether an event with these attributes counts for some step: the progress row of
    /// (this mission, the event's user) changes.
    pub fn qualifies(&self, event_type: &str, attrs: &Attrs) -> bool {
        self.steps.iter().any(|s| s.event_type == event_type && s.filters.iter().all(|f| f.matches(attrs)))
    }

    /// Whether some step listens to this event type.
    pub fn listens(&self, event_type: &str) -> bool {
        self.steps.iter().any(|s| s.event_type == event_type)
    }
}

fn step(event_type: &'static str, filters: Vec<Filter>, aggregate: Value, target: u64) -> Step {
    Step { event_type, filters, aggregate, target: json!(target) }
}

fn count() -> Value {
    json!({"fn": "count"})
}

fn sum_amount() -> Value {
    json!({"fn": "sum", "field": "amount"})
}

const TZ: &str = "Asia/Kolkata";

/// The first `n` (at most 50) missions.
pub fn missions(n: usize) -> Vec<BenchMission> {
    let merchants =
        |i: usize, k: usize| -> Vec<&'static str> { (0..k).map(|j| MERCHANTS[(i + j * 7) % 40].0).collect() };
    // One builder per kind; the list takes them in turn so any prefix is mixed.
    let mut kinds: Vec<Vec<BenchMission>> = Vec::new();

    // Merchant campaigns: spend at these merchants, amount at least X, in 7 days; cash, budget.
    kinds.push(
        (0..12)
            .map(|i| {
                let mut filters =
                    vec![Filter::AmountGte(10_000 * (1 + i as u64 % 3)), Filter::MerchantIn(merchants(i, 1 + i % 3))];
                if i % 4 == 0 {
                    filters.push(Filter::InstrumentEq("card"));
                }
                mission(
                    format!("spend-merchant-{i}"),
                    Some(json!({"kind": "rolling", "duration": "P7D"})),
                    vec![step(PAYMENT, filters, sum_amount(), 1_000 + 500 * (i as u64 % 4))],
                    false,
                    json!({"kind": "cash", "amount": 50 + 25 * (i % 3), "currency": "INR"}),
                    Some(if i == 5 { 200 } else { 100_000 }),
                    json!({"max_completions": 1}),
                )
            })
            .collect(),
    );
    // Pay with the card N times today (Kolkata days); unlimited, points.
    kinds.push(
        (0..4)
            .map(|i| {
                let instrument = ["card", "upi", "card", "wallet"][i];
                mission(
                    format!("daily-pay-{i}"),
                    Some(json!({"kind": "calendar", "period": "day", "timezone": TZ})),
                    vec![step(PAYMENT, vec![Filter::InstrumentEq(instrument)], count(), 2 + i as u64)],
                    false,
                    json!({"kind": "points", "amount": 10}),
                    None,
                    json!({"max_completions": null}),
                )
            })
            .collect(),
    );
    // Pay at N different merchants; badge.
    kinds.push(
        [3u64, 5, 10]
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                mission(
                    format!("explorer-{n}"),
                    None,
                    vec![step(PAYMENT, vec![], json!({"fn": "distinct", "field": "merchant"}), n)],
                    false,
                    json!({"kind": "badge", "name": format!("Explorer {}", i + 1)}),
                    None,
                    json!({"max_completions": 1}),
                )
            })
            .collect(),
    );
    // Log in N days in a row (Kolkata days).
    kinds.push(
        [3u64, 5, 7]
            .iter()
            .map(|&n| {
                mission(
                    format!("login-streak-{n}"),
                    None,
                    vec![step(LOGIN, vec![], json!({"fn": "streak", "timezone": TZ}), n)],
                    false,
                    json!({"kind": "points", "amount": 20 * n}),
                    None,
                    json!({"max_completions": 1}),
                )
            })
            .collect(),
    );
    // Read first, then pay (sequential); or log in and pay (in any order).
    kinds.push(
        (0..10)
            .map(|i| {
                let sequential = i % 2 == 0;
                let first = if i % 4 < 2 {
                    step(READ, vec![Filter::TopicEq(crate::workload::TOPICS[i % 6])], count(), 1 + i as u64 % 3)
                } else {
                    step(LOGIN, vec![Filter::PlatformIn(vec!["android", "ios"])], count(), 2)
                };
                let then = step(
                    PAYMENT,
                    vec![Filter::AmountGte(20_000), Filter::CategoryEq(MERCHANTS[i * 3 % 40].1)],
                    count(),
                    1 + i as u64 % 2,
                );
                mission(
                    format!("multi-step-{i}"),
                    (i % 3 == 0).then(|| json!({"kind": "rolling", "duration": "P7D"})),
                    vec![first, then],
                    sequential,
                    json!({"kind": "voucher", "code": format!("MULTI{i}")}),
                    (i % 3 == 1).then_some(5_000),
                    json!({"max_completions": 1}),
                )
            })
            .collect(),
    );
    // Spend X this week / month (Kolkata calendar), cashback with a cap.
    kinds.push(
        (0..6)
            .map(|i| {
                let period = if i % 2 == 0 { "week" } else { "month" };
                let mut filters = vec![Filter::AmountGte(5_000)];
                if i >= 2 {
                    filters.push(Filter::CategoryEq(["food", "grocery", "travel", "bills"][i - 2]));
                }
                mission(
                    format!("spend-{period}-{i}"),
                    Some(json!({"kind": "calendar", "period": period, "timezone": TZ})),
                    vec![step(PAYMENT, filters, sum_amount(), 5_000 * (1 + i as u64))],
                    false,
                    json!({"kind": "cash", "percent": 2, "cap": 100, "currency": "INR"}),
                    Some(50_000),
                    json!({"max_completions": null}),
                )
            })
            .collect(),
    );
    // N payments of at least X within a day of the first (rolling P1D).
    kinds.push(
        (0..4)
            .map(|i| {
                let mut filters = vec![Filter::AmountGte(50_000 * (1 + i as u64))];
                if i >= 2 {
                    filters.push(Filter::InstrumentIn(vec!["card", "upi"]));
                    filters.push(Filter::AmountLt(5_000_000));
                }
                mission(
                    format!("big-day-{i}"),
                    Some(json!({"kind": "rolling", "duration": "P1D"})),
                    vec![step(PAYMENT, filters, count(), 2 + i as u64 % 2)],
                    false,
                    json!({"kind": "coins", "amount": 100}),
                    Some(20_000),
                    json!({"max_completions": 1}),
                )
            })
            .collect(),
    );
    // Log in N times this week / month.
    kinds.push(
        (0..3)
            .map(|i| {
                let period = ["week", "month", "week"][i];
                mission(
                    format!("login-{period}-{i}"),
                    Some(json!({"kind": "calendar", "period": period, "timezone": TZ})),
                    vec![step(LOGIN, vec![], count(), 4 + 2 * i as u64)],
                    false,
                    json!({"kind": "points", "amount": 30}),
                    None,
                    json!({"max_completions": null}),
                )
            })
            .collect(),
    );
    // Read articles: on a topic this week, or distinct articles ever (unlocks a page).
    kinds.push(
        (0..5)
            .map(|i| {
                let (window, s) = if i < 3 {
                    (
                        Some(json!({"kind": "calendar", "period": "week", "timezone": TZ})),
                        step(READ, vec![Filter::TopicEq(crate::workload::TOPICS[i])], count(), 3),
                    )
                } else {
                    (None, step(READ, vec![], json!({"fn": "distinct", "field": "article_id"}), 5 * i as u64))
                };
                mission(
                    format!("reader-{i}"),
                    window,
                    vec![s],
                    false,
                    json!({"kind": "unlock", "name": format!("pro-page-{i}")}),
                    None,
                    json!({"max_completions": 1}),
                )
            })
            .collect(),
    );

    let mut out = Vec::new();
    let mut round = 0;
    while out.len() < n.min(50) && kinds.iter().any(|k| round < k.len()) {
        for k in &kinds {
            if let Some(m) = k.get(round)
                && out.len() < n.min(50)
            {
                out.push(m.clone());
            }
        }
        round += 1;
    }
    out
}

fn mission(
    id: String,
    window: Option<Value>,
    steps: Vec<Step>,
    sequential: bool,
    reward: Value,
    budget: Option<u64>,
    repeat: Value,
) -> BenchMission {
    let mut json = json!({
        "id": id,
        "name": format!("Benchmark mission {id}"),
        "status": "active",
        "steps": steps.iter().map(|s| json!({
            "event_type": s.event_type,
            "filters": s.filters.iter().map(Filter::json).collect::<Vec<_>>(),
            "aggregate": s.aggregate,
            "target": s.target,
        })).collect::<Vec<_>>(),
        "sequential": sequential,
        "repeat": repeat,
        "reward": reward,
    });
    if let Some(w) = window {
        json["window"] = w;
    }
    if let Some(max) = budget {
        json["budget"] = json!({"max_rewards": max});
    }
    BenchMission { id, steps, json }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifty_distinct_missions_and_any_prefix_is_mixed() {
        let all = missions(50);
        assert_eq!(all.len(), 50);
        let ids: std::collections::BTreeSet<_> = all.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids.len(), 50);
        let five = missions(5);
        assert!(five.iter().any(|m| m.listens(LOGIN)) && five.iter().any(|m| m.listens(PAYMENT)));
        assert!(five.iter().any(|m| m.steps.len() > 1));
    }

    #[test]
    fn predicates_follow_the_filters() {
        let m = &missions(1)[0];
        let pay = |cents, merchant| Attrs::Payment { cents, merchant, category: "food", instrument: "card" };
        assert!(m.qualifies(PAYMENT, &pay(20_000, "swiggy")));
        assert!(!m.qualifies(PAYMENT, &pay(20_000, "zomato")));
        assert!(!m.qualifies(PAYMENT, &pay(100, "swiggy")));
        assert!(!m.qualifies(LOGIN, &Attrs::Login { platform: "ios" }));
    }
}
