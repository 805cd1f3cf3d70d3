//! Progress: a user's state in one mission, as a left fold over their net events in
//! `(occurred_at, id)` order.
//!
//! The fold is the only place progress is computed. Live ingest ([`crate::batch::decide`])
//! folds new events onto the stored state when they sort after everything folded so far,
//! and refolds from the ledger otherwise (a late event, a reversal of a counted event);
//! `simulate` folds given events onto an empty state. Because all three run this code, replaying the ledger yields the
//! stored progress (invariant 5).

use crate::event::{Event, EventKey};
use crate::mission::compile::{Aggregate, CompiledMission, CompiledStep};
use crate::mission::filter::lookup;
use crate::mission::window::{Bounds, Window, calendar_bounds, day_of, rolling_end};
use crate::{decimal, reward};
use jiff::Timestamp;
use jiff::civil::Date;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What is stored per user and mission.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProgressState {
    /// One accumulator per step, for the current attempt.
    pub steps: Vec<StepState>,
    /// Completions so far.
    pub completions: u32,
    /// The current window, if the mission has one and it is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Bounds>,
    /// A calendar window allows one completion per period; set once this period's is done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub period_done: bool,
    /// The last event folded in; a new event that sorts after it can be folded on directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<EventKey>,
    /// When a qualifying event last changed this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_counted_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StepState {
    pub value: Decimal,
    /// `distinct`: the values seen (bounded: none are added once the target is reached).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub seen: BTreeSet<String>,
    /// `streak`: the last qualifying day and the run of consecutive days ending on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streak: Option<(Date, u32)>,
}

/// A completion reported by the fold.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// 1-based: the user's n-th completion of this mission.
    pub ordinal: u32,
    pub at: Timestamp,
    /// The reward amount this completion earns (fixed, or cashback of the completing sum).
    pub reward_amount: Option<Decimal>,
}

impl ProgressState {
    pub fn new(mission: &CompiledMission) -> Self {
        Self { steps: vec![StepState::default(); mission.steps().len()], ..Self::default() }
    }

    /// How far the current attempt is, 0 to 1: the mean over steps of each step's value
    /// over its target, capped at 1 (what progress milestones are measured by).
    pub fn fraction(&self, mission: &CompiledMission) -> Decimal {
        let steps = mission.steps();
        if steps.is_empty() {
            return Decimal::ZERO;
        }
        let sum: Decimal = steps
            .iter()
            .zip(&self.steps)
            .map(|(step, state)| {
                if step.target <= Decimal::ZERO { Decimal::ONE } else { (state.value / step.target).min(Decimal::ONE) }
            })
            .sum();
        sum / Decimal::from(steps.len())
    }

    /// Whether the user may complete the mission no more.
    pub fn is_finished(&self, mission: &CompiledMission) -> bool {
        mission.max_completions().is_some_and(|max| self.completions >= max)
    }

    /// Whether `event` may be folded onto this state directly: it sorts after every event
    /// folded so far. Otherwise the state must be refolded from the ledger.
    pub fn can_append(&self, event: &Event) -> bool {
        self.last.as_ref().is_none_or(|last| (event.occurred_at(), event.id()) > (last.at, last.id.as_str()))
    }

    /// Folds one net event in. Events must arrive in `(occurred_at, id)` order.
    pub fn apply(&mut self, mission: &CompiledMission, event: &Event) -> Option<Completion> {
        // An event that matches no step, or falls outside the mission's life, counts in no
        // order whatever the state: it leaves no trace (no progress row for a mission it
        // could never count for). Any other event may count depending on what came before
        // it (a sequential step, a window), so it moves `last`.
        if !in_mission_life(mission, event.occurred_at())
            || !mission.counts_arrival_of(event)
            || !mission.steps().iter().any(|s| step_matches(s, event))
        {
            return None;
        }
        self.last = Some(event.key());
        if self.is_finished(mission) {
            return None;
        }
        // Which steps this event counts for, in the window it falls in: entering a new window
        // resets progress, so in order only step 0 would be open there. An event that counts
        // for no step leaves no trace (in particular, it does not open a rolling window).
        let active_step = mission
            .sequential()
            .then(|| {
                if self.leaves_window(mission, event.occurred_at()) { Some(0) } else { self.first_open_step(mission) }
            })
            .flatten();
        let counts: Vec<bool> = mission
            .steps()
            .iter()
            .enumerate()
            .map(|(i, s)| active_step.is_none_or(|a| a == i) && step_matches(s, event))
            .collect();
        if !counts.contains(&true) || !self.enter_window(mission, event.occurred_at()) {
            return None;
        }
        let mut completing_sum = None;
        for (i, step) in mission.steps().iter().enumerate() {
            if counts[i] && self.steps[i].add(step, event) {
                self.last_counted_at = Some(event.occurred_at());
                if matches!(step.aggregate, Aggregate::Sum(_)) && completing_sum.is_none() {
                    completing_sum = Some(self.steps[i].value);
                }
            }
        }
        if self.first_open_step(mission).is_some() {
            return None;
        }
        self.complete(mission, event.occurred_at(), completing_sum)
    }

