//! Messages to users: accepted once per id, rendered from the deployment's templates, queued
//! durably with their send job in one unit of work; and the state a dispatcher records as
//! it sends them.
//!
//! Which provider sends a message, and when, is the dispatcher's (`server/src/dispatch/`),
//! deciding with `questline_core::message::route` and each provider's limiter; this module
//! keeps the message's document true.

use crate::{Result, Service, ServiceError};
use jiff::Timestamp;
use minijinja::{Environment, UndefinedBehavior};
use questline_core::id::TenantId;
use questline_core::message::{Channel, Content, Message, MessageRequest, MessageStatus, MessageUpdate};
use questline_core::pointer::{FieldError, ValidationErrors};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// A template from configuration: a body, and for e-mail a subject; both rendered with the
/// message's `data` (and its `to` and `user_id`). A variable the data lacks is an error,
/// never an empty string in a user's SMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSpec {
    pub name: String,
    pub body: String,
    pub subject: Option<String>,
}

/// What messages need from configuration.
#[derive(Debug, Default)]
pub struct MessageSettings {
    templates: Environment<'static>,
    names: BTreeSet<String>,
    /// Channels some provider serves: a message for another is refused at once.
    channels: BTreeSet<Channel>,
}

impl MessageSettings {
    /// Compiles the templates; the error names the template that does not compile.
    pub fn new(templates: &[TemplateSpec], channels: impl IntoIterator<Item = Channel>) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let mut names = BTreeSet::new();
        for t in templates {
            if !names.insert(t.name.clone()) {
                return Err(format!("template {:?} is defined twice", t.name));
            }
            env.add_template_owned(format!("{}.body", t.name), t.body.clone())
                .map_err(|e| format!("template {:?}: body: {e}", t.name))?;
            if let Some(subject) = &t.subject {
                env.add_template_owned(format!("{}.subject", t.name), subject.clone())
                    .map_err(|e| format!("template {:?}: subject: {e}", t.name))?;
            }
        }
        Ok(Self { templates: env, names, channels: channels.into_iter().collect() })
    }

    /// That each notification a mission declares names a configured template and a channel
    /// some provider serves.
    pub fn check_notifications(&self, spec: &questline_core::mission::MissionSpec) -> Result<(), ValidationErrors> {
        let mut problems = Vec::new();
        for (i, n) in spec.notifications.iter().enumerate() {
            if !self.names.contains(&n.template) {
                let detail = format!("no template {:?} is configured", n.template);
                problems.push(FieldError::new(format!("/notifications/{i}/template"), detail));
            }
            if !self.channels.contains(&n.channel) {
                let detail = format!("no provider is configured for {}", n.channel.as_str());
                problems.push(FieldError::new(format!("/notifications/{i}/channel"), detail));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(ValidationErrors(problems)) }
    }

    /// The body and subject of a message from its template.
    fn render(
        &self,
        name: &str,
        request: &MessageRequest,
        data: &serde_json::Map<String, Value>,
    ) -> Result<(String, Option<String>), FieldError> {
        if !self.names.contains(name) {
            return Err(FieldError::new("/template", format!("no template {name:?} is configured")));
        }
        let mut context = data.clone();
        context.entry("to").or_insert_with(|| Value::String(request.to.clone()));
        if let Some(user) = &request.user_id {
            context.entry("user_id").or_insert_with(|| Value::String(user.clone()));
        }
        let render = |part: &str| -> Result<Option<String>, FieldError> {
            let Ok(template) = self.templates.get_template(&format!("{name}.{part}")) else { return Ok(None) };
            template.render(template_value(&Value::Object(context.clone()))).map(Some).map_err(|e| {
                // Name what the data lacks, when that is why (globals such as `range` are
                // undeclared too, so only a failed render is explained this way).
                let mut missing: Vec<String> =
                    template.undeclared_variables(false).into_iter().filter(|v| !context.contains_key(v)).collect();
                missing.sort();
                let why =
                    if missing.is_empty() { e.to_string() } else { format!("the data lacks {}", missing.join(", ")) };
                FieldError::new("/data", format!("template {name:?} ({part}) cannot be rendered: {why}"))
            })
        };
        let body = render("body")?.unwrap_or_default();
        let subject = if request.channel == Channel::Email { render("subject")? } else { None };
        Ok((body, subject))
    }
}

/// The answer to a message sent: the message, and whether this request queued it.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub message: Message,
    pub created: bool,
}

