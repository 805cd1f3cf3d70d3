//! How a user is reached, and what they agreed to hear: contact points (a phone number, an
//! e-mail address, a push token), the time zone their quiet hours are in, and preferences
//! (opt-outs per channel and per mission, quiet hours).
//!
//! Mission notifications honour all of it ([`Preferences::allows`], [`QuietHours::release`]):
//! an opted-out notification is not sent; one that falls in quiet hours waits for their end
//! and is never dropped. Messages an app sends itself (`POST /v1/messages`, e.g. a one-time
//! password) are the app's to decide and are not held.

use crate::message::Channel;
use crate::pointer::{FieldError, ValidationErrors};
use jiff::Timestamp;
use jiff::civil::Time;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The most missions one user may opt out of by name (beyond that, opt out of the channel).
pub const MAX_OPTED_OUT_MISSIONS: usize = 100;

/// A user's contact points, as stored and answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ContactPoints {
    /// E.164, for SMS, WhatsApp and IVR.
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// A device token, for push.
    #[serde(default)]
    pub push_token: Option<String>,
    /// IANA name; quiet hours are read in it (default UTC).
    #[serde(default)]
    pub time_zone: Option<String>,
}

impl ContactPoints {
    /// Every problem, each with its pointer.
    pub fn check(&self) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        let points = [
            ("/phone", &self.phone, Channel::Sms),
            ("/email", &self.email, Channel::Email),
            ("/push_token", &self.push_token, Channel::Push),
        ];
        for (pointer, value, channel) in points {
            if let Some(problem) = value.as_deref().and_then(|v| channel.address_problem(v)) {
                errors.push(FieldError::new(pointer, problem));
            }
        }
        if let Some(name) = &self.time_zone
            && TimeZone::get(name).is_err()
        {
            errors.push(FieldError::new("/time_zone", format!("unknown IANA time zone {name:?}")));
        }
        if errors.is_empty() { Ok(()) } else { Err(ValidationErrors(errors)) }
    }

    /// The address a channel reaches, if the user gave one (checked when it was given).
    pub fn address(&self, channel: Channel) -> Option<&str> {
        match channel {
            Channel::Sms | Channel::Whatsapp | Channel::Ivr => self.phone.as_deref(),
            Channel::Email => self.email.as_deref(),
            Channel::Push => self.push_token.as_deref(),
        }
    }

    /// The user's time zone (UTC if none, or one no longer known).
    pub fn zone(&self) -> TimeZone {
        self.time_zone.as_deref().and_then(|name| TimeZone::get(name).ok()).unwrap_or(TimeZone::UTC)
    }
}

/// What a user agreed to hear.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    #[serde(default)]
    pub opt_out: OptOut,
    /// Mission notifications falling in these hours wait for their end.
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OptOut {
    /// No mission notification on these channels.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub channels: BTreeSet<Channel>,
    /// No notification of these missions, on any channel.
    #[serde(default)]
    pub missions: BTreeSet<String>,
}

impl Preferences {
    pub fn check(&self) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        if self.opt_out.missions.len() > MAX_OPTED_OUT_MISSIONS {
            let detail = format!("at most {MAX_OPTED_OUT_MISSIONS} missions (opt out of a channel instead)");
            errors.push(FieldError::new("/opt_out/missions", detail));
        }
        for id in self.opt_out.missions.iter().filter(|id| !crate::mission::compile::is_valid_mission_id(id)) {
            errors
                .push(FieldError::new("/opt_out/missions", format!("{id:?} is not a mission id ([a-z0-9_-]{{1,64}})")));
        }
        if let Some(q) = &self.quiet_hours
            && q.from == q.to
        {
            errors.push(FieldError::new("/quiet_hours/to", "must differ from `from` (an empty or a whole day)"));
        }
        if errors.is_empty() { Ok(()) } else { Err(ValidationErrors(errors)) }
    }

    /// Whether a notification of `mission` may go out on `channel`.
    pub fn allows(&self, channel: Channel, mission: &str) -> bool {
        !self.opt_out.channels.contains(&channel) && !self.opt_out.missions.contains(mission)
    }
}

