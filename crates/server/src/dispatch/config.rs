//! Providers and message templates, as the configuration file declares them
//! (API.md, "Messages and providers"), and the checks that fail a start naming the entry
//! at fault.

use questline_core::message::Channel;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Providers a deployment may declare at most.
pub const MAX_PROVIDERS: usize = 64;
/// Limits one provider may declare at most.
pub const MAX_LIMITS: usize = 8;

/// One `[[providers]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// 1 to 64 of a-z, 0-9, `-` and `_`: how messages, metrics and `/v1/providers` name it.
    pub name: String,
    pub channels: Vec<Channel>,
    pub kind: ProviderKind,
    /// `http`: the endpoint messages are POSTed to. `smtp`: `smtp://host:port`.
    pub url: String,
    /// `http`: headers sent with every request (e.g. `Authorization`); never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `http`: the JSON body, with JSON-escaped placeholders: `{{to}}`, `{{body}}`, `{{id}}`,
    /// `{{subject}}`, `{{channel}}`, `{{user_id}}`.
    pub body: Option<String>,
    /// `smtp`: the sender address.
    pub from: Option<String>,
    /// Requests allowed per window (ISO 8601 durations), all enforced together.
    pub limits: Vec<LimitConfig>,
    pub price: PriceConfig,
    pub commitment: Option<CommitmentConfig>,
    /// How long a request may take (ISO 8601; default PT10S).
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Http,
    Smtp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    pub requests: u32,
    pub per: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub per_message: Option<Decimal>,
    pub fixed_monthly: Option<Decimal>,
    pub capacity_monthly: Option<u64>,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitmentConfig {
    pub monthly: u64,
}

/// One `[[templates]]` entry: a body, and for e-mail a subject (MiniJinja syntax).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    pub name: String,
    pub body: String,
    pub subject: Option<String>,
}

/// An ISO 8601 duration (`PT1S`, `PT1M`, `PT0.5S`) of at least a millisecond.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration =
        text.parse().map_err(|_| format!("{text:?} is not an ISO 8601 duration such as PT1S or PT1M"))?;
    let d = Duration::try_from(d).map_err(|_| format!("{text:?} is negative"))?;
    if d < Duration::from_millis(1) {
        return Err(format!("{text:?} is shorter than a millisecond"));
    }
    Ok(d)
}

/// Checks the providers and templates; the error names the entry and key at fault.
pub fn validate(providers: &[ProviderConfig], templates: &[TemplateConfig]) -> Result<(), String> {
    if providers.len() > MAX_PROVIDERS {
        return Err(format!("providers: at most {MAX_PROVIDERS}"));
    }
    let mut names = BTreeSet::new();
    for (i, p) in providers.iter().enumerate() {
        let at = |key: &str| format!("providers[{i}] ({:?}).{key}", p.name);
        let name_ok = (1..=64).contains(&p.name.len())
            && p.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(format!("{}: 1 to 64 of a-z, 0-9, '-' and '_'", at("name")));
        }
        if !names.insert(p.name.as_str()) {
            return Err(format!("{}: another provider has this name", at("name")));
        }
        if p.channels.is_empty() {
            return Err(format!("{}: at least one channel", at("channels")));
        }
        match p.kind {
            ProviderKind::Http => {
                url::Url::parse(&p.url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                    .ok_or_else(|| format!("{}: an absolute http(s) URL", at("url")))?;
                let body = p.body.as_deref().ok_or_else(|| format!("{}: required for an http provider", at("body")))?;
                super::http::BodyTemplate::new(body).map_err(|e| format!("{}: {e}", at("body")))?;
                if p.from.is_some() {
                    return Err(format!("{}: only for smtp providers", at("from")));
                }
            }
            ProviderKind::Smtp => {
                super::smtp::SmtpTarget::parse(&p.url).map_err(|e| format!("{}: {e}", at("url")))?;
                let from = p.from.as_deref().ok_or_else(|| format!("{}: required for an smtp provider", at("from")))?;
                if !questline_core::message::is_email(from) {
                    return Err(format!("{}: not an e-mail address", at("from")));
                }
                if p.channels != [Channel::Email] {
                    return Err(format!("{}: an smtp provider sends e-mail only", at("channels")));
                }
                if p.body.is_some() || !p.headers.is_empty() {
                    return Err(format!("{}: body and headers are for http providers", at("kind")));
                }
            }
        }
        if p.limits.is_empty() || p.limits.len() > MAX_LIMITS {
            return Err(format!(
                "{}: 1 to {MAX_LIMITS} limits (a provider without one cannot be kept under it)",
                at("limits")
            ));
        }
        for (j, limit) in p.limits.iter().enumerate() {
            if limit.requests == 0 {
                return Err(format!("{}: at least 1", at(&format!("limits[{j}].requests"))));
            }
            let per = parse_duration(&limit.per).map_err(|e| format!("{}: {e}", at(&format!("limits[{j}].per"))))?;
            if per > Duration::from_secs(31 * 24 * 3600) {
                return Err(format!("{}: at most 31 days", at(&format!("limits[{j}].per"))));
            }
        }
        let price = &p.price;
        let currency_ok = price.currency.len() == 3 && price.currency.bytes().all(|b| b.is_ascii_uppercase());
        if !currency_ok {
            return Err(format!("{}: an ISO 4217 code such as INR", at("price.currency")));
        }
        match (price.per_message, price.fixed_monthly, price.capacity_monthly) {
            (Some(per), None, None) if per >= Decimal::ZERO => {}
            (None, Some(fee), Some(cap)) if fee >= Decimal::ZERO && cap > 0 => {
                if p.commitment.is_some() {
                    return Err(format!(
                        "{}: a fixed-price provider has a capacity, not a commitment",
                        at("commitment")
                    ));
                }
            }
            _ => {
                return Err(format!(
                    "{}: either per_message (at least 0), or fixed_monthly (at least 0) with capacity_monthly (at least 1)",
                    at("price")
                ));
            }
        }
        if p.commitment.as_ref().is_some_and(|c| c.monthly == 0) {
            return Err(format!("{}: at least 1", at("commitment.monthly")));
        }
        if let Some(t) = &p.timeout {
            let d = parse_duration(t).map_err(|e| format!("{}: {e}", at("timeout")))?;
            if d > Duration::from_secs(120) {
                return Err(format!("{}: at most PT2M", at("timeout")));
            }
        }
    }
    let specs: Vec<_> = templates.iter().map(TemplateConfig::spec).collect();
    questline_service::messages::MessageSettings::new(&specs, []).map_err(|e| format!("templates: {e}"))?;
    Ok(())
}

impl TemplateConfig {
    pub fn spec(&self) -> questline_service::messages::TemplateSpec {
        questline_service::messages::TemplateSpec {
            name: self.name.clone(),
            body: self.body.clone(),
            subject: self.subject.clone(),
        }
    }
}
