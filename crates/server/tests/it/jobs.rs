//! `/v1/jobs` and the roles (`questline api`, `questline worker`), through the real binary.
//!
//! The server's own jobs (settlement) show what a running server enqueues and succeeds.
//! Jobs in the other states are put on the server's database by the test through the
//! queue's own lane (`questline_queue::SqlQueue`, a second client of the same database), of
//! kinds no handler of the server takes, so that they stay where the test put them: parked
//! (scheduled or available), claimed and left running, or claimed and discarded (dead).

use crate::fixtures::{body_when, create_mission, hours_ago, ingest, ok};
use crate::start_with;
use jiff::{SignedDuration, Timestamp};
use questline_queue::{Ack, Backend, ClaimRequest, Job, NewJob, Outcome, QueueConfig, SqlQueue};
use questline_testkit::{Backend as Db, DEADLINE, Role, ServerOptions, TestServer, expect_problem, send};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// The kinds questline settles rewards with (one job per reward, and the periodic sweep),
/// and its other periodic jobs (expired points, pruning).
const OWN_KINDS: [&str; 4] = ["reward.settle", "reward.settle_due", "balance.expire", "jobs.prune"];

/// The fields of API.md's `Job`; a body may have more, never fewer.
const JOB_FIELDS: [&str; 9] =
    ["id", "kind", "state", "attempt", "max_attempts", "run_at", "errors", "created_at", "finished_at"];

fn assert_job_shape(job: &Value) {
    for field in JOB_FIELDS {
        assert!(job.get(field).is_some(), "no {field} in {job}");
    }
    for error in job["errors"].as_array().unwrap() {
        let keys: BTreeSet<&str> = error.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["at", "attempt", "error"]), "{job}");
    }
}

/// The queue on the server's database, as a second client of it.
async fn queue_of(server: &TestServer) -> SqlQueue {
    let store = questline_store::connect(server.database_url()).await.expect("open the server's database");
    SqlQueue::open(store, QueueConfig::default()).await.expect("open the queue")
}

async fn enqueue(queue: &SqlQueue, job: NewJob) -> Job {
    queue.enqueue(vec![job], Timestamp::now()).await.expect("enqueue").remove(0)
}

/// Claims the one job of `kind` (a kind only the test takes), leased for an hour.
async fn claim(queue: &SqlQueue, kind: &str) -> Job {
    let request = ClaimRequest { kinds: vec![kind.to_owned()], limit: 1, lease: Duration::from_secs(3600) };
    let mut claimed = queue.claim(&request, Timestamp::now()).await.expect("claim");
    assert_eq!(claimed.len(), 1, "one {kind} job to claim");
    claimed.remove(0)
}

/// A timestamp of a body.
fn ts(value: &Value) -> Timestamp {
    value.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a timestamp: {value}"))
}

fn items(body: &Value) -> &Vec<Value> {
    body["items"].as_array().expect("items")
}

fn ids(body: &Value) -> Vec<String> {
    items(body).iter().map(|j| j["id"].as_str().unwrap().to_owned()).collect()
}

/// A points mission reached with one `article_read`, and one such event for each of `users`:
/// a pending reward each for the worker to settle.
async fn earn_points(server: &TestServer, users: &[&str]) {
    create_mission(
        server,
        &json!({"id": "read-1", "name": "Read one", "status": "active",
                "steps": [{"event_type": "article_read", "target": 1}],
                "reward": {"kind": "points", "amount": 25}}),
    )
    .await;
    let events: Vec<Value> = users
        .iter()
        .map(|u| json!({"id": format!("read-{u}"), "type": "article_read", "user_id": u, "occurred_at": hours_ago(1)}))
        .collect();
    ingest(server, &events).await;
}

