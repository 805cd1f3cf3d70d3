//! Enqueue, claim, complete; claim order; delayed jobs; lists; pruning.

use crate::{Lane, ack, at, claim, enqueue, get, job, name};
use questline_queue::{JobState, ListFilter, NewJob, Outcome};
use serde_json::json;

pub async fn enqueue_claim_complete(lane: &Lane) {
    let q = &*lane.queue;
    let payload = json!({ "reward_id": "r-1", "amount": 12.50, "nested": { "list": [1, 2, 3] } });
    let enqueued = enqueue(q, NewJob::new("settle", payload.clone()).tenant("acme"), at(0)).await;
    assert_eq!(enqueued.state, JobState::Available);
    assert_eq!((enqueued.attempt, enqueued.max_attempts), (0, crate::lane::MAX_ATTEMPTS));
    assert_eq!(enqueued.run_at, at(0));
    assert_eq!(enqueued.created_at, at(0));
    assert_eq!(get(q, &enqueued, at(0)).await, enqueued, "what enqueue returns is what is stored");

    let claimed = claim(q, &["settle"], 10, at(1)).await;
    assert_eq!(claimed.len(), 1);
    let running = &claimed[0];
    assert_eq!(running.id, enqueued.id);
    assert_eq!(running.payload, payload, "the payload round-trips exactly");
    assert_eq!(running.tenant_id, "acme");
    assert_eq!((running.state, running.attempt), (JobState::Running, 1));
    assert_eq!(running.leased_until, Some(at(1) + crate::LEASE));
    assert!(claim(q, &["settle"], 10, at(2)).await.is_empty(), "a running job is not claimed twice");

    let done = ack(q, running, Outcome::Done, at(3)).await.expect("the claim holds");
    assert_eq!((done.state, done.finished_at, done.leased_until), (JobState::Succeeded, Some(at(3)), None));
    assert_eq!(get(q, &enqueued, at(4)).await.state, JobState::Succeeded);
    assert!(claim(q, &["settle"], 10, at(5)).await.is_empty(), "a succeeded job never runs again");
    // A second acknowledgement of the same claim changes nothing.
    assert_eq!(ack(q, running, Outcome::discard("late"), at(6)).await, None);
    assert_eq!(get(q, &enqueued, at(6)).await.state, JobState::Succeeded);
}

pub async fn claims_go_by_priority_then_run_at(lane: &Lane) {
    let q = &*lane.queue;
    let jobs = vec![
        job("k", "low-early").priority(5).run_at(at(0)),
        job("k", "high-late").priority(1).run_at(at(20)),
        job("k", "high-early").priority(1).run_at(at(10)),
        job("k", "mid").priority(3).run_at(at(0)),
    ];
    q.enqueue(jobs, at(0)).await.unwrap();
    let mut order = Vec::new();
    for _ in 0..4 {
        let claimed = claim(q, &["k"], 1, at(30)).await;
        assert_eq!(claimed.len(), 1);
        order.push(name(&claimed[0]).to_owned());
    }
    assert_eq!(order, ["high-early", "high-late", "mid", "low-early"]);

    // A batch comes back in the same order.
    q.enqueue(vec![job("b", "3").priority(2), job("b", "1").priority(0), job("b", "2").priority(1)], at(40))
        .await
        .unwrap();
    let names: Vec<String> = claim(q, &["b"], 10, at(40)).await.iter().map(|j| name(j).to_owned()).collect();
    assert_eq!(names, ["1", "2", "3"]);
}

pub async fn a_delayed_job_is_not_claimed_early(lane: &Lane) {
    let q = &*lane.queue;
    let delayed = enqueue(q, job("k", "later").run_at(at(60)), at(0)).await;
    assert_eq!(delayed.state, JobState::Scheduled);
    assert!(claim(q, &["k"], 10, at(59)).await.is_empty(), "not before its run_at");
    assert_eq!(get(q, &delayed, at(59)).await.state, JobState::Scheduled);
    // Once its time has come it reads as available, and is claimed.
    assert_eq!(get(q, &delayed, at(60)).await.state, JobState::Available);
    let claimed = claim(q, &["k"], 10, at(60)).await;
    assert_eq!(claimed.iter().map(|j| &j.id).collect::<Vec<_>>(), [&delayed.id]);
}

pub async fn a_backlog_of_delayed_jobs_does_not_hide_a_due_one(lane: &Lane) {
    let q = &*lane.queue;
    // Many jobs of the first priority due tomorrow (rewards on a hold), one of a later
    // priority due now.
    let later: Vec<_> = (0..1000).map(|i| job("k", &format!("held-{i}")).priority(0).run_at(at(86_400))).collect();
    q.enqueue(later, at(0)).await.unwrap();
    enqueue(q, job("k", "now").priority(9), at(0)).await;
    let claimed = claim(q, &["k"], 10, at(1)).await;
    assert_eq!(claimed.iter().map(name).collect::<Vec<_>>(), ["now"]);
    assert_eq!(claim(q, &["k"], 2000, at(86_400)).await.len(), 1000, "all of them once due");
}

pub async fn claims_take_only_the_kinds_asked_for(lane: &Lane) {
    let q = &*lane.queue;
    q.enqueue(vec![job("a", "a1"), job("b", "b1"), job("c", "c1")], at(0)).await.unwrap();
    let mut names: Vec<String> = claim(q, &["a", "c"], 10, at(0)).await.iter().map(|j| name(j).to_owned()).collect();
    names.sort();
    assert_eq!(names, ["a1", "c1"]);
    assert!(claim(q, &[], 10, at(0)).await.is_empty());
    assert!(claim(q, &["b"], 0, at(0)).await.is_empty(), "a limit of 0 claims nothing");
    assert_eq!(claim(q, &["b"], 10, at(0)).await.len(), 1);
}

