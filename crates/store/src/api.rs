//! What the store offers, in narrow traits, one per concern.
//!
//! Reads are served by the pool-level [`Store`] ([`KeyReads`], [`MissionReads`],
//! [`UserReads`]) and never wait for a writer. Every write goes through a [`UnitOfWork`]:
//! one transaction, opened by [`Store::begin`], committed by [`UnitOfWork::commit`], rolled
//! back when dropped. A caller takes the narrowest trait that does its job; the service's
//! batch orchestration is written once against these traits, and a backend only answers
//! narrow questions in SQL.
//!
//! Ids: the tenant is always a [`TenantId`]; where a mission and a user meet in one
//! signature they are [`MissionId`] and [`UserId`]. Event ids and reward ids stay `String`s,
//! as the core's `Event` and `Reward` carry them.

use crate::Result;
use crate::keys::{ApiKey, NewApiKey, Role};
use crate::webhooks::Webhook;
use async_trait::async_trait;
use jiff::Timestamp;
use questline_core::contact::Contact;
use questline_core::event::Event;
use questline_core::id::{MissionId, TenantId, UserId};
use questline_core::message::Message;
use questline_core::mission::{Mission, MissionStatus};
use questline_core::progress::ProgressState;
use questline_core::reward::Reward;
use questline_core::wallet::{Balance, BalanceEntry, Entitlement};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// A user's progress in every mission they have any in, stored as ONE row: a batch reads,
/// locks and writes each of its users once, however many missions their events touch.
#[derive(Debug, Clone, PartialEq)]
pub struct UserProgress {
    pub user_id: UserId,
    pub missions: BTreeMap<MissionId, MissionProgress>,
    /// The row's version as read (0: no row yet); every save bumps it. What a batch
    /// prepared on a snapshot checks before it writes ([`ProgressTx::lock_versions`]).
    pub version: i64,
}

/// A user's state in one mission, and when it last changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissionProgress {
    pub state: ProgressState,
    pub updated_at: Timestamp,
}

impl UserProgress {
    /// A user with no progress yet.
    pub fn empty(user_id: UserId) -> Self {
        Self { user_id, missions: BTreeMap::new(), version: 0 }
    }
}

/// A user's stored progress in one mission, as readers get it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredProgress {
    pub mission_id: MissionId,
    pub user_id: UserId,
    pub state: ProgressState,
    pub updated_at: Timestamp,
}

/// One page of a list, ordered by id.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The cursor to pass as `after` for the next page, if there may be one.
    pub next_after: Option<String>,
}

/// A mission's budget as stored, read under lock by [`BudgetTx::lock_budgets`]: the
/// engine's own type, which `questline_core::budget::take_budgets` decides over.
pub use questline_core::budget::BudgetRow;

/// The connection a unit of work runs on, for SQL the store does not know (another crate's
/// tables, e.g. a job queue) that must commit or roll back with the unit.
pub enum Connection<'a> {
    Sqlite(&'a mut sqlx::SqliteConnection),
    Postgres(&'a mut sqlx::PgConnection),
}

impl<'a> From<&'a mut sqlx::SqliteConnection> for Connection<'a> {
    fn from(conn: &'a mut sqlx::SqliteConnection) -> Self {
        Self::Sqlite(conn)
    }
}

impl<'a> From<&'a mut sqlx::PgConnection> for Connection<'a> {
    fn from(conn: &'a mut sqlx::PgConnection) -> Self {
        Self::Postgres(conn)
    }
}

// --- the pool ---

/// A database: reads on their own connections, writes through [`Store::begin`].
#[async_trait]
pub trait Store:
    KeyReads + MissionReads + UserReads + WalletReads + WebhookReads + MessageReads + ContactReads + Send + Sync + 'static
{
    /// Whether the database answers.
    async fn ping(&self) -> Result<()>;

    /// Starts a read-only snapshot for preparing a batch outside any write transaction:
    /// everything it reads is of one instant, and nothing waits for a writer.
    async fn begin_read(&self) -> Result<Box<dyn BatchReads>>;

    /// Starts a read-only snapshot (on a reader connection, as [`Store::begin_read`]) for SQL
    /// the store does not know: another crate's reads of its own tables (e.g. a job queue's
    /// lists), which must not wait for a writer either.
    async fn begin_foreign_read(&self) -> Result<Box<dyn ForeignRead>>;

    /// Applies another crate's migrations to this database: `sqlite` or `postgres`, the one
    /// for this backend, on a writer connection. Their versions must differ from the store's
    /// own, and each set must tolerate the other's applied versions (`ignore_missing`, as the
    /// store's own migrator does).
    async fn apply_migrations(
        &self,
        sqlite: &sqlx::migrate::Migrator,
        postgres: &sqlx::migrate::Migrator,
    ) -> Result<()>;

    /// Starts a unit of work: ONE write transaction (SQLite: `BEGIN IMMEDIATE` on the single
    /// writer connection, so at most one is open per store and a second `begin` waits for
    /// it; PostgreSQL: READ COMMITTED on a writer connection). Do not call a write of the
    /// pool ([`KeyReads::touch_key`]) or a second `begin` while holding one on SQLite: it
    /// would wait for the very connection the unit holds.
    async fn begin(&self) -> Result<Box<dyn UnitOfWork>>;
}

