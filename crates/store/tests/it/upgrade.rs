//! Upgrading a database made by an older release: migration 0002 folds the rows of
//! `progress` (one per mission and user) into `user_progress` (one per user), and a store
//! opened on it reads the same progress as before, every decimal digit and scale included.

use crate::{Backend, T, TestDb, at, mid, tenant, ts, uid};
use jiff::Timestamp;
use questline_core::event::EventKey;
use questline_core::mission::window::Bounds;
use questline_core::progress::{ProgressState, StepState};
use questline_store::StoredProgress;
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, PgConnection, SqliteConnection};
use std::borrow::Cow;
use std::str::FromStr;

/// `migrator` with only its first migration, 0001: what a database of the first release has
/// applied. The very `Migration` the store embeds, so its checksum is the one the store checks.
fn first_migration_only(mut migrator: Migrator) -> Migrator {
    migrator.migrations = Cow::Owned(migrator.migrations.iter().filter(|m| m.version == 1).cloned().collect());
    assert_eq!(migrator.migrations.len(), 1, "migration 0001 exists");
    migrator
}

/// Every version the store embeds for `db`'s backend: what an upgraded database has applied.
fn every_migration(db: &TestDb) -> Vec<i64> {
    let migrator = match db.backend() {
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    migrator.migrations.iter().map(|m| m.version).collect()
}

/// A row of the old `progress` table, as the old store wrote it: the state as serde_json
/// of `ProgressState`, `completions` beside it, `updated_at` as fixed-width RFC 3339 text.
struct OldRow {
    tenant: &'static str,
    mission: &'static str,
    user: &'static str,
    state: ProgressState,
    updated_at: Timestamp,
}

impl OldRow {
    fn state_json(&self) -> String {
        serde_json::to_string(&self.state).unwrap()
    }

    fn updated_at_text(&self) -> String {
        format!("{:.9}", self.updated_at)
    }

    fn stored(&self) -> StoredProgress {
        StoredProgress {
            mission_id: mid(self.mission),
            user_id: uid(self.user),
            state: self.state.clone(),
            updated_at: self.updated_at,
        }
    }
}

fn old_rows() -> Vec<OldRow> {
    let decimal = |text: &str| text.parse().unwrap();
    // Everything a state may hold, so that the whole document goes through the migration.
    let rich = ProgressState {
        steps: vec![
            StepState { value: decimal("0.30"), ..StepState::default() },
            StepState {
                value: decimal("2"),
                seen: ["a".to_owned(), "b \"quoted\"".to_owned()].into(),
                ..StepState::default()
            },
            StepState { value: decimal("3"), streak: Some(("2024-01-02".parse().unwrap(), 3)), ..StepState::default() },
        ],
        completions: 1,
        window: Some(Bounds { starts_at: at(0), ends_at: at(86_400) }),
        period_done: true,
        last: Some(EventKey { at: at(30), id: "e-30".into() }),
        last_counted_at: Some(ts("2024-01-01T00:00:30.123456789Z")),
    };
    let plain = |value: &str, completions: u32| ProgressState {
        steps: vec![StepState { value: decimal(value), ..StepState::default() }],
        completions,
        ..ProgressState::default()
    };
    vec![
        OldRow { tenant: "default", mission: "m1", user: "u", state: rich, updated_at: ts("2024-01-01T00:00:30.5Z") },
        OldRow {
            tenant: "default",
            mission: "m2",
            user: "u",
            state: plain("123456789.000000001", 2),
            updated_at: ts("2024-03-01T12:00:00Z"),
        },
        OldRow { tenant: "default", mission: "m1", user: "v", state: plain("-7.250", 0), updated_at: at(5) },
        // The same user in another tenant stays apart.
        OldRow { tenant: "other", mission: "m1", user: "u", state: plain("1.10", 0), updated_at: at(6) },
    ]
}

const INSERT_SQLITE: &str = "INSERT INTO progress (tenant_id, mission_id, user_id, state, completions, updated_at) \
                             VALUES (?, ?, ?, ?, ?, ?)";
const INSERT_POSTGRES: &str = "INSERT INTO progress (tenant_id, mission_id, user_id, state, completions, updated_at) \
                               VALUES ($1, $2, $3, $4, $5, $6)";

/// Makes the database of the old release: 0001 applied, the old rows in `progress`.
/// Returns the migration versions recorded.
async fn old_database(db: &TestDb, rows: &[OldRow]) -> Vec<i64> {
    let versions = "SELECT version FROM _sqlx_migrations ORDER BY version";
    match db.backend() {
        Backend::Sqlite => {
            let options = SqliteConnectOptions::from_str(&db.url()).unwrap().create_if_missing(true);
            let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
            first_migration_only(sqlx::migrate!("./migrations/sqlite")).run(&mut conn).await.unwrap();
            for r in rows {
                sqlx::query(INSERT_SQLITE)
                    .bind(r.tenant)
                    .bind(r.mission)
                    .bind(r.user)
                    .bind(r.state_json())
                    .bind(i64::from(r.state.completions))
                    .bind(r.updated_at_text())
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            let applied = sqlx::query_scalar(versions).fetch_all(&mut conn).await.unwrap();
            conn.close().await.unwrap();
            applied
        }
        Backend::Postgres => {
            let mut conn = PgConnection::connect(&db.url()).await.unwrap();
            first_migration_only(sqlx::migrate!("./migrations/postgres")).run(&mut conn).await.unwrap();
            for r in rows {
                sqlx::query(INSERT_POSTGRES)
                    .bind(r.tenant)
                    .bind(r.mission)
                    .bind(r.user)
                    .bind(r.state_json())
                    .bind(i64::from(r.state.completions))
                    .bind(r.updated_at_text())
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            let applied = sqlx::query_scalar(versions).fetch_all(&mut conn).await.unwrap();
            conn.close().await.unwrap();
            applied
        }
    }
}

/// What is left of the old schema after the upgrade: the migrations recorded, and whether
/// the `progress` table (and on PostgreSQL the `questline_lock_users` function) still exist.
async fn schema_after(db: &TestDb) -> (Vec<i64>, bool) {
    let versions = "SELECT version FROM _sqlx_migrations ORDER BY version";
    match db.backend() {
        Backend::Sqlite => {
            let mut conn = SqliteConnection::connect(&db.url()).await.unwrap();
            let applied = sqlx::query_scalar(versions).fetch_all(&mut conn).await.unwrap();
            let old: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'progress'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
            (applied, old > 0)
        }
        Backend::Postgres => {
            let mut conn = PgConnection::connect(&db.url()).await.unwrap();
            let applied = sqlx::query_scalar(versions).fetch_all(&mut conn).await.unwrap();
            let old: bool = sqlx::query_scalar(
                "SELECT to_regclass('progress') IS NOT NULL \
                 OR EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'questline_lock_users')",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap();
            conn.close().await.unwrap();
            (applied, old)
        }
    }
}

pub async fn old_progress_rows_survive_the_upgrade(db: &TestDb) {
    let rows = old_rows();
    assert_eq!(old_database(db, &rows).await, vec![1], "the old database has 0001 only");

    // Opening the store applies every later migration.
    let store = db.open().await;
    let (applied, old_schema_left) = schema_after(db).await;
    assert_eq!(applied, every_migration(db));
    assert!(applied.len() >= 6, "0001 to 0006 at least: {applied:?}");
    assert!(!old_schema_left, "0002 drops what only the old progress code used");

    let [u_m1, u_m2, v_m1, other_u] = &rows[..] else { unreachable!() };
    assert_eq!(store.user_progress(&T, &uid("u"), None).await.unwrap(), vec![u_m1.stored(), u_m2.stored()]);
    assert_eq!(store.user_progress(&T, &uid("u"), Some(&mid("m2"))).await.unwrap(), vec![u_m2.stored()]);
    assert_eq!(store.user_progress(&T, &uid("v"), None).await.unwrap(), vec![v_m1.stored()]);
    assert_eq!(store.user_progress(&tenant("other"), &uid("u"), None).await.unwrap(), vec![other_u.stored()]);
    assert!(store.user_progress(&T, &uid("nobody"), None).await.unwrap().is_empty());

    // Equal decimals may differ in scale ("0.3" == "0.30"): the digits must be the old ones.
    let u = store.user_progress(&T, &uid("u"), None).await.unwrap();
    let digits = |p: &StoredProgress| p.state.steps.iter().map(|s| s.value.to_string()).collect::<Vec<_>>();
    assert_eq!(digits(&u[0]), ["0.30", "2", "3"]);
    assert_eq!(digits(&u[1]), ["123456789.000000001"]);
    let v = store.user_progress(&T, &uid("v"), None).await.unwrap();
    assert_eq!(digits(&v[0]), ["-7.250"]);
    assert_eq!(u[0].updated_at, ts("2024-01-01T00:00:30.5Z"), "updated_at kept to the nanosecond");
    assert_eq!(u[0].state.last_counted_at, Some(ts("2024-01-01T00:00:30.123456789Z")));

    // The upgraded rows are the store's own: a unit locks, changes and saves them.
    let mut tx = store.begin().await.unwrap();
    let mut locked = tx.lock_progress(&T, &[uid("u")]).await.unwrap();
    assert_eq!(locked.len(), 1);
    assert_eq!(locked[0].missions.len(), 2);
    let mut m2 = locked[0].missions[&mid("m2")].clone();
    m2.state.completions = 3;
    locked[0].missions.insert(mid("m2"), m2);
    tx.save_progress(&T, &locked).await.unwrap();
    tx.commit().await.unwrap();
    let after = store.user_progress(&T, &uid("u"), None).await.unwrap();
    assert_eq!(after[0], u_m1.stored());
    assert_eq!(after[1].state.completions, 3);
    store.close().await;

    // Reopening does not migrate again.
    let store = db.open().await;
    assert_eq!(schema_after(db).await.0, applied);
    assert_eq!(store.user_progress(&T, &uid("u"), None).await.unwrap(), after);
    store.close().await;
}
