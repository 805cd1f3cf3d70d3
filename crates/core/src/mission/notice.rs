//! Notifications a mission declares: on a progress milestone, on completion, on a reward
//! granted, or when a window is about to lapse unfinished; each with a channel and a
//! template. The engine decides when one is due ([`crate::batch::Effect`]); the service
//! renders it for the user, honouring their preferences ([`crate::contact`]).

use crate::message::Channel;
use crate::pointer::FieldError;
use jiff::Span;
use serde::{Deserialize, Serialize};

/// The most notifications one mission may declare.
pub const MAX_NOTIFICATIONS: usize = 10;

/// What fires a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NotifyOn {
    /// Progress reaching `at_percent` of the target (the mean over steps, each capped at its
    /// target), once per attempt and window.
    Progress,
    Completed,
    RewardGranted,
    /// `before` the end of a window the user has progress in and has not completed.
    WindowLapsing,
}

/// A notification as the API accepts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NotificationSpec {
    pub on: NotifyOn,
    /// `progress`: 1 to 99.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_percent: Option<u8>,
    /// `window_lapsing`: an ISO 8601 duration, e.g. PT12H.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// sms, email, push, whatsapp or ivr.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub channel: Channel,
    /// A template of the deployment's configuration.
    pub template: String,
}

/// A notification compiled: when it fires, where it goes.
#[derive(Debug, Clone)]
pub struct Notice {
    /// Its index in the mission's list: part of each message's id.
    pub index: usize,
    pub trigger: Trigger,
    pub channel: Channel,
    pub template: String,
}

/// (No `PartialEq`: a [`Span`] has none, since `PT60M` and `PT1H` are the same span or not
/// depending on what one asks.)
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    /// At this percent of the target.
    Progress(u8),
    Completed,
    RewardGranted,
    /// This long before the window ends.
    WindowLapsing(Span),
}

/// Whether `name` may name a template: `[a-z0-9_.-]{1,64}`.
pub fn is_template_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

/// Compiles a mission's notifications; `windowed`: the mission has a window to lapse.
pub(super) fn compile(specs: &[NotificationSpec], windowed: bool, errors: &mut Vec<FieldError>) -> Vec<Notice> {
    if specs.len() > MAX_NOTIFICATIONS {
        errors.push(FieldError::new("/notifications", format!("at most {MAX_NOTIFICATIONS} notifications")));
        return Vec::new();
    }
    let mut notices = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let mut err = |field: &str, detail: &str| {
            errors.push(FieldError::new(format!("/notifications/{index}/{field}"), detail));
        };
        if !is_template_name(&spec.template) {
            err("template", "must be a template name, [a-z0-9_.-]{1,64}");
        }
        if spec.on != NotifyOn::Progress && spec.at_percent.is_some() {
            err("at_percent", "only progress notifications have a percent");
        }
        if spec.on != NotifyOn::WindowLapsing && spec.before.is_some() {
            err("before", "only window_lapsing notifications have `before`");
        }
        let trigger = match spec.on {
            NotifyOn::Completed => Some(Trigger::Completed),
            NotifyOn::RewardGranted => Some(Trigger::RewardGranted),
            NotifyOn::Progress => match spec.at_percent {
                Some(p @ 1..=99) => Some(Trigger::Progress(p)),
                Some(_) => {
                    err("at_percent", "must be 1 to 99 (100 is `completed`)");
                    None
                }
                None => {
                    err("at_percent", "required for a progress notification, e.g. 50");
                    None
                }
            },
            NotifyOn::WindowLapsing => {
                if !windowed {
                    err("on", "the mission has no window to lapse");
                }
                match spec.before.as_deref().map(|text| (text, text.parse::<Span>())) {
                    Some((text, Ok(span))) if span.is_positive() && text.starts_with('P') => {
                        Some(Trigger::WindowLapsing(span))
                    }
                    Some(_) => {
                        err("before", "must be a positive ISO 8601 duration, e.g. PT12H");
                        None
                    }
                    None => {
                        err("before", "required for window_lapsing, e.g. PT12H");
                        None
                    }
                }
            }
        };
        if let Some(trigger) = trigger {
            notices.push(Notice { index, trigger, channel: spec.channel, template: spec.template.clone() });
        }
    }
    notices
}

#[cfg(test)]
mod tests {
    use crate::mission::CompiledMission;
    use serde_json::json;

    fn pointers(notifications: serde_json::Value, window: Option<serde_json::Value>) -> Vec<String> {
        let mut spec = json!({"name": "n", "steps": [{"event_type": "login", "target": 3}],
                              "reward": {"kind": "badge"}, "notifications": notifications});
        if let Some(w) = window {
            spec["window"] = w;
        }
        let spec = serde_json::from_value(spec).unwrap();
        match CompiledMission::compile("m", &spec) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.into_iter().map(|e| e.pointer).collect(),
        }
    }

    #[test]
    fn each_notification_is_checked_where_it_is() {
        let bad = json!([
            {"on": "progress", "channel": "sms", "template": "a"},
            {"on": "progress", "at_percent": 100, "channel": "sms", "template": "a"},
            {"on": "completed", "at_percent": 10, "channel": "sms", "template": "Bad Name"},
            {"on": "window_lapsing", "channel": "push", "template": "a"},
            {"on": "window_lapsing", "before": "-PT1H", "channel": "push", "template": "a"},
        ]);
        assert_eq!(
            pointers(bad, None),
            [
                "/notifications/0/at_percent",
                "/notifications/1/at_percent",
                "/notifications/2/template",
                "/notifications/2/at_percent",
                "/notifications/3/on",
                "/notifications/3/before",
                "/notifications/4/on",
                "/notifications/4/before",
            ]
        );
        let good = json!([
            {"on": "progress", "at_percent": 50, "channel": "sms", "template": "half"},
            {"on": "completed", "channel": "email", "template": "done"},
            {"on": "reward_granted", "channel": "push", "template": "won"},
            {"on": "window_lapsing", "before": "PT12H", "channel": "whatsapp", "template": "hurry"},
        ]);
        assert_eq!(pointers(good, Some(json!({"kind": "rolling", "duration": "P7D"}))), Vec::<String>::new());
        let many: Vec<_> = (0..11).map(|_| json!({"on": "completed", "channel": "sms", "template": "a"})).collect();
        assert_eq!(pointers(json!(many), None), ["/notifications"]);
    }
}
