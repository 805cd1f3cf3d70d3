//! Webhook endpoints: written rarely (an admin's request), read by every fulfilment.

use super::{Conn, LOCK_ROWS, sql};
use crate::rows::{WEBHOOK_COLUMNS, WebhookRow, to_i64, ts_text};
use crate::webhooks::Webhook;
use crate::{Result, StoreError};
use questline_core::id::TenantId;

/// Locks the tenant's row (PostgreSQL: `FOR UPDATE`, made first if missing; SQLite: the
/// single writer already excludes everyone), so that two units creating webhooks for one
/// tenant run one after the other, and returns its webhooks, oldest first.
pub(super) async fn lock(conn: &mut Conn, tenant: &TenantId, now: jiff::Timestamp) -> Result<Vec<Webhook>> {
    super::missions::ensure_tenant(conn, tenant, now).await?;
    sqlx::query(&sql(&format!("SELECT id FROM tenants WHERE id = ?{LOCK_ROWS}")))
        .bind(tenant.as_str())
        .execute(&mut *conn)
        .await?;
    list(conn, tenant).await
}

pub(super) async fn insert(conn: &mut Conn, tenant: &TenantId, hook: &Webhook) -> Result<()> {
    super::missions::ensure_tenant(conn, tenant, hook.created_at).await?;
    let events = serde_json::to_string(&hook.events)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode the events of webhook {:?}: {e}", hook.id)))?;
    // DO NOTHING rather than a unique violation (a taken id, or a second fulfilment endpoint):
    // on PostgreSQL an error would abort the caller's whole unit of work.
    let inserted = sqlx::query(&sql(
        "INSERT INTO webhooks (tenant_id, id, url, events, fulfils, max_attempts, retry_initial_ms, retry_max_ms, \
         sealed_secret, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    ))
    .bind(tenant.as_str())
    .bind(&hook.id)
    .bind(&hook.url)
    .bind(events)
    .bind(i64::from(hook.fulfils()))
    .bind(i64::from(hook.max_attempts))
    .bind(to_i64(u64::try_from(hook.retry_initial.as_millis()).unwrap_or(u64::MAX)))
    .bind(to_i64(u64::try_from(hook.retry_max.as_millis()).unwrap_or(u64::MAX)))
    .bind(&hook.sealed_secret)
    .bind(ts_text(hook.created_at))
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if inserted {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "webhook id {:?} is taken, or the tenant has a reward.fulfil endpoint already",
            hook.id
        )))
    }
}

pub(super) async fn list(conn: &mut Conn, tenant: &TenantId) -> Result<Vec<Webhook>> {
    let rows: Vec<WebhookRow> = sqlx::query_as(&sql(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = ? ORDER BY created_at, id"
    )))
    .bind(tenant.as_str())
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(WebhookRow::into_webhook).collect()
}

pub(super) async fn fulfilment(conn: &mut Conn, tenant: &TenantId) -> Result<Option<Webhook>> {
    let row: Option<WebhookRow> =
        sqlx::query_as(&sql(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = ? AND fulfils = 1")))
            .bind(tenant.as_str())
            .fetch_optional(conn)
            .await?;
    row.map(WebhookRow::into_webhook).transpose()
}

pub(super) async fn one(conn: &mut Conn, tenant: &TenantId, id: &str) -> Result<Option<Webhook>> {
    let row: Option<WebhookRow> =
        sqlx::query_as(&sql(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = ? AND id = ?")))
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(conn)
            .await?;
    row.map(WebhookRow::into_webhook).transpose()
}

pub(super) async fn delete(conn: &mut Conn, tenant: &TenantId, id: &str) -> Result<bool> {
    let result = sqlx::query(&sql("DELETE FROM webhooks WHERE tenant_id = ? AND id = ?"))
        .bind(tenant.as_str())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() > 0)
}
