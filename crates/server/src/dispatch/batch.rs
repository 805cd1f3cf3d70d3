//! The dispatcher's reads and writes, many to a statement. A burst's sends each read their
//! message and write their outcome; one round trip (and on SQLite's single writer, one
//! fsync) each made the store the bound on messages sent per second. Requests are queued to
//! one task instead, which serves whatever has gathered while it served the last batch, up
//! to [`MAX_BATCH`], at once: under a burst the batches grow, and alone a request waits for
//! no one.
//!
//! - [`Batcher::recorder`]: outcomes (a send, a booking, a retry, an expiry) committed in
//!   one transaction, with one count per provider; if a batch fails, each is written alone,
//!   so that one the store refuses fails only itself.
//! - [`Batcher::reader`]: the messages of the jobs just claimed, read together.

use futures_util::FutureExt;
use questline_core::id::TenantId;
use questline_core::message::{Message, MessageUpdate};
use questline_service::Service;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// Requests served at most at once.
const MAX_BATCH: usize = 500;
/// Requests waiting at most; one past it waits for room.
const QUEUE: usize = 20_000;

/// A message as the store has it (`None`: there is none), or why it could not be had.
pub type Answer = Result<Option<Message>, String>;

type Pending<Q> = (Q, oneshot::Sender<Answer>);

/// A queue to one task that serves requests `Q` in batches. Dropped (with the dispatcher,
/// after its worker has stopped and no send waits on it), it stops the task.
pub struct Batcher<Q> {
    queue: mpsc::Sender<Pending<Q>>,
    _task: JoinSet<()>,
}

/// An outcome to record: the message's tenant and id, and the update.
pub type Outcome = (TenantId, String, MessageUpdate);
/// A message to read: its tenant and id.
pub type Wanted = (TenantId, String);

impl Batcher<Outcome> {
    /// Writes outcomes, many to a transaction.
    pub fn recorder(service: Arc<Service>) -> Self {
        Self::start(move |updates: Vec<Outcome>| {
            let service = service.clone();
            async move { record(&service, updates).await }
        })
    }
}

impl Batcher<Wanted> {
    /// Reads messages, many to a statement.
    pub fn reader(service: Arc<Service>) -> Self {
        Self::start(move |wanted: Vec<Wanted>| {
            let service = service.clone();
            async move {
                let n = wanted.len();
                match guarded(service.messages(&wanted)).await {
                    Ok(found) => found.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e); n],
                }
            }
        })
    }
}

impl<Q: Send + 'static> Batcher<Q> {
    /// Starts the task on the current runtime; `serve` answers a batch, one answer per
    /// request in order.
    fn start<F, Fut>(serve: F) -> Self
    where
        F: Fn(Vec<Q>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<Answer>> + Send,
    {
        let (queue, mut pending) = mpsc::channel::<Pending<Q>>(QUEUE);
        let mut task = JoinSet::new();
        task.spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (requests, replies): (Vec<Q>, Vec<_>) = batch.drain(..).unzip();
                let n = requests.len();
                let mut answers = serve(requests).await.into_iter();
                for reply in replies {
                    let answer = answers.next().unwrap_or_else(|| Err(format!("a batch of {n} gave fewer answers")));
                    let _ = reply.send(answer);
                }
            }
        });
        Self { queue, _task: task }
    }

    /// `request`'s answer, once its batch is served.
    pub async fn ask(&self, request: Q) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.queue.send((request, reply)).await.map_err(|_| "the dispatcher is stopping".to_owned())?;
        answer.await.map_err(|_| "the dispatcher is stopping".to_owned())?
    }
}

/// A store call whose panic is its error, not the task's end: a task gone would fail every
/// later request (and a send not recorded is sent again).
async fn guarded<T>(call: impl Future<Output = questline_service::Result<T>>) -> Result<T, String> {
    match AssertUnwindSafe(call).catch_unwind().await {
        Ok(done) => done.map_err(|e| e.to_string()),
        Err(_) => {
            tracing::error!("a batched store call of the dispatcher panicked");
            Err("the store call panicked".to_owned())
        }
    }
}

async fn record(service: &Service, updates: Vec<Outcome>) -> Vec<Answer> {
    let n = updates.len();
    match guarded(service.update_messages(&updates)).await {
        Ok(saved) => {
            metrics::histogram!("questline_messages_outcomes_per_commit").record(n as f64);
            saved.into_iter().map(Ok).collect()
        }
        // One outcome the store refuses must not fail the others: each is tried alone.
        // (Were the batch's commit to fail after it took effect, an attempt would be written
        // twice; a send is counted once, a final message being left as it is.)
        Err(e) if n > 1 => {
            tracing::warn!(error = %e, outcomes = n, "a batch of message outcomes failed; writing each alone");
            let mut answers = Vec::with_capacity(n);
            for one in &updates {
                let answer = guarded(service.update_messages(std::slice::from_ref(one))).await;
                answers.push(answer.map(|mut saved| saved.pop().flatten()));
            }
            answers
        }
        Err(e) => vec![Err(e)],
    }
}
