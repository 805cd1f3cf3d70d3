//! A message provider to test the dispatcher against, behaving as real SMS and e-mail APIs
//! do: it enforces its own sliding-window limits by its own clock (the instant a request
//! reaches it, never the sender's idea of time), answers a request past a limit with 429 and
//! `Retry-After`, counts those breaches, records every request, and can be told to fail or
//! to answer slowly. The burst test and the messages benchmark run it; so can a person
//! (`questline-provider-sim --limit 100/1000`).
//!
//! - `POST` on any path but the ones below: one message; 200 `{"id": "sim-N"}` if admitted.
//! - `GET /stats`: counts, and the most requests admitted in any window of each limit.
//! - `GET /requests?after=N`: the log, at most 10,000 entries from entry `N`.
//! - `POST /control`: `{"fail_status": 503, "fail_next": 3}` fails the next three requests;
//!   `{"delay_ms": 200}` answers every request 200 ms late; `{}` restores normal service.

mod limits;

pub use limits::{SlidingLimits, Window};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Entries one `GET /requests` answers at most.
pub const PAGE: usize = 10_000;
/// Requests the log keeps at most; the counts go on past it.
pub const MAX_LOG: usize = 2_000_000;

/// One request as the simulator saw it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Request {
    /// Microseconds since the simulator started, on its own clock, when the request arrived.
    pub at_us: u64,
    /// What it answered.
    pub status: u16,
    /// The body as JSON (`null` if it was not JSON).
    pub body: Value,
}

/// `GET /stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub name: String,
    /// Requests received, of any outcome.
    pub received: u64,
    /// Requests admitted and answered 200.
    pub admitted: u64,
    /// Requests past a limit, answered 429.
    pub breaches: u64,
    /// Requests failed on command.
    pub failed: u64,
    /// For each limit, `[requests, window_ms, most admitted in any such window]`.
    pub windows: Vec<[u64; 3]>,
}

/// `POST /control`: what the next requests meet. Absent fields mean normal service.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// The status failed requests get (default 503).
    pub fail_status: Option<u16>,
    /// How many of the next requests fail.
    pub fail_next: Option<u64>,
    /// How long every answer waits.
    pub delay_ms: Option<u64>,
}

struct Inner {
    started: Instant,
    limits: SlidingLimits,
    control: Control,
    log: Vec<Request>,
    stats: Stats,
}

#[derive(Clone)]
struct Shared(Arc<Mutex<Inner>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain counters behind: still worth reading.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running simulator; stops when dropped.
pub struct Simulator {
    addr: SocketAddr,
    shared: Shared,
    /// The server; dropping the set aborts it.
    _server: JoinSet<()>,
    /// The runtime of its own it runs on, if it was started with [`Simulator::start_alone`].
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        // Without waiting: a simulator may be dropped inside async code.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Simulator {
    /// Starts a simulator named `name` on `listen` (port 0: any free port) with `limits`.
    pub async fn start(name: &str, listen: SocketAddr, limits: Vec<Window>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Shared(Arc::new(Mutex::new(Inner {
            started: Instant::now(),
            limits: SlidingLimits::new(limits),
            control: Control::default(),
            log: Vec::new(),
            stats: Stats { name: name.to_owned(), ..Stats::default() },
        })));
        let app = axum::Router::new()
            .route("/stats", get(stats))
            .route("/requests", get(requests))
            .route("/control", post(control))
            .fallback(post(message))
            .with_state(shared.clone());
        let mut server = JoinSet::new();
        server.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, _server: server, runtime: None })
    }

    /// [`Simulator::start`], on a runtime (a thread) of its own, as a provider is on a
    /// machine of its own: on the caller's runtime, a busy moment there (a test posting and
    /// polling, a server routing a burst) would delay the moment it stamps an arrival, and
    /// sends that left on time would be counted as bunched.
    pub fn start_alone(name: &str, listen: SocketAddr, limits: Vec<Window>) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("provider-sim-{name}"))
            .enable_all()
            .build()?;
        let (handle, name) = (runtime.handle().clone(), name.to_owned());
        // Started from a thread outside every runtime: `block_on` may not run inside one.
        let started = std::thread::spawn(move || handle.block_on(Self::start(&name, listen, limits)))
            .join()
            .map_err(|_| std::io::Error::other("the simulator panicked while starting"))?;
        let mut sim = started?;
        sim.runtime = Some(runtime);
        Ok(sim)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where messages go: `http://ADDR/send`.
    pub fn url(&self) -> String {
        format!("http://{}/send", self.addr)
    }

    /// The instant its clock counts from: a request's time is `started() + at_us`.
    pub fn started(&self) -> Instant {
        self.shared.lock().started
    }

    pub fn stats(&self) -> Stats {
        snapshot(&self.shared.lock())
    }

    /// Every request so far (up to [`MAX_LOG`]).
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().log.clone()
    }

    /// When each admitted request arrived, in order, on this process's clock.
    pub fn admissions(&self) -> Vec<Instant> {
        let inner = self.shared.lock();
        inner.log.iter().filter(|r| r.status == 200).map(|r| inner.started + Duration::from_micros(r.at_us)).collect()
    }

    pub fn control(&self, control: Control) {
        self.shared.lock().control = control;
    }
}

