//! The message dispatcher: a `message.send` job per accepted message, run by a worker of its
//! own (many sends in flight at once, each near its slot), sending through the configured providers
//! without ever exceeding a provider's limits, by the cheapest route that meets the
//! message's deadline.
//!
//! One run of a job:
//! 1. A final message, or none, is done. One whose deadline has passed is `expired`.
//! 2. The providers of its channel are ranked by what one more message adds to the bill
//!    (`questline_core::message::route::rank`), and each is asked in turn for a slot before
//!    the deadline (its limiter, `questline_limit`: every limit of the provider in one
//!    decision). A slot within [`HOLD`] the job sleeps to, holding its claim, and sends in;
//!    a later one is booked on the message (`sending`, its `booking`) and the job lets its
//!    claim go until [`LEAD`] before the slot, coming back ahead of the messages still to be
//!    routed (so claims are held only for the next seconds of the providers' limits, however
//!    far ahead a burst is booked). Woken or back too late for its slot (a starved runtime,
//!    a slow claim), it gives the slot up and routes again. A provider whose earliest slot
//!    is beyond the booking horizon but still before the deadline is waited for (the job
//!    snoozes, spending no attempt) rather than switched from; only a provider that cannot
//!    make the deadline is passed over. None can: `expired`, with the reason.
//! 3. The answer: sent (its cost and provider recorded, the provider's month counted);
//!    429, "slow down" (the limiter holds the provider for its `Retry-After`, and the
//!    message is routed again); a failure a retry may help (retried with backoff, that
//!    provider last in the order for this message); one it cannot (`failed`). Past
//!    [`MAX_MESSAGE_ATTEMPTS`] failures, `failed` with every attempt's reason.
//!
//! A job's message is read, and every outcome (a send, a booking, a retry, an expiry)
//! written, through [`batch`]: those gathered meanwhile go to the store together.
//!
//! A message is sent at least once: a process that dies between a provider's answer and
//! the commit of `sent` sends it again after its lease; providers get the message id as
//! `idempotency-key` (HTTP) or `Message-ID` (SMTP) to recognise the repeat.

mod batch;
pub mod config;
pub mod http;
pub mod smtp;

use config::{ProviderConfig, ProviderKind, parse_duration};
use jiff::Timestamp;
use questline_core::id::TenantId;
use questline_core::message::route::{self, Pricing, ProviderState};
use questline_core::message::{Attempt, Booking, Channel, Message, MessageStatus, MessageUpdate};
use questline_limit::redis::{RedisConfig, RedisLimiter};
use questline_limit::{Limiter, LocalLimiter, Reservation, Rule};
use questline_queue::{Job, Outcome, Worker, WorkerConfig};
use questline_service::Service;
use questline_service::messages::MAX_MESSAGE_ATTEMPTS;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::task::AbortOnDropHandle;

/// The job kind that sends one message; payload `{"id": "<message id>"}`.
pub const SEND: &str = "message.send";
/// How far ahead a slot is booked at most (the Redis limiter clamps to its own horizon).
pub const HORIZON: Duration = Duration::from_secs(60);
/// A message with no deadline waits for a slot at most this long before it is `expired`.
pub const NO_DEADLINE: Duration = Duration::from_secs(24 * 3600);
/// A slot this near is waited for in the job, holding its claim. A later one is booked on
/// the message (`sending`) and the job comes back [`LEAD`] before it: claims are held only
/// for the next few seconds of every provider's limits, however far ahead a burst is booked.
const HOLD: Duration = Duration::from_secs(2);
/// How long before its booked slot a job comes back: time to be claimed (an idle SQLite
/// worker looks every second) and to read its message. Less than [`HOLD`].
const LEAD: Duration = Duration::from_millis(1_500);
/// The priority a booked job comes back at: before every message's own (0–9), so that its
/// slot is not spent waiting behind the part of a burst still to be routed.
const BOOKED: i16 = -100;
/// How late after its slot a send may still go: within the limiter's margin (10 ms + 0.1 %),
/// so that sends stay as far apart as their slots. A later one routes again.
const LATE: Duration = Duration::from_millis(5);
/// Time allowed for a request to reach a provider, taken off the deadline.
const SEND_TIME: Duration = Duration::from_millis(100);
/// Message jobs claimed at most at once.
const CLAIM_BATCH: usize = 1_000;
/// How often the month's per-provider counts are read again (other processes send too).
const COUNTS_TTL: Duration = Duration::from_secs(5);

