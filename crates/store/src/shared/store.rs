//! The pool-level traits: reads on the reader pool, units of work on the writer pool.

use super::unit::{ReadUnit, Unit};
use super::{BEGIN_SNAPSHOT, BEGIN_WRITE, Backend, contacts, keys, messages, missions, reads, wallet, webhooks};
use crate::keys::{ApiKey, Role};
use crate::webhooks::Webhook;
use crate::{
    BatchReads, ContactReads, ForeignRead, KeyReads, MessageReads, MissionReads, Page, Result, Store, StoredProgress,
    UnitOfWork, UserReads, WalletReads, WebhookReads,
};
use async_trait::async_trait;
use jiff::Timestamp;
use questline_core::contact::Contact;
use questline_core::event::Event;
use questline_core::id::{MissionId, TenantId, UserId};
use questline_core::message::Message;
use questline_core::mission::{Mission, MissionStatus};
use questline_core::reward::Reward;
use questline_core::wallet::{Balance, BalanceEntry, Entitlement};

#[async_trait]
impl Store for Backend {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn begin_read(&self) -> Result<Box<dyn BatchReads>> {
        let tx = self.reader.begin_with(BEGIN_SNAPSHOT).await?;
        Ok(Box::new(ReadUnit { tx }))
    }

    async fn begin_foreign_read(&self) -> Result<Box<dyn ForeignRead>> {
        let tx = self.reader.begin_with(BEGIN_SNAPSHOT).await?;
        Ok(Box::new(ReadUnit { tx }))
    }

    async fn apply_migrations(
        &self,
        sqlite: &sqlx::migrate::Migrator,
        postgres: &sqlx::migrate::Migrator,
    ) -> Result<()> {
        super::super::migrator_for(sqlite, postgres).run(&self.writer).await?;
        Ok(())
    }

    async fn begin(&self) -> Result<Box<dyn UnitOfWork>> {
        let tx = self.writer.begin_with(BEGIN_WRITE).await?;
        Ok(Box::new(Unit { tx }))
    }
}

#[async_trait]
impl KeyReads for Backend {
    async fn key_by_hash(&self, secret_hash: &str) -> Result<Option<(TenantId, ApiKey)>> {
        keys::by_hash(&mut *self.reader.acquire().await?, secret_hash).await
    }

    async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>> {
        keys::list(&mut *self.reader.acquire().await?, tenant).await
    }

    async fn count_keys(&self, tenant: &TenantId, role: Role) -> Result<u64> {
        keys::count(&mut *self.reader.acquire().await?, tenant, role).await
    }

    async fn touch_key(&self, tenant: &TenantId, id: &str, at: Timestamp) -> Result<()> {
        // A write, so the writer pool (readers are read-only), in a statement of its own.
        keys::touch(&mut *self.writer.acquire().await?, tenant, id, at).await
    }
}

#[async_trait]
impl MissionReads for Backend {
    async fn get_mission(&self, tenant: &TenantId, id: &MissionId) -> Result<Option<Mission>> {
        missions::get(&mut *self.reader.acquire().await?, tenant, id).await
    }

    async fn list_missions(
        &self,
        tenant: &TenantId,
        status: Option<MissionStatus>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<Mission>> {
        missions::list(&mut *self.reader.acquire().await?, tenant, status, after, limit).await
    }

    async fn active_missions(&self, tenant: &TenantId) -> Result<Vec<Mission>> {
        missions::active(&mut *self.reader.acquire().await?, tenant).await
    }

    async fn missions_revision(&self, tenant: &TenantId) -> Result<i64> {
        missions::revision(&mut *self.reader.acquire().await?, tenant).await
    }
}

#[async_trait]
impl UserReads for Backend {
    async fn user_progress(
        &self,
        tenant: &TenantId,
        user: &UserId,
        mission: Option<&MissionId>,
    ) -> Result<Vec<StoredProgress>> {
        reads::user_progress(&mut *self.reader.acquire().await?, tenant, user, mission).await
    }

    async fn user_rewards(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<Reward>> {
        reads::user_rewards(&mut *self.reader.acquire().await?, tenant, user).await
    }

    async fn user_ledger(
        &self,
        tenant: &TenantId,
        user: &UserId,
        types: &[String],
    ) -> Result<(Vec<Event>, Vec<Event>)> {
        reads::user_ledger(&self.reader, tenant, user, types).await
    }
}

#[async_trait]
impl WalletReads for Backend {
    async fn balances(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<Balance>> {
        wallet::balances(&mut *self.reader.acquire().await?, tenant, user).await
    }

    async fn balance_entries(
        &self,
        tenant: &TenantId,
        user: &UserId,
        currency: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<BalanceEntry>> {
        wallet::entries(&mut *self.reader.acquire().await?, tenant, user, currency, before, limit).await
    }

    async fn entitlements(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<Entitlement>> {
        wallet::entitlements(&mut *self.reader.acquire().await?, tenant, user).await
    }
}

#[async_trait]
impl WebhookReads for Backend {
    async fn list_webhooks(&self, tenant: &TenantId) -> Result<Vec<Webhook>> {
        webhooks::list(&mut *self.reader.acquire().await?, tenant).await
    }

    async fn fulfilment_webhook(&self, tenant: &TenantId) -> Result<Option<Webhook>> {
        webhooks::fulfilment(&mut *self.reader.acquire().await?, tenant).await
    }

    async fn webhook(&self, tenant: &TenantId, id: &str) -> Result<Option<Webhook>> {
        webhooks::one(&mut *self.reader.acquire().await?, tenant, id).await
    }
}

#[async_trait]
impl ContactReads for Backend {
    async fn contact(&self, tenant: &TenantId, user_id: &str) -> Result<Option<Contact>> {
        contacts::one(&mut *self.reader.acquire().await?, tenant, user_id, false).await
    }
}

#[async_trait]
impl MessageReads for Backend {
    async fn message(&self, tenant: &TenantId, id: &str) -> Result<Option<Message>> {
        messages::one(&mut *self.reader.acquire().await?, tenant, id).await
    }

    async fn messages(&self, tenant: &TenantId, ids: &[&str]) -> Result<Vec<Message>> {
        messages::many(&mut *self.reader.acquire().await?, tenant, ids, false).await
    }

    async fn sent_in_month(&self, month: &str) -> Result<Vec<(String, u64)>> {
        messages::sent_in(&mut *self.reader.acquire().await?, month).await
    }
}
