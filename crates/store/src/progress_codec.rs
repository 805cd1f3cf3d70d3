//! The `missions` column of `user_progress`: every mission's state of one user, in one text.
//!
//! The row is read and written whole by every batch that touches the user, and it grows with
//! the missions the user has started, so its size is what a batch pays. The compact form
//! (`[2, {mission id: state}]`) names fields by one or two letters and writes instants as
//! nanoseconds since the Unix epoch: about half the size of the engine's own serde form,
//! which rows written before it still hold (`{mission id: {"state", "updated_at"}}`, read
//! as it is and rewritten compact by the next batch that changes the user).

use crate::MissionProgress;
use jiff::Timestamp;
use jiff::civil::Date;
use questline_core::event::EventKey;
use questline_core::id::MissionId;
use questline_core::mission::window::Bounds;
use questline_core::progress::{ProgressState, StepState};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The compact form's version, its first element.
const COMPACT: u8 = 2;

#[derive(Serialize, Deserialize)]
struct Mission {
    /// `updated_at`
    u: i128,
    /// completions
    #[serde(default, skip_serializing_if = "is_zero")]
    c: u32,
    /// steps
    s: Vec<Step>,
    /// window (starts_at, ends_at)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    w: Option<(i128, i128)>,
    /// period_done
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    p: bool,
    /// last event folded in (at, id)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    l: Option<(i128, String)>,
    /// last_counted_at
    #[serde(default, skip_serializing_if = "Option::is_none")]
    q: Option<i128>,
}

#[derive(Serialize, Deserialize)]
struct Step {
    v: Decimal,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    d: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<(Date, u32)>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn nanos(t: Timestamp) -> i128 {
    t.as_nanosecond()
}

fn instant(n: i128) -> Result<Timestamp, String> {
    Timestamp::from_nanosecond(n).map_err(|e| e.to_string())
}

/// The column's text for these missions' states.
pub(crate) fn encode(missions: &BTreeMap<MissionId, MissionProgress>) -> serde_json::Result<String> {
    let compact: BTreeMap<&str, Mission> = missions
        .iter()
        .map(|(id, p)| {
            let s = &p.state;
            let mission = Mission {
                u: nanos(p.updated_at),
                c: s.completions,
                s: s.steps.iter().map(|st| Step { v: st.value, d: st.seen.clone(), k: st.streak }).collect(),
                w: s.window.map(|b| (nanos(b.starts_at), nanos(b.ends_at))),
                p: s.period_done,
                l: s.last.as_ref().map(|k| (nanos(k.at), k.id.clone())),
                q: s.last_counted_at.map(nanos),
            };
            (id.as_str(), mission)
        })
        .collect();
    serde_json::to_string(&(COMPACT, compact))
}

/// The missions' states in the column's text, compact or as rows from before it hold them.
pub(crate) fn decode(text: &str) -> Result<BTreeMap<MissionId, MissionProgress>, String> {
    if !text.starts_with('[') {
        return serde_json::from_str(text).map_err(|e| e.to_string());
    }
    let (version, missions): (u8, BTreeMap<String, Mission>) = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if version != COMPACT {
        return Err(format!("unknown progress encoding {version}"));
    }
    missions
        .into_iter()
        .map(|(id, m)| {
            let window = match m.w {
                Some((a, b)) => Some(Bounds { starts_at: instant(a)?, ends_at: instant(b)? }),
                None => None,
            };
            let last = match m.l {
                Some((at, id)) => Some(EventKey { at: instant(at)?, id }),
                None => None,
            };
            let state = ProgressState {
                steps: m.s.into_iter().map(|s| StepState { value: s.v, seen: s.d, streak: s.k }).collect(),
                completions: m.c,
                window,
                period_done: m.p,
                last,
                last_counted_at: m.q.map(instant).transpose()?,
            };
            Ok((MissionId::from(id), MissionProgress { state, updated_at: instant(m.u)? }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn sample() -> BTreeMap<MissionId, MissionProgress> {
        let full = ProgressState {
            steps: vec![
                StepState { value: "512.30".parse().unwrap(), ..StepState::default() },
                StepState {
                    value: Decimal::from(2),
                    seen: ["a".to_owned(), "b".to_owned()].into(),
                    streak: Some(("2026-11-30".parse().unwrap(), 4)),
                },
            ],
            completions: 3,
            window: Some(Bounds {
                starts_at: ts("2026-11-01T00:00:00Z"),
                ends_at: ts("9999-12-30T22:00:00.999999999Z"),
            }),
            period_done: true,
            last: Some(EventKey { at: ts("2026-11-30T10:00:00.123456789Z"), id: "txn-\"1\"".into() }),
            last_counted_at: Some(ts("1970-01-01T00:00:00Z")),
        };
        let bare = ProgressState { steps: vec![StepState::default()], ..ProgressState::default() };
        [
            (
                MissionId::from("swiggy-500".to_owned()),
                MissionProgress { state: full, updated_at: ts("2026-11-30T10:00:01Z") },
            ),
            (MissionId::from("[".to_owned()), MissionProgress { state: bare, updated_at: ts("2026-11-30T10:00:02Z") }),
        ]
        .into()
    }

    #[test]
    fn every_field_round_trips_exactly() {
        let missions = sample();
        let text = encode(&missions).unwrap();
        assert!(text.starts_with("[2,"), "{text}");
        assert_eq!(decode(&text).unwrap(), missions);
        assert_eq!(decode(&encode(&BTreeMap::new()).unwrap()).unwrap(), BTreeMap::new());
    }

    #[test]
    fn rows_written_before_the_compact_form_read_the_same() {
        let missions = sample();
        let legacy = serde_json::to_string(&missions).unwrap();
        assert_eq!(decode(&legacy).unwrap(), missions);
        let compact = encode(&missions).unwrap();
        assert!(compact.len() * 3 < legacy.len() * 2, "compact {} vs {} bytes", compact.len(), legacy.len());
    }

    #[test]
    fn an_unknown_encoding_is_an_error_not_a_guess() {
        assert!(decode("[3,{}]").unwrap_err().contains("unknown progress encoding 3"));
        assert!(decode("[2,{\"m\":{}}]").is_err(), "a state without its fields");
    }
}
