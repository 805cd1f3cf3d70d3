//! The [`UnitOfWork`]: one transaction on a writer connection, and every write the store
//! knows, as narrow traits over it.
//!
//! The transaction is begun by the backend's `BEGIN_WRITE` (see there for why each backend
//! starts it as it does). Dropping the unit drops the transaction, which rolls it back.

use super::{Db, batch, contacts, events, keys, messages, missions, rewards, wallet, webhooks};
use crate::keys::{ApiKey, NewApiKey};
use crate::sql::EventLookup;
use crate::webhooks::Webhook;
use crate::{
    BatchReads, BudgetRow, BudgetTx, Connection, ContactTx, ForeignRead, KeyTx, LedgerTx, MessageTx, MissionTx,
    ProgressTx, Result, RewardTx, UnitOfWork, UserProgress, WalletTx, WebhookTx,
};
use async_trait::async_trait;
use jiff::Timestamp;
use questline_core::contact::Contact;
use questline_core::event::Event;
use questline_core::id::{MissionId, TenantId, UserId};
use questline_core::message::Message;
use questline_core::mission::Mission;
use questline_core::reward::Reward;
use questline_core::wallet::{BalanceEntry, Entitlement};
use rust_decimal::Decimal;
use sqlx::Transaction;
use std::collections::HashSet;

pub(super) struct Unit {
    pub(super) tx: Transaction<'static, Db>,
}

/// A read-only snapshot on a reader connection ([`crate::Store::begin_read`]); dropping it
/// ends the transaction.
pub(super) struct ReadUnit {
    pub(super) tx: Transaction<'static, Db>,
}

/// The same reads for a snapshot and for a unit of work, each on its own transaction.
macro_rules! batch_reads {
    ($unit:ty) => {
        #[async_trait]
        impl BatchReads for $unit {
            async fn known_ids(&mut self, tenant: &TenantId, ids: &[String]) -> Result<Vec<String>> {
                events::known(&mut self.tx, tenant, ids).await
            }

            async fn events_by_id(&mut self, tenant: &TenantId, ids: &[String]) -> Result<Vec<Event>> {
                events::find(&mut self.tx, tenant, EventLookup::ById(ids)).await
            }

            async fn reversals_of(&mut self, tenant: &TenantId, ids: &[String]) -> Result<Vec<Event>> {
                events::find(&mut self.tx, tenant, EventLookup::ReversalsOf(ids)).await
            }

            async fn user_originals(
                &mut self,
                tenant: &TenantId,
                user: &UserId,
                types: &[String],
            ) -> Result<Vec<Event>> {
                events::find(&mut self.tx, tenant, EventLookup::UserOriginals { user, types }).await
            }

            async fn read_progress(&mut self, tenant: &TenantId, users: &[UserId]) -> Result<Vec<UserProgress>> {
                batch::read_progress(&mut self.tx, tenant, users).await
            }

            async fn live_rewards(&mut self, tenant: &TenantId, keys: &[(MissionId, UserId)]) -> Result<Vec<Reward>> {
                rewards::live_of_pairs(&mut self.tx, tenant, keys).await
            }

            async fn live_completions(
                &mut self,
                tenant: &TenantId,
                keys: &[(MissionId, UserId, u32)],
            ) -> Result<Vec<(MissionId, UserId, u32)>> {
                batch::live_completions(&mut self.tx, tenant.as_str(), keys).await
            }

            async fn missions_revision(&mut self, tenant: &TenantId) -> Result<i64> {
                missions::revision(&mut self.tx, tenant).await
            }

            async fn get_mission(&mut self, tenant: &TenantId, id: &MissionId) -> Result<Option<Mission>> {
                missions::get(&mut self.tx, tenant, id).await
            }
        }
    };
}

batch_reads!(Unit);
batch_reads!(ReadUnit);

impl ForeignRead for ReadUnit {
    fn connection(&mut self) -> Connection<'_> {
        Connection::from(&mut *self.tx)
    }
}