    fn complete(
        &mut self,
        mission: &CompiledMission,
        at: Timestamp,
        completing_sum: Option<Decimal>,
    ) -> Option<Completion> {
        self.completions += 1;
        // Cashback needs a sum; if this event completed a non-sum step, use the first sum step.
        let sum = completing_sum.or_else(|| {
            mission
                .steps()
                .iter()
                .zip(&self.steps)
                .find(|(s, _)| matches!(s.aggregate, Aggregate::Sum(_)))
                .map(|(_, st)| st.value)
        });
        let completion =
            Completion { ordinal: self.completions, at, reward_amount: reward::amount_for(mission.reward(), sum) };
        if !self.is_finished(mission) {
            // Progress starts again from zero; a rolling window reopens on the next event,
            // a calendar window waits for the next period.
            self.reset(mission);
            match mission.window() {
                Window::Rolling(_) => self.window = None,
                Window::Calendar { .. } => self.period_done = true,
                Window::Lifetime => {}
            }
        }
        Some(completion)
    }

    /// Whether an event at `at` falls outside the current window, so that entering its window
    /// starts progress afresh.
    fn leaves_window(&self, mission: &CompiledMission, at: Timestamp) -> bool {
        match mission.window() {
            Window::Lifetime => false,
            Window::Rolling(_) | Window::Calendar { .. } => self.window.is_some_and(|w| !w.contains(at)),
        }
    }

    /// Moves the state into the window `at` falls in, resetting progress when it leaves the
    /// current one. Returns whether an event at `at` may count.
    fn enter_window(&mut self, mission: &CompiledMission, at: Timestamp) -> bool {
        match mission.window() {
            Window::Lifetime => true,
            Window::Rolling(span) => {
                if self.window.is_some_and(|w| !w.contains(at)) {
                    self.reset(mission);
                    self.window = None;
                }
                if self.window.is_none() {
                    self.window = Some(Bounds { starts_at: at, ends_at: rolling_end(at, *span) });
                }
                true
            }
            Window::Calendar { period, tz } => {
                if self.window.is_none_or(|w| !w.contains(at)) {
                    self.reset(mission);
                    self.window = Some(calendar_bounds(at, *period, tz));
                    self.period_done = false;
                }
                !self.period_done
            }
        }
    }

    fn reset(&mut self, mission: &CompiledMission) {
        self.steps = vec![StepState::default(); mission.steps().len()];
    }

    fn first_open_step(&self, mission: &CompiledMission) -> Option<usize> {
        mission.steps().iter().zip(&self.steps).position(|(s, st)| st.value < s.target)
    }
}

fn in_mission_life(mission: &CompiledMission, at: Timestamp) -> bool {
    mission.starts_at().is_none_or(|s| at >= s) && mission.ends_at().is_none_or(|e| at < e)
}

fn step_matches(step: &CompiledStep, event: &Event) -> bool {
    step.event_type == event.event_type() && step.filters.iter().all(|f| f.matches(event.attributes()))
}