pub async fn settlement_jobs_are_listed_succeeded_and_paged(backend: Db) {
    let server = crate::start(backend).await;
    earn_points(&server, &["u-1", "u-2", "u-3"]).await;
    body_when(&server, "/v1/users/u-3/rewards", |b| items(b).iter().all(|r| r["status"] == "granted")).await;
    let succeeded = body_when(&server, "/v1/jobs?state=succeeded", |b| items(b).len() >= 3).await;
    for job in items(&succeeded) {
        assert_job_shape(job);
        assert!(OWN_KINDS.contains(&job["kind"].as_str().unwrap()), "{job}");
        assert_eq!((&job["state"], &job["attempt"], &job["errors"]), (&json!("succeeded"), &json!(1), &json!([])));
        assert!(ts(&job["finished_at"]) >= ts(&job["created_at"]), "{job}");
        let one = ok(server.get(&format!("/v1/jobs/{}", job["id"].as_str().unwrap()))).await;
        assert_eq!((&one["id"], &one["state"]), (&job["id"], &job["state"]));
    }

    // A kind filter keeps that kind only; a kind no job has lists nothing.
    let kind = items(&succeeded)[0]["kind"].as_str().unwrap().to_owned();
    let of_kind = ok(server.get(&format!("/v1/jobs?kind={kind}&state=succeeded"))).await;
    assert!(!items(&of_kind).is_empty() && items(&of_kind).iter().all(|j| j["kind"] == kind.as_str()), "{of_kind}");
    assert_eq!(ok(server.get("/v1/jobs?kind=no.such.kind")).await, json!({"items": [], "next_cursor": null}));

    // Pages of one, oldest first, each resuming where the last ended; the walk sees the first
    // page of three, in order (the server enqueues on meanwhile: only newer ids can follow).
    let first_three = ok(server.get("/v1/jobs?state=succeeded&limit=3")).await;
    assert_eq!(items(&first_three).len(), 3);
    let mut walked = Vec::new();
    let mut path = "/v1/jobs?state=succeeded&limit=1".to_owned();
    while walked.len() < 3 {
        let page = ok(server.get(&path)).await;
        assert_eq!(items(&page).len(), 1, "{page}");
        walked.extend(ids(&page));
        let cursor = page["next_cursor"].as_str().expect("more pages follow");
        path = format!("/v1/jobs?state=succeeded&limit=1&cursor={cursor}");
    }
    assert_eq!(walked, ids(&first_three));
    let mut sorted = walked.clone();
    sorted.sort();
    assert_eq!(walked, sorted, "oldest first");

    // A read key may list and read, not retry or cancel.
    let (_, read_key) = server.create_key("reader", "read").await;
    let listed = ok(server.with_key(&read_key, Method::GET, "/v1/jobs?limit=1")).await;
    let id = ids(&listed)[0].clone();
    ok(server.with_key(&read_key, Method::GET, &format!("/v1/jobs/{id}"))).await;
    for action in ["retry", "cancel"] {
        let refused = send(server.with_key(&read_key, Method::POST, &format!("/v1/jobs/{id}/{action}"))).await;
        expect_problem(refused, 403).await;
    }

    // A succeeded job can be neither run again nor cancelled.
    let done = &items(&succeeded)[0]["id"].as_str().unwrap().to_owned();
    let retried = expect_problem(send(server.admin(Method::POST, &format!("/v1/jobs/{done}/retry"))).await, 409).await;
    assert!(retried["type"].as_str().unwrap().ends_with("/job-not-retryable"), "{retried}");
    assert_eq!(retried["state"], "succeeded");
    let cancelled =
        expect_problem(send(server.admin(Method::POST, &format!("/v1/jobs/{done}/cancel"))).await, 409).await;
    assert!(cancelled["type"].as_str().unwrap().ends_with("/job-not-cancellable"), "{cancelled}");
    assert_eq!(ok(server.get(&format!("/v1/jobs/{done}"))).await["state"], "succeeded", "nothing changed");
}