pub async fn lists_page_by_id_and_filter(lane: &Lane) {
    let q = &*lane.queue;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(enqueue(q, job("a", &format!("a{i}")), at(i)).await.id);
    }
    let later = enqueue(q, job("b", "b-later").run_at(at(100)), at(5)).await;
    let other_tenant = enqueue(q, job("a", "other").tenant("t2"), at(6)).await;

    // Pages of 2 over everything, by id (creation order).
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page =
            q.list(&ListFilter { after: after.clone(), limit: 2, ..ListFilter::default() }, at(10)).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|j| j.id.clone()));
        match page.next_cursor {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    let mut all = ids.clone();
    all.extend([later.id.clone(), other_tenant.id.clone()]);
    assert_eq!(seen, all, "every job once, oldest first");

    let by = |f: ListFilter| async move { q.list(&f, at(10)).await.unwrap() };
    let scheduled = by(ListFilter { state: Some(JobState::Scheduled), ..ListFilter::default() }).await;
    assert_eq!(scheduled.items.iter().map(|j| &j.id).collect::<Vec<_>>(), [&later.id]);
    assert_eq!(scheduled.next_cursor, None);
    let kind_b = by(ListFilter { kind: Some("b".into()), ..ListFilter::default() }).await;
    assert_eq!(kind_b.items.len(), 1);
    let t2 = by(ListFilter { tenant_id: Some("t2".into()), ..ListFilter::default() }).await;
    assert_eq!(t2.items.iter().map(|j| &j.id).collect::<Vec<_>>(), [&other_tenant.id]);
    let available = by(ListFilter { state: Some(JobState::Available), ..ListFilter::default() }).await;
    assert_eq!(available.items.len(), 6);
    // At 100 the delayed job is due, and lists as available.
    let due = q.list(&ListFilter { state: Some(JobState::Available), ..ListFilter::default() }, at(100)).await.unwrap();
    assert_eq!(due.items.len(), 7);
    assert!(due.items.iter().all(|j| j.state == JobState::Available));

    assert_eq!(ListFilter { limit: 0, ..ListFilter::default() }.page_size(), questline_queue::DEFAULT_PAGE);
    assert_eq!(ListFilter { limit: 10_000, ..ListFilter::default() }.page_size(), questline_queue::MAX_PAGE);
}

pub async fn prune_deletes_old_finished_jobs_and_keeps_dead_letters(lane: &Lane) {
    let q = &*lane.queue;
    let done = enqueue(q, job("k", "done"), at(0)).await;
    let dead = enqueue(q, job("k", "dead"), at(0)).await;
    let cancelled = enqueue(q, job("other", "cancelled"), at(0)).await;
    let waiting = enqueue(q, job("k", "waiting").run_at(at(1000)), at(0)).await;
    for j in claim(q, &["k"], 10, at(1)).await {
        let outcome = if j.id == done.id { Outcome::Done } else { Outcome::discard("bad payload") };
        ack(q, &j, outcome, at(10)).await.unwrap();
    }
    q.cancel(&cancelled.id, at(10)).await.unwrap();
    let recent = enqueue(q, job("k", "recent"), at(50)).await;
    let recent = claim(q, &["k"], 10, at(50)).await.into_iter().find(|j| j.id == recent.id).unwrap();
    ack(q, &recent, Outcome::Done, at(60)).await.unwrap();

    assert_eq!(q.prune(at(10), None).await.unwrap(), 0, "finished at 10 is not before 10");
    assert_eq!(q.prune(at(30), None).await.unwrap(), 2, "the old succeeded and cancelled jobs");
    assert!(q.get(&done.id, at(30)).await.unwrap().is_none());
    assert!(q.get(&cancelled.id, at(30)).await.unwrap().is_none());
    assert_eq!(get(q, &dead, at(30)).await.state, JobState::Dead, "dead letters stay");
    assert_eq!(get(q, &waiting, at(30)).await.state, JobState::Scheduled);
    assert_eq!(get(q, &recent, at(30)).await.state, JobState::Succeeded);
    assert_eq!(q.prune(at(30), Some(at(30))).await.unwrap(), 1, "now the dead letter too");
    assert!(q.get(&dead.id, at(30)).await.unwrap().is_none());
    assert!(q.get(&waiting.id, at(30)).await.unwrap().is_some(), "unfinished jobs are never pruned");
}

pub async fn depth_counts_unfinished_jobs_by_kind_and_state(lane: &Lane) {
    let q = &*lane.queue;
    assert!(q.depth(at(0)).await.unwrap().is_empty());
    q.enqueue(
        vec![job("a", "1"), job("a", "2"), job("a", "3"), job("a", "later").run_at(at(50)), job("b", "1")],
        at(0),
    )
    .await
    .unwrap();
    let running = claim(q, &["a"], 2, at(1)).await;
    ack(q, &running[0], Outcome::Done, at(2)).await.unwrap();
    let b = claim(q, &["b"], 1, at(2)).await.remove(0);
    ack(q, &b, Outcome::retry("x"), at(3)).await.unwrap();
    let depth = |now| async move {
        q.depth(now).await.unwrap().into_iter().map(|d| (d.kind, d.state, d.jobs)).collect::<Vec<_>>()
    };
    let s = |k: &str| k.to_owned();
    assert_eq!(
        depth(at(4)).await,
        [
            (s("a"), JobState::Scheduled, 1),
            (s("a"), JobState::Available, 1),
            (s("a"), JobState::Running, 1),
            (s("b"), JobState::Retrying, 1)
        ],
        "succeeded jobs are not counted"
    );
    // At 50 the scheduled job counts as available.
    assert_eq!(depth(at(50)).await[0], (s("a"), JobState::Available, 2));
}
