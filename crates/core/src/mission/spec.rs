//! The mission definition exactly as the API accepts and returns it. Unknown fields are
//! rejected everywhere (`deny_unknown_fields`) so that a typo never passes silently.

use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A stored mission: its rules plus lifecycle fields that only the service sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Mission {
    pub id: String,
    pub status: MissionStatus,
    #[serde(flatten)]
    pub spec: MissionSpec,
    /// How many rewards have been granted so far, counted against `budget.max_rewards`.
    pub rewards_granted: u64,
    /// When the mission first became active; from then on its rules are immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<Timestamp>,
    /// When it was active: an event counts for the mission only if it was received then.
    #[serde(default)]
    pub active_periods: Vec<ActivePeriod>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A stretch of time during which a mission was active, `[from, until)`; open while it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActivePeriod {
    pub from: Timestamp,
    pub until: Option<Timestamp>,
}

impl ActivePeriod {
    pub fn contains(&self, t: Timestamp) -> bool {
        self.from <= t && self.until.is_none_or(|u| t < u)
    }
}

impl Mission {
    /// The periods it was active, with an open period closed at the last change if the
    /// mission is no longer active (a spent budget ends a mission without touching the list).
    pub fn effective_periods(&self) -> Vec<ActivePeriod> {
        let mut periods = self.active_periods.clone();
        if self.status != MissionStatus::Active {
            for p in periods.iter_mut().filter(|p| p.until.is_none()) {
                p.until = Some(self.updated_at);
            }
        }
        periods
    }

    /// Records a status change at `now`: opens or closes an active period.
    pub fn set_status(&mut self, status: MissionStatus, now: Timestamp) {
        let was_active = self.status == MissionStatus::Active;
        let is_active = status == MissionStatus::Active;
        if is_active && !was_active {
            self.activated_at.get_or_insert(now);
            self.active_periods.push(ActivePeriod { from: now, until: None });
        } else if was_active && !is_active {
            for p in self.active_periods.iter_mut().filter(|p| p.until.is_none()) {
                p.until = Some(now);
            }
        }
        self.status = status;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MissionStatus {
    Draft,
    Active,
    Paused,
    Ended,
}

impl MissionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Ended => "ended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => Self::Draft,
            "active" => Self::Active,
            "paused" => Self::Paused,
            "ended" => Self::Ended,
            _ => return None,
        })
    }
}

/// What a product team writes: everything but identity and lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MissionSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Read by [`crate::time::parse`]: any RFC 3339 timestamp, in questline's range.
    #[serde(default, deserialize_with = "crate::time::option", skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "crate::time::option", skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowSpec>,
    pub steps: Vec<StepSpec>,
    #[serde(default)]
    pub sequential: bool,
    #[serde(default)]
    pub repeat: RepeatSpec,
    pub reward: RewardSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSpec>,
    /// Messages to the user on milestones, completion, rewards, a window about to lapse.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<super::notice::NotificationSpec>,
}

/// Plain struct, not a tagged enum: serde buffers tagged enums through a representation that
/// loses `arbitrary_precision` numbers, and the kinds are few enough to check by hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    pub kind: WindowKind,
    /// ISO 8601 duration, for `rolling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// `day`, `week` (starting Monday) or `month`, for `calendar`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<CalendarPeriod>,
    /// IANA time zone name, for `calendar` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    Rolling,
    Calendar,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CalendarPeriod {
    Day,
    Week,
    Month,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub event_type: String,
    #[serde(default)]
    pub filters: Vec<FilterSpec>,
    #[serde(default)]
    pub aggregate: AggregateSpec,
    /// A JSON number a `Decimal` holds exactly ([`crate::decimal::exact`]), not a string.
    #[serde(deserialize_with = "crate::decimal::exact")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub target: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// Dotted path into the event's attributes, e.g. `card.network`.
    pub field: String,
    pub op: FilterOp,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    NotIn,
    Contains,
    StartsWith,
    Exists,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AggregateSpec {
    #[serde(default, rename = "fn")]
    pub function: AggregateFn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `streak`: the time zone whose calendar days count (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AggregateFn {
    #[default]
    Count,
    Sum,
    Distinct,
    Streak,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RepeatSpec {
    /// How many times one user may complete the mission; `null` for unlimited.
    #[serde(default = "one")]
    pub max_completions: Option<u32>,
}

impl Default for RepeatSpec {
    fn default() -> Self {
        Self { max_completions: one() }
    }
}

fn one() -> Option<u32> {
    Some(1)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RewardSpec {
    pub kind: RewardKind,
    /// Fixed amount (cash, points, coins).
    #[serde(default, deserialize_with = "crate::decimal::exact_option", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub amount: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Cashback: this percent of the completing step's sum…
    #[serde(default, deserialize_with = "crate::decimal::exact_option", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub percent: Option<Decimal>,
    /// …capped at this amount.
    #[serde(default, deserialize_with = "crate::decimal::exact_option", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub cap: Option<Decimal>,
    /// A voucher's code, or the entitlement a badge or an unlock grants (default: the
    /// mission id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Badge name or the entitlement an `unlock` grants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How long an earned reward waits before it is settled (ISO 8601, e.g. `PT24H`; none:
    /// at once). During the hold a reversal that takes the completion back revokes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    /// Points and coins only: how long the credited amount lasts once settled (ISO 8601,
    /// e.g. `P90D`; none: forever). What is left of it then is taken back, the oldest credit
    /// spent first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RewardKind {
    Cash,
    Points,
    Coins,
    Voucher,
    GiftCard,
    Badge,
    Unlock,
}

impl RewardKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cash => "cash",
            Self::Points => "points",
            Self::Coins => "coins",
            Self::Voucher => "voucher",
            Self::GiftCard => "gift_card",
            Self::Badge => "badge",
            Self::Unlock => "unlock",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    pub max_rewards: u64,
}
