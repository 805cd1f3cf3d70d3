//! Failures: backoff persisted as the next run time, `Retry-After`, snooze, discard, the
//! attempt limit, re-driving dead letters, cancelling.

use crate::lane::{CAP, INITIAL, MAX_ATTEMPTS, PATIENT_ATTEMPTS};
use crate::{Lane, ack, at, claim, enqueue, get, job, name, secs};
use questline_queue::{JobState, ListFilter, Outcome, QueueError};

pub async fn backoff_is_persisted_as_run_at_and_errors_are_kept(lane: &Lane) {
    let q = &*lane.queue;
    let j = enqueue(q, job("patient", "flaky"), at(0)).await;
    assert_eq!(j.max_attempts, PATIENT_ATTEMPTS, "the kind's own default");

    // Attempt 1 fails at 1: the next run is 10 s later (the initial delay), in the row.
    let first = claim(q, &["patient"], 1, at(1)).await.remove(0);
    let after = ack(q, &first, Outcome::retry("timeout"), at(1)).await.unwrap();
    assert_eq!((after.state, after.attempt, after.run_at), (JobState::Retrying, 1, at(1) + INITIAL));
    assert_eq!(get(q, &j, at(2)).await, after, "stored as returned");
    assert!(claim(q, &["patient"], 1, at(10)).await.is_empty(), "not before its backoff");
    // Listed as retrying until its run_at, then as available.
    let listed = |state, now| async move {
        let filter = ListFilter { state: Some(state), ..ListFilter::default() };
        q.list(&filter, now).await.unwrap().items.into_iter().map(|j| j.id).collect::<Vec<_>>()
    };
    assert_eq!(listed(JobState::Retrying, at(10)).await, std::slice::from_ref(&j.id));
    assert!(listed(JobState::Available, at(10)).await.is_empty());
    assert!(listed(JobState::Retrying, at(11)).await.is_empty());
    assert_eq!(listed(JobState::Available, at(11)).await, std::slice::from_ref(&j.id));

    // Attempt 2 fails: twice the delay. Attempts 3 and 4: capped at 40 s.
    let second = claim(q, &["patient"], 1, at(11)).await.remove(0);
    assert_eq!(second.attempt, 2);
    let after = ack(q, &second, Outcome::retry("503 from the wallet"), at(12)).await.unwrap();
    assert_eq!(after.run_at, at(12) + 2 * INITIAL);
    let third = claim(q, &["patient"], 1, at(32)).await.remove(0);
    let after = ack(q, &third, Outcome::retry("refused"), at(32)).await.unwrap();
    assert_eq!(after.run_at, at(32) + CAP, "4 × 10 s is the cap");
    let fourth = claim(q, &["patient"], 1, at(72)).await.remove(0);
    let after = ack(q, &fourth, Outcome::retry("refused again"), at(72)).await.unwrap();
    assert_eq!(after.run_at, at(72) + CAP, "8 × 10 s is capped too");

    let errors: Vec<(u32, &str, _)> = after.errors.iter().map(|e| (e.attempt, e.error.as_str(), e.at)).collect();
    assert_eq!(
        errors,
        [
            (1, "timeout", at(1)),
            (2, "503 from the wallet", at(12)),
            (3, "refused", at(32)),
            (4, "refused again", at(72))
        ]
    );
}

pub async fn retry_after_overrides_the_backoff(lane: &Lane) {
    let q = &*lane.queue;
    enqueue(q, job("k", "rate-limited"), at(0)).await;
    let j = claim(q, &["k"], 1, at(0)).await.remove(0);
    // A Retry-After of 3 s, shorter than the 10 s backoff; and later one of 300 s, longer.
    let after = ack(q, &j, Outcome::retry_after("429", secs(3)), at(5)).await.unwrap();
    assert_eq!((after.state, after.run_at), (JobState::Retrying, at(8)));
    let j = claim(q, &["k"], 1, at(8)).await.remove(0);
    let after = ack(q, &j, Outcome::retry_after("429", secs(300)), at(9)).await.unwrap();
    assert_eq!(after.run_at, at(309), "an explicit time is kept even beyond the cap");
    assert_eq!(after.errors.len(), 2, "it still spends an attempt");
}

