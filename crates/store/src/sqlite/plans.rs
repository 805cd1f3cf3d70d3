//! How SQLite runs the hot queries. A fresh file has no `ANALYZE` statistics, so the planner
//! guesses; these tests pin that every per-batch lookup is an index search, never a scan of
//! a tenant's ledger or progress. The plan text is stable because SQLite is bundled.

use super::SqliteStore;
use super::batch::{live_completions_query, live_of_users_query, users_query};
use super::ledger::{by_id_query, known_query, originals_query, reversals_query, user_reversals_query};
use questline_core::id::{MissionId, UserId};
use sqlx::{QueryBuilder, Sqlite};

async fn plan(store: &SqliteStore, qb: QueryBuilder<'_, Sqlite>) -> Vec<String> {
    // Unbound parameters are NULL, which is fine for EXPLAIN.
    let rows: Vec<(i64, i64, i64, String)> =
        sqlx::query_as(&format!("EXPLAIN QUERY PLAN {}", qb.sql())).fetch_all(&store.reader).await.unwrap();
    rows.into_iter().map(|r| r.3).collect()
}

fn assert_searches(plan: &[String], expected: &[&str]) {
    for line in plan {
        let scans_values = line.contains("VALUES") || line.contains("CONSTANT ROWS");
        assert!(!line.starts_with("SCAN") || scans_values, "a table scan in {plan:#?}");
    }
    for want in expected {
        assert!(plan.iter().any(|line| line.contains(want)), "no {want:?} in {plan:#?}");
    }
}

#[tokio::test]
async fn hot_queries_search_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(&format!("sqlite://{}", dir.path().join("plans.db").display())).await.unwrap();
    let ids = vec!["a".to_owned(), "b".to_owned()];
    let types = vec!["payment".to_owned(), "login".to_owned()];
    let users = [UserId::from("u"), UserId::from("v")];

    let known = plan(&store, known_query("t", &ids)).await;
    assert_searches(&known, &["USING PRIMARY KEY (tenant_id=? AND id=?)"]);
    let by_id = plan(&store, by_id_query("t", &ids)).await;
    assert_searches(&by_id, &["USING PRIMARY KEY (tenant_id=? AND id=?)"]);
    let reversals = plan(&store, reversals_query("t", &ids)).await;
    assert_searches(&reversals, &["events_by_reversed (tenant_id=? AND reverses=?)"]);
    let originals = plan(&store, originals_query("t", "u", &types)).await;
    assert_searches(&originals, &["events_by_user (tenant_id=? AND user_id=? AND type=?)"]);
    let user_reversals = plan(&store, user_reversals_query("t", "u", &types)).await;
    assert_searches(
        &user_reversals,
        &["events_by_user (tenant_id=? AND user_id=? AND type=?)", "events_by_reversed (tenant_id=? AND reverses=?)"],
    );
    let progress = plan(&store, users_query("user_id, missions, version", "t", &users)).await;
    assert_searches(&progress, &["SEARCH user_progress USING PRIMARY KEY (tenant_id=? AND user_id=?)"]);
    let keys = [(MissionId::from("m"), UserId::from("u"), 1), (MissionId::from("m"), UserId::from("v"), 2)];
    let completions = plan(&store, live_completions_query("t", &keys)).await;
    assert_searches(&completions, &["SEARCH r USING INDEX rewards_live"]);
    let live = plan(&store, live_of_users_query("t", &["u", "v"])).await;
    assert_searches(&live, &["SEARCH rewards USING INDEX rewards_by_user (tenant_id=? AND user_id=?)"]);
}