/// Messages one request may queue at most (a campaign sends several requests).
pub const MAX_MESSAGES_PER_REQUEST: usize = 1_000;

/// The most attempts (at providers) a message gets before it is `failed`.
pub const MAX_MESSAGE_ATTEMPTS: usize = 8;

impl Service {
    /// Sets the templates and the channels providers serve.
    pub fn with_messages(mut self, settings: MessageSettings) -> Self {
        self.messages = Arc::new(settings);
        self
    }

    /// Accepts a message: checked, rendered, stored `queued` with its send job in one unit of
    /// work. The same id again with the same request answers the first message; with another
    /// request, a conflict.
    pub async fn send_message(&self, tenant: &TenantId, document: &Value) -> Result<Accepted> {
        let now = self.clock.now();
        let message = self.prepare(document, now).map_err(ValidationErrors)?;
        let mut accepted = self.queue_messages(tenant, vec![message], now).await?;
        Ok(accepted.pop().expect("one message in, one answer out"))
    }

    /// Accepts a campaign's messages (1 to [`MAX_MESSAGES_PER_REQUEST`]) all or none: each is
    /// checked as [`Service::send_message`] checks one (a problem's pointer starts with
    /// `/messages/<index>`), then all are queued in one unit of work. Answers in order.
    pub async fn send_messages(&self, tenant: &TenantId, documents: &[Value]) -> Result<Vec<Accepted>> {
        if documents.is_empty() || documents.len() > MAX_MESSAGES_PER_REQUEST {
            let detail = format!("1 to {MAX_MESSAGES_PER_REQUEST} messages in one request");
            return Err(ValidationErrors(vec![FieldError::new("/messages", detail)]).into());
        }
        let now = self.clock.now();
        let mut messages = Vec::with_capacity(documents.len());
        let mut problems = Vec::new();
        for (i, document) in documents.iter().enumerate() {
            match self.prepare(document, now) {
                Ok(message) => messages.push(message),
                Err(errors) => problems.extend(
                    errors.into_iter().map(|e| FieldError::new(format!("/messages/{i}{}", e.pointer), e.detail)),
                ),
            }
        }
        if !problems.is_empty() {
            return Err(ValidationErrors(problems).into());
        }
        self.queue_messages(tenant, messages, now).await
    }

    /// Checks and renders one message document.
    fn prepare(&self, document: &Value, now: Timestamp) -> Result<Message, Vec<FieldError>> {
        let request = MessageRequest::parse(document, now).map_err(|e| e.0)?;
        let mut problems = Vec::new();
        if !self.messages.channels.contains(&request.channel) {
            problems.push(FieldError::new(
                "/channel",
                format!("no provider is configured for {}", request.channel.as_str()),
            ));
        }
        let (body, subject, template) = match &request.content {
            Content::Body(body) => (body.clone(), request.subject.clone(), None),
            Content::Template { name, data } => match self.messages.render(name, &request, data) {
                Ok((body, subject)) => (body, request.subject.clone().or(subject), Some(name.clone())),
                Err(problem) => {
                    problems.push(problem);
                    (String::new(), None, None)
                }
            },
        };
        if body.len() > questline_core::message::MAX_BODY_BYTES {
            problems.push(FieldError::new("/data", "the rendered body is larger than 64 KiB"));
        }
        if request.channel == Channel::Email && subject.is_none() {
            problems.push(FieldError::new("/subject", "an e-mail needs a subject (or a template that gives one)"));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Message {
            id: request.id,
            channel: request.channel,
            to: request.to,
            subject,
            body,
            template,
            deadline: request.deadline,
            priority: request.priority,
            user_id: request.user_id,
            status: MessageStatus::Queued,
            provider: None,
            cost: None,
            currency: None,
            attempts: Vec::new(),
            booking: None,
            sent_at: None,
            created_at: now,
            fingerprint: fingerprint(document),
        })
    }