/// A daily stretch of local time, `[from, to)`; `from` after `to` spans midnight
/// (`22:00`–`08:00`). Written `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    #[serde(with = "hh_mm")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "22:00"))]
    pub from: Time,
    #[serde(with = "hh_mm")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "08:00"))]
    pub to: Time,
}

impl QuietHours {
    /// Whether a local time of day is quiet.
    pub fn contains(&self, t: Time) -> bool {
        if self.from < self.to { self.from <= t && t < self.to } else { t >= self.from || t < self.to }
    }

    /// When a notification due at `now` may go out: `now` outside quiet hours, else the end
    /// of the quiet stretch it falls in, in `tz` (a `to` that a DST change skips is taken as
    /// the first instant after the gap).
    pub fn release(&self, tz: &TimeZone, now: Timestamp) -> Timestamp {
        let local = now.to_zoned(tz.clone());
        if !self.contains(local.time()) {
            return now;
        }
        let mut date = local.date();
        // Before midnight in a stretch that spans it, the stretch ends tomorrow.
        if self.from > self.to && local.time() >= self.from {
            date = date.tomorrow().unwrap_or(date);
        }
        let end = date.to_datetime(self.to);
        tz.to_ambiguous_timestamp(end).compatible().map(|t| t.max(now)).unwrap_or(now)
    }
}

mod hh_mm {
    use jiff::civil::Time;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(t: &Time, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:02}:{:02}", t.hour(), t.minute()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
        let text = String::deserialize(d)?;
        // Exactly two digits, a colon, two digits; `Time::new` refuses 24:00 and 08:60.
        let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
        let parsed = text
            .split_once(':')
            .filter(|(h, m)| digits(h) && digits(m))
            .and_then(|(h, m)| Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok());
        parsed.ok_or_else(|| D::Error::custom(format!("{text:?} is not a time of day as HH:MM (00:00 to 23:59)")))
    }
}

/// A user's contact points and preferences, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub user_id: String,
    #[serde(default)]
    pub points: ContactPoints,
    #[serde(default)]
    pub preferences: Preferences,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

