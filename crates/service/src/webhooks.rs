//! Webhooks: the registry of a tenant's endpoints, their sealed secrets, and what a
//! `reward.fulfil` delivery's answer does to its reward.
//!
//! A secret (`whsec_` + base64 of 32 random bytes) is shown once, at creation, and stored
//! only sealed: XChaCha20-Poly1305 under the configured 32-byte key, a random nonce per
//! secret, the webhook's id as associated data (so a sealed secret copied onto another row
//! does not open). A database dump alone reveals no secret; without a key no webhook can be
//! created ([`ServiceError::SecretKeyNotConfigured`]).
//!
//! Outbound safety starts here: a URL whose host is a loopback, private, link-local,
//! unique-local or unspecified address (or `localhost`) is refused unless configuration
//! allows private targets; the delivery checks the addresses the host resolves to again
//! ([`is_forbidden_ip`]), since DNS may point anywhere.
//!
//! Delivering is not done here (no HTTP client in the business layer): the worker asks for
//! the tenant's [`Endpoint`], delivers, and reports the answer to
//! [`Service::finish_fulfilment`], which decides the reward in a unit of work that checks it
//! is still pending.

use crate::notify::{Notification, Subscribers, Topic};
use crate::wallet::Settled;
use crate::{Result, Service, ServiceError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use jiff::{Span, SpanRelativeTo};
use questline_core::id::TenantId;
use questline_core::pointer::{FieldError, ValidationErrors};
use questline_core::reward::{Reward, RewardStatus};
use questline_store::webhooks::FULFIL_EVENT;
use questline_store::{StoreError, Webhook};
use rand::Rng;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

/// The event types an endpoint may subscribe to.
pub const EVENT_TYPES: [&str; 5] =
    [FULFIL_EVENT, "reward.granted", "reward.revoked", "reward.failed", "mission.completed"];
/// Webhooks one tenant may have.
pub const MAX_WEBHOOKS: usize = 50;
/// The longest URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// The prefix of a webhook secret (Standard Webhooks).
pub const SECRET_PREFIX: &str = "whsec_";
/// The bounds of a webhook's retry settings.
pub const MAX_ATTEMPTS: u32 = 50;
const MIN_INITIAL: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);
/// The defaults of `retry` (API.md).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
pub const DEFAULT_INITIAL: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX: Duration = Duration::from_secs(3600);
/// Version tag of the sealed form, so that another cipher can come later.
const SEALED_V1: &str = "v1.";

/// The 32-byte key webhook secrets are sealed with. Never printed: `Debug` hides it.
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// The key from its base64 text (standard alphabet, padded or not).
    pub fn from_base64(text: &str) -> std::result::Result<Self, &'static str> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|_| "must be base64")?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| "must be 32 bytes, base64-encoded")?;
        Ok(Self(key))
    }

    /// A new random key.
    pub fn generate() -> Self {
        Self(rand::rng().random())
    }

    /// Its base64 text, to be kept where configuration reads it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// Seals `secret` for the webhook `id`: `v1.` + base64(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, id: &str, secret: &str) -> String {
        let nonce: [u8; 24] = rand::rng().random();
        let sealed = self
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: secret.as_bytes(), aad: id.as_bytes() })
            .expect("XChaCha20-Poly1305 encrypts any message of this size");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{SEALED_V1}{}", STANDARD.encode(out))
    }

    /// The secret sealed for the webhook `id`; `None` if it was sealed under another key, for
    /// another id, or altered.
    pub fn open(&self, id: &str, sealed: &str) -> Option<String> {
        let bytes = STANDARD.decode(sealed.strip_prefix(SEALED_V1)?).ok()?;
        if bytes.len() < 24 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let plain =
            self.cipher().decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: id.as_bytes() }).ok()?;
        String::from_utf8(plain).ok()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

/// What webhooks need from configuration.
#[derive(Debug, Clone, Default)]
pub struct WebhookSettings {
    /// Seals the secrets; without one no webhook can be created.
    pub secret_key: Option<Arc<SecretKey>>,
    /// Lets URLs point at loopback and private addresses (tests, local set-ups).
    pub allow_private_targets: bool,
}