#[async_trait]
impl UnitOfWork for Unit {
    fn connection(&mut self) -> Connection<'_> {
        Connection::from(&mut *self.tx)
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        Ok(self.tx.commit().await?)
    }
}

#[async_trait]
impl LedgerTx for Unit {
    async fn insert_events(
        &mut self,
        tenant: &TenantId,
        events: &[Event],
        received_at: Timestamp,
    ) -> Result<Vec<bool>> {
        events::insert(&mut self.tx, tenant, events, received_at).await
    }
}

#[async_trait]
impl ProgressTx for Unit {
    async fn lock_progress(&mut self, tenant: &TenantId, users: &[UserId]) -> Result<Vec<UserProgress>> {
        batch::lock_versions(&mut self.tx, tenant, users).await?;
        batch::read_progress(&mut self.tx, tenant, users).await
    }

    async fn lock_versions(&mut self, tenant: &TenantId, users: &[UserId]) -> Result<Vec<i64>> {
        batch::lock_versions(&mut self.tx, tenant, users).await
    }

    async fn save_progress(&mut self, tenant: &TenantId, users: &[UserProgress]) -> Result<()> {
        batch::save_progress(&mut self.tx, tenant, users).await
    }
}

#[async_trait]
impl RewardTx for Unit {
    async fn insert_rewards(&mut self, tenant: &TenantId, new: &[Reward]) -> Result<()> {
        rewards::insert(&mut self.tx, tenant, new).await
    }

    async fn revoke_rewards(&mut self, tenant: &TenantId, reward_ids: &[String], at: Timestamp) -> Result<Vec<Reward>> {
        rewards::revoke(&mut self.tx, tenant, reward_ids, at).await
    }
}

#[async_trait]
impl BudgetTx for Unit {
    async fn lock_budgets(&mut self, tenant: &TenantId, missions: &[MissionId]) -> Result<Vec<BudgetRow>> {
        missions::lock_budgets(&mut self.tx, tenant, missions).await
    }

    async fn set_budget(
        &mut self,
        tenant: &TenantId,
        mission: &MissionId,
        granted: u64,
        end_mission_at: Option<Timestamp>,
    ) -> Result<()> {
        missions::set_budget(&mut self.tx, tenant, mission, granted, end_mission_at).await
    }
}

#[async_trait]
impl MissionTx for Unit {
    async fn insert_mission(&mut self, tenant: &TenantId, mission: &Mission) -> Result<()> {
        missions::insert(&mut self.tx, tenant, mission).await
    }

    async fn update_mission(
        &mut self,
        tenant: &TenantId,
        mission: &Mission,
        expected_updated_at: Timestamp,
    ) -> Result<bool> {
        missions::update(&mut self.tx, tenant, mission, expected_updated_at).await
    }

    async fn delete_draft_mission(&mut self, tenant: &TenantId, id: &MissionId) -> Result<bool> {
        missions::delete_draft(&mut self.tx, tenant, id).await
    }
}

#[async_trait]
impl KeyTx for Unit {
    async fn insert_key(&mut self, tenant: &TenantId, key: &NewApiKey) -> Result<ApiKey> {
        keys::insert(&mut self.tx, tenant, key).await
    }

    async fn delete_key(&mut self, tenant: &TenantId, id: &str) -> Result<bool> {
        keys::delete(&mut self.tx, tenant, id).await
    }
}

#[async_trait]
impl WalletTx for Unit {
    async fn lock_rewards(&mut self, tenant: &TenantId, ids: &[String]) -> Result<Vec<Reward>> {
        wallet::lock_rewards(&mut self.tx, tenant, ids).await
    }

    async fn save_settlements(&mut self, tenant: &TenantId, rewards: &[Reward]) -> Result<()> {
        wallet::save_settlements(&mut self.tx, tenant, rewards).await
    }