impl Contact {
    /// A user who gave nothing yet.
    pub fn empty(user_id: &str) -> Self {
        Contact { user_id: user_id.to_owned(), ..Contact::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn quiet(from: &str, to: &str) -> QuietHours {
        serde_json::from_value(serde_json::json!({"from": from, "to": to})).unwrap()
    }

    #[test]
    fn a_stretch_over_midnight_ends_the_next_morning_in_the_users_zone() {
        let q = quiet("22:00", "08:00");
        let kolkata = TimeZone::get("Asia/Kolkata").unwrap();
        // 23:30 IST: quiet until 08:00 IST the next day (02:30 UTC).
        assert_eq!(q.release(&kolkata, ts("2026-12-01T18:00:00Z")), ts("2026-12-02T02:30:00Z"));
        // 05:30 IST: until 08:00 IST the same day.
        assert_eq!(q.release(&kolkata, ts("2026-12-02T00:00:00Z")), ts("2026-12-02T02:30:00Z"));
        // 12:00 IST: not quiet.
        assert_eq!(q.release(&kolkata, ts("2026-12-02T06:30:00Z")), ts("2026-12-02T06:30:00Z"));
        // 08:00 is the first minute allowed; 22:00 the first quiet one.
        assert!(!q.contains(Time::constant(8, 0, 0, 0)) && q.contains(Time::constant(22, 0, 0, 0)));
    }

    #[test]
    fn a_daytime_stretch_ends_the_same_day() {
        let q = quiet("13:00", "14:30");
        assert_eq!(q.release(&TimeZone::UTC, ts("2026-12-01T13:10:00Z")), ts("2026-12-01T14:30:00Z"));
        assert_eq!(q.release(&TimeZone::UTC, ts("2026-12-01T14:30:00Z")), ts("2026-12-01T14:30:00Z"));
    }

    #[test]
    fn an_end_a_dst_change_skips_is_the_first_instant_after_it() {
        // New York springs forward at 02:00 on 2026-03-08: 02:30 never happens that night.
        let q = quiet("01:00", "02:30");
        let ny = TimeZone::get("America/New_York").unwrap();
        let release = q.release(&ny, ts("2026-03-08T06:30:00Z")); // 01:30 EST
        assert_eq!(release, ts("2026-03-08T07:30:00Z")); // 03:30 EDT, the compatible reading
    }

    #[test]
    fn times_are_read_as_hh_mm_only() {
        for bad in ["8:00", "24:00", "08:60", "0800", "08:00:00", "aa:bb", ""] {
            let r: Result<QuietHours, _> = serde_json::from_value(serde_json::json!({"from": bad, "to": "09:00"}));
            assert!(r.is_err(), "{bad:?} was accepted");
        }
        assert_eq!(serde_json::to_value(quiet("07:05", "23:59")).unwrap()["from"], "07:05");
    }

    #[test]
    fn contact_points_are_checked_with_pointers() {
        let points = ContactPoints {
            phone: Some("98765".into()),
            email: Some("not-an-address".into()),
            push_token: Some(String::new()),
            time_zone: Some("Mars/Olympus".into()),
        };
        let pointers: Vec<String> = points.check().unwrap_err().0.into_iter().map(|e| e.pointer).collect();
        assert_eq!(pointers, ["/phone", "/email", "/push_token", "/time_zone"]);
        let good = ContactPoints { phone: Some("+919876543210".into()), ..ContactPoints::default() };
        assert!(good.check().is_ok());
        assert_eq!(good.address(Channel::Whatsapp), Some("+919876543210"));
        assert_eq!(good.address(Channel::Email), None);
    }

    #[test]
    fn preferences_opt_out_by_channel_and_by_mission() {
        let mut p = Preferences::default();
        p.opt_out.channels.insert(Channel::Sms);
        p.opt_out.missions.insert("swiggy-500".into());
        assert!(!p.allows(Channel::Sms, "other"));
        assert!(!p.allows(Channel::Email, "swiggy-500"));
        assert!(p.allows(Channel::Email, "other"));
        p.quiet_hours = Some(QuietHours { from: Time::midnight(), to: Time::midnight() });
        p.opt_out.missions.insert("Not An Id".into());
        let pointers: Vec<String> = p.check().unwrap_err().0.into_iter().map(|e| e.pointer).collect();
        assert_eq!(pointers, ["/opt_out/missions", "/quiet_hours/to"]);
    }

    fn zones() -> impl Strategy<Value = TimeZone> {
        prop::sample::select(vec!["UTC", "Asia/Kolkata", "America/New_York", "Europe/London", "Australia/Lord_Howe"])
            .prop_map(|name| TimeZone::get(name).unwrap())
    }

    proptest! {
        /// A release is never before the notification was due, never inside quiet hours, and
        /// is the due time itself when that is not quiet.
        #[test]
        fn a_release_is_the_first_moment_out_of_quiet_hours(
            from in (0i8..24, 0i8..60), to in (0i8..24, 0i8..60),
            secs in 1_700_000_000i64..1_900_000_000, tz in zones(),
        ) {
            let (from, to) = (Time::constant(from.0, from.1, 0, 0), Time::constant(to.0, to.1, 0, 0));
            prop_assume!(from != to);
            let q = QuietHours { from, to };
            let now = Timestamp::from_second(secs).unwrap();
            let release = q.release(&tz, now);
            prop_assert!(release >= now);
            prop_assert!(!q.contains(release.to_zoned(tz.clone()).time()), "released into quiet hours at {release}");
            if !q.contains(now.to_zoned(tz.clone()).time()) {
                prop_assert_eq!(release, now);
            }
            // At most a day (and a DST hour) later.
            prop_assert!(release.duration_since(now).as_secs() <= 25 * 3600);
        }
    }
}