/// A request to create a webhook, as the API takes it (types checked, values not yet).
#[derive(Debug, Clone, Default)]
pub struct WebhookRequest {
    pub url: String,
    pub events: Vec<String>,
    pub retry: Option<RetryRequest>,
}

#[derive(Debug, Clone, Default)]
pub struct RetryRequest {
    pub max_attempts: Option<u32>,
    /// ISO 8601 durations.
    pub initial: Option<String>,
    pub max: Option<String>,
}

/// A new webhook and its secret, which exists nowhere else in the clear.
#[derive(Debug, Clone)]
pub struct CreatedWebhook {
    pub webhook: Webhook,
    pub secret: String,
}

/// Where and how to deliver a tenant's `reward.fulfil`: the webhook and its signing key (the
/// base64-decoded part of the secret after `whsec_`).
#[derive(Clone)]
pub struct Endpoint {
    pub webhook: Webhook,
    pub signing_key: Vec<u8>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint").field("webhook", &self.webhook.id).field("url", &self.webhook.url).finish()
    }
}

impl Service {
    /// Sets what webhooks need from configuration (the key, whether private targets are
    /// allowed).
    pub fn with_webhooks(mut self, settings: WebhookSettings) -> Self {
        self.webhooks = settings;
        self
    }

    /// Whether private targets are allowed (the delivery checks resolved addresses with it).
    pub fn allows_private_targets(&self) -> bool {
        self.webhooks.allow_private_targets
    }

    /// Creates a webhook: its secret is in the answer and, sealed, in the store.
    pub async fn create_webhook(&self, tenant: &TenantId, request: WebhookRequest) -> Result<CreatedWebhook> {
        let valid = validate(request, self.webhooks.allow_private_targets)?;
        let Some(key) = self.webhooks.secret_key.clone() else {
            return Err(ServiceError::SecretKeyNotConfigured);
        };
        let now = self.clock.now();
        let id = generate_id();
        let secret = format!("{SECRET_PREFIX}{}", STANDARD.encode(rand::rng().random::<[u8; 32]>()));
        let webhook = Webhook {
            sealed_secret: key.seal(&id, &secret),
            id,
            url: valid.url,
            events: valid.events,
            max_attempts: valid.max_attempts,
            retry_initial: valid.initial,
            retry_max: valid.max,
            created_at: now,
        };
        let mut unit = self.store.begin().await?;
        let existing = unit.lock_webhooks(tenant, now).await?;
        if existing.len() >= MAX_WEBHOOKS {
            return Err(ServiceError::TooManyWebhooks(MAX_WEBHOOKS));
        }
        if webhook.fulfils()
            && let Some(taken) = existing.iter().find(|w| w.fulfils())
        {
            return Err(ServiceError::FulfilmentEndpointTaken(taken.id.clone()));
        }
        match unit.insert_webhook(tenant, &webhook).await {
            Ok(()) => {}
            // Under the tenant's lock only a taken random id can conflict: astronomically rare.
            Err(StoreError::Conflict(why)) => return Err(ServiceError::Internal(why)),
            Err(e) => return Err(e.into()),
        }
        unit.commit().await?;
        tracing::info!(webhook_id = %webhook.id, events = ?webhook.events, "webhook created");
        Ok(CreatedWebhook { webhook, secret })
    }

    /// Every webhook of the tenant, oldest first (their secrets stay sealed).
    pub async fn list_webhooks(&self, tenant: &TenantId) -> Result<Vec<Webhook>> {
        Ok(self.store.list_webhooks(tenant).await?)
    }

    pub async fn delete_webhook(&self, tenant: &TenantId, id: &str) -> Result<()> {
        // An id no backend can store names no webhook.
        if !questline_core::id::storable(id) {
            return Err(ServiceError::WebhookNotFound(id.to_owned()));
        }
        let mut unit = self.store.begin().await?;
        if !unit.delete_webhook(tenant, id).await? {
            return Err(ServiceError::WebhookNotFound(id.to_owned()));
        }
        unit.commit().await?;
        tracing::info!(webhook_id = %id, "webhook deleted");
        Ok(())
    }

