//! PostgreSQL under concurrency: several stores (each with its own pools, as separate
//! processes have) on one database. SQLite cannot be run this way: it has one writer.

use crate::backend::TestStore;
use crate::{Backend, T, TestDb, at, event, insert_mission, mid, mission, uid};
use questline_core::event::{Event, EventKey};
use questline_core::id::UserId;
use questline_core::mission::MissionStatus;
use questline_core::progress::{ProgressState, StepState};
use questline_store::{BudgetRow, MissionProgress, StoreError, UnitOfWork, UserProgress};
use rust_decimal::Decimal;
use sqlx::Connection;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Longest wait for something that should happen at once; generous for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(20);

/// A PostgreSQL database and `n` stores on it; `None` when skipped (see `backend`).
async fn stores(n: usize) -> Option<(TestDb, Vec<Arc<TestStore>>)> {
    let db = TestDb::fresh(Backend::Postgres, "pg_concurrency").await?;
    let mut stores = Vec::with_capacity(n);
    for _ in 0..n {
        stores.push(Arc::new(db.open().await));
    }
    Some((db, stores))
}

/// A miniature ingest: lock the batch's users' progress, record the events, add each user's
/// new events to a counter in their progress row, commit; rerun on `Retryable`, as the service
/// does. Returns how many events were new.
async fn count_batch(store: &TestStore, batch: &[Event]) -> usize {
    for attempt in 1.. {
        match count_batch_once(store, batch).await {
            Ok(new) => return new,
            Err(StoreError::Retryable(why)) if attempt < 10 => eprintln!("retrying a batch: {why}"),
            Err(e) => panic!("batch failed: {e}"),
        }
    }
    unreachable!()
}

async fn count_batch_once(store: &TestStore, batch: &[Event]) -> Result<usize, StoreError> {
    let mut tx = store.begin().await?;
    let mut users: Vec<UserId> = batch.iter().map(|e| uid(e.user_id())).collect();
    users.sort();
    users.dedup();
    let mut stored: BTreeMap<UserId, UserProgress> =
        tx.lock_progress(&T, &users).await?.into_iter().map(|p| (p.user_id.clone(), p)).collect();
    let new = tx.insert_events(&T, batch, at(0)).await?;
    let mut per_user: BTreeMap<&str, i64> = BTreeMap::new();
    for (e, _) in batch.iter().zip(&new).filter(|(_, new)| **new) {
        *per_user.entry(e.user_id()).or_default() += 1;
    }
    let rows: Vec<UserProgress> = per_user
        .iter()
        .map(|(user, n)| {
            let mut row = stored.remove(&uid(user)).unwrap_or_else(|| UserProgress::empty(uid(user)));
            let value = row.missions.get(&mid("m")).map_or_else(Decimal::default, |p| p.state.steps[0].value);
            row.missions.insert(mid("m"), counter(value + Decimal::from(*n)));
            row
        })
        .collect();
    tx.save_progress(&T, &rows).await?;
    tx.commit().await?;
    Ok(new.iter().filter(|&&n| n).count())
}

fn counter(value: Decimal) -> MissionProgress {
    let state = ProgressState {
        steps: vec![StepState { value, ..StepState::default() }],
        last: Some(EventKey { at: at(0), id: String::new() }),
        ..ProgressState::default()
    };
    MissionProgress { state, updated_at: at(0) }
}

/// 8 tasks on 4 stores send overlapping batches of 40 out of 200 events (10 users): every
/// event is counted exactly once, in the ledger and in its user's progress. Without the
/// per-user row locks, two batches of one user would both read the old counter and one
/// increment would be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_batches_from_many_pools_count_each_event_once() {
    let Some((db, stores)) = stores(4).await else { return };
    let events: Arc<Vec<Event>> =
        Arc::new((0..200).map(|i| event(&format!("e{i:03}"), &format!("u{}", i % 10), "payment", i)).collect());
    let mut tasks = JoinSet::new();
    for t in 0..8_usize {
        let (store, events) = (stores[t % 4].clone(), events.clone());
        tasks.spawn(async move {
            let mut new = 0;
            for b in 0..12_usize {
                let start = (t * 7919 + b * 104_729) % events.len();
                let batch: Vec<Event> = (0..40).map(|k| events[(start + k) % events.len()].clone()).collect();
                new += count_batch(&store, &batch).await;
            }
            new
        });
    }
    let mut new: usize = tasks.join_all().await.into_iter().sum();
    // Whatever no batch happened to offer, and everything again: only the rest is new.
    new += count_batch(&stores[0], &events).await;
    assert_eq!(new, 200, "each of the 200 distinct events is new exactly once");
    assert_eq!(count_batch(&stores[1], &events).await, 0);

    for u in 0..10 {
        let user = format!("u{u}");
        let progress = stores[u % 4].user_progress(&T, &uid(&user), Some(&mid("m"))).await.unwrap();
        assert_eq!(progress[0].state.steps[0].value, Decimal::from(20), "{user} has 20 events");
        let (originals, _) = stores[0].user_ledger(&T, &uid(&user), &["payment".into()]).await.unwrap();
        assert_eq!(originals.len(), 20);
    }
    db.finish().await;
}