/// What a provider answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Sent {
        reference: Option<String>,
    },
    /// 429: too fast. Held for `retry_after` (or a second).
    SlowDown {
        retry_after: Option<Duration>,
        detail: String,
    },
    /// A retry may help (5xx, 408, a timeout, no connection).
    Failed {
        status: Option<u16>,
        detail: String,
    },
    /// It cannot (another 4xx, a permanent SMTP error).
    Rejected {
        status: Option<u16>,
        detail: String,
    },
}

enum Transport {
    Http(Box<http::HttpProvider>),
    Smtp(smtp::SmtpProvider),
}

/// A configured provider, ready to send.
pub struct Provider {
    pub config: ProviderConfig,
    pub pricing: Pricing,
    /// Every limit of the provider, decided together.
    pub rules: Vec<Rule>,
    transport: Transport,
}

impl Provider {
    fn new(config: &ProviderConfig, allow_private: bool) -> Result<Self, String> {
        let price = &config.price;
        let pricing = match (price.per_message, price.fixed_monthly, price.capacity_monthly) {
            (Some(per), _, _) => Pricing::PerMessage(per),
            (None, Some(monthly), Some(capacity)) => Pricing::Fixed { monthly, capacity },
            _ => return Err(format!("provider {:?}: no price", config.name)),
        };
        let mut rules = config
            .limits
            .iter()
            .map(|l| {
                let per = parse_duration(&l.per)?;
                Ok(Rule::new(format!("provider:{}:{}ms", config.name, per.as_millis()), l.requests, per))
            })
            .collect::<Result<Vec<_>, String>>()?;
        // The fastest limit paces the provider: a burst goes out at that rate instead of a
        // window's worth at one instant, whose bunching on the way would look like a breach.
        if let Some(fastest) = rules.iter_mut().min_by_key(|r| r.window / r.limit.max(1)) {
            fastest.paced = true;
        }
        let timeout = config.timeout.as_deref().map(parse_duration).transpose()?.unwrap_or(Duration::from_secs(10));
        let transport = match config.kind {
            ProviderKind::Http => {
                let url = questline_service::webhooks::check_url(&config.url, allow_private)
                    .map_err(|why| format!("provider {:?}: the URL {why}", config.name))?;
                let mut headers = reqwest::header::HeaderMap::new();
                for (name, value) in &config.headers {
                    let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| format!("provider {:?}: header {name:?} is not a header name", config.name))?;
                    let mut value = reqwest::header::HeaderValue::from_str(value)
                        .map_err(|_| format!("provider {:?}: header {name}: not a header value", config.name))?;
                    value.set_sensitive(true);
                    headers.insert(name, value);
                }
                let client = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(timeout)
                    .user_agent(concat!("questline-dispatcher/", env!("CARGO_PKG_VERSION")))
                    .dns_resolver(Arc::new(crate::delivery::GuardedResolver { allow_private }))
                    .build()
                    .map_err(|e| format!("provider {:?}: {e}", config.name))?;
                let body = http::BodyTemplate::new(config.body.as_deref().unwrap_or_default())?;
                Transport::Http(Box::new(http::HttpProvider { url, headers, body, client, timeout }))
            }
            ProviderKind::Smtp => {
                let target = smtp::SmtpTarget::parse(&config.url)?;
                let from = config.from.as_deref().unwrap_or_default();
                let provider = smtp::SmtpProvider::new(&target, from, timeout, allow_private)
                    .map_err(|why| format!("provider {:?}: {why}", config.name))?;
                Transport::Smtp(provider)
            }
        };
        Ok(Self { config: config.clone(), pricing, rules, transport })
    }

    async fn send(&self, message: &Message) -> Answer {
        match &self.transport {
            Transport::Http(p) => p.send(message).await,
            Transport::Smtp(p) => p.send(message).await,
        }
    }

    fn serves(&self, channel: Channel) -> bool {
        self.config.channels.contains(&channel)
    }
}

/// Messages sent this month per provider: read from the store every [`COUNTS_TTL`], and
/// counted here meanwhile.
struct Counts {
    read_at: Option<Instant>,
    sent: BTreeMap<String, u64>,
}