    /// The tenant's `reward.fulfil` endpoint with its signing key, if it has one.
    pub async fn fulfilment_endpoint(&self, tenant: &TenantId) -> Result<Option<Endpoint>> {
        let webhook = self.store.fulfilment_webhook(tenant).await?;
        webhook.map(|w| self.endpoint(w)).transpose()
    }

    /// One webhook of the tenant with its signing key, if it still exists.
    pub async fn webhook_endpoint(&self, tenant: &TenantId, id: &str) -> Result<Option<Endpoint>> {
        let webhook = self.store.webhook(tenant, id).await?;
        webhook.map(|w| self.endpoint(w)).transpose()
    }

    /// Opens a webhook's sealed secret into its signing key.
    fn endpoint(&self, webhook: Webhook) -> Result<Endpoint> {
        let Some(key) = &self.webhooks.secret_key else {
            return Err(ServiceError::SecretKeyNotConfigured);
        };
        let secret = key.open(&webhook.id, &webhook.sealed_secret).ok_or_else(|| {
            ServiceError::Internal(format!(
                "the secret of webhook {} does not open with the configured key (was QUESTLINE_SECRET_KEY changed?)",
                webhook.id
            ))
        })?;
        let signing_key = secret
            .strip_prefix(SECRET_PREFIX)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .ok_or_else(|| ServiceError::Internal(format!("the secret of webhook {} is malformed", webhook.id)))?;
        Ok(Endpoint { webhook, signing_key })
    }

    /// A reward as it stands, for a delivery's body. Read under the reward's lock in a unit
    /// that writes nothing (rolled back at once), so what it shows was committed.
    pub async fn reward(&self, tenant: &TenantId, reward_id: &str) -> Result<Option<Reward>> {
        let mut unit = self.store.begin().await?;
        Ok(unit.lock_rewards(tenant, &[reward_id.to_owned()]).await?.pop())
    }

    /// Decides a cash or voucher reward from its fulfilment endpoint's answer: `Ok` grants it,
    /// `Err(reason)` fails it with the reason; `attempts` is how many deliveries were made.
    /// In one unit of work that locks the reward and changes it only while it is pending (a
    /// reversal may have revoked it meanwhile: then nothing changes).
    pub async fn finish_fulfilment(
        &self,
        tenant: &TenantId,
        reward_id: &str,
        result: std::result::Result<(), String>,
        attempts: u32,
    ) -> Result<Settled> {
        let now = self.clock.now();
        let mut unit = self.store.begin().await?;
        let Some(mut reward) = unit.lock_rewards(tenant, &[reward_id.to_owned()]).await?.pop() else {
            return Ok(Settled::NotFound);
        };
        if reward.status != RewardStatus::Pending {
            return Ok(Settled::AlreadyDone(reward.status));
        }
        let (settled, topic) = match result {
            Ok(()) => {
                reward.status = RewardStatus::Granted;
                reward.failure = None;
                (Settled::Granted, Topic::RewardGranted)
            }
            Err(reason) => {
                reward.status = RewardStatus::Failed;
                reward.failure = Some(reason);
                (Settled::AlreadyDone(RewardStatus::Failed), Topic::RewardFailed)
            }
        };
        reward.attempts = reward.attempts.max(attempts);
        reward.settled_at = Some(now);
        reward.updated_at = now;
        unit.save_settlements(tenant, std::slice::from_ref(&reward)).await?;
        let jobs = self.jobs.as_deref();
        let subscribers = Subscribers::of(jobs, &mut *unit, tenant).await?;
        if subscribers.want(topic) {
            let notification = Notification::of_reward(topic, &reward, now);
            subscribers.send(jobs, &mut *unit, tenant, vec![notification], now).await?;
        }
        if let Some(jobs) = jobs
            && reward.status == RewardStatus::Granted
        {
            let due = crate::notices::of_rewards(&mut *unit, tenant, &[&reward], now).await?;
            if !due.is_empty() {
                jobs.enqueue_notices(&mut *unit, tenant, due, now).await?;
            }
        }
        unit.commit().await?;
        Ok(settled)
    }
}

/// A request's valid values.
struct Valid {
    url: String,
    events: Vec<String>,
    max_attempts: u32,
    initial: Duration,
    max: Duration,
}

