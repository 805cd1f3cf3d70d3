//! Settling a claim's rewards together, and handing cash and vouchers to fulfilment.

use super::FULFIL;
use jiff::Timestamp;
use questline_core::id::TenantId;
use questline_queue::{Backend, Job, NewJob, Outcome, SqlQueue};
use questline_service::Service;
use questline_service::wallet::Settled;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a reward waiting for its fulfilment endpoint sleeps between looks.
pub(super) const AWAIT_FULFILMENT: Duration = Duration::from_secs(60);

/// Settles a claim's rewards in one unit of work per tenant (one commit for many rewards,
/// not one each); one outcome per job, in order.
pub(super) async fn settle_many(service: Arc<Service>, queue: Arc<SqlQueue>, jobs: Vec<Job>) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; jobs.len()];
    let mut by_tenant: BTreeMap<&str, Vec<(usize, String)>> = BTreeMap::new();
    for (i, job) in jobs.iter().enumerate() {
        match job.payload.get("reward_id").and_then(|v| v.as_str()) {
            Some(id) => by_tenant.entry(job.tenant_id.as_str()).or_default().push((i, id.to_owned())),
            None => outcomes[i] = Some(Outcome::discard("the payload names no reward_id")),
        }
    }
    for (tenant, items) in by_tenant {
        let ids: Vec<String> = items.iter().map(|(_, id)| id.clone()).collect();
        match service.settle_rewards(&TenantId::new(tenant), &ids).await {
            Ok(settled) => {
                let mut awaiting = Vec::new();
                for ((i, id), settled) in items.iter().zip(settled) {
                    if settled == Settled::AwaitsFulfilment {
                        awaiting.push((*i, id.clone()));
                    }
                    outcomes[*i] = Some(outcome_of(settled));
                }
                if !awaiting.is_empty() {
                    let outcome = hand_to_fulfilment(&service, &queue, &TenantId::new(tenant), &awaiting).await;
                    for (i, _) in &awaiting {
                        outcomes[*i] = Some(outcome.clone());
                    }
                }
            }
            Err(e) => {
                let error = e.to_string();
                for (i, _) in &items {
                    outcomes[*i] = Some(Outcome::retry(error.clone()));
                }
            }
        }
    }
    outcomes.into_iter().map(|o| o.unwrap_or_else(|| Outcome::retry("not settled"))).collect()
}

fn outcome_of(settled: Settled) -> Outcome {
    match settled {
        Settled::Granted | Settled::AlreadyDone(_) | Settled::NotFound => Outcome::Done,
        Settled::NotDue(until) => {
            let wait = until.duration_since(Timestamp::now()).unsigned_abs();
            Outcome::Snooze(wait.max(Duration::from_secs(1)))
        }
        Settled::AwaitsFulfilment => Outcome::Snooze(AWAIT_FULFILMENT),
    }
}

/// Cash and vouchers due for their fulfilment endpoint: a `reward.fulfil` job each (unique
/// per reward, so a settle job run twice enqueues one), and the settle job is done; without
/// an endpoint the settle job snoozes and the rewards wait `pending`.
async fn hand_to_fulfilment(
    service: &Service,
    queue: &SqlQueue,
    tenant: &TenantId,
    rewards: &[(usize, String)],
) -> Outcome {
    let endpoint = match service.fulfilment_endpoint(tenant).await {
        Ok(Some(endpoint)) => endpoint,
        Ok(None) => return Outcome::Snooze(AWAIT_FULFILMENT),
        Err(e) => return Outcome::retry(e.to_string()),
    };
    let jobs = rewards
        .iter()
        .map(|(_, id)| {
            NewJob::new(FULFIL, serde_json::json!({ "reward_id": id }))
                .tenant(tenant.as_str())
                .max_attempts(endpoint.webhook.max_attempts)
                .unique_key(format!("{FULFIL}:{id}"))
        })
        .collect();
    match queue.enqueue(jobs, Timestamp::now()).await {
        Ok(_) => Outcome::Done,
        Err(e) => Outcome::retry(format!("enqueueing fulfilment: {e}")),
    }
}
