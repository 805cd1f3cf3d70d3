//! Unique keys and concurrency keys.

use crate::{Lane, ack, at, claim, enqueue, job, name};
use questline_queue::{JobState, Outcome};

pub async fn a_unique_key_deduplicates_while_the_job_is_unfinished(lane: &Lane) {
    let q = &*lane.queue;
    let first = enqueue(q, job("settle", "first").unique_key("reward:r1"), at(0)).await;
    let second = enqueue(q, job("settle", "second").unique_key("reward:r1"), at(1)).await;
    assert_eq!(second, first, "the existing job is returned, unchanged");
    // Within one batch too, and beside a job that is new.
    let batch = q
        .enqueue(
            vec![job("settle", "third").unique_key("reward:r1"), job("settle", "other").unique_key("reward:r2")],
            at(2),
        )
        .await
        .unwrap();
    assert_eq!(batch[0].id, first.id);
    assert_ne!(batch[1].id, first.id);
    // Another tenant's key is its own.
    let elsewhere = enqueue(q, job("settle", "t2").unique_key("reward:r1").tenant("t2"), at(3)).await;
    assert_ne!(elsewhere.id, first.id);

    // While it runs, still deduplicated.
    let running = claim(q, &["settle"], 10, at(4)).await.into_iter().find(|j| j.id == first.id).unwrap();
    assert_eq!(enqueue(q, job("settle", "again").unique_key("reward:r1"), at(5)).await.id, first.id);
    // A failed attempt waiting for its retry is unfinished too.
    ack(q, &running, Outcome::retry("x"), at(6)).await.unwrap();
    assert_eq!(enqueue(q, job("settle", "again").unique_key("reward:r1"), at(7)).await.id, first.id);

    // Finished: the key is free again.
    let running = claim(q, &["settle"], 10, at(100)).await.into_iter().find(|j| j.id == first.id).unwrap();
    ack(q, &running, Outcome::Done, at(101)).await.unwrap();
    let fresh = enqueue(q, job("settle", "after").unique_key("reward:r1"), at(102)).await;
    assert_ne!(fresh.id, first.id);
    assert_eq!((fresh.state, name(&fresh)), (JobState::Available, "after"));
}

pub async fn a_concurrency_key_caps_running_jobs(lane: &Lane) {
    let q = &*lane.queue;
    let mut jobs = Vec::new();
    for i in 0..5 {
        jobs.push(job("k", &format!("t1-{i}")).concurrency("tenant:t1", 2));
    }
    for i in 0..2 {
        jobs.push(job("k", &format!("t2-{i}")).concurrency("tenant:t2", 2));
    }
    jobs.push(job("k", "free"));
    q.enqueue(jobs, at(0)).await.unwrap();

    let first = claim(q, &["k"], 10, at(1)).await;
    let mut names: Vec<&str> = first.iter().map(name).collect();
    names.sort();
    assert_eq!(names, ["free", "t1-0", "t1-1", "t2-0", "t2-1"], "at most 2 per key, in claim order");
    assert!(claim(q, &["k"], 10, at(2)).await.is_empty(), "t1 is at its limit");

    // One t1 job ends: exactly one more t1 job may start.
    let t1_0 = first.iter().find(|j| name(j) == "t1-0").unwrap();
    ack(q, t1_0, Outcome::Done, at(3)).await.unwrap();
    let next = claim(q, &["k"], 10, at(4)).await;
    assert_eq!(next.iter().map(name).collect::<Vec<_>>(), ["t1-2"]);
    // A failed one frees its slot too (it waits for its retry).
    let t1_1 = first.iter().find(|j| name(j) == "t1-1").unwrap();
    ack(q, t1_1, Outcome::retry("x"), at(5)).await.unwrap();
    assert_eq!(claim(q, &["k"], 10, at(6)).await.iter().map(name).collect::<Vec<_>>(), ["t1-3"]);
}

pub async fn a_flooding_key_does_not_starve_the_others(lane: &Lane) {
    let q = &*lane.queue;
    // 200 jobs of one tenant, all due before a single job of another.
    let flood: Vec<_> = (0..200).map(|i| job("k", &format!("flood-{i}")).concurrency("tenant:big", 2)).collect();
    q.enqueue(flood, at(0)).await.unwrap();
    q.enqueue(vec![job("k", "small").concurrency("tenant:small", 2)], at(1)).await.unwrap();

    // Claims of 5, the size of many workers' free slots: the flood's two slots fill, and the
    // small tenant's job is reached although 198 of the flood come first.
    let first = claim(q, &["k"], 5, at(2)).await;
    assert_eq!(first.iter().filter(|j| name(j).starts_with("flood")).count(), 2);
    let mut all: Vec<String> = first.iter().map(|j| name(j).to_owned()).collect();
    if !all.iter().any(|n| n == "small") {
        all.extend(claim(q, &["k"], 5, at(3)).await.iter().map(|j| name(j).to_owned()));
    }
    assert!(all.iter().any(|n| n == "small"), "the small tenant's job runs while the flood waits: {all:?}");
    assert_eq!(all.iter().filter(|n| n.starts_with("flood")).count(), 2, "{all:?}");
}