fn validate(request: WebhookRequest, allow_private: bool) -> std::result::Result<Valid, ValidationErrors> {
    let mut errors = Vec::new();
    if let Err(why) = check_url(&request.url, allow_private) {
        errors.push(FieldError::new("/url", why));
    }
    if request.events.is_empty() {
        errors.push(FieldError::new("/events", "must name at least one event type"));
    }
    for (i, event) in request.events.iter().enumerate() {
        if !EVENT_TYPES.contains(&event.as_str()) {
            errors.push(FieldError::new(format!("/events/{i}"), format!("must be one of {}", EVENT_TYPES.join(", "))));
        } else if request.events[..i].contains(event) {
            errors.push(FieldError::new(format!("/events/{i}"), format!("{event} is listed twice")));
        }
    }
    let retry = request.retry.unwrap_or_default();
    let max_attempts = retry.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    if !(1..=MAX_ATTEMPTS).contains(&max_attempts) {
        errors.push(FieldError::new("/retry/max_attempts", format!("must be from 1 to {MAX_ATTEMPTS}")));
    }
    let initial = match retry.initial.as_deref().map(parse_duration).transpose() {
        Ok(d) => d.unwrap_or(DEFAULT_INITIAL),
        Err(why) => {
            errors.push(FieldError::new("/retry/initial", why));
            DEFAULT_INITIAL
        }
    };
    if initial < MIN_INITIAL || initial > MAX_DELAY {
        errors.push(FieldError::new("/retry/initial", "must be from 1 second (PT1S) to 7 days (P7D)"));
    }
    let max = match retry.max.as_deref().map(parse_duration).transpose() {
        Ok(d) => d.unwrap_or(DEFAULT_MAX.max(initial)),
        Err(why) => {
            errors.push(FieldError::new("/retry/max", why));
            DEFAULT_MAX
        }
    };
    if max < initial || max > MAX_DELAY {
        errors.push(FieldError::new("/retry/max", "must be at least `initial` and at most 7 days (P7D)"));
    }
    if !errors.is_empty() {
        return Err(ValidationErrors(errors));
    }
    Ok(Valid { url: request.url, events: request.events, max_attempts, initial, max })
}

/// An ISO 8601 duration of days, hours, minutes and seconds (`PT10S`, `P1D`), to the
/// millisecond.
fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    const WHY: &str = "an ISO 8601 duration of days, hours, minutes or seconds, e.g. PT10S or PT1H";
    let span: Span = text.parse().map_err(|_| WHY.to_owned())?;
    if span.is_negative() {
        return Err(WHY.to_owned());
    }
    let signed = span.to_duration(SpanRelativeTo::days_are_24_hours()).map_err(|_| WHY.to_owned())?;
    let d = Duration::try_from(signed).map_err(|_| WHY.to_owned())?;
    // Stored to the millisecond: what is accepted is what is kept.
    Ok(Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}

/// Why `text` is not an acceptable webhook URL: absolute `http(s)`, at most
/// [`MAX_URL_LEN`] bytes, and (unless `allow_private`) not aimed at a loopback, private,
/// link-local, unique-local or unspecified address, nor at `localhost`.
pub fn check_url(text: &str, allow_private: bool) -> std::result::Result<url::Url, String> {
    if text.len() > MAX_URL_LEN {
        return Err(format!("must be at most {MAX_URL_LEN} bytes"));
    }
    let url = url::Url::parse(text).map_err(|e| format!("must be an absolute http or https URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".to_owned());
    }
    let Some(host) = url.host() else {
        return Err("must name a host".to_owned());
    };
    if !allow_private {
        let private = match host {
            url::Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                name == "localhost" || name.ends_with(".localhost")
            }
            url::Host::Ipv4(ip) => is_forbidden_ip(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => is_forbidden_ip(IpAddr::V6(ip)),
        };
        if private {
            return Err("must not point at a loopback, private, link-local or unspecified address \
                 (QUESTLINE_ALLOW_PRIVATE_TARGETS=true allows it)"
                .to_owned());
        }
    }
    Ok(url)
}