pub async fn jobs_filter_by_state_and_kind_and_retry_and_cancel_follow_their_state(backend: Db) {
    let server = crate::start(backend).await;
    let queue = queue_of(&server).await;
    let later = Timestamp::now() + SignedDuration::from_hours(1);
    let scheduled = enqueue(&queue, NewJob::new("test.parked", json!({"n": 1})).run_at(later)).await;
    let available = enqueue(&queue, NewJob::new("test.parked", json!({"n": 2}))).await;
    let elsewhere = enqueue(&queue, NewJob::new("test.parked", json!({"n": 3})).tenant("another-app")).await;
    enqueue(&queue, NewJob::new("test.held", json!({}))).await;
    let running = claim(&queue, "test.held").await;
    enqueue(&queue, NewJob::new("test.doomed", json!({})).max_attempts(1)).await;
    let doomed = claim(&queue, "test.doomed").await;
    let outcome = Outcome::discard("boom: the payload names nothing");
    queue.complete(vec![Ack { claim: doomed.claim(), outcome }], Timestamp::now()).await.expect("complete");

    let parked = ok(server.get("/v1/jobs?kind=test.parked")).await;
    assert_eq!(
        ids(&parked),
        [scheduled.id.to_string(), available.id.to_string()],
        "another tenant's job is not listed"
    );
    let states: Vec<&Value> = items(&parked).iter().map(|j| &j["state"]).collect();
    assert_eq!(states, [&json!("scheduled"), &json!("available")]);
    assert_eq!(items(&parked)[0]["payload"], json!({"n": 1}));
    let run_at = ts(&items(&parked)[0]["run_at"]);
    assert!(run_at > later - SignedDuration::from_millis(1) && run_at <= later, "{parked}");
    let only = |query: &str| {
        let request = server.get(&format!("/v1/jobs?{query}"));
        async move { ids(&ok(request).await) }
    };
    assert_eq!(only("kind=test.parked&state=scheduled").await, [scheduled.id.to_string()]);
    assert_eq!(only("state=available&kind=test.parked").await, [available.id.to_string()]);
    // questline's own periodic sweeps may be running too: the test's kinds are `test.*`.
    let running_now = ok(server.get("/v1/jobs?state=running")).await;
    let ours: Vec<&Value> =
        items(&running_now).iter().filter(|j| j["kind"].as_str().unwrap().starts_with("test.")).collect();
    assert_eq!(ours.iter().map(|j| j["id"].as_str().unwrap()).collect::<Vec<_>>(), [running.id.to_string()]);
    assert!(items(&running_now).iter().all(|j| j["state"] == "running"), "{running_now}");
    assert_eq!(only("kind=test.parked&limit=1").await, [scheduled.id.to_string()]);
    let dead = ok(server.get("/v1/jobs?state=dead")).await;
    assert_eq!(ids(&dead), [doomed.id.to_string()]);
    let dead = &items(&dead)[0];
    assert_job_shape(dead);
    assert_eq!((&dead["attempt"], &dead["max_attempts"]), (&json!(1), &json!(1)));
    assert_eq!(dead["errors"][0]["error"], "boom: the payload names nothing");
    assert_eq!(dead["errors"][0]["attempt"], 1);
    assert!(dead["finished_at"].is_string(), "{dead}");

    // Another tenant's job is nobody's here.
    for request in [
        server.get(&format!("/v1/jobs/{}", elsewhere.id)),
        server.admin(Method::POST, &format!("/v1/jobs/{}/retry", elsewhere.id)),
        server.admin(Method::POST, &format!("/v1/jobs/{}/cancel", elsewhere.id)),
    ] {
        let missing = expect_problem(send(request).await, 404).await;
        assert!(missing["type"].as_str().unwrap().ends_with("/job-not-found"), "{missing}");
    }
    assert_eq!(queue.get(&elsewhere.id, Timestamp::now()).await.unwrap().unwrap().state.as_str(), "available");

    let post = |id: &str, action: &str| server.admin(Method::POST, &format!("/v1/jobs/{id}/{action}"));
    // A running job can be neither retried nor cancelled.
    for (action, slug) in [("retry", "job-not-retryable"), ("cancel", "job-not-cancellable")] {
        let refused = expect_problem(send(post(running.id.as_str(), action)).await, 409).await;
        assert!(refused["type"].as_str().unwrap().ends_with(slug), "{refused}");
        assert_eq!(refused["state"], "running");
    }
    // A dead job runs again, with one more attempt, its errors kept.
    let before = Timestamp::now() - SignedDuration::from_millis(1);
    let redriven = ok(post(doomed.id.as_str(), "retry")).await;
    assert_eq!(
        (&redriven["state"], &redriven["attempt"], &redriven["max_attempts"]),
        (&json!("available"), &json!(1), &json!(2))
    );
    assert_eq!((&redriven["errors"], &redriven["finished_at"]), (&dead["errors"], &Value::Null));
    assert!(ts(&redriven["run_at"]) >= before, "runs now: {redriven}");
    // A scheduled job runs now.
    let now_due = ok(post(scheduled.id.as_str(), "retry")).await;
    assert_eq!(now_due["state"], "available");
    assert!(ts(&now_due["run_at"]) < later - SignedDuration::from_mins(59), "{now_due}");
    // A job that has not started is cancelled, for good: cancelling again changes nothing,
    // and it cannot be retried.
    let cancelled = ok(post(available.id.as_str(), "cancel")).await;
    assert_eq!(cancelled["state"], "cancelled");
    assert!(cancelled["finished_at"].is_string(), "{cancelled}");
    assert_eq!(ok(post(available.id.as_str(), "cancel")).await, cancelled);
    let refused = expect_problem(send(post(available.id.as_str(), "retry")).await, 409).await;
    assert_eq!(refused["state"], "cancelled");
    assert_eq!(only("state=cancelled").await, [available.id.to_string()]);
    // A dead job cannot be cancelled: it is finished.
    enqueue(&queue, NewJob::new("test.doomed", json!({})).max_attempts(1)).await;
    let second = claim(&queue, "test.doomed").await;
    let outcome = Outcome::discard("boom again");
    queue.complete(vec![Ack { claim: second.claim(), outcome }], Timestamp::now()).await.expect("complete");
    let refused = expect_problem(send(post(second.id.as_str(), "cancel")).await, 409).await;
    assert_eq!(refused["state"], "dead");
}

