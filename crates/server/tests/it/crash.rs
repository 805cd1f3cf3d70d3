//! A `questline worker` killed with SIGKILL in the middle of a job: once its lease lapses,
//! another worker runs the job again, and it finishes exactly once.

use crate::start_with;
use crate::webhooks::{Endpoint, SECRET_KEY, decided_reward, earn_cash, header, listed_jobs};
use questline_testkit::{Backend, DEADLINE, Role, ServerOptions, TestServer, eventually, send};
use serde_json::json;
use std::time::{Duration, Instant};

/// The lease of the tests' workers, in seconds: short, so the test waits little for it.
const LEASE: &str = "2";

async fn worker(backend: Backend, api: &TestServer) -> TestServer {
    start_with(
        ServerOptions::on(backend)
            .role(Role::Worker)
            .database_url(api.database_url())
            .env("QUESTLINE_ALLOW_PRIVATE_TARGETS", "true")
            .env("QUESTLINE_SECRET_KEY", SECRET_KEY)
            .env("QUESTLINE_WORKER_LEASE_SECONDS", LEASE),
    )
    .await
}

pub async fn a_job_whose_worker_is_killed_runs_again_after_its_lease_and_finishes_once(backend: Backend) {
    let api = start_with(
        ServerOptions::on(backend)
            .role(Role::Api)
            .env("QUESTLINE_ALLOW_PRIVATE_TARGETS", "true")
            .env("QUESTLINE_SECRET_KEY", SECRET_KEY),
    )
    .await;
    // The first delivery is never answered: the worker is killed inside it.
    let endpoint = Endpoint::start_hanging_first(vec![(200, vec![], "")], true).await;
    let hook = json!({"url": endpoint.url, "events": ["reward.fulfil"],
                      "retry": {"max_attempts": 3, "initial": "PT1S", "max": "PT1S"}});
    assert_eq!(send(api.post("/v1/webhooks", &hook)).await.status().as_u16(), 201);
    earn_cash(&api, "u-k").await;

    let first = worker(backend, &api).await;
    eventually("the first worker's delivery", DEADLINE, || async {
        if endpoint.received().is_empty() { Err(first.logs()) } else { Ok(()) }
    })
    .await;
    first.kill();
    let killed_at = Instant::now();

    let second = worker(backend, &api).await;
    let reward = decided_reward(&api, "u-k").await;
    assert_eq!((&reward["status"], &reward["attempts"]), (&json!("granted"), &json!(2)), "{reward}");
    let received = endpoint.received();
    assert_eq!(received.len(), 2, "delivered again once, after the kill");
    let waited = received[1].at.duration_since(killed_at);
    assert!(waited >= Duration::from_millis(1000), "not before the lease lapsed: {waited:?}");
    assert_eq!(header(&received[0], "webhook-id"), header(&received[1], "webhook-id"), "the same delivery");

    let items = listed_jobs(&api, "kind=reward.fulfil", 1).await;
    assert_eq!(items.len(), 1, "one job for the reward: {items:?}");
    let job = &items[0];
    assert_eq!((&job["state"], &job["attempt"]), (&json!("succeeded"), &json!(2)), "{job}");
    let errors = job["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{job}");
    assert!(errors[0]["error"].as_str().unwrap().contains("lease lapsed"), "{job}");
    assert!(second.logs().contains("reward.fulfil"), "the second worker delivered it: {}", second.logs());
}