pub async fn snooze_gives_the_attempt_back(lane: &Lane) {
    let q = &*lane.queue;
    enqueue(q, job("k", "not-yet"), at(0)).await;
    let j = claim(q, &["k"], 1, at(0)).await.remove(0);
    assert_eq!(j.attempt, 1);
    let after = ack(q, &j, Outcome::Snooze(secs(30)), at(1)).await.unwrap();
    assert_eq!((after.state, after.attempt, after.run_at), (JobState::Scheduled, 0, at(31)));
    assert!(after.errors.is_empty(), "a snooze is not a failure");
    assert!(claim(q, &["k"], 1, at(30)).await.is_empty());
    // Snoozing as often as it likes never kills it.
    for round in 0..(MAX_ATTEMPTS + 2) {
        let now = at(31 + i64::from(round));
        let j = claim(q, &["k"], 1, now).await.remove(0);
        assert_eq!(j.attempt, 1);
        ack(q, &j, Outcome::Snooze(secs(0)), now).await.unwrap();
    }
    let j = claim(q, &["k"], 1, at(100)).await.remove(0);
    assert_eq!(ack(q, &j, Outcome::Done, at(100)).await.unwrap().state, JobState::Succeeded);
}

pub async fn reschedule_comes_back_first_without_spending_an_attempt(lane: &Lane) {
    let q = &*lane.queue;
    enqueue(q, job("k", "booked").priority(5), at(0)).await;
    let j = claim(q, &["k"], 1, at(0)).await.remove(0);
    // Work that has waited longer than the booked job will.
    q.enqueue((0..3).map(|i| job("k", &format!("waiting-{i}")).priority(0)).collect(), at(1)).await.unwrap();
    // At an instant, not after a delay from whenever the acknowledgement is written.
    let after = ack(q, &j, Outcome::Reschedule { at: at(12), priority: -100 }, at(2)).await.unwrap();
    assert_eq!((after.state, after.attempt, after.run_at, after.priority), (JobState::Scheduled, 0, at(12), -100));
    assert!(after.errors.is_empty(), "a reschedule is not a failure");
    assert!(claim(q, &["k"], 10, at(11)).await.iter().all(|j| name(j) != "booked"), "not before its time");
    enqueue(q, job("k", "waiting-3").priority(0), at(11)).await;
    let first = claim(q, &["k"], 1, at(12)).await.remove(0);
    assert_eq!((name(&first), first.attempt, first.priority), ("booked", 1, -100), "then before the work waiting");
}

pub async fn discard_goes_straight_to_dead(lane: &Lane) {
    let q = &*lane.queue;
    enqueue(q, job("patient", "malformed"), at(0)).await;
    let j = claim(q, &["patient"], 1, at(0)).await.remove(0);
    let dead = ack(q, &j, Outcome::discard("422: no such user"), at(2)).await.unwrap();
    assert_eq!((dead.state, dead.attempt, dead.finished_at), (JobState::Dead, 1, Some(at(2))));
    assert_eq!(dead.errors.len(), 1);
    assert_eq!((dead.errors[0].attempt, dead.errors[0].error.as_str()), (1, "422: no such user"));
    assert!(claim(q, &["patient"], 1, at(1000)).await.is_empty(), "attempts were left, but it never runs again");
}

pub async fn past_max_attempts_a_job_is_dead(lane: &Lane) {
    let q = &*lane.queue;
    let j = enqueue(q, job("k", "doomed"), at(0)).await;
    let mut now = at(0);
    for attempt in 1..=MAX_ATTEMPTS {
        let claimed = claim(q, &["k"], 1, now).await.remove(0);
        assert_eq!(claimed.attempt, attempt);
        let after = ack(q, &claimed, Outcome::retry(format!("failure {attempt}")), now).await.unwrap();
        now = after.run_at;
        if attempt < MAX_ATTEMPTS {
            assert_eq!(after.state, JobState::Retrying);
        } else {
            assert_eq!(after.state, JobState::Dead);
            assert_eq!(after.finished_at, Some(after.errors[2].at));
        }
    }
    let dead = get(q, &j, now).await;
    assert_eq!(dead.state, JobState::Dead);
    let errors: Vec<_> = dead.errors.iter().map(|e| (e.attempt, e.error.clone())).collect();
    assert_eq!(errors, [(1, "failure 1".to_owned()), (2, "failure 2".to_owned()), (3, "failure 3".to_owned())]);
    assert!(claim(q, &["k"], 1, at(100_000)).await.is_empty());

    // A job's own limit wins over its kind's.
    enqueue(q, job("k", "once").max_attempts(1), at(0)).await;
    let once = claim(q, &["k"], 1, at(0)).await.remove(0);
    assert_eq!(once.max_attempts, 1);
    assert_eq!(ack(q, &once, Outcome::retry("no"), at(0)).await.unwrap().state, JobState::Dead);
}

