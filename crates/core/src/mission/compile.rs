//! Validation of a [`MissionSpec`] into a [`CompiledMission`]: parse, don't validate. A
//! compiled mission is always valid, and evaluating an event against it parses nothing.

use super::filter::Filter;
use super::notice::{self, Notice, Trigger};
use super::spec::{AggregateFn, MissionSpec, RewardKind, RewardSpec, WindowKind, WindowSpec};
use super::window::Window;
use crate::pointer::{FieldError, ValidationErrors};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use rust_decimal::Decimal;
use std::sync::Arc;

/// Most steps a mission may have.
pub const MAX_STEPS: usize = 20;
/// Most filters a step may have.
pub const MAX_FILTERS: usize = 32;
/// Largest `distinct` target: the values seen so far are kept in the progress row.
pub const MAX_DISTINCT_TARGET: u32 = 10_000;

/// A mission ready to evaluate events. Made only by [`CompiledMission::compile`] and
/// [`CompiledMission::for_mission`], so it is always valid; its fields stay private.
#[derive(Debug, Clone)]
pub struct CompiledMission {
    id: String,
    steps: Vec<CompiledStep>,
    window: Window,
    starts_at: Option<Timestamp>,
    ends_at: Option<Timestamp>,
    sequential: bool,
    max_completions: Option<u32>,
    reward: RewardSpec,
    name: String,
    notices: Vec<Notice>,
    /// The event types any step listens to, sorted and unique.
    event_types: Vec<String>,
    /// When set, a recorded event counts only if it was received in one of these periods
    /// (the mission was active then). `None`: lifecycle does not apply (simulation).
    active_periods: Option<Vec<super::spec::ActivePeriod>>,
}

#[derive(Debug, Clone)]
pub struct CompiledStep {
    pub event_type: String,
    pub filters: Vec<Filter>,
    pub aggregate: Aggregate,
    pub target: Decimal,
}

#[derive(Debug, Clone)]
pub enum Aggregate {
    Count,
    Sum(Vec<String>),
    Distinct(Vec<String>),
    Streak(TimeZone),
}

