//! Wake-ups across processes: every script that makes jobs due publishes on the namespace's
//! `wake` channel (inside the script, so a listener hears of a job exactly when it exists);
//! each worker's listener subscribes and bumps its `wakeups`. Redis's answer to PostgreSQL's
//! `LISTEN`/`NOTIFY`: the worker sleeps until told, and polls only for what no one announces
//! (a delayed job's time coming).

use crate::backend::wake;
use crate::error::Result;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Bumps `wakeups` on every message on `channel` until `stop`. A lost connection is opened
/// again after a pause (meanwhile workers fall back to their poll), and wakes once, for what
/// may have been published while it was down.
pub(super) async fn listen(
    client: &redis::Client,
    channel: &str,
    wakeups: &watch::Sender<u64>,
    stop: &CancellationToken,
) -> Result<()> {
    const PAUSE: Duration = Duration::from_secs(1);
    while !stop.is_cancelled() {
        let mut pubsub = match client.get_async_pubsub().await {
            Ok(pubsub) => pubsub,
            Err(e) => {
                tracing::warn!(error = %e, "queue: cannot subscribe to Redis; polling until it answers");
                tokio::select! { () = stop.cancelled() => break, () = tokio::time::sleep(PAUSE) => continue }
            }
        };
        if let Err(e) = pubsub.subscribe(channel).await {
            tracing::warn!(error = %e, "queue: SUBSCRIBE failed; polling meanwhile");
            tokio::select! { () = stop.cancelled() => break, () = tokio::time::sleep(PAUSE) => continue }
        }
        wake(wakeups);
        let mut messages = pubsub.on_message();
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                message = messages.next() => match message {
                    Some(_) => wake(wakeups),
                    None => {
                        tracing::warn!("queue: Redis subscription lost; reconnecting");
                        break;
                    }
                },
            }
        }
    }
    Ok(())
}
