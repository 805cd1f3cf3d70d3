//! Group commit of the dispatcher's outcomes. Every send, retry and expiry is a write; one
//! transaction each made the store's commit (an fsync on SQLite's single writer) the bound on
//! messages sent per second. Outcomes are queued to one writer task instead, which commits
//! whatever has gathered while the last commit ran, up to [`MAX_BATCH`], in one
//! transaction: under a burst the batches grow, and alone a message waits for no one.

use futures_util::FutureExt;
use questline_core::id::TenantId;
use questline_core::message::{Message, MessageUpdate};
use questline_service::Service;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// Outcomes written at most in one transaction.
const MAX_BATCH: usize = 500;
/// Outcomes waiting for the writer at most; a send past it waits for room.
const QUEUE: usize = 20_000;

/// What the writer answers for one outcome: the message as saved (`None`: there is none).
pub type Recorded = Result<Option<Message>, String>;

struct Pending {
    tenant: TenantId,
    id: String,
    update: MessageUpdate,
    reply: oneshot::Sender<Recorded>,
}

/// The handle sends use. Dropped (with the dispatcher, after its worker has stopped and no
/// send waits on it), it stops the writer.
pub struct Recorder {
    queue: mpsc::Sender<Pending>,
    _writer: JoinSet<()>,
}

impl Recorder {
    /// Starts the writer task on the current runtime.
    pub fn start(service: Arc<Service>) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        let mut writer = JoinSet::new();
        writer.spawn(write(service, pending));
        Self { queue, _writer: writer }
    }

    /// Records `update` of message `id`, once it is committed.
    pub async fn record(&self, tenant: &TenantId, id: &str, update: MessageUpdate) -> Recorded {
        let (reply, answer) = oneshot::channel();
        let pending = Pending { tenant: tenant.clone(), id: id.to_owned(), update, reply };
        self.queue.send(pending).await.map_err(|_| "the dispatcher is stopping".to_owned())?;
        answer.await.map_err(|_| "the dispatcher is stopping".to_owned())?
    }
}

/// One batch's write. A panic in it is that batch's error, not the writer's end: a writer
/// gone would fail every later outcome, and a send not recorded is sent again.
async fn update(
    service: &Service,
    updates: &[(TenantId, String, MessageUpdate)],
) -> Result<Vec<Option<Message>>, String> {
    match AssertUnwindSafe(service.update_messages(updates)).catch_unwind().await {
        Ok(written) => written.map_err(|e| e.to_string()),
        Err(_) => {
            tracing::error!(outcomes = updates.len(), "writing message outcomes panicked");
            Err("writing the outcome panicked".to_owned())
        }
    }
}

async fn write(service: Arc<Service>, mut pending: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (updates, replies): (Vec<_>, Vec<_>) =
            batch.drain(..).map(|p| ((p.tenant, p.id, p.update), p.reply)).unzip();
        match update(&service, &updates).await {
            Ok(saved) => {
                metrics::histogram!("questline_messages_outcomes_per_commit").record(updates.len() as f64);
                for (reply, message) in replies.into_iter().zip(saved) {
                    let _ = reply.send(Ok(message));
                }
            }
            // One outcome the store refuses must not fail the others: each is tried alone.
            // (Were the batch's commit to fail after it took effect, an attempt would be
            // written twice; a send is counted once, a final message being left as it is.)
            Err(e) if updates.len() > 1 => {
                tracing::warn!(error = %e, outcomes = updates.len(), "a batch of message outcomes failed; writing each alone");
                for (one, reply) in updates.into_iter().zip(replies) {
                    let answer = update(&service, std::slice::from_ref(&one)).await;
                    let _ = reply.send(answer.map(|mut saved| saved.pop().flatten()));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