/// API keys, looked up on every request.
#[async_trait]
pub trait KeyReads: Send + Sync {
    /// The key whose secret hashes to `secret_hash`, with its tenant.
    async fn key_by_hash(&self, secret_hash: &str) -> Result<Option<(TenantId, ApiKey)>>;
    /// A tenant's keys, oldest first.
    async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>>;
    async fn count_keys(&self, tenant: &TenantId, role: Role) -> Result<u64>;
    /// Records when a key was last used: a best-effort write of its own (autocommit) on each
    /// request, deliberately outside any unit of work.
    async fn touch_key(&self, tenant: &TenantId, id: &str, at: Timestamp) -> Result<()>;
}

/// Missions as committed.
#[async_trait]
pub trait MissionReads: Send + Sync {
    async fn get_mission(&self, tenant: &TenantId, id: &MissionId) -> Result<Option<Mission>>;
    /// A page of missions by id, of one status or all; `after` is a [`Page::next_after`].
    async fn list_missions(
        &self,
        tenant: &TenantId,
        status: Option<MissionStatus>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<Mission>>;
    /// The tenant's active missions, by id.
    async fn active_missions(&self, tenant: &TenantId) -> Result<Vec<Mission>>;
    /// Bumped by every mission write; 0 for a tenant that never had a mission.
    async fn missions_revision(&self, tenant: &TenantId) -> Result<i64>;
}

/// What the user-facing API and recomputations read.
#[async_trait]
pub trait UserReads: Send + Sync {
    /// A user's progress rows, all of them (by mission) or for one mission.
    async fn user_progress(
        &self,
        tenant: &TenantId,
        user: &UserId,
        mission: Option<&MissionId>,
    ) -> Result<Vec<StoredProgress>>;
    /// A user's rewards, newest first.
    async fn user_rewards(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<Reward>>;
    /// Every original event of a user of the given types with every reversal of them (the
    /// input to a recomputation), from one snapshot, outside any unit of work.
    async fn user_ledger(&self, tenant: &TenantId, user: &UserId, types: &[String])
    -> Result<(Vec<Event>, Vec<Event>)>;
}

// --- the unit of work ---

/// What preparing a batch reads: from a read-only snapshot ([`Store::begin_read`]), or
/// inside a unit of work, which sees its own writes.
#[async_trait]
pub trait BatchReads: Send {
    /// Which of these ids the ledger holds, in no particular order.
    async fn known_ids(&mut self, tenant: &TenantId, ids: &[String]) -> Result<Vec<String>>;
    /// The stored events with these ids, by `(occurred_at, id)`.
    async fn events_by_id(&mut self, tenant: &TenantId, ids: &[String]) -> Result<Vec<Event>>;
    /// Every stored reversal of any of these ids, by `(occurred_at, id)`.
    async fn reversals_of(&mut self, tenant: &TenantId, ids: &[String]) -> Result<Vec<Event>>;
    /// Every stored original (not reversal) event of a user with one of these types, by
    /// `(occurred_at, id)`.
    async fn user_originals(&mut self, tenant: &TenantId, user: &UserId, types: &[String]) -> Result<Vec<Event>>;
    /// These users' progress, with each row's version, without locking anything. Users
    /// without progress come back empty (version 0) or are left out.
    async fn read_progress(&mut self, tenant: &TenantId, users: &[UserId]) -> Result<Vec<UserProgress>>;
    /// The live (not revoked) rewards of these (mission, user) pairs, in one query, ordered
    /// by (mission, user, completion).
    async fn live_rewards(&mut self, tenant: &TenantId, keys: &[(MissionId, UserId)]) -> Result<Vec<Reward>>;
    /// Which of these (mission, user, completion) have a live (not revoked) reward: one probe
    /// of the one-live-reward-per-completion index each.
    async fn live_completions(
        &mut self,
        tenant: &TenantId,
        keys: &[(MissionId, UserId, u32)],
    ) -> Result<Vec<(MissionId, UserId, u32)>>;
    /// The missions revision as this view sees it (a unit: its own bumps included).
    async fn missions_revision(&mut self, tenant: &TenantId) -> Result<i64>;
    /// The mission as this view sees it.
    async fn get_mission(&mut self, tenant: &TenantId, id: &MissionId) -> Result<Option<Mission>>;
}

/// A read-only snapshot for another crate's SQL ([`Store::begin_foreign_read`]); dropping it
/// ends the transaction.
pub trait ForeignRead: Send {
    /// The snapshot's connection. Leave the transaction itself alone.
    fn connection(&mut self) -> Connection<'_>;
}

/// One write transaction. Nothing is visible to others until [`UnitOfWork::commit`];
/// dropping it rolls back everything it did, the foreign SQL run on
/// [`UnitOfWork::connection`] included.
#[async_trait]
pub trait UnitOfWork:
    BatchReads
    + LedgerTx
    + ProgressTx
    + RewardTx
    + BudgetTx
    + MissionTx
    + KeyTx
    + WalletTx
    + WebhookTx
    + MessageTx
    + ContactTx
    + Send
{
    /// The transaction's connection, for rows of other crates that must commit with this
    /// unit. Leave the transaction itself alone (no `COMMIT`, `ROLLBACK` or `SAVEPOINT`).
    fn connection(&mut self) -> Connection<'_>;
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// The event ledger.
#[async_trait]
pub trait LedgerTx: Send {
    /// Records events in the ledger. Returns, for each event, whether it was new; an id seen
    /// before (in an earlier unit, or earlier in this one) is a duplicate and is not written.
    async fn insert_events(&mut self, tenant: &TenantId, events: &[Event], received_at: Timestamp)
    -> Result<Vec<bool>>;
}

/// Progress, one row per user.
#[async_trait]
pub trait ProgressTx: Send {
    /// Locks these users' progress until commit and returns it: two units touching a user
    /// apply one after the other, and the second reads what the first committed (PostgreSQL:
    /// the rows `FOR UPDATE`, a row made first for a user who has none; SQLite: the single
    /// writer already excludes every other unit). `users` is sorted and unique, so that two
    /// units lock in the same order. Call it before anything else that writes. Users without
    /// progress come back empty or are left out.
    async fn lock_progress(&mut self, tenant: &TenantId, users: &[UserId]) -> Result<Vec<UserProgress>>;
    /// Locks these users' progress as [`ProgressTx::lock_progress`] does, and returns only
    /// each row's version (0: no row yet), in `users`' order: how a batch prepared on a
    /// snapshot checks that nothing it read has changed.
    async fn lock_versions(&mut self, tenant: &TenantId, users: &[UserId]) -> Result<Vec<i64>>;
    /// Replaces these users' progress and bumps each row's version (whatever `version`
    /// the value holds); if `users` repeats a user, the later one wins.
    async fn save_progress(&mut self, tenant: &TenantId, users: &[UserProgress]) -> Result<()>;
}

/// Rewards.
#[async_trait]
pub trait RewardTx: Send {
    /// Fails with `Conflict` if the id is taken or the completion has a live reward; the
    /// unit stays usable.
    async fn insert_reward(&mut self, tenant: &TenantId, reward: &Reward) -> Result<()> {
        self.insert_rewards(tenant, std::slice::from_ref(reward)).await
    }
    /// Many rewards in a few statements. Fails with `Conflict` if any id is taken or any
    /// completion has a live reward (the others are inserted; the unit stays usable).
    async fn insert_rewards(&mut self, tenant: &TenantId, rewards: &[Reward]) -> Result<()>;
    /// Marks those of these rewards revoked that are still `pending` (a granted reward has
    /// been paid out and stays). Returns the rewards it revoked, as they now stand.
    async fn revoke_rewards(&mut self, tenant: &TenantId, reward_ids: &[String], at: Timestamp) -> Result<Vec<Reward>>;
}

/// Mission budgets. The engine decides the counts; the store only locks and writes them.
#[async_trait]
pub trait BudgetTx: Send {
    /// The budgets of these missions, locked until commit (PostgreSQL: `FOR UPDATE`, in id
    /// order whatever the order given, so concurrent units lock in one order; SQLite: the
    /// single writer already excludes everyone). Unknown missions are left out; the rows
    /// come back by id.
    async fn lock_budgets(&mut self, tenant: &TenantId, missions: &[MissionId]) -> Result<Vec<BudgetRow>>;
    /// Writes a mission's grant count; with `end_mission_at`, also ends it (status `ended`,
    /// `updated_at` moved to that instant) and bumps the tenant's missions revision.
    async fn set_budget(
        &mut self,
        tenant: &TenantId,
        mission: &MissionId,
        granted: u64,
        end_mission_at: Option<Timestamp>,
    ) -> Result<()>;
}

/// Mission writes. Each one that changes a mission bumps the tenant's missions revision in
/// the same transaction.
#[async_trait]
pub trait MissionTx: Send {
    /// Creates the tenant's row if missing. Fails with `Conflict` if the id is taken (and
    /// bumps nothing); the unit stays usable.
    async fn insert_mission(&mut self, tenant: &TenantId, mission: &Mission) -> Result<()>;
    /// Replaces a mission if it is unchanged since `expected_updated_at` (optimistic
    /// concurrency). Returns false if it changed or vanished meanwhile. `rewards_granted` is
    /// never written here: only [`BudgetTx::set_budget`] moves it.
    async fn update_mission(
        &mut self,
        tenant: &TenantId,
        mission: &Mission,
        expected_updated_at: Timestamp,
    ) -> Result<bool>;
    /// Deletes a mission only while it is a draft. Returns whether one was deleted.
    async fn delete_draft_mission(&mut self, tenant: &TenantId, id: &MissionId) -> Result<bool>;
}

/// API key writes.
#[async_trait]
pub trait KeyTx: Send {
    /// Creates the tenant's row if missing. Fails with `Conflict` if the id (or the secret's
    /// hash) is taken.
    async fn insert_key(&mut self, tenant: &TenantId, key: &NewApiKey) -> Result<ApiKey>;
    /// Returns whether a key was deleted.
    async fn delete_key(&mut self, tenant: &TenantId, id: &str) -> Result<bool>;
}

/// Balances and entitlements as committed (settlement's results), on the reader pool.
#[async_trait]
pub trait WalletReads: Send + Sync {
    /// A user's balances, by currency.
    async fn balances(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<Balance>>;
    /// A page of one balance's entries, newest first; `before` is a [`Page::next_after`].
    async fn balance_entries(
        &self,
        tenant: &TenantId,
        user: &UserId,
        currency: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<BalanceEntry>>;
    /// A user's entitlements, oldest first.
    async fn entitlements(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<Entitlement>>;
}

/// Settling rewards, and moving balances, inside a unit of work.
#[async_trait]
pub trait WalletTx: Send {
    /// These rewards (those that exist), locked until the unit ends (PostgreSQL: `FOR
    /// UPDATE`) in id order, the one order every unit locks
    /// rewards in to settle them; returned in id order.
    async fn lock_rewards(&mut self, tenant: &TenantId, ids: &[String]) -> Result<Vec<Reward>>;
    /// Writes rewards' settled state: status, attempts, `settled_at`, `failure`, `updated_at`.
    async fn save_settlements(&mut self, tenant: &TenantId, rewards: &[Reward]) -> Result<()>;
    /// Pending rewards whose hold ended by `now`, soonest first.
    async fn due_rewards(&mut self, tenant: &TenantId, now: Timestamp, limit: u32) -> Result<Vec<Reward>>;
    /// These balances (zero for one that never moved), locked until the unit ends, in the
    /// order given: sort them, so that every unit locks balances in one order.
    async fn lock_balances(
        &mut self,
        tenant: &TenantId,
        keys: &[(UserId, String)],
        now: Timestamp,
    ) -> Result<Vec<Decimal>>;
    /// The entry already written for this idempotency key (of this balance) or else this
    /// reward (of any balance), if any.
    async fn find_entry(
        &mut self,
        tenant: &TenantId,
        user: &UserId,
        currency: &str,
        idempotency_key: Option<&str>,
        reward_id: Option<&str>,
    ) -> Result<Option<BalanceEntry>>;
    /// Writes entries (in order) and sets each balance they move (locked by
    /// [`WalletTx::lock_balances`]) to its last entry's `balance_after`.
    async fn insert_entries(&mut self, tenant: &TenantId, entries: &[BalanceEntry]) -> Result<()>;
    /// Balances (user, currency) holding a credit that expired by `now` and that no sweep
    /// has dealt with yet, the longest expired first.
    async fn expiring_balances(
        &mut self,
        tenant: &TenantId,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(UserId, String)>>;
    /// Every entry of one balance, in the order written, and the ids of its credits whose
    /// expiry was dealt with.
    async fn balance_ledger(
        &mut self,
        tenant: &TenantId,
        user: &UserId,
        currency: &str,
    ) -> Result<(Vec<BalanceEntry>, HashSet<String>)>;
    /// Marks these credits' expiry dealt with.
    async fn mark_expired(&mut self, tenant: &TenantId, credit_ids: &[String], at: Timestamp) -> Result<()>;
    /// Grants entitlements, each unless its user holds that code already; how many were new.
    async fn insert_entitlements(&mut self, tenant: &TenantId, entitlements: &[(UserId, Entitlement)]) -> Result<u64>;
}

/// Webhook endpoints as committed, on the reader pool.
#[async_trait]
pub trait WebhookReads: Send + Sync {
    /// A tenant's webhooks, oldest first.
    async fn list_webhooks(&self, tenant: &TenantId) -> Result<Vec<Webhook>>;
    /// The tenant's endpoint subscribed to `reward.fulfil`, if any (at most one).
    async fn fulfilment_webhook(&self, tenant: &TenantId) -> Result<Option<Webhook>>;
    /// One webhook of the tenant.
    async fn webhook(&self, tenant: &TenantId, id: &str) -> Result<Option<Webhook>>;
}

/// Webhook writes.
#[async_trait]
pub trait WebhookTx: Send {
    /// The tenant's webhooks, oldest first, with the tenant locked until the unit ends
    /// (PostgreSQL: its row `FOR UPDATE`), so that what a creation checks against them (how
    /// many, which one fulfils) still holds when it inserts.
    async fn lock_webhooks(&mut self, tenant: &TenantId, now: Timestamp) -> Result<Vec<Webhook>>;
    /// The tenant's webhooks as this unit sees them, without locking anything: who hears of
    /// what the unit writes.
    async fn webhooks(&mut self, tenant: &TenantId) -> Result<Vec<Webhook>>;
    /// Creates the tenant's row if missing. Fails with `Conflict` if the id is taken or the
    /// webhook fulfils and the tenant has a fulfilment endpoint already; the unit stays usable.
    async fn insert_webhook(&mut self, tenant: &TenantId, webhook: &Webhook) -> Result<()>;
    /// Returns whether a webhook was deleted.
    async fn delete_webhook(&mut self, tenant: &TenantId, id: &str) -> Result<bool>;
}

/// Users' contact points and preferences as committed, on the reader pool.
#[async_trait]
pub trait ContactReads: Send + Sync {
    async fn contact(&self, tenant: &TenantId, user_id: &str) -> Result<Option<Contact>>;
}

/// Contact writes: read under a row lock, changed, saved (a first save inserts).
#[async_trait]
pub trait ContactTx: Send {
    /// A user's contact, locked until the unit ends; `None` if they have none yet.
    async fn lock_contact(&mut self, tenant: &TenantId, user_id: &str) -> Result<Option<Contact>>;
    async fn save_contact(&mut self, tenant: &TenantId, contact: &Contact, now: Timestamp) -> Result<()>;
}

/// Messages as committed, on the reader pool.
#[async_trait]
pub trait MessageReads: Send + Sync {
    async fn message(&self, tenant: &TenantId, id: &str) -> Result<Option<Message>>;
    /// Messages of the tenant by id, a few statements for many; ids with no message are left
    /// out, and the order is not `ids`'.
    async fn messages(&self, tenant: &TenantId, ids: &[&str]) -> Result<Vec<Message>>;
    /// Messages each provider sent in `month` (`YYYY-MM`, UTC), by provider name.
    async fn sent_in_month(&self, month: &str) -> Result<Vec<(String, u64)>>;
}

/// Message writes.
#[async_trait]
pub trait MessageTx: Send {
    /// Inserts new messages (a few statements for many). For each: `None` if inserted; if
    /// its id was taken (before, or by an earlier one of `messages`), the message that has
    /// it, and nothing inserted. The unit stays usable.
    async fn insert_messages(&mut self, tenant: &TenantId, messages: &[Message]) -> Result<Vec<Option<Message>>>;
    /// Messages of the tenant by id, locked until the unit ends (in id order, so that two
    /// units locking overlapping sets cannot deadlock), a few statements for many; ids with
    /// no message are left out, and the order is not `ids`'.
    async fn lock_messages(&mut self, tenant: &TenantId, ids: &[&str]) -> Result<Vec<Message>>;
    /// Writes locked messages' new states, a few statements for many (distinct ids).
    async fn save_messages(&mut self, tenant: &TenantId, messages: &[Message], now: Timestamp) -> Result<()>;
    /// `n` more messages sent by `provider` in `month` (`YYYY-MM`, UTC).
    async fn count_sent(&mut self, provider: &str, month: &str, n: u64) -> Result<()>;
}