/// The moment of sending, on a thread and runtime of its own: a send sleeps to its slot
/// there and makes its request there, so that a busy main runtime (a burst being accepted
/// and routed, a worker renewing ten thousand leases) does not make it late. Late, a send
/// gives its slot up (see [`LATE`]); on time, its request leaves within the margin.
struct SendClock {
    handle: tokio::runtime::Handle,
    /// Dropped with the dispatcher: the thread's runtime stops, on its own thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl SendClock {
    fn start() -> std::io::Result<Self> {
        // Two threads: while one makes a request or reads an answer, the other keeps time.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("questline-send")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new().name("questline-send-clock".into()).spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            })
        })?;
        Ok(Self { handle, _stop: stop })
    }
}

/// The dispatcher of one process.
pub struct Dispatcher {
    service: Arc<Service>,
    providers: Vec<Arc<Provider>>,
    limiter: Arc<dyn Limiter>,
    clock: SendClock,
    /// Where outcomes are written, many to a commit.
    recorder: batch::Batcher<batch::Outcome>,
    /// Where the messages of claimed jobs are read, many to a statement.
    reader: batch::Batcher<batch::Wanted>,
    /// The shared limiter, whose heartbeat tells every process how many share the limits.
    redis: Option<Arc<RedisLimiter>>,
    /// Which limiter holds the slots this process books (see [`Booking::limiter`]).
    limiter_id: String,
    counts: Mutex<Counts>,
    concurrency: usize,
}

/// What `/v1/providers` shows of one provider.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ProviderReport {
    pub name: String,
    pub channels: Vec<String>,
    /// `{"requests", "per"}` as configured.
    #[schema(value_type = Vec<Object>)]
    pub limits: serde_json::Value,
    /// Messages sent this calendar month (UTC).
    pub sent: u64,
    /// The month's bill so far: the fixed fee, or the price of what was sent (at least the
    /// commitment's worth, when there is one).
    #[schema(value_type = f64)]
    pub cost: Decimal,
    pub currency: String,
    /// The monthly volume promised, if any.
    pub committed: Option<u64>,
    /// `behind` (on its commitment), `capacity_left`, `capacity_spent` or `per_message`.
    pub state: String,
}

impl Dispatcher {
    /// The providers of the configuration, with their limits on `limiter`.
    pub fn new(
        service: Arc<Service>,
        configs: &[ProviderConfig],
        limiter: Arc<dyn Limiter>,
        allow_private: bool,
    ) -> Result<Self, String> {
        let providers =
            configs.iter().map(|c| Provider::new(c, allow_private).map(Arc::new)).collect::<Result<Vec<_>, _>>()?;
        let clock = SendClock::start().map_err(|e| format!("the dispatcher's send thread: {e}"))?;
        Ok(Self {
            recorder: batch::Batcher::recorder(service.clone()),
            reader: batch::Batcher::reader(service.clone()),
            service,
            providers,
            limiter,
            clock,
            redis: None,
            limiter_id: format!("local:{}:{}", std::process::id(), Timestamp::now().as_nanosecond()),
            counts: Mutex::new(Counts { read_at: None, sent: BTreeMap::new() }),
            concurrency: crate::config::DEFAULT_DISPATCH_CONCURRENCY,
        })
    }

    /// The dispatcher `config` describes: its providers, on the Redis limiter shared by every
    /// process when Redis is configured (else one in this process).
    pub async fn open(service: Arc<Service>, config: &crate::Config) -> Result<Self, String> {
        let redis = match (&config.redis_url, config.providers.is_empty()) {
            (Some(url), false) => {
                let limiter = RedisLimiter::connect(url, RedisConfig::new(config.redis_namespace.clone()))
                    .await
                    .map_err(|e| format!("the rate limiter's Redis: {e}"))?;
                Some(Arc::new(limiter))
            }
            _ => None,
        };
        let limiter: Arc<dyn Limiter> = match &redis {
            Some(redis) => redis.clone(),
            None => Arc::new(LocalLimiter::new()),
        };
        let mut dispatcher = Self::new(service, &config.providers, limiter, config.allow_private_targets)?;
        if redis.is_some() {
            dispatcher.limiter_id = format!("redis:{}", config.redis_namespace);
        }
        dispatcher.redis = redis;
        dispatcher.concurrency = config.dispatch_concurrency;
        Ok(dispatcher)
    }