/// 16 takes of a budget of 5 from 4 stores, each locking the budget, counting and writing
/// back as the engine does: exactly 5 succeed, and the last one ends the mission.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_takes_from_many_pools_spend_the_budget_exactly() {
    let Some((db, stores)) = stores(4).await else { return };
    insert_mission(&**stores[0], &T, &mission("m", MissionStatus::Active, Some(5))).await.unwrap();
    let revision = stores[0].missions_revision(&T).await.unwrap();
    let mut tasks = JoinSet::new();
    for i in 0..16 {
        let store = stores[i % 4].clone();
        tasks.spawn(async move {
            let mut tx = store.begin().await.unwrap();
            let BudgetRow { granted, max_rewards, .. } = tx.lock_budgets(&T, &[mid("m")]).await.unwrap().remove(0);
            let taken = max_rewards.is_none_or(|max| granted < max);
            if taken {
                let end = (max_rewards == Some(granted + 1)).then(|| at(100 + i as i64));
                tx.set_budget(&T, &mid("m"), granted + 1, end).await.unwrap();
            }
            tx.commit().await.unwrap();
            taken
        });
    }
    let taken = tasks.join_all().await.into_iter().filter(|&t| t).count();
    assert_eq!(taken, 5);
    let m = stores[3].get_mission(&T, &mid("m")).await.unwrap().unwrap();
    assert_eq!((m.status, m.rewards_granted), (MissionStatus::Ended, 5));
    assert_eq!(stores[2].missions_revision(&T).await.unwrap(), revision + 1, "only the ending take bumps");
    db.finish().await;
}

/// A batch that locks a user's progress waits for the batch holding that user to commit,
/// then reads what it wrote; a batch of other users does not wait. Round 1 locks a user
/// without a row (the second batch waits for the row the first one's lock made, not yet
/// committed); round 2 the same user, whose row is committed now (it waits for the row lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_progress_serializes_batches_of_a_user() {
    let Some((db, stores)) = stores(2).await else { return };
    for round in 1..=2_i64 {
        let id = format!("e{round}");
        let mut first = stores[0].begin().await.unwrap();
        let mut row =
            first.lock_progress(&T, &[uid("u")]).await.unwrap().pop().unwrap_or(UserProgress::empty(uid("u")));
        assert_eq!(first.insert_events(&T, &[event(&id, "u", "payment", round)], at(2)).await.unwrap(), vec![true]);
        row.missions.insert(mid("m"), counter(Decimal::from(round)));
        first.save_progress(&T, &[row]).await.unwrap();

        let (locked_tx, mut locked_rx) = tokio::sync::oneshot::channel();
        let store = stores[1].clone();
        let again_id = id.clone();
        #[expect(clippy::disallowed_methods, reason = "the handle is awaited below")]
        let second = tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            let locked = tx.lock_progress(&T, &[uid("t"), uid("u")]).await.unwrap();
            let _ = locked_tx.send(());
            // The first batch committed before this lock was granted: its progress and its
            // event are there.
            let counted = locked
                .iter()
                .find(|p| p.user_id == uid("u"))
                .and_then(|p| p.missions.get(&mid("m")))
                .map(|p| p.state.steps[0].value);
            let seen = tx.user_originals(&T, &uid("u"), &["payment".into()]).await.unwrap();
            let again = tx.insert_events(&T, &[event(&again_id, "u", "payment", round)], at(3)).await.unwrap();
            tx.commit().await.unwrap();
            (counted, seen.len(), again)
        });

        wait_for_lock_waiters(&db, 1).await;
        // Another user's batch is not held up.
        let mut other = stores[1].begin().await.unwrap();
        let v = uid(&format!("v{round}"));
        tokio::time::timeout(DEADLINE, other.lock_progress(&T, &[v])).await.expect("v is free").unwrap();
        other.commit().await.unwrap();
        assert!(locked_rx.try_recv().is_err(), "round {round}: the second batch must wait for the first");

        first.commit().await.unwrap();
        let (counted, seen, again) =
            tokio::time::timeout(DEADLINE, second).await.expect("granted after commit").unwrap();
        assert_eq!(counted, Some(Decimal::from(round)), "round {round}: the second batch reads the first's progress");
        assert_eq!(
            (seen, again),
            (round as usize, vec![false]),
            "round {round}: the second batch sees the first's event as a duplicate"
        );
    }
    db.finish().await;
}