/// Whether `id` is a valid mission id: `[a-z0-9_-]{1,64}`.
pub fn is_valid_mission_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl CompiledMission {
    /// Validates `spec`, reporting every problem with its JSON pointer.
    pub fn compile(id: &str, spec: &MissionSpec) -> Result<Arc<CompiledMission>, ValidationErrors> {
        let mut errors = Vec::new();
        let mut err = |pointer: &str, detail: &str| errors.push(FieldError::new(pointer, detail));

        if spec.name.trim().is_empty() || spec.name.chars().count() > 200 {
            err("/name", "must be 1 to 200 characters");
        }
        if let (Some(s), Some(e)) = (spec.starts_at, spec.ends_at)
            && s >= e
        {
            err("/ends_at", "must be after starts_at");
        }
        if spec.steps.is_empty() || spec.steps.len() > MAX_STEPS {
            err("/steps", &format!("must hold 1 to {MAX_STEPS} steps"));
        }
        if spec.repeat.max_completions == Some(0) {
            err("/repeat/max_completions", "must be at least 1, or null for unlimited");
        }
        if spec.budget.as_ref().is_some_and(|b| b.max_rewards == 0) {
            err("/budget/max_rewards", "must be at least 1");
        }
        let window = compile_window(spec.window.as_ref(), &mut errors);
        let steps: Vec<_> =
            spec.steps.iter().enumerate().filter_map(|(i, s)| compile_step(i, s, &mut errors)).collect();
        check_reward(spec, &mut errors);
        let windowed = window.as_ref().is_some_and(|w| !matches!(w, Window::Lifetime));
        let notices = notice::compile(&spec.notifications, windowed, &mut errors);

        if !errors.is_empty() {
            return Err(ValidationErrors(errors));
        }
        let mut event_types: Vec<String> = steps.iter().map(|s| s.event_type.clone()).collect();
        event_types.sort();
        event_types.dedup();
        Ok(Arc::new(CompiledMission {
            id: id.to_owned(),
            steps,
            window: window.unwrap_or(Window::Lifetime),
            starts_at: spec.starts_at,
            ends_at: spec.ends_at,
            sequential: spec.sequential,
            max_completions: spec.repeat.max_completions,
            reward: spec.reward.clone(),
            name: spec.name.clone(),
            notices,
            event_types,
            active_periods: None,
        }))
    }

    /// Compiles a stored mission, with its lifecycle: recorded events count only if they
    /// were received while it was active.
    pub fn for_mission(mission: &super::spec::Mission) -> Result<Arc<CompiledMission>, ValidationErrors> {
        let mut compiled = Arc::unwrap_or_clone(Self::compile(&mission.id, &mission.spec)?);
        compiled.active_periods = Some(mission.effective_periods());
        Ok(Arc::new(compiled))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// At least one step, at most [`MAX_STEPS`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The notifications it declares, in their order.
    pub fn notices(&self) -> &[Notice] {
        &self.notices
    }

    /// Whether it declares a notification for a trigger of this kind.
    pub fn notifies(&self, on: impl Fn(&Trigger) -> bool) -> bool {
        self.notices.iter().any(|n| on(&n.trigger))
    }

    pub fn steps(&self) -> &[CompiledStep] {
        &self.steps
    }

    pub fn window(&self) -> &Window {
        &self.window
    }

    pub fn starts_at(&self) -> Option<Timestamp> {
        self.starts_at
    }

    pub fn ends_at(&self) -> Option<Timestamp> {
        self.ends_at
    }

    pub fn sequential(&self) -> bool {
        self.sequential
    }

    /// `None`: unlimited.
    pub fn max_completions(&self) -> Option<u32> {
        self.max_completions
    }

    pub fn reward(&self) -> &RewardSpec {
        &self.reward
    }

    /// The event types any step listens to, sorted and unique.
    pub fn event_types(&self) -> &[String] {
        &self.event_types
    }

    /// The periods set by [`CompiledMission::for_mission`]; `None` for a simulation.
    #[cfg(test)]
    pub(crate) fn active_periods(&self) -> Option<&[super::spec::ActivePeriod]> {
        self.active_periods.as_deref()
    }

    /// This mission with other active periods, as [`CompiledMission::for_mission`] sets them.
    #[cfg(test)]
    pub(crate) fn with_active_periods(mut self, periods: Vec<super::spec::ActivePeriod>) -> CompiledMission {
        self.active_periods = Some(periods);
        self
    }

    /// Whether `event` arrived while the mission was active (events not yet recorded are
    /// arriving now, and the caller only offers them to active missions).
    pub fn counts_arrival_of(&self, event: &crate::event::Event) -> bool {
        match (&self.active_periods, event.received_at()) {
            (Some(periods), Some(at)) => periods.iter().any(|p| p.contains(at)),
            _ => true,
        }
    }
}

fn compile_window(spec: Option<&WindowSpec>, errors: &mut Vec<FieldError>) -> Option<Window> {
    let spec = spec?;
    let mut err = |field: &str, detail: &str| errors.push(FieldError::new(format!("/window/{field}"), detail));
    match spec.kind {
        WindowKind::Rolling => {
            if spec.period.is_some() {
                err("period", "only calendar windows have a period");
            }
            if spec.timezone.is_some() {
                err("timezone", "only calendar windows have a time zone");
            }
            let Some(text) = &spec.duration else {
                err("duration", "required for a rolling window, e.g. P7D");
                return None;
            };
            match text.parse::<Span>() {
                Ok(span) if span.is_positive() && text.starts_with('P') => Some(Window::Rolling(span)),
                Ok(_) => {
                    err("duration", "must be a positive ISO 8601 duration, e.g. P7D");
                    None
                }
                Err(_) => {
                    err("duration", "not an ISO 8601 duration, e.g. P7D or PT12H");
                    None
                }
            }
        }
        WindowKind::Calendar => {
            if spec.duration.is_some() {
                err("duration", "only rolling windows have a duration");
            }
            let tz = time_zone(spec.timezone.as_deref(), "/window/timezone", errors);
            let Some(period) = spec.period else {
                errors.push(FieldError::new("/window/period", "required for a calendar window: day, week or month"));
                return None;
            };
            Some(Window::Calendar { period, tz: tz? })
        }
    }
}

fn time_zone(name: Option<&str>, pointer: &str, errors: &mut Vec<FieldError>) -> Option<TimeZone> {
    match name {
        None => Some(TimeZone::UTC),
        Some(name) => match TimeZone::get(name) {
            Ok(tz) => Some(tz),
            Err(_) => {
                errors.push(FieldError::new(pointer, format!("unknown IANA time zone {name:?}")));
                None
            }
        },
    }
}

fn compile_step(i: usize, spec: &super::spec::StepSpec, errors: &mut Vec<FieldError>) -> Option<CompiledStep> {
    let at = format!("/steps/{i}");
    let before = errors.len();
    if spec.event_type.trim().is_empty() {
        errors.push(FieldError::new(format!("{at}/event_type"), "must not be empty"));
    }
    if spec.filters.len() > MAX_FILTERS {
        errors.push(FieldError::new(format!("{at}/filters"), format!("at most {MAX_FILTERS} filters")));
    }
    let filters: Vec<_> = spec
        .filters
        .iter()
        .enumerate()
        .filter_map(|(j, f)| Filter::compile(f, &format!("{at}/filters/{j}"), errors))
        .collect();
    if spec.target <= Decimal::ZERO {
        errors.push(FieldError::new(format!("{at}/target"), "must be greater than 0"));
    }
    let agg = &spec.aggregate;
    let field_path = |errors: &mut Vec<FieldError>| match &agg.field {
        Some(f) if !f.is_empty() && !f.split('.').any(str::is_empty) => Some(f.split('.').map(str::to_owned).collect()),
        _ => {
            errors.push(FieldError::new(
                format!("{at}/aggregate/field"),
                "required: the attribute to aggregate, e.g. amount",
            ));
            None
        }
    };
    let whole_target = |errors: &mut Vec<FieldError>| {
        if !spec.target.fract().is_zero() {
            errors.push(FieldError::new(format!("{at}/target"), "must be a whole number for this aggregate"));
        }
    };
    if agg.timezone.is_some() && agg.function != AggregateFn::Streak {
        errors.push(FieldError::new(format!("{at}/aggregate/timezone"), "only streaks have a time zone"));
    }
    if agg.field.is_some() && matches!(agg.function, AggregateFn::Count | AggregateFn::Streak) {
        errors.push(FieldError::new(format!("{at}/aggregate/field"), "count and streak take no field"));
    }
    let aggregate = match agg.function {
        AggregateFn::Count => {
            whole_target(errors);
            Some(Aggregate::Count)
        }
        AggregateFn::Sum => field_path(errors).map(Aggregate::Sum),
        AggregateFn::Distinct => {
            whole_target(errors);
            if spec.target > Decimal::from(MAX_DISTINCT_TARGET) {
                errors.push(FieldError::new(
                    format!("{at}/target"),
                    format!("at most {MAX_DISTINCT_TARGET} for distinct"),
                ));
            }
            field_path(errors).map(Aggregate::Distinct)
        }
        AggregateFn::Streak => {
            whole_target(errors);
            time_zone(agg.timezone.as_deref(), &format!("{at}/aggregate/timezone"), errors).map(Aggregate::Streak)
        }
    };
    if errors.len() > before {
        return None;
    }
    Some(CompiledStep { event_type: spec.event_type.clone(), filters, aggregate: aggregate?, target: spec.target })
}

/// A balance's name, as points and coins rewards and balance entries give it.
pub fn is_balance_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn check_reward(spec: &MissionSpec, errors: &mut Vec<FieldError>) {
    let r = &spec.reward;
    let mut err = |field: &str, detail: &str| errors.push(FieldError::new(format!("/reward/{field}"), detail));
    let positive = |d: Option<Decimal>| d.is_none_or(|d| d > Decimal::ZERO);
    if !positive(r.amount) {
        err("amount", "must be greater than 0");
    }
    if r.cap.is_some_and(|c| c <= Decimal::ZERO) {
        err("cap", "must be greater than 0");
    }
    if let Some(c) = &r.currency {
        match r.kind {
            // Points and coins name a balance of questline's own, not money.
            RewardKind::Points | RewardKind::Coins if !is_balance_name(c) => {
                err("currency", "a balance name: 1 to 32 of a-z, 0-9, '_' and '-', e.g. coins")
            }
            RewardKind::Points | RewardKind::Coins => {}
            _ if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) => {
                err("currency", "must be an ISO 4217 code such as INR")
            }
            _ => {}
        }
    }
    if let Some(text) = &r.expires_after {
        if !matches!(r.kind, RewardKind::Points | RewardKind::Coins) {
            err("expires_after", "only points and coins expire");
        }
        match text.parse::<jiff::Span>() {
            Ok(span) if !span.is_negative() && !span.is_zero() && text.starts_with('P') => {}
            Ok(_) => err("expires_after", "must be an ISO 8601 duration greater than zero, e.g. P90D"),
            Err(_) => err("expires_after", "not an ISO 8601 duration, e.g. P90D or PT12H"),
        }
    }
    if let Some(text) = &r.hold {
        match text.parse::<jiff::Span>() {
            Ok(span) if !span.is_negative() && text.starts_with('P') => {}
            Ok(_) => err("hold", "must be an ISO 8601 duration of zero or more, e.g. PT24H"),
            Err(_) => err("hold", "not an ISO 8601 duration, e.g. PT24H or P7D"),
        }
    }
    match r.kind {
        RewardKind::Cash => {
            match (r.amount, r.percent) {
                (Some(_), Some(_)) => err("percent", "give either a fixed amount or a cashback percent, not both"),
                (None, None) => err("amount", "required for cash: a fixed amount, or percent for cashback"),
                _ => {}
            }
            if r.currency.is_none() {
                err("currency", "required for cash");
            }
        }
        RewardKind::Points | RewardKind::Coins if r.amount.is_none() => err("amount", "required for points and coins"),
        RewardKind::GiftCard => {
            if r.amount.is_none() {
                err("amount", "required for a gift card: its value");
            }
            if r.currency.is_none() {
                err("currency", "required for a gift card");
            }
        }
        _ => {}
    }
    if let Some(p) = r.percent {
        if r.kind != RewardKind::Cash {
            err("percent", "cashback applies to cash rewards only");
        }
        if p <= Decimal::ZERO || p > Decimal::ONE_HUNDRED {
            err("percent", "must be greater than 0 and at most 100");
        }
        if !spec.steps.iter().any(|s| s.aggregate.function == AggregateFn::Sum) {
            err("percent", "cashback needs a step that sums an amount");
        }
        // Without one, a completion over a huge sum earns a huge reward: the cap is what a
        // product team promises, so it is written down.
        if r.cap.is_none() {
            err("cap", "required with a cashback percent: the most one completion can earn");
        } else if r.cap.is_some_and(|c| c <= Decimal::ZERO) {
            err("cap", "must be greater than 0");
        }
    }
    if r.cap.is_some() && r.percent.is_none() {
        err("cap", "only a cashback percent has a cap");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> MissionSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn compiles_the_swiggy_mission() {
        let s = spec(json!({
            "name": "Spend ₹500 at Swiggy in 7 days",
            "window": {"kind": "rolling", "duration": "P7D"},
            "steps": [{"event_type": "payment",
                       "filters": [{"field": "amount", "op": "gte", "value": 100},
                                   {"field": "merchant", "op": "in", "value": ["swiggy", "swiggy-instamart"]}],
                       "aggregate": {"fn": "sum", "field": "amount"}, "target": 500}],
            "reward": {"kind": "cash", "amount": 50, "currency": "INR"},
            "budget": {"max_rewards": 10000}
        }));
        let m = CompiledMission::compile("swiggy-500", &s).unwrap();
        assert_eq!(m.event_types, vec!["payment"]);
        assert_eq!(m.max_completions, Some(1));
    }

    #[test]
    fn reports_every_problem_with_its_pointer() {
        let s = spec(json!({
            "name": "",
            "window": {"kind": "calendar", "period": "day", "timezone": "Mars/Olympus"},
            "steps": [{"event_type": "payment", "filters": [{"field": "amount", "op": "in", "value": 3}],
                       "aggregate": {"fn": "sum"}, "target": 0}],
            "reward": {"kind": "cash", "percent": 5, "amount": 1, "currency": "INR"}
        }));
        let errors = CompiledMission::compile("m", &s).unwrap_err().0;
        let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
        for p in [
            "/name",
            "/window/timezone",
            "/steps/0/filters/0/value",
            "/steps/0/target",
            "/steps/0/aggregate/field",
            "/reward/percent",
            "/reward/cap",
        ] {
            assert!(pointers.contains(&p), "{p} missing from {pointers:?}");
        }
    }

    #[test]
    fn cashback_needs_a_positive_cap() {
        let with = |reward: serde_json::Value| {
            spec(json!({"name": "c", "steps": [{"event_type": "payment", "aggregate": {"fn": "sum", "field": "amount"},
                        "target": 500}], "reward": reward}))
        };
        for (reward, detail) in [
            (json!({"kind": "cash", "percent": 5, "currency": "INR"}), "required with a cashback percent"),
            (json!({"kind": "cash", "percent": 5, "cap": 0, "currency": "INR"}), "must be greater than 0"),
        ] {
            let errors = CompiledMission::compile("m", &with(reward)).unwrap_err().0;
            assert_eq!(errors[0].pointer, "/reward/cap");
            assert!(errors[0].detail.starts_with(detail), "{errors:?}");
        }
        assert!(
            CompiledMission::compile("m", &with(json!({"kind": "cash", "percent": 5, "cap": 40, "currency": "INR"})))
                .is_ok()
        );
    }

    #[test]
    fn a_gift_card_names_its_value() {
        let with = |reward: serde_json::Value| {
            spec(json!({"name": "g", "steps": [{"event_type": "login", "target": 1}], "reward": reward}))
        };
        let errors = CompiledMission::compile("m", &with(json!({"kind": "gift_card"}))).unwrap_err().0;
        let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/reward/amount", "/reward/currency"]);
        let ok = with(json!({"kind": "gift_card", "amount": 500, "currency": "INR", "code": "AMZN"}));
        assert!(CompiledMission::compile("m", &ok).is_ok());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let r: Result<MissionSpec, _> = serde_json::from_value(json!({
            "name": "x", "steps": [{"event_type": "login", "target": 1, "tagret": 2}], "reward": {"kind": "badge"}
        }));
        assert!(r.unwrap_err().to_string().contains("unknown field `tagret`"));
    }

    #[test]
    fn mission_ids() {
        assert!(is_valid_mission_id("swiggy-500_x"));
        assert!(!is_valid_mission_id("Swiggy"));
        assert!(!is_valid_mission_id(""));
        assert!(!is_valid_mission_id(&"a".repeat(65)));
    }

    #[test]
    fn a_hold_is_a_duration_and_points_name_a_balance() {
        let with = |reward: serde_json::Value| {
            spec(json!({"name": "x", "steps": [{"event_type": "login", "target": 1}], "reward": reward}))
        };
        for ok in [
            json!({"kind": "cash", "amount": 50, "currency": "INR", "hold": "PT24H"}),
            json!({"kind": "points", "amount": 5, "currency": "gems", "hold": "PT0S"}),
            json!({"kind": "coins", "amount": 5, "hold": "P1M"}),
        ] {
            CompiledMission::compile("m", &with(ok.clone())).unwrap_or_else(|e| panic!("{ok}: {e:?}"));
        }
        for (bad, pointer) in [
            (json!({"kind": "badge", "hold": "24h"}), "/reward/hold"),
            (json!({"kind": "badge", "hold": "-PT1H"}), "/reward/hold"),
            (json!({"kind": "points", "amount": 5, "currency": "Gems!"}), "/reward/currency"),
            (json!({"kind": "cash", "amount": 5, "currency": "coins"}), "/reward/currency"),
        ] {
            let errors = CompiledMission::compile("m", &with(bad.clone())).unwrap_err().0;
            assert_eq!(errors[0].pointer, pointer, "{bad}");
        }
    }
}