    /// Whether any provider is configured (else there is nothing to run).
    pub fn has_providers(&self) -> bool {
        !self.providers.is_empty()
    }

    /// The worker that runs `message.send` jobs on `queue`: `config`'s lease and timings,
    /// with as many sends at once as `dispatch_concurrency` says (most of them asleep until
    /// a slot at most [`HOLD`] ahead).
    pub fn worker(self: &Arc<Self>, queue: Arc<dyn questline_queue::Backend>, config: WorkerConfig) -> Worker {
        // Claimed in large batches: a burst's messages are routed (and their providers given
        // work) in the order they came, and none waits long for the ones before it.
        let config = WorkerConfig { concurrency: self.concurrency, prefetch: 0, claim_batch: CLAIM_BATCH, ..config };
        let dispatcher = self.clone();
        Worker::new(queue, config).handle(SEND, move |job| dispatcher.clone().run(job))
    }

    /// Keeps this process counted among those sharing the limits (Redis only) until `stop`.
    pub async fn run_heartbeat(&self, stop: tokio_util::sync::CancellationToken) {
        if let Some(redis) = &self.redis {
            redis.run_heartbeat(stop).await;
        }
    }

    /// The channels some provider serves.
    pub fn channels(&self) -> BTreeSet<Channel> {
        self.providers.iter().flat_map(|p| p.config.channels.iter().copied()).collect()
    }

    async fn sent_counts(&self) -> BTreeMap<String, u64> {
        {
            let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            if counts.read_at.is_some_and(|at| at.elapsed() < COUNTS_TTL) {
                return counts.sent.clone();
            }
        }
        match self.service.sent_this_month().await {
            Ok(sent) => {
                let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
                *counts = Counts { read_at: Some(Instant::now()), sent: sent.clone() };
                sent
            }
            // The last counts are still a fair ranking; the next run reads again.
            Err(e) => {
                tracing::warn!(error = %e, "could not read the month's per-provider counts");
                self.counts.lock().unwrap_or_else(|e| e.into_inner()).sent.clone()
            }
        }
    }

    fn count_sent(&self, provider: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.sent.entry(provider.to_owned()).or_default() += 1;
    }

    /// Every provider with its month so far.
    pub async fn report(&self) -> Vec<ProviderReport> {
        let counts = match self.service.sent_this_month().await {
            Ok(counts) => counts,
            Err(_) => self.sent_counts().await,
        };
        self.providers
            .iter()
            .map(|p| {
                let sent = counts.get(&p.config.name).copied().unwrap_or(0);
                let committed = p.config.commitment.as_ref().map(|c| c.monthly);
                let (cost, state) = match &p.pricing {
                    Pricing::Fixed { monthly, capacity } => {
                        (*monthly, if sent >= *capacity { "capacity_spent" } else { "capacity_left" })
                    }
                    Pricing::PerMessage(price) => {
                        let billed = sent.max(committed.unwrap_or(0));
                        let state = if committed.is_some_and(|c| sent < c) { "behind" } else { "per_message" };
                        (*price * Decimal::from(billed), state)
                    }
                };
                ProviderReport {
                    name: p.config.name.clone(),
                    channels: p.config.channels.iter().map(|c| c.as_str().to_owned()).collect(),
                    limits: serde_json::to_value(&p.config.limits).unwrap_or_default(),
                    sent,
                    cost,
                    currency: p.config.price.currency.clone(),
                    committed,
                    state: state.to_owned(),
                }
            })
            .collect()
    }

    /// One run of a `message.send` job.
    pub async fn run(self: Arc<Self>, job: Job) -> Outcome {
        let tenant = TenantId::new(&job.tenant_id);
        let Some(id) = job.payload.get("id").and_then(|v| v.as_str()) else {
            return Outcome::discard("the payload names no message id");
        };
        let message = match self.reader.ask((tenant.clone(), id.to_owned())).await {
            Ok(Some(message)) => message,
            Ok(None) => return Outcome::Done,
            Err(e) => return Outcome::retry(e),
        };
        if message.status.is_final() {
            return Outcome::Done;
        }
        let now = self.service.now();
        let deadline = message.deadline.unwrap_or(message.created_at + NO_DEADLINE);
        if deadline <= now {
            return self.finish(&tenant, id, MessageStatus::Expired, None, "its deadline passed unsent").await;
        }
        if let Some(booking) = &message.booking {
            if let Some(outcome) = self.keep_booking(&tenant, &message, booking).await {
                return outcome;
            }
            // Given up: back to `queued` before routing again, so that no stale booking is
            // shown (or counted as missed again) while the message waits for another slot.
            if let Err(e) = self.recorder.ask((tenant.clone(), id.to_owned(), MessageUpdate::unbooked())).await {
                return Outcome::retry(e);
            }
        }
        self.route(&tenant, &message, now, deadline).await
    }