    /// Stores checked messages with their send jobs in one unit of work: each new one
    /// `queued`, each sent before with the same request answered as it stands; any id sent
    /// before with another request fails them all.
    async fn queue_messages(&self, tenant: &TenantId, messages: Vec<Message>, now: Timestamp) -> Result<Vec<Accepted>> {
        let mut unit = self.store.begin().await?;
        let existing = unit.insert_messages(tenant, &messages).await?;
        let mut answers = Vec::with_capacity(messages.len());
        let mut new = Vec::new();
        for (message, existing) in messages.into_iter().zip(existing) {
            match existing {
                Some(existing) if existing.fingerprint == message.fingerprint => {
                    answers.push(Accepted { message: existing, created: false })
                }
                Some(_) => return Err(ServiceError::MessageIdTaken(message.id)),
                None => {
                    answers.push(Accepted { message: message.clone(), created: true });
                    new.push(message);
                }
            }
        }
        if !new.is_empty()
            && let Some(jobs) = &self.jobs
        {
            jobs.enqueue_messages(&mut *unit, tenant, &new, now).await?;
        }
        unit.commit().await?;
        for message in &new {
            metrics::counter!("questline_messages_accepted_total", "channel" => message.channel.as_str()).increment(1);
        }
        Ok(answers)
    }

    /// A message as committed. An id no backend can store names no message.
    pub async fn message(&self, tenant: &TenantId, id: &str) -> Result<Message> {
        if !questline_core::id::storable(id) {
            return Err(ServiceError::MessageNotFound(id.to_owned()));
        }
        self.store.message(tenant, id).await?.ok_or_else(|| ServiceError::MessageNotFound(id.to_owned()))
    }

    /// Many messages as committed, a few statements per tenant: for each `(tenant, id)`, the
    /// message, or `None` if there is none.
    pub async fn messages(&self, wanted: &[(TenantId, String)]) -> Result<Vec<Option<Message>>> {
        let mut found = vec![None; wanted.len()];
        for indices in by_tenant(wanted.iter().map(|(tenant, _)| tenant)).values() {
            let tenant = &wanted[indices[0]].0;
            let ids: Vec<&str> = indices.iter().map(|&i| wanted[i].1.as_str()).collect();
            let read: HashMap<String, Message> =
                self.store.messages(tenant, &ids).await?.into_iter().map(|m| (m.id.clone(), m)).collect();
            for &i in indices {
                // One id asked twice gets the message twice.
                found[i] = read.get(&wanted[i].1).cloned();
            }
        }
        Ok(found)
    }

    /// Records many dispatcher outcomes in one transaction (a few statements per tenant, one
    /// count per provider, one commit), all or none: for each, the message as saved, or
    /// `None` if there is none. Rows are locked in (tenant, id) order, so that two processes
    /// writing overlapping batches cannot deadlock; a final message is left as it is
    /// ([`MessageUpdate::apply`]).
    pub async fn update_messages(&self, updates: &[(TenantId, String, MessageUpdate)]) -> Result<Vec<Option<Message>>> {
        let now = self.clock.now();
        let mut saved = vec![None; updates.len()];
        let mut sent: BTreeMap<String, u64> = BTreeMap::new();
        let mut unit = self.store.begin().await?;
        for indices in by_tenant(updates.iter().map(|(tenant, _, _)| tenant)).values() {
            let tenant = &updates[indices[0]].0;
            let ids: Vec<&str> = indices.iter().map(|&i| updates[i].1.as_str()).collect();
            let mut found: HashMap<String, Message> =
                unit.lock_messages(tenant, &ids).await?.into_iter().map(|m| (m.id.clone(), m)).collect();
            let mut changed = BTreeSet::new();
            for &i in indices {
                let (_, id, update) = &updates[i];
                let Some(message) = found.get_mut(id) else { continue };
                if update.apply(message) {
                    changed.insert(id.as_str());
                    if message.status == MessageStatus::Sent {
                        *sent.entry(message.provider.clone().unwrap_or_default()).or_default() += 1;
                    }
                }
                saved[i] = Some(message.clone());
            }
            let changed: Vec<Message> = changed.into_iter().filter_map(|id| found.remove(id)).collect();
            unit.save_messages(tenant, &changed, now).await?;
        }
        let month = month_of(now);
        for (provider, n) in sent {
            unit.count_sent(&provider, &month, n).await?;
        }
        unit.commit().await?;
        Ok(saved)
    }

    /// Messages each provider sent this calendar month (UTC).
    pub async fn sent_this_month(&self) -> Result<BTreeMap<String, u64>> {
        let month = month_of(self.clock.now());
        Ok(self.store.sent_in_month(&month).await?.into_iter().collect())
    }

    /// The clock the service reads (for a dispatcher's decisions).
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// The indexes of a batch's items per tenant, tenants in order (the order rows are locked in).
fn by_tenant<'a>(tenants: impl Iterator<Item = &'a TenantId>) -> BTreeMap<&'a str, Vec<usize>> {
    let mut by_tenant: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, tenant) in tenants.enumerate() {
        by_tenant.entry(tenant.as_str()).or_default().push(i);
    }
    by_tenant
}

