//! The generic HTTP JSON provider: a body from a template whose placeholders are replaced by
//! JSON values (so `"text": {{body}}` stays valid JSON whatever the message says), POSTed
//! with the configured headers. 2xx: sent. 429: slow down (`Retry-After` honoured). 408,
//! 5xx, timeouts and connection failures: a retry may help. Any other 4xx: it cannot.

use super::Answer;
use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use questline_core::message::Message;
use serde_json::json;
use std::fmt::Write as _;
use std::time::Duration;

/// The most of a provider's answer kept in an attempt's detail.
const QUOTED_BODY: usize = 300;

/// A provider body template: every `{{ expression }}` is written as JSON.
#[derive(Debug)]
pub struct BodyTemplate {
    env: Environment<'static>,
}

impl BodyTemplate {
    pub fn new(source: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_formatter(|out, _state, value| {
            let json = serde_json::to_string(value)
                .map_err(|e| minijinja::Error::new(ErrorKind::BadSerialization, e.to_string()))?;
            out.write_str(&json).map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "write failed"))
        });
        env.add_template_owned("body", source.to_owned()).map_err(|e| e.to_string())?;
        let template = Self { env };
        // A template that names anything but the placeholders fails the start, not a send.
        let sample =
            json!({"id": "m", "to": "+10000000000", "body": "b", "subject": null, "channel": "sms", "user_id": null});
        let rendered = template.render_value(&sample)?;
        serde_json::from_str::<serde_json::Value>(&rendered)
            .map_err(|e| format!("does not render to JSON (placeholders are written as JSON values: {e})"))?;
        Ok(template)
    }

    fn render_value(&self, context: &serde_json::Value) -> Result<String, String> {
        let template = self.env.get_template("body").map_err(|e| e.to_string())?;
        template.render(context).map_err(|e| e.to_string())
    }

    /// The request body for `message`.
    pub fn render(&self, message: &Message) -> Result<String, String> {
        self.render_value(&json!({
            "id": message.id,
            "to": message.to,
            "body": message.body,
            "subject": message.subject,
            "channel": message.channel.as_str(),
            "user_id": message.user_id,
        }))
    }
}

pub struct HttpProvider {
    pub url: url::Url,
    pub headers: reqwest::header::HeaderMap,
    pub body: BodyTemplate,
    pub client: reqwest::Client,
    pub timeout: Duration,
}

impl HttpProvider {
    pub async fn send(&self, message: &Message) -> Answer {
        let body = match self.body.render(message) {
            Ok(body) => body,
            Err(e) => return Answer::Rejected { status: None, detail: format!("the provider's body template: {e}") },
        };
        let request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header("content-type", "application/json")
            .header("idempotency-key", &message.id)
            .timeout(self.timeout)
            .body(body);
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() => {
                return Answer::Failed {
                    status: None,
                    detail: format!("no answer within {} ms", self.timeout.as_millis()),
                };
            }
            Err(e) => return Answer::Failed { status: None, detail: describe(&e) },
        };
        let status = response.status();
        let code = status.as_u16();
        let retry_after =
            response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(crate::delivery::retry_after);
        let mut quoted = Vec::new();
        while quoted.len() < 64 * 1024 {
            match response.chunk().await {
                Ok(Some(chunk)) => quoted.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        if status.is_success() {
            let reference = serde_json::from_slice::<serde_json::Value>(&quoted)
                .ok()
                .and_then(|v| v.get("id").and_then(|id| id.as_str().map(str::to_owned)));
            return Answer::Sent { reference };
        }
        let text = String::from_utf8_lossy(&quoted[..quoted.len().min(QUOTED_BODY)]).trim().to_owned();
        let mut detail = format!("the provider answered {code}");
        if !text.is_empty() {
            let _ = write!(detail, ": {text}");
        }
        match code {
            429 => Answer::SlowDown { retry_after, detail },
            408 | 500..=599 => Answer::Failed { status: Some(code), detail },
            _ => Answer::Rejected { status: Some(code), detail },
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut reason = if e.is_connect() { "could not connect".to_owned() } else { "the request failed".to_owned() };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let _ = write!(reason, ": {cause}");
        source = cause.source();
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_written_as_json_whatever_the_text() {
        let template = BodyTemplate::new(r#"{"to": {{to}}, "text": {{body}}, "ref": {{id}}}"#).unwrap();
        let rendered = template
            .render_value(&json!({"to": "+14155552671", "body": "say \"hi\"\n{{ not a tag }}", "id": "m-1"}))
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(&rendered).unwrap();
        assert_eq!(value, json!({"to": "+14155552671", "text": "say \"hi\"\n{{ not a tag }}", "ref": "m-1"}));
    }

    #[test]
    fn a_template_that_is_not_json_or_names_an_unknown_placeholder_is_refused() {
        assert!(BodyTemplate::new(r#"{"to": {{to}}"#).unwrap_err().contains("JSON"));
        assert!(BodyTemplate::new(r#"{"to": {{ phone }}}"#).is_err());
    }
}