/// Batches over overlapping sets of users never deadlock: locks are taken in one global
/// order, whatever the users.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_user_sets_never_deadlock() {
    let Some((db, stores)) = stores(4).await else { return };
    let mut tasks = JoinSet::new();
    for t in 0..8_usize {
        let store = stores[t % 4].clone();
        tasks.spawn(async move {
            for round in 0..25_usize {
                let mut users: Vec<UserId> =
                    (0..5).map(|k| uid(&format!("user-{}", (t * 3 + round * 7 + k * 11) % 23))).collect();
                users.sort();
                users.dedup();
                let mut tx = store.begin().await.unwrap();
                // Any error here, a deadlock included, fails the test.
                tx.lock_progress(&T, &users).await.unwrap();
                tx.commit().await.unwrap();
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(60), tasks.join_all()).await.expect("no batch waits forever");
    db.finish().await;
}

/// A deadlock is `Retryable`, and rolling the loser back lets the winner go on. (The
/// service never locks twice in one batch; doing it here is how to make a deadlock.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deadlock_is_retryable() {
    let Some((db, stores)) = stores(2).await else { return };
    let mut one = stores[0].begin().await.unwrap();
    let mut two = stores[1].begin().await.unwrap();
    one.lock_progress(&T, &[uid("a")]).await.unwrap();
    two.lock_progress(&T, &[uid("b")]).await.unwrap();
    let cross = |mut tx: Box<dyn UnitOfWork>, user: &'static str| async move {
        match tx.lock_progress(&T, &[uid(user)]).await {
            Ok(_) => tx.commit().await,
            // Dropping the transaction rolls it back and releases its locks.
            Err(e) => Err(e),
        }
    };
    let (r1, r2) = tokio::time::timeout(DEADLINE, async { tokio::join!(cross(one, "b"), cross(two, "a")) })
        .await
        .expect("PostgreSQL detects the deadlock");
    let outcomes = [r1, r2];
    assert_eq!(outcomes.iter().filter(|r| r.is_ok()).count(), 1, "{outcomes:?}");
    let err = outcomes.into_iter().find_map(Result::err).unwrap();
    assert!(err.is_retryable(), "{err:?}");
    assert!(matches!(err, StoreError::Retryable(_)), "{err:?}");
    db.finish().await;
}

/// Two processes starting at once on a fresh database: both migrate (one waits for the
/// other's migration lock) and both work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_starts_migrate_once() {
    let Some(db) = TestDb::fresh(Backend::Postgres, "pg_concurrency::concurrent_first_starts_migrate_once").await
    else {
        return;
    };
    let (a, b) = tokio::join!(db.open(), db.open());
    insert_mission(&*a, &T, &mission("m", MissionStatus::Active, None)).await.unwrap();
    let err = insert_mission(&*b, &T, &mission("m", MissionStatus::Active, None)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(b.missions_revision(&T).await.unwrap(), 1);
    a.close().await;
    b.close().await;
    db.finish().await;
}

/// Polls `pg_stat_activity` until `n` sessions of this database wait for a heavyweight lock
/// (a row lock: the holder's `transactionid`, or a `tuple`).
async fn wait_for_lock_waiters(db: &TestDb, n: i64) {
    let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    let started = Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if waiting >= n {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "no session waited for a lock within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    conn.close().await.unwrap();
}

/// Every session plans a batch statement for the arrays it is given (a generic plan cached
/// while the tables were nearly empty walked the whole ledger per probe); a URL that sets
/// `plan_cache_mode` itself is obeyed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_plan_each_statement_unless_the_url_says_otherwise() {
    let Some(db) = TestDb::fresh(Backend::Postgres, "pg_concurrency::sessions_plan_each_statement").await else {
        return;
    };
    async fn mode(store: &TestStore) -> String {
        let mut unit = store.begin().await.unwrap();
        let questline_store::Connection::Postgres(conn) = unit.connection() else { unreachable!() };
        let mode: String = sqlx::query_scalar("SHOW plan_cache_mode").fetch_one(&mut *conn).await.unwrap();
        unit.commit().await.unwrap();
        mode
    }
    let store = db.open().await;
    assert_eq!(mode(&store).await, "force_custom_plan");
    store.close().await;

    let url = format!("{}?options=-c%20plan_cache_mode%3Dauto", db.url());
    let own = TestStore::Postgres(questline_store::postgres::PostgresStore::connect(&url).await.unwrap());
    assert_eq!(mode(&own).await, "auto");
    own.close().await;
    db.finish().await;
}