/// Data as a template sees it. Numbers keep the text the client sent: serde_json's
/// `arbitrary_precision` (which keeps amounts exact) would otherwise hand minijinja a
/// number as an internal map. Integers stay integers (for arithmetic and comparisons), a
/// decimal that a float shows exactly becomes one, any other is its exact text.
fn template_value(value: &Value) -> minijinja::Value {
    use minijinja::Value as V;
    match value {
        Value::Null => V::from(()),
        Value::Bool(b) => V::from(*b),
        Value::Number(n) => {
            let text = n.to_string();
            if let Ok(i) = text.parse::<i64>() {
                V::from(i)
            } else if let Ok(f) = text.parse::<f64>()
                && f.to_string() == text
            {
                V::from(f)
            } else {
                V::from(text)
            }
        }
        Value::String(s) => V::from(s.as_str()),
        Value::Array(items) => V::from(items.iter().map(template_value).collect::<Vec<_>>()),
        Value::Object(map) => {
            V::from(map.iter().map(|(k, v)| (k.clone(), template_value(v))).collect::<BTreeMap<String, V>>())
        }
    }
}

/// `YYYY-MM` of an instant, in UTC: the month commitments and capacities count in.
pub fn month_of(at: Timestamp) -> String {
    at.strftime("%Y-%m").to_string()
}

/// A digest of a request document, the same whatever the order of its keys.
fn fingerprint(document: &Value) -> String {
    fn canonical(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let sorted: BTreeMap<&String, Value> = map.iter().map(|(k, v)| (k, canonical(v))).collect();
                Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    hex::encode(Sha256::digest(canonical(document).to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_fingerprint_ignores_key_order_but_not_values() {
        let a = fingerprint(&json!({"id": "m", "data": {"a": 1, "b": 2}}));
        let b: Value = serde_json::from_str(r#"{"data": {"b": 2, "a": 1}, "id": "m"}"#).unwrap();
        assert_eq!(a, fingerprint(&b));
        assert_ne!(a, fingerprint(&json!({"id": "m", "data": {"a": 1, "b": 3}})));
    }

    #[test]
    fn a_template_renders_with_the_data_and_a_missing_variable_is_an_error() {
        let settings = MessageSettings::new(
            &[TemplateSpec {
                name: "otp".into(),
                body: "Your code is {{ code }}".into(),
                subject: Some("Code for {{ user_id }}".into()),
            }],
            [Channel::Sms, Channel::Email],
        )
        .unwrap();
        let request = MessageRequest::parse(
            &json!({"id": "m", "channel": "email", "to": "a@example.com", "template": "otp", "user_id": "u-1", "data": {"code": "42"}}),
            Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        let Content::Template { data, .. } = &request.content else { unreachable!() };
        assert_eq!(
            settings.render("otp", &request, data).unwrap(),
            ("Your code is 42".to_owned(), Some("Code for u-1".to_owned()))
        );
        let error = settings.render("otp", &request, &serde_json::Map::new()).unwrap_err();
        assert_eq!(error.pointer, "/data");
        assert!(error.detail.contains("code"), "{}", error.detail);
        assert_eq!(settings.render("welcome", &request, data).unwrap_err().pointer, "/template");
    }

    #[test]
    fn numbers_render_as_the_client_wrote_them() {
        let settings = MessageSettings::new(
            &[TemplateSpec { name: "n".into(), body: "{{ a }} {{ b }} {{ c + 1 }}".into(), subject: None }],
            [Channel::Sms],
        )
        .unwrap();
        let document: Value =
            serde_json::from_str(r#"{"id": "m", "channel": "sms", "to": "+919876543210", "template": "n", "data": {"a": 0.1, "b": 12345678901234567890.123456789, "c": 41}}"#).unwrap();
        let request = MessageRequest::parse(&document, Timestamp::UNIX_EPOCH).unwrap();
        let Content::Template { data, .. } = &request.content else { panic!("a template") };
        let (body, _) = settings.render("n", &request, data).unwrap();
        assert_eq!(body, "0.1 12345678901234567890.123456789 42");
    }

    #[test]
    fn a_template_that_does_not_compile_is_named() {
        let error =
            MessageSettings::new(&[TemplateSpec { name: "bad".into(), body: "{{ x".into(), subject: None }], [])
                .unwrap_err();
        assert!(error.contains("\"bad\""), "{error}");
    }
}
