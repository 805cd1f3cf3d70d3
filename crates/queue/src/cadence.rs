//! When a periodic schedule ticks: every fixed interval, or by a cron expression in a time
//! zone. Every worker computes the same ticks from the same schedule, so the backend's
//! once-per-tick check ([`crate::Backend::enqueue_tick`]) makes each tick one job however
//! many workers run it. Pure: time is a parameter.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// A schedule's ticks.
#[derive(Debug, Clone)]
pub enum Cadence {
    /// At the instants that are whole multiples of the interval since the Unix epoch.
    Every(Duration),
    /// At the instants a cron expression names, read in a time zone (daylight-saving gaps
    /// and folds as jiff resolves them).
    Cron { schedule: Box<jiff_cron::Schedule>, zone: TimeZone },
}

impl Cadence {
    /// Every `interval` (at least a millisecond).
    pub fn every(interval: Duration) -> Self {
        Cadence::Every(interval.max(Duration::from_millis(1)))
    }

    /// A cron expression: five fields as crontab has them (minute, hour, day of month,
    /// month, day of week: `30 3 * * Mon-Fri`), or six or seven with seconds first and a
    /// year last; names of months and days allowed. `Err` says why it is not one.
    pub fn cron(expression: &str, zone: TimeZone) -> Result<Self, String> {
        let fields = expression.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {expression}"),
            6 | 7 => expression.to_owned(),
            n => return Err(format!("a cron expression has 5 fields (or 6–7 with seconds), not {n}")),
        };
        let schedule: jiff_cron::Schedule =
            full.parse().map_err(|e| format!("not a cron expression ({e}): {expression:?}"))?;
        if schedule.upcoming(zone.clone()).next().is_none() {
            return Err(format!("the cron expression {expression:?} never fires again"));
        }
        Ok(Cadence::Cron { schedule: Box::new(schedule), zone })
    }

    /// The tick in force at `now`: the latest at or before it, if there was one.
    pub fn current(&self, now: Timestamp) -> Option<Timestamp> {
        match self {
            Cadence::Every(interval) => {
                let every = i64::try_from(interval.as_micros()).unwrap_or(i64::MAX);
                let us = now.as_microsecond();
                Timestamp::from_microsecond(us - us.rem_euclid(every)).ok()
            }
            Cadence::Cron { schedule, zone } => {
                // `after(t)` walks backwards from `t` exclusive: start a hair past `now` so that
                // a tick at exactly `now` is the current one.
                let from = now.checked_add(SignedDuration::from_nanos(1)).ok()?.to_zoned(zone.clone());
                schedule.after(from).next_back().map(|z| z.timestamp())
            }
        }
    }

    /// The first tick after `now`; `None` if the schedule never ticks again.
    pub fn next(&self, now: Timestamp) -> Option<Timestamp> {
        match self {
            Cadence::Every(interval) => {
                let current = self.current(now)?;
                current.checked_add(SignedDuration::try_from(*interval).ok()?).ok()
            }
            Cadence::Cron { schedule, zone } => {
                schedule.after(now.to_zoned(zone.clone())).next().map(|z| z.timestamp())
            }
        }
    }

    /// Whether a worker starting in the middle of a tick enqueues it. An interval's ticks do
    /// (the tick began at most one interval ago); a cron tick may be days old, and a job at
    /// "3 a.m." must not run at 10 a.m. because a worker started then: it waits for its next.
    pub fn catches_up(&self) -> bool {
        matches!(self, Cadence::Every(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn intervals_tick_on_multiples_of_themselves() {
        let every = Cadence::every(Duration::from_secs(60));
        assert_eq!(every.current(at("2026-12-02T10:00:59Z")), Some(at("2026-12-02T10:00:00Z")));
        assert_eq!(every.current(at("2026-12-02T10:01:00Z")), Some(at("2026-12-02T10:01:00Z")));
        assert_eq!(every.next(at("2026-12-02T10:00:59Z")), Some(at("2026-12-02T10:01:00Z")));
        assert!(every.catches_up());
    }

    #[test]
    fn five_field_cron_runs_at_its_minute_in_its_zone() {
        let kolkata = TimeZone::get("Asia/Kolkata").unwrap();
        let cron = Cadence::cron("30 3 * * Mon-Fri", kolkata).unwrap();
        // 03:30 IST is 22:00 UTC the day before. 2026-12-02 is a Wednesday.
        assert_eq!(cron.next(at("2026-12-01T12:00:00Z")), Some(at("2026-12-01T22:00:00Z")));
        assert_eq!(cron.current(at("2026-12-01T22:00:00Z")), Some(at("2026-12-01T22:00:00Z")), "at the tick");
        assert_eq!(cron.current(at("2026-12-01T21:59:59Z")), Some(at("2026-11-30T22:00:00Z")));
        // Friday 03:30 IST, then Monday's: the weekend has none.
        assert_eq!(cron.next(at("2026-12-03T22:00:00Z")), Some(at("2026-12-06T22:00:00Z")));
        assert!(!cron.catches_up());
    }

    #[test]
    fn seconds_and_years_may_be_given() {
        let cron = Cadence::cron("*/2 * * * * *", TimeZone::UTC).unwrap();
        assert_eq!(cron.next(at("2026-12-02T10:00:00.5Z")), Some(at("2026-12-02T10:00:02Z")));
        assert_eq!(cron.current(at("2026-12-02T10:00:03Z")), Some(at("2026-12-02T10:00:02Z")));
        let once = Cadence::cron("0 0 12 1 Jan * 2030", TimeZone::UTC).unwrap();
        assert_eq!(once.next(at("2026-12-02T10:00:00Z")), Some(at("2030-01-01T12:00:00Z")));
    }

    #[test]
    fn bad_expressions_say_why() {
        for (expression, why) in [
            ("* * *", "5 fields"),
            ("61 * * * *", "not a cron expression"),
            ("* * * * Funday", "not a cron expression"),
            ("0 0 0 1 1 * 2001", "never fires again"),
        ] {
            let err = Cadence::cron(expression, TimeZone::UTC).unwrap_err();
            assert!(err.contains(why), "{expression}: {err}");
        }
    }
}
