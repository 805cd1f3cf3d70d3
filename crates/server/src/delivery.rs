//! Delivering a webhook: one signed `POST` (Standard Webhooks), and what its answer means.
//!
//! Headers: `webhook-id` (stable across every attempt of one delivery, also sent as
//! `Idempotency-Key`), `webhook-timestamp` (Unix seconds of this attempt) and
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
//!
//! Outbound safety: redirects are not followed; each attempt times out after
//! [`TIMEOUT`]; unless private targets are allowed, a URL naming a private address or
//! `localhost` is refused before connecting, and the resolver refuses a host any of whose
//! addresses is private ([`GuardedResolver`]): the addresses checked are the ones connected
//! to, so DNS cannot point a checked name elsewhere in between.
//!
//! The answer is sorted into what a retry can help with and what it cannot, without a
//! wildcard: 2xx delivered; 408, 429, 5xx, 3xx (not followed), timeouts and failed
//! connections retry (`Retry-After` honoured); any other 4xx is final.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use questline_service::webhooks::{Endpoint, check_url, is_forbidden_ip};
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The longest one attempt may take, connecting included.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a refusing answer's body a failure reason quotes.
const QUOTED_BODY: usize = 200;
/// The longest `Retry-After` honoured: the longest retry delay a webhook may configure.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A 2xx.
    Delivered,
    /// A retry cannot help (a 4xx other than 408 and 429): the reason.
    Refused(String),
    /// A retry may help: the reason, and how long the endpoint asked to wait, if it did.
    Failed { reason: String, retry_after: Option<Duration> },
}

/// Sends webhook deliveries; one per process, sharing its connections.
#[derive(Clone)]
pub struct Deliverer {
    client: reqwest::Client,
    allow_private: bool,
}

impl Deliverer {
    pub fn new(allow_private: bool) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .user_agent(concat!("questline-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .build()
            .expect("the webhook HTTP client builds (rustls with its bundled roots)");
        Self { client, allow_private }
    }

    /// One attempt of the delivery `msg_id` of `body` to `endpoint`, signed at this instant.
    pub async fn deliver(&self, endpoint: &Endpoint, msg_id: &str, body: &[u8]) -> Answer {
        let url = match check_url(&endpoint.webhook.url, self.allow_private) {
            Ok(url) => url,
            Err(why) => return Answer::Failed { reason: format!("the webhook URL {why}"), retry_after: None },
        };
        let timestamp = jiff::Timestamp::now().as_second();
        let signature = sign(&endpoint.signing_key, msg_id, timestamp, body);
        let request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", msg_id)
            .header("idempotency-key", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec());
        match request.send().await {
            Ok(response) => classify(response).await,
            Err(e) => Answer::Failed { reason: describe(&e), retry_after: None },
        }
    }
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

async fn classify(mut response: reqwest::Response) -> Answer {
    let status = response.status();
    if status.is_success() {
        return Answer::Delivered;
    }
    let code = status.as_u16();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(retry_after);
    let mut quoted = Vec::new();
    while quoted.len() < QUOTED_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => quoted.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    quoted.truncate(QUOTED_BODY);
    let text = String::from_utf8_lossy(&quoted);
    let text = text.trim();
    let reason = if text.is_empty() {
        format!("the endpoint answered {code}")
    } else {
        format!("the endpoint answered {code}: {text}")
    };
    if status.is_client_error() && code != 408 && code != 429 {
        Answer::Refused(reason)
    } else if status.is_redirection() {
        Answer::Failed { reason: format!("{reason} (redirects are not followed)"), retry_after }
    } else {
        Answer::Failed { reason, retry_after }
    }
}

/// `Retry-After`: seconds, or an HTTP date (RFC 9110), as a wait from now.
pub(crate) fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = jiff::fmt::rfc2822::DateTimeParser::new().parse_timestamp(value).ok()?;
            at.duration_since(jiff::Timestamp::now()).try_into().unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// A transport failure's reason, with its causes (e.g. the resolver's refusal).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("the endpoint did not answer within {} s", TIMEOUT.as_secs());
    }
    let mut reason = if e.is_connect() { "could not connect".to_owned() } else { "the request failed".to_owned() };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

/// Resolves a host with the system's resolver and refuses it if any of its addresses is
/// private (unless private targets are allowed).
pub(crate) struct GuardedResolver {
    pub(crate) allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private && let Some(bad) = addrs.iter().find(|a| is_forbidden_ip(a.ip())) {
                let why = format!("{host} resolves to {}, a private or special address", bad.ip());
                return Err(why.into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        assert_eq!(retry_after("1"), Some(Duration::from_secs(1)));
        assert_eq!(retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("999999999999"), Some(MAX_RETRY_AFTER));
        let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30);
        let date = jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&soon).unwrap();
        let wait = retry_after(&date).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30), "{date}: {wait:?}");
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO), "a date past");
        assert_eq!(retry_after("soon"), None);
    }

    #[test]
    fn the_signature_is_standard_webhooks() {
        // The example of the Standard Webhooks specification's reference implementations.
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