    /// A message back for the slot booked for it: sent in it. `None` if the slot was missed
    /// (the job came back too late), its limiter is not this one (a restarted process's own
    /// limiter does not know the slots it booked before) or its provider no longer serves
    /// the message: route again.
    async fn keep_booking(&self, tenant: &TenantId, message: &Message, booking: &Booking) -> Option<Outcome> {
        if booking.limiter != self.limiter_id {
            return None;
        }
        let provider =
            self.providers.iter().find(|p| p.config.name == booking.provider && p.serves(message.channel))?;
        let wait = booking.at.duration_since(Timestamp::now());
        if wait.is_negative() {
            if wait.unsigned_abs() > LATE {
                slot_missed(message, &booking.provider, "back too late for its booked slot");
                return None;
            }
            return Some(self.send_in_slot(tenant, message, provider, Instant::now()).await);
        }
        let wait = wait.unsigned_abs();
        if wait > HOLD {
            // Back early (an operator's retry): back again in time for the slot.
            return Some(Outcome::Reschedule { at: booking.at - LEAD, priority: BOOKED });
        }
        Some(self.send_in_slot(tenant, message, provider, Instant::now() + wait).await)
    }

    /// Sends `message` through `provider` in its slot, and records the answer.
    async fn send_in_slot(
        &self,
        tenant: &TenantId,
        message: &Message,
        provider: &Arc<Provider>,
        slot: Instant,
    ) -> Outcome {
        let Some(answer) = self.send_at(slot, provider, message).await else {
            // Woken too late (a starved runtime): sent now, it could bunch with the slots
            // after it. The slot is given up and the message routed again.
            slot_missed(message, &provider.config.name, "woken too late for its slot");
            return again(message, Duration::ZERO);
        };
        self.record_answer(tenant, message, provider, answer).await
    }

    /// Books a slot `wait` ahead on the message and lets the job go until [`LEAD`] before it.
    async fn book(&self, tenant: &TenantId, message: &Message, provider: &Provider, wait: Duration) -> Outcome {
        let slot = Timestamp::now() + wait;
        let booking = Booking { provider: provider.config.name.clone(), at: slot, limiter: self.limiter_id.clone() };
        match self.recorder.ask((tenant.clone(), message.id.clone(), MessageUpdate::booked(booking))).await {
            Ok(_) => Outcome::Reschedule { at: slot - LEAD, priority: BOOKED },
            // The slot goes unused; the next run routes again.
            Err(e) => Outcome::Retry {
                error: format!("a slot could not be booked: {e}"),
                after: Some(Duration::from_secs(1)),
            },
        }
    }