pub async fn bad_job_queries_are_422_and_unknown_jobs_404(backend: Db) {
    let server = crate::start(backend).await;
    for state in ["done", "", "SUCCEEDED"] {
        let bad = expect_problem(send(server.get(&format!("/v1/jobs?state={state}"))).await, 422).await;
        assert_eq!(bad["errors"][0]["pointer"], "query/state", "{bad}");
        let detail = bad["errors"][0]["detail"].as_str().unwrap();
        for allowed in ["scheduled", "available", "running", "retrying", "succeeded", "cancelled", "dead"] {
            assert!(detail.contains(allowed), "{detail}");
        }
    }
    for query in ["limit=0", "limit=501", "cursor=***", "cursor=AA"] {
        let bad = expect_problem(send(server.get(&format!("/v1/jobs?{query}"))).await, 422).await;
        let field = query.split('=').next().unwrap();
        assert_eq!(bad["errors"][0]["pointer"], format!("query/{field}"), "{query}: {bad}");
    }
    let bad = expect_problem(send(server.get("/v1/jobs?kind=a%00b")).await, 422).await;
    assert_eq!(bad["errors"][0]["pointer"], "query/kind", "{bad}");
    ok(server.get("/v1/jobs?limit=500&state=succeeded&kind=reward.settle_due")).await;

    for id in ["0190f5a4c2b87d3e9a1b2c3d4e5f6a7b", "nope", "a%00b"] {
        for request in [
            server.get(&format!("/v1/jobs/{id}")),
            server.admin(Method::POST, &format!("/v1/jobs/{id}/retry")),
            server.admin(Method::POST, &format!("/v1/jobs/{id}/cancel")),
        ] {
            let missing = expect_problem(send(request).await, 404).await;
            assert!(missing["type"].as_str().unwrap().ends_with("/job-not-found"), "{id}: {missing}");
        }
    }
    expect_problem(send(server.anonymous(Method::GET, "/v1/jobs")).await, 401).await;
}

