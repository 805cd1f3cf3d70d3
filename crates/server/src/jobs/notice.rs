//! `notice.send`: a mission's notification due for a user, turned into a queued message as
//! the user's contact and preferences stand when it runs (`service/src/notices.rs`).

use questline_core::id::TenantId;
use questline_queue::{Job, Outcome};
use questline_service::Service;
use questline_service::notices::{NoticeDue, NoticeOutcome};
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn send(service: Arc<Service>, job: Job) -> Outcome {
    let tenant = TenantId::new(&job.tenant_id);
    let due: NoticeDue = match serde_json::from_value(job.payload.clone()) {
        Ok(due) => due,
        Err(e) => return Outcome::discard(format!("a malformed notice payload: {e}")),
    };
    match service.send_notice(&tenant, &due).await {
        Ok(NoticeOutcome::Queued(message)) => {
            tracing::debug!(job_id = %job.id, %message, "notice queued");
            Outcome::Done
        }
        Ok(NoticeOutcome::HeldUntil(release)) => {
            // Quiet hours: held, not dropped; the wait spends no attempt.
            let wait = release.duration_since(service.now()).unsigned_abs();
            tracing::debug!(job_id = %job.id, %release, "notice held by quiet hours");
            Outcome::Snooze(wait.max(Duration::from_millis(1)))
        }
        Ok(NoticeOutcome::Skipped(reason)) => {
            tracing::debug!(job_id = %job.id, notice = %due.id, reason, "notice skipped");
            Outcome::Done
        }
        Err(e) => Outcome::retry(e.to_string()),
    }
}