    /// Finds a slot with the cheapest provider that can meet the deadline.
    async fn route(&self, tenant: &TenantId, message: &Message, now: Timestamp, deadline: Timestamp) -> Outcome {
        let counts = self.sent_counts().await;
        let serving: Vec<&Arc<Provider>> = self.providers.iter().filter(|p| p.serves(message.channel)).collect();
        let failed_here: BTreeSet<&str> =
            message.attempts.iter().filter(|a| a.outcome == "failed").map(|a| a.provider.as_str()).collect();
        let states: Vec<ProviderState<'_>> = serving
            .iter()
            .map(|p| ProviderState {
                name: &p.config.name,
                pricing: &p.pricing,
                committed: p.config.commitment.as_ref().map(|c| c.monthly),
                sent_this_month: counts.get(&p.config.name).copied().unwrap_or(0),
                failed_this_message: failed_here.contains(p.config.name.as_str()),
            })
            .collect();
        let ranked = route::rank(&states);
        if ranked.is_empty() {
            return self
                .finish(
                    tenant,
                    &message.id,
                    MessageStatus::Failed,
                    None,
                    "no provider of its channel has capacity left this month",
                )
                .await;
        }
        let Some(max_wait) = route::max_wait(Some(until(now, deadline)), SEND_TIME, NO_DEADLINE) else {
            return self
                .finish(tenant, &message.id, MessageStatus::Expired, None, "too close to its deadline to send")
                .await;
        };
        let mut wait_for: Option<Duration> = None;
        for candidate in &ranked {
            let provider = serving[candidate.index];
            match self.limiter.reserve(&provider.rules, max_wait.min(HORIZON)).await {
                Ok(Reservation::Granted { wait }) => {
                    tracing::debug!(message_id = %message.id, provider = %provider.config.name, wait_ms = wait.as_millis() as u64, "slot granted");
                    if wait > HOLD {
                        return self.book(tenant, message, provider, wait).await;
                    }
                    // Near: the job sleeps to its slot holding its claim (the worker renews
                    // the lease), with no write and no poll between the message and its slot.
                    return self.send_in_slot(tenant, message, provider, Instant::now() + wait).await;
                }
                // Busy, but it can still make the deadline: waited for, not switched from.
                Ok(Reservation::TooLate { earliest }) if earliest <= max_wait => {
                    wait_for = Some(wait_for.map_or(earliest, |w| w.min(earliest)));
                    break;
                }
                Ok(Reservation::TooLate { .. }) => continue,
                Err(e) => {
                    tracing::warn!(provider = %provider.config.name, error = %e, "the rate limiter cannot decide");
                    return Outcome::Retry {
                        error: format!("the rate limiter: {e}"),
                        after: Some(Duration::from_secs(1)),
                    };
                }
            }
        }
        match wait_for {
            // Back halfway there, when the slot is within the limiter's horizon.
            Some(earliest) => again(message, (earliest / 2).max(Duration::from_millis(100))),
            None => {
                self.finish(
                    tenant,
                    &message.id,
                    MessageStatus::Expired,
                    None,
                    "no provider has a slot before its deadline",
                )
                .await
            }
        }
    }

    /// Sends `message` through `provider` at `slot`, timed on the send thread (see
    /// [`SendClock`]); `None` if that thread woke more than [`LATE`] after the slot.
    async fn send_at(&self, slot: Instant, provider: &Arc<Provider>, message: &Message) -> Option<Answer> {
        let (provider, message) = (provider.clone(), message.clone());
        // Awaited here; aborted if this job is dropped (shutdown), so no send outlives it.
        let send = AbortOnDropHandle::new(self.clock.handle.spawn(async move {
            tokio::time::sleep_until(slot.into()).await;
            if Instant::now() > slot + LATE {
                return None;
            }
            Some(provider.send(&message).await)
        }));
        match send.await {
            Ok(answer) => answer,
            Err(e) => Some(Answer::Failed { status: None, detail: format!("the send failed: {e}") }),
        }
    }

    /// Records what a provider's answer decides.
    async fn record_answer(
        &self,
        tenant: &TenantId,
        message: &Message,
        provider: &Provider,
        answer: Answer,
    ) -> Outcome {
        let name = provider.config.name.clone();
        let at = self.service.now();
        tracing::debug!(message_id = %message.id, provider = %name, ?answer, "message sent to a provider");
        metrics::counter!("questline_messages_attempts_total", "provider" => name.clone(), "outcome" => outcome_label(&answer))
            .increment(1);
        let attempt = |outcome: &str, status: Option<u16>, detail: Option<String>| Attempt {
            provider: name.clone(),
            at,
            outcome: outcome.to_owned(),
            status,
            detail,
        };
        match answer {
            Answer::Sent { reference } => {
                let cost = self.marginal_cost(provider).await;
                let currency = provider.config.price.currency.clone();
                let update = MessageUpdate::sent(attempt("sent", None, reference), cost, currency);
                let saved = self.recorder.ask((tenant.clone(), message.id.clone(), update)).await;
                match saved {
                    Ok(_) => {
                        self.count_sent(&name);
                        Outcome::Done
                    }
                    Err(e) => Outcome::retry(format!("sent, but not recorded (it will be sent again): {e}")),
                }
            }
            Answer::SlowDown { retry_after, detail } => {
                let hold = retry_after.unwrap_or(Duration::from_secs(1));
                for rule in &provider.rules {
                    if let Err(e) = self.limiter.hold(&rule.key, hold).await {
                        tracing::warn!(provider = %name, error = %e, "could not hold the provider after a 429");
                    }
                }
                self.record(tenant, message, attempt("rate_limited", Some(429), Some(detail)), None).await
            }
            Answer::Failed { status, detail } => {
                let failures = message.attempts.iter().filter(|a| a.outcome == "failed").count() + 1;
                let backoff = Duration::from_secs(1 << failures.min(6)).min(Duration::from_secs(60));
                self.record(tenant, message, attempt("failed", status, Some(detail)), Some(backoff)).await
            }
            Answer::Rejected { status, detail } => {
                let reason = format!("{name}: {detail}");
                let update = MessageUpdate::ended(attempt("rejected", status, Some(detail)), MessageStatus::Failed);
                match self.recorder.ask((tenant.clone(), message.id.clone(), update)).await {
                    Ok(_) => Outcome::discard(reason),
                    Err(e) => Outcome::retry(e),
                }
            }
        }
    }

