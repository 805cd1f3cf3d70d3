//! Time windows: which window an event falls in is decided by its `occurred_at`.

use super::spec::CalendarPeriod;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

/// A mission's window, compiled.
#[derive(Debug, Clone)]
pub enum Window {
    /// One window: the mission's whole life.
    Lifetime,
    /// Per user, opened by the user's first qualifying event, lasting `Span`.
    Rolling(Span),
    /// Calendar periods in a time zone; progress resets at each period's start.
    Calendar { period: CalendarPeriod, tz: TimeZone },
}

/// The bounds of one window, `[starts_at, ends_at)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Bounds {
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
}

impl Bounds {
    pub fn contains(&self, t: Timestamp) -> bool {
        self.starts_at <= t && t < self.ends_at
    }
}

/// The end of a rolling window opened at `start`. Calendar units (`P1M`) are measured on the
/// UTC calendar; a result past the representable range saturates.
pub fn rolling_end(start: Timestamp, span: Span) -> Timestamp {
    start.to_zoned(TimeZone::UTC).checked_add(span).map(|z| z.timestamp()).unwrap_or(Timestamp::MAX)
}

/// The calendar period containing `t`.
pub fn calendar_bounds(t: Timestamp, period: CalendarPeriod, tz: &TimeZone) -> Bounds {
    let date = t.to_zoned(tz.clone()).date();
    let first = match period {
        CalendarPeriod::Day => date,
        CalendarPeriod::Week => {
            date.checked_sub((date.weekday().to_monday_zero_offset() as i64).days()).unwrap_or(date)
        }
        CalendarPeriod::Month => date.first_of_month(),
    };
    let next = match period {
        CalendarPeriod::Day => first.checked_add(1.day()),
        CalendarPeriod::Week => first.checked_add(1.week()),
        CalendarPeriod::Month => first.checked_add(1.month()),
    }
    .unwrap_or(Date::MAX);
    Bounds { starts_at: start_of(first, tz), ends_at: start_of(next, tz) }
}

/// The first instant of a civil day in `tz` (which is not always midnight, across a DST gap).
pub fn start_of(date: Date, tz: &TimeZone) -> Timestamp {
    date.to_zoned(tz.clone()).map(|z| z.timestamp()).unwrap_or(Timestamp::MAX)
}

/// The civil day of `t` in `tz`.
pub fn day_of(t: Timestamp, tz: &TimeZone) -> Date {
    t.to_zoned(tz.clone()).date()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn calendar_day_in_kolkata_starts_at_local_midnight() {
        let tz = TimeZone::get("Asia/Kolkata").unwrap();
        let b = calendar_bounds(ts("2026-11-22T20:00:00Z"), CalendarPeriod::Day, &tz);
        assert_eq!(b.starts_at, ts("2026-11-22T18:30:00Z"));
        assert_eq!(b.ends_at, ts("2026-11-23T18:30:00Z"));
    }

    #[test]
    fn calendar_week_starts_monday_and_month_on_the_first() {
        // 2026-11-22 is a Sunday.
        let b = calendar_bounds(ts("2026-11-22T10:00:00Z"), CalendarPeriod::Week, &TimeZone::UTC);
        assert_eq!(b.starts_at, ts("2026-11-16T00:00:00Z"));
        assert_eq!(b.ends_at, ts("2026-11-23T00:00:00Z"));
        let m = calendar_bounds(ts("2026-02-10T10:00:00Z"), CalendarPeriod::Month, &TimeZone::UTC);
        assert_eq!(m.starts_at, ts("2026-02-01T00:00:00Z"));
        assert_eq!(m.ends_at, ts("2026-03-01T00:00:00Z"));
    }

    #[test]
    fn rolling_end_adds_calendar_units() {
        assert_eq!(rolling_end(ts("2026-01-31T00:00:00Z"), "P7D".parse().unwrap()), ts("2026-02-07T00:00:00Z"));
        assert_eq!(rolling_end(ts("2026-01-01T00:00:00Z"), "PT12H".parse().unwrap()), ts("2026-01-01T12:00:00Z"));
    }
}