/// Whether a delivery must not go to `ip`: loopback, private, shared (CGNAT), link-local,
/// unique-local, unspecified, broadcast or multicast, IPv4-mapped IPv6 included.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated, still private)
                || is_v4_compatible_private(v6)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0 // "this network" 0.0.0.0/8
        || (a == 100 && (b & 0xc0) == 64) // shared address space 100.64.0.0/10
}

/// `::a.b.c.d` (deprecated IPv4-compatible form) of a forbidden IPv4 address.
fn is_v4_compatible_private(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    s[..6].iter().all(|&x| x == 0)
        && forbidden_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8))
}

fn generate_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..16).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("wh_{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_id() {
        let key = SecretKey::generate();
        let sealed = key.seal("wh_1", "whsec_c2VjcmV0");
        assert!(!sealed.contains("whsec_") && !sealed.contains("c2VjcmV0"), "{sealed}");
        assert_ne!(sealed, key.seal("wh_1", "whsec_c2VjcmV0"), "a nonce per seal");
        assert_eq!(key.open("wh_1", &sealed).as_deref(), Some("whsec_c2VjcmV0"));
        assert_eq!(key.open("wh_2", &sealed), None, "bound to the webhook's id");
        assert_eq!(SecretKey::generate().open("wh_1", &sealed), None, "another key");
        assert_eq!(key.open("wh_1", "v1.AAAA"), None);
        let again = SecretKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(again.open("wh_1", &sealed).as_deref(), Some("whsec_c2VjcmV0"));
        assert!(SecretKey::from_base64("c2hvcnQ=").is_err());
        assert_eq!(format!("{key:?}"), "SecretKey(…)");
    }

    #[test]
    fn private_and_special_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
        ] {
            assert!(is_forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "172.32.0.1"] {
            assert!(!is_forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_absolute_http_and_public_unless_allowed() {
        for url in [
            "https://example.com/hook",
            "http://example.com:8080/a?b=c",
            "https://93.184.216.34/",
            "https://[2606:4700::1111]/",
        ] {
            assert!(check_url(url, false).is_ok(), "{url}");
        }
        for url in [
            "ftp://example.com/",
            "/relative",
            "https://localhost/",
            "http://api.localhost./",
            "http://127.0.0.1:9/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::1]/",
            "http://[::ffff:192.168.0.1]/",
            "http://10.0.0.1/",
            "http://[fd00::1]/",
            "http://0.0.0.0/",
        ] {
            assert!(check_url(url, false).is_err(), "{url}");
        }
        assert!(check_url("http://127.0.0.1:9/", true).is_ok());
        assert!(check_url(&format!("https://example.com/{}", "a".repeat(MAX_URL_LEN)), true).is_err());
    }

    #[test]
    fn retry_durations_are_bounded() {
        let request = |initial: &str, max: &str, attempts: u32| WebhookRequest {
            url: "https://example.com/".into(),
            events: vec!["reward.fulfil".into()],
            retry: Some(RetryRequest {
                max_attempts: Some(attempts),
                initial: Some(initial.into()),
                max: Some(max.into()),
            }),
        };
        let ok = validate(request("PT1S", "PT2S", 3), false).unwrap();
        assert_eq!((ok.initial, ok.max, ok.max_attempts), (Duration::from_secs(1), Duration::from_secs(2), 3));
        let pointers = |r| validate(r, false).err().unwrap().0.into_iter().map(|e| e.pointer).collect::<Vec<_>>();
        assert_eq!(pointers(request("PT0.5S", "PT2S", 3)), ["/retry/initial"]);
        assert_eq!(pointers(request("PT10S", "PT2S", 3)), ["/retry/max"]);
        assert_eq!(pointers(request("PT1S", "P8D", 0)), ["/retry/max_attempts", "/retry/max"]);
        assert_eq!(pointers(request("soon", "P1M", 51)), ["/retry/max_attempts", "/retry/initial", "/retry/max"]);
        let defaults = validate(WebhookRequest { retry: None, ..request("", "", 1) }, false).unwrap();
        assert_eq!((defaults.initial, defaults.max, defaults.max_attempts), (DEFAULT_INITIAL, DEFAULT_MAX, 8));
    }
}