    /// Records an attempt that did not send; past the last one, `failed`. `backoff`: how
    /// long until the next try (`None`: route again at once).
    async fn record(
        &self,
        tenant: &TenantId,
        message: &Message,
        attempt: Attempt,
        backoff: Option<Duration>,
    ) -> Outcome {
        let detail = attempt.detail.clone().unwrap_or_default();
        let last = message.attempts.len() + 1 >= MAX_MESSAGE_ATTEMPTS;
        let update =
            if last { MessageUpdate::ended(attempt, MessageStatus::Failed) } else { MessageUpdate::tried(attempt) };
        match (self.recorder.ask((tenant.clone(), message.id.clone(), update)).await, last) {
            (Err(e), _) => Outcome::retry(e),
            (Ok(_), true) => Outcome::discard(format!("failed after {MAX_MESSAGE_ATTEMPTS} attempts: {detail}")),
            (Ok(_), false) => match backoff {
                Some(after) => Outcome::retry_after(detail, after),
                None => again(message, Duration::ZERO),
            },
        }
    }

    /// A final status with its reason as an attempt of no provider.
    async fn finish(
        &self,
        tenant: &TenantId,
        id: &str,
        status: MessageStatus,
        provider: Option<&str>,
        reason: &str,
    ) -> Outcome {
        let at = self.service.now();
        let attempt = Attempt {
            provider: provider.unwrap_or_default().to_owned(),
            at,
            outcome: status.as_str().to_owned(),
            status: None,
            detail: Some(reason.to_owned()),
        };
        match self.recorder.ask((tenant.clone(), id.to_owned(), MessageUpdate::ended(attempt, status))).await {
            Ok(_) => Outcome::Done,
            Err(e) => Outcome::retry(e),
        }
    }

    /// What one more message through `provider` adds to its bill, as it stands.
    async fn marginal_cost(&self, provider: &Provider) -> Decimal {
        let counts = self.sent_counts().await;
        let state = ProviderState {
            name: &provider.config.name,
            pricing: &provider.pricing,
            committed: provider.config.commitment.as_ref().map(|c| c.monthly),
            sent_this_month: counts.get(&provider.config.name).copied().unwrap_or(0),
            failed_this_message: false,
        };
        route::rank(std::slice::from_ref(&state)).first().map_or(Decimal::ZERO, |c| c.marginal_cost)
    }
}

/// A slot given up: counted per provider (`questline_messages_slots_missed_total`), and why.
fn slot_missed(message: &Message, provider: &str, why: &'static str) {
    tracing::debug!(message_id = %message.id, provider, why, "slot missed");
    metrics::counter!("questline_messages_slots_missed_total", "provider" => provider.to_owned()).increment(1);
}

/// Run the job again after `after`, without spending an attempt, at the message's own
/// priority: a job that came back for a booking ([`BOOKED`]) and must route again goes
/// back into line as the message it is.
fn again(message: &Message, after: Duration) -> Outcome {
    Outcome::Reschedule { at: Timestamp::now() + after, priority: i16::from(message.priority) }
}

fn outcome_label(answer: &Answer) -> &'static str {
    match answer {
        Answer::Sent { .. } => "sent",
        Answer::SlowDown { .. } => "rate_limited",
        Answer::Failed { .. } => "failed",
        Answer::Rejected { .. } => "rejected",
    }
}

/// How long from `now` until `at` (zero if it has passed).
fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}