pub async fn retry_now_redrives_a_dead_job(lane: &Lane) {
    let q = &*lane.queue;
    let j = enqueue(q, job("k", "dead-letter").max_attempts(1), at(0)).await;
    let claimed = claim(q, &["k"], 1, at(0)).await.remove(0);
    ack(q, &claimed, Outcome::retry("wallet down"), at(1)).await.unwrap();
    assert_eq!(get(q, &j, at(2)).await.state, JobState::Dead);

    let redriven = q.retry_now(&j.id, at(100)).await.unwrap();
    assert_eq!((redriven.state, redriven.run_at, redriven.finished_at), (JobState::Available, at(100), None));
    assert_eq!(redriven.max_attempts, 2, "one more attempt than it had used");
    assert_eq!(redriven.errors.len(), 1, "its history stays");
    let again = claim(q, &["k"], 1, at(100)).await.remove(0);
    assert_eq!(again.attempt, 2);
    assert_eq!(ack(q, &again, Outcome::Done, at(101)).await.unwrap().state, JobState::Succeeded);

    // A succeeded job is not re-driven; an unknown one is not found.
    let err = q.retry_now(&j.id, at(102)).await.unwrap_err();
    assert!(matches!(err, QueueError::WrongState { state: JobState::Succeeded, .. }), "{err:?}");
    let err = q.retry_now(&questline_queue::JobId::new("nope"), at(102)).await.unwrap_err();
    assert!(matches!(err, QueueError::NotFound(_)), "{err:?}");
}

pub async fn retry_now_runs_a_waiting_job_now(lane: &Lane) {
    let q = &*lane.queue;
    let j = enqueue(q, job("k", "tomorrow").run_at(at(86_400)), at(0)).await;
    assert!(claim(q, &["k"], 1, at(5)).await.is_empty());
    let now = q.retry_now(&j.id, at(5)).await.unwrap();
    assert_eq!((now.state, now.run_at, now.attempt), (JobState::Available, at(5), 0));
    let claimed = claim(q, &["k"], 1, at(5)).await;
    assert_eq!(claimed.len(), 1);
    // A running job is left alone.
    let err = q.retry_now(&j.id, at(6)).await.unwrap_err();
    assert!(matches!(err, QueueError::WrongState { state: JobState::Running, .. }), "{err:?}");
}

pub async fn cancel_stops_a_job_that_has_not_started(lane: &Lane) {
    let q = &*lane.queue;
    let waiting = enqueue(q, job("k", "waiting").run_at(at(60)), at(0)).await;
    let cancelled = q.cancel(&waiting.id, at(1)).await.unwrap();
    assert_eq!((cancelled.state, cancelled.finished_at), (JobState::Cancelled, Some(at(1))));
    assert!(claim(q, &["k"], 10, at(120)).await.is_empty(), "a cancelled job never runs");
    assert_eq!(q.cancel(&waiting.id, at(2)).await.unwrap().state, JobState::Cancelled, "cancelling again is harmless");

    // A job waiting for a retry can be cancelled too; a running one cannot.
    enqueue(q, job("k", "retrying"), at(0)).await;
    let j = claim(q, &["k"], 1, at(0)).await.remove(0);
    let err = q.cancel(&j.id, at(1)).await.unwrap_err();
    assert!(matches!(err, QueueError::WrongState { state: JobState::Running, .. }), "{err:?}");
    ack(q, &j, Outcome::retry("x"), at(1)).await.unwrap();
    assert_eq!(q.cancel(&j.id, at(2)).await.unwrap().state, JobState::Cancelled);
    assert!(claim(q, &["k"], 10, at(1000)).await.is_empty());
    let err = q.cancel(&questline_queue::JobId::new("nope"), at(2)).await.unwrap_err();
    assert!(matches!(err, QueueError::NotFound(_)), "{err:?}");
}