    async fn due_rewards(&mut self, tenant: &TenantId, now: Timestamp, limit: u32) -> Result<Vec<Reward>> {
        wallet::due_rewards(&mut self.tx, tenant, now, limit).await
    }

    async fn lock_balances(
        &mut self,
        tenant: &TenantId,
        keys: &[(UserId, String)],
        now: Timestamp,
    ) -> Result<Vec<Decimal>> {
        wallet::lock_balances(&mut self.tx, tenant, keys, now).await
    }

    async fn find_entry(
        &mut self,
        tenant: &TenantId,
        user: &UserId,
        currency: &str,
        idempotency_key: Option<&str>,
        reward_id: Option<&str>,
    ) -> Result<Option<BalanceEntry>> {
        wallet::find_entry(&mut self.tx, tenant, user, currency, idempotency_key, reward_id).await
    }

    async fn insert_entries(&mut self, tenant: &TenantId, entries: &[BalanceEntry]) -> Result<()> {
        wallet::insert_entries(&mut self.tx, tenant, entries).await
    }

    async fn expiring_balances(
        &mut self,
        tenant: &TenantId,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(UserId, String)>> {
        wallet::expiring_balances(&mut self.tx, tenant, now, limit).await
    }

    async fn balance_ledger(
        &mut self,
        tenant: &TenantId,
        user: &UserId,
        currency: &str,
    ) -> Result<(Vec<BalanceEntry>, HashSet<String>)> {
        wallet::balance_ledger(&mut self.tx, tenant, user, currency).await
    }

    async fn mark_expired(&mut self, tenant: &TenantId, credit_ids: &[String], at: Timestamp) -> Result<()> {
        wallet::mark_expired(&mut self.tx, tenant, credit_ids, at).await
    }

    async fn insert_entitlements(&mut self, tenant: &TenantId, entitlements: &[(UserId, Entitlement)]) -> Result<u64> {
        wallet::insert_entitlements(&mut self.tx, tenant, entitlements).await
    }
}

#[async_trait]
impl WebhookTx for Unit {
    async fn lock_webhooks(&mut self, tenant: &TenantId, now: Timestamp) -> Result<Vec<Webhook>> {
        webhooks::lock(&mut self.tx, tenant, now).await
    }

    async fn webhooks(&mut self, tenant: &TenantId) -> Result<Vec<Webhook>> {
        webhooks::list(&mut self.tx, tenant).await
    }

    async fn insert_webhook(&mut self, tenant: &TenantId, webhook: &Webhook) -> Result<()> {
        webhooks::insert(&mut self.tx, tenant, webhook).await
    }

    async fn delete_webhook(&mut self, tenant: &TenantId, id: &str) -> Result<bool> {
        webhooks::delete(&mut self.tx, tenant, id).await
    }
}

#[async_trait]
impl ContactTx for Unit {
    async fn lock_contact(&mut self, tenant: &TenantId, user_id: &str) -> Result<Option<Contact>> {
        contacts::one(&mut self.tx, tenant, user_id, true).await
    }

    async fn save_contact(&mut self, tenant: &TenantId, contact: &Contact, now: Timestamp) -> Result<()> {
        contacts::save(&mut self.tx, tenant, contact, now).await
    }
}

#[async_trait]
impl MessageTx for Unit {
    async fn insert_messages(&mut self, tenant: &TenantId, messages: &[Message]) -> Result<Vec<Option<Message>>> {
        messages::insert_many(&mut self.tx, tenant, messages).await
    }

    async fn lock_messages(&mut self, tenant: &TenantId, ids: &[&str]) -> Result<Vec<Message>> {
        messages::many(&mut self.tx, tenant, ids, true).await
    }

    async fn save_messages(&mut self, tenant: &TenantId, messages: &[Message], now: Timestamp) -> Result<()> {
        messages::save_many(&mut self.tx, tenant, messages, now).await
    }

    async fn count_sent(&mut self, provider: &str, month: &str, n: u64) -> Result<()> {
        messages::count_sent(&mut self.tx, provider, month, n).await
    }
}