impl StepState {
    /// Adds a qualifying event; returns whether the value changed.
    fn add(&mut self, step: &CompiledStep, event: &Event) -> bool {
        let before = self.value;
        match &step.aggregate {
            Aggregate::Count => self.value = self.value.saturating_add(Decimal::ONE),
            Aggregate::Sum(path) => {
                if let Some(d) = lookup(event.attributes(), path).and_then(decimal::of_value) {
                    // Saturating: a sum past Decimal's range (≈7.9e28) stays at the maximum
                    // instead of failing the batch; no real target is anywhere near it.
                    self.value = self.value.saturating_add(d);
                }
            }
            Aggregate::Distinct(path) => {
                if self.value < step.target
                    && let Some(v) = lookup(event.attributes(), path)
                {
                    self.seen.insert(distinct_key(v));
                    self.value = Decimal::from(self.seen.len());
                }
            }
            Aggregate::Streak(tz) => {
                let day = day_of(event.occurred_at(), tz);
                let run = match self.streak {
                    Some((last, run)) if last == day => run,
                    Some((last, run)) if last.tomorrow().ok() == Some(day) => run + 1,
                    _ => 1,
                };
                self.streak = Some((day, run));
                self.value = self.value.max(Decimal::from(run));
            }
        }
        self.value != before
    }
}

/// How a value is remembered by a `distinct` step: numbers by their decimal value (`100`
/// equals `100.0`), short values as themselves, long ones by a stable 64-bit FNV-1a hash, so
/// that a progress row stays small whatever the attributes hold.
fn distinct_key(v: &serde_json::Value) -> String {
    const SHORT: usize = 64;
    let text = decimal::of_value(v).map_or_else(|| v.to_string(), |d| d.to_string());
    if text.len() <= SHORT {
        return text;
    }
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("#{hash:016x}")
}

/// Folds `events` (net, in fold order) onto `state`, returning the completions they caused.
/// Takes events or references to them, borrowed or not (`&[Event]`, [`crate::net::net_events`]).
pub fn fold<E: AsRef<Event>>(
    mission: &CompiledMission,
    state: &mut ProgressState,
    events: impl IntoIterator<Item = E>,
) -> Vec<Completion> {
    events.into_iter().filter_map(|e| state.apply(mission, e.as_ref())).collect()
}

/// The state `events` alone produce, from scratch.
pub fn replay<E: AsRef<Event>>(
    mission: &CompiledMission,
    events: impl IntoIterator<Item = E>,
) -> (ProgressState, Vec<Completion>) {
    let mut state = ProgressState::new(mission);
    let completions = fold(mission, &mut state, events);
    (state, completions)
}

/// A user's progress as readers see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProgressView {
    pub mission_id: String,
    pub user_id: String,
    pub status: ProgressStatus,
    pub steps: Vec<StepView>,
    pub completions: u32,
    /// The current window, or `null` without one (no window, or none opened yet).
    pub window: Option<Bounds>,
    /// When the progress last changed; `null` if it never did.
    pub updated_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepView {
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub value: Decimal,
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub target: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ProgressStatus {
    NotStarted,
    InProgress,
    /// No completions left.
    Completed,
    /// The window lapsed before the target was reached.
    Expired,
}

impl ProgressView {
    /// Renders `state` (or its absence) as of `now`.
    pub fn new(
        mission: &CompiledMission,
        user_id: &str,
        state: Option<&ProgressState>,
        updated_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Self {
        let empty = ProgressState::new(mission);
        let s = state.unwrap_or(&empty);
        let lapsed = s.window.is_some_and(|w| now >= w.ends_at) || mission.ends_at().is_some_and(|e| now >= e);
        let status = if s.is_finished(mission) {
            ProgressStatus::Completed
        } else if lapsed && !s.period_done && s.last_counted_at.is_some() {
            ProgressStatus::Expired
        } else if s.last_counted_at.is_none() {
            ProgressStatus::NotStarted
        } else {
            ProgressStatus::InProgress
        };
        // A lapsed window's progress no longer counts toward anything; show what it reached.
        let steps = mission
            .steps()
            .iter()
            .zip(&s.steps)
            .map(|(step, st)| StepView { value: st.value.normalize(), target: step.target.normalize() })
            .collect();
        ProgressView {
            mission_id: mission.id().to_owned(),
            user_id: user_id.to_owned(),
            status,
            steps,
            completions: s.completions,
            window: s.window,
            updated_at,
        }
    }
}

#[cfg(test)]
mod tests;
