//! Leases: concurrent claimers, heartbeats, rescue of lapsed leases, quarantine.

use crate::lane::MAX_CRASHES;
use crate::{LEASE, Lane, ack, at, claim, enqueue, get, job, secs};
use questline_queue::{Backend, Job, JobId, JobState, LEASE_LAPSED, Outcome};
use std::collections::HashSet;
use std::sync::Arc;

pub async fn two_claimers_never_get_the_same_job(lane: &Lane) {
    const JOBS: usize = 300;
    let q = &*lane.queue;
    let all: HashSet<JobId> = q
        .enqueue((0..JOBS).map(|i| job("k", &i.to_string())).collect(), at(0))
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    // Two claimers, as two processes (their own pools on SQL lanes), claiming at once.
    let claimers: [Arc<dyn Backend>; 2] = [lane.queue.clone(), lane.other_process().await];
    let mut tasks = tokio::task::JoinSet::new();
    for claimer in claimers {
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = crate::claim(&*claimer, &["k"], 7, at(1)).await;
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|j| j.id));
            }
        });
    }
    let results = tasks.join_all().await;
    let mut seen = HashSet::new();
    for id in results.iter().flatten() {
        assert!(seen.insert(id.clone()), "job {id} was claimed twice");
    }
    assert_eq!(seen, all, "every job was claimed");
}

pub async fn a_lapsed_lease_is_rescued_and_runs_again(lane: &Lane) {
    let q = &*lane.queue;
    let j = enqueue(q, job("k", "crashy"), at(0)).await;
    let first = claim(q, &["k"], 1, at(0)).await.remove(0);
    // The lease (30 s) has not lapsed at 29 s.
    assert!(q.rescue(at(29)).await.unwrap().is_empty());
    assert_eq!(get(q, &j, at(29)).await.state, JobState::Running);

    // The worker died: at 31 s the job is rescued; the attempt counts.
    let rescued = q.rescue(at(31)).await.unwrap();
    assert_eq!(rescued.len(), 1);
    let r = &rescued[0];
    assert_eq!((r.state, r.attempt, r.crashes, r.run_at), (JobState::Retrying, 1, 1, at(31)));
    assert_eq!((r.errors[0].attempt, r.errors[0].error.as_str()), (1, LEASE_LAPSED));
    // Due at once: a reader sees it available.
    assert_eq!(get(q, &j, at(31)).await, Job { state: JobState::Available, ..r.clone() });
    assert!(q.rescue(at(32)).await.unwrap().is_empty(), "rescued once");

    // It runs again; the dead worker's late acknowledgement and heartbeat change nothing.
    let second = claim(q, &["k"], 1, at(32)).await.remove(0);
    assert_eq!(second.attempt, 2);
    assert_eq!(ack(q, &first, Outcome::discard("late"), at(33)).await, None);
    assert!(q.heartbeat(&[first.claim()], LEASE, at(33)).await.unwrap().is_empty());
    assert_eq!(get(q, &j, at(33)).await.state, JobState::Running);
    let done = ack(q, &second, Outcome::Done, at(34)).await.unwrap();
    assert_eq!((done.state, done.attempt, done.errors.len()), (JobState::Succeeded, 2, 1));
}

pub async fn a_job_that_keeps_crashing_is_quarantined(lane: &Lane) {
    let q = &*lane.queue;
    // Attempts to spare (5), but it kills its worker every time.
    let j = enqueue(q, job("patient", "poison"), at(0)).await;
    let mut now = at(0);
    for crash in 1..=MAX_CRASHES {
        let claimed = claim(q, &["patient"], 1, now).await;
        assert_eq!(claimed.len(), 1, "crash {crash}: it runs again");
        now = now + LEASE + secs(1);
        let rescued = q.rescue(now).await.unwrap().remove(0);
        assert_eq!(rescued.crashes, crash);
        let expected = if crash < MAX_CRASHES { JobState::Retrying } else { JobState::Dead };
        assert_eq!(rescued.state, expected);
    }
    let dead = get(q, &j, now).await;
    assert_eq!((dead.state, dead.finished_at), (JobState::Dead, Some(now)));
    assert_eq!(dead.errors.iter().filter(|e| e.error == LEASE_LAPSED).count(), MAX_CRASHES as usize);
    assert!(claim(q, &["patient"], 1, at(100_000)).await.is_empty(), "quarantined: it waits for a person");
    // A person re-drives it: the crash count starts again.
    let back = q.retry_now(&j.id, now).await.unwrap();
    assert_eq!((back.state, back.crashes), (JobState::Available, 0));
}

pub async fn heartbeats_keep_a_lease(lane: &Lane) {
    let q = &*lane.queue;
    q.enqueue(vec![job("k", "long"), job("k", "other")], at(0)).await.unwrap();
    let held = claim(q, &["k"], 2, at(0)).await;
    let long = held.iter().find(|j| crate::name(j) == "long").unwrap();
    // Heartbeats at 20 s and 45 s: the lease reaches 75 s.
    assert_eq!(q.heartbeat(&[long.claim()], LEASE, at(20)).await.unwrap(), [long.claim()]);
    assert_eq!(q.heartbeat(&[long.claim()], LEASE, at(45)).await.unwrap(), [long.claim()]);
    assert_eq!(get(q, long, at(45)).await.leased_until, Some(at(75)));
    // At 60 s only the one without heartbeats is rescued.
    let rescued = q.rescue(at(60)).await.unwrap();
    assert_eq!(rescued.iter().map(crate::name).collect::<Vec<_>>(), ["other"]);
    assert_eq!(get(q, long, at(60)).await.state, JobState::Running);
    assert!(ack(q, long, Outcome::Done, at(61)).await.is_some(), "its claim still holds");
}

pub async fn concurrent_claimers_keep_a_concurrency_limit(lane: &Lane) {
    const LIMIT: u32 = 3;
    let q = &*lane.queue;
    q.enqueue((0..60).map(|i| job("k", &i.to_string()).concurrency("tenant:t1", LIMIT)).collect(), at(0))
        .await
        .unwrap();
    // Four claimers in two processes, each claiming again and again without finishing
    // anything: together they may never hold more than the limit.
    let processes: [Arc<dyn Backend>; 2] = [lane.queue.clone(), lane.other_process().await];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..4 {
        let claimer = processes[i % 2].clone();
        tasks.spawn(async move {
            let mut mine = 0;
            for _ in 0..10 {
                mine += crate::claim(&*claimer, &["k"], 2, at(1)).await.len();
            }
            mine
        });
    }
    let claimed: usize = tasks.join_all().await.into_iter().sum();
    assert_eq!(claimed, LIMIT as usize, "exactly the limit, never more");
}