pub async fn an_api_process_settles_nothing_and_a_worker_beside_it_settles(backend: Db) {
    let api = start_with(ServerOptions::on(backend).role(Role::Api)).await;
    ok(api.anonymous(Method::GET, "/healthz")).await;
    earn_points(&api, &["u-1"]).await;
    let pending = ok(api.get("/v1/users/u-1/rewards")).await;
    assert_eq!(items(&pending).len(), 1, "{pending}");
    // Proving that nothing happens takes a wait: the serve role would have settled the
    // reward well within it (its worker claims due jobs at once, its sweep ticks every
    // second or minute).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rewards = ok(api.get("/v1/users/u-1/rewards")).await;
    assert_eq!(rewards["items"][0]["status"], "pending", "no worker in `questline api`: {rewards}");
    assert_eq!(ok(api.get("/v1/users/u-1/balances")).await["items"], json!([]));
    for state in ["running", "succeeded", "dead", "retrying"] {
        let none = ok(api.get(&format!("/v1/jobs?state={state}"))).await;
        assert_eq!(items(&none).len(), 0, "no job ran: {none}");
    }

    let mut worker = start_with(
        ServerOptions::on(backend)
            .role(Role::Worker)
            .database_url(api.database_url())
            .env("QUESTLINE_WORKER_CONCURRENCY", "2"),
    )
    .await;
    assert!(worker.base_url.is_empty() && worker.startup_lines.is_empty(), "{:?}", worker.startup_lines);
    let settled = body_when(&api, "/v1/users/u-1/rewards", |b| b["items"][0]["status"] == "granted").await;
    assert_eq!(settled["items"][0]["attempts"], 1, "{settled}");
    let balances = ok(api.get("/v1/users/u-1/balances")).await;
    assert_eq!(balances["items"], json!([{"currency": "points", "balance": 25}]));
    // Acknowledgements are batched: the job is marked succeeded a moment after the unit that
    // granted the reward commits.
    let succeeded = body_when(&api, "/v1/jobs?state=succeeded", |b| !items(b).is_empty()).await;
    assert!(!items(&succeeded).is_empty(), "the worker's jobs are listed by the API: {succeeded}");

    worker.terminate();
    let status = worker.wait(DEADLINE).await.expect("the worker stops on SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", worker.logs());
    let logs = worker.logs();
    assert!(logs.contains("questline worker running") && logs.contains("concurrency=2"), "{logs}");
    assert!(logs.contains("SIGTERM received") && logs.contains("stopped"), "{logs}");
    assert!(!logs.contains("listening"), "a worker listens nowhere: {logs}");
    assert_eq!(worker.stdout_lines(), ["questline worker running"]);
    // The API process runs on, the reward settled once.
    let entries = ok(api.get("/v1/users/u-1/balances/points/entries")).await;
    assert_eq!(items(&entries).len(), 1, "{entries}");
}

/// A bad `QUESTLINE_WORKER_CONCURRENCY` fails any role's start with one line and status 2;
/// `questline worker` takes no `--listen`.
#[test]
fn a_bad_worker_concurrency_fails_the_start_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("q.db").display());
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(crate::QUESTLINE);
        command.current_dir(dir.path()).args(args);
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("QUESTLINE_")) {
            command.env_remove(name);
        }
        command.envs(env.iter().copied()).output().expect("run questline")
    };
    for role in ["worker", "api", "serve"] {
        for bad in ["0", "1025", "many"] {
            let out = run(&[role, "--database-url", &url], &[("QUESTLINE_WORKER_CONCURRENCY", bad)]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{role} {bad}: {err}");
            assert_eq!(
                err.trim_end(),
                "questline: invalid configuration: worker_concurrency: must be an integer from 1 to 1024",
                "{role} {bad}"
            );
        }
    }
    let out = run(&["worker", "--listen", "127.0.0.1:0", "--database-url", &url], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
    assert!(!dir.path().join("q.db").exists(), "nothing was started");
}