/// Admissions per second while a provider had work, against its limit of `per_second`: from
/// its first admission to the one by which it had taken 99 % of its messages. The last 1 %
/// are stragglers (messages routed again after a missed slot, sent when their new slot
/// comes), and the time between them is time the provider had nothing to do.
pub fn utilisation(admissions: &[Instant], per_second: u32) -> f64 {
    let main = admissions.len() * 99 / 100;
    if main < 2 {
        return 0.0;
    }
    let span = admissions[main - 1].duration_since(admissions[0]).as_secs_f64();
    (main - 1) as f64 / span / f64::from(per_second)
}

fn snapshot(inner: &Inner) -> Stats {
    let mut stats = inner.stats.clone();
    stats.windows = inner
        .limits
        .windows()
        .iter()
        .zip(inner.limits.most_admitted())
        .map(|(w, most)| [u64::from(w.requests), w.length.as_millis() as u64, u64::from(*most)])
        .collect();
    stats
}

async fn message(State(shared): State<Shared>, body: axum::body::Bytes) -> Response {
    let (answer, delay) = {
        let mut inner = shared.lock();
        let now = Instant::now();
        let at_us = now.duration_since(inner.started).as_micros() as u64;
        inner.stats.received += 1;
        let delay = inner.control.delay_ms.map(Duration::from_millis);
        let answer = if inner.control.fail_next.is_some_and(|n| n > 0) {
            inner.control.fail_next = inner.control.fail_next.map(|n| n - 1);
            inner.stats.failed += 1;
            let status = inner.control.fail_status.unwrap_or(503);
            Answer::Failed(StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE))
        } else {
            match inner.limits.admit(now) {
                Ok(()) => {
                    inner.stats.admitted += 1;
                    Answer::Admitted(inner.stats.admitted)
                }
                Err(retry_after) => {
                    inner.stats.breaches += 1;
                    Answer::Breach(retry_after)
                }
            }
        };
        if inner.log.len() < MAX_LOG {
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            inner.log.push(Request { at_us, status: answer.status().as_u16(), body });
        }
        (answer, delay)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    answer.into_response()
}

enum Answer {
    Admitted(u64),
    Breach(Duration),
    Failed(StatusCode),
}

impl Answer {
    fn status(&self) -> StatusCode {
        match self {
            Answer::Admitted(_) => StatusCode::OK,
            Answer::Breach(_) => StatusCode::TOO_MANY_REQUESTS,
            Answer::Failed(status) => *status,
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Answer::Admitted(n) => Json(json!({"id": format!("sim-{n}")})).into_response(),
            Answer::Breach(retry_after) => {
                // Whole seconds, rounded up, as most providers send it.
                let secs = retry_after.as_millis().div_ceil(1000).max(1);
                let mut response =
                    (StatusCode::TOO_MANY_REQUESTS, Json(json!({"error": "rate limited"}))).into_response();
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs as u64));
                response
            }
            Answer::Failed(status) => (status, Json(json!({"error": "failing on command"}))).into_response(),
        }
    }
}

async fn stats(State(shared): State<Shared>) -> Json<Stats> {
    Json(snapshot(&shared.lock()))
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    after: usize,
}

async fn requests(State(shared): State<Shared>, Query(page): Query<Page>) -> Json<Vec<Request>> {
    let inner = shared.lock();
    let from = page.after.min(inner.log.len());
    let to = (from + PAGE).min(inner.log.len());
    Json(inner.log[from..to].to_vec())
}

async fn control(State(shared): State<Shared>, Json(control): Json<Control>) -> StatusCode {
    shared.lock().control = control;
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests;
