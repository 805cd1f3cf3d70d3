//! Messages to users: one row each, its document as JSON; and what each provider sent this
//! month.

use super::{Conn, LOCK_ROWS, sql};
use crate::rows::{corrupt, ts_text};
use crate::{Result, StoreError};
use questline_core::id::TenantId;
use questline_core::message::Message;

fn encode(message: &Message) -> Result<String> {
    serde_json::to_string(message)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode message {:?}: {e}", message.id)))
}

fn decode(id: &str, doc: &str) -> Result<Message> {
    serde_json::from_str(doc).map_err(|e| corrupt(format!("messages {id:?} doc"), e))
}

/// Inserts a new message; if its id is taken, inserts nothing and returns the message
/// that holds it.
pub(super) async fn insert(conn: &mut Conn, tenant: &TenantId, message: &Message) -> Result<Option<Message>> {
    super::missions::ensure_tenant(conn, tenant, message.created_at).await?;
    let created = ts_text(message.created_at);
    // DO NOTHING rather than a unique violation: on PostgreSQL an error would abort the
    // caller's whole unit of work.
    let inserted = sqlx::query(&sql(
        "INSERT INTO messages (tenant_id, id, status, doc, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) \
         ON CONFLICT DO NOTHING",
    ))
    .bind(tenant.as_str())
    .bind(&message.id)
    .bind(message.status.as_str())
    .bind(encode(message)?)
    .bind(&created)
    .bind(&created)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if inserted { Ok(None) } else { one(conn, tenant, &message.id, false).await }
}

/// A message of the tenant; `lock`: held until the unit ends (PostgreSQL `FOR UPDATE`).
pub(super) async fn one(conn: &mut Conn, tenant: &TenantId, id: &str, lock: bool) -> Result<Option<Message>> {
    let lock = if lock { LOCK_ROWS } else { "" };
    let doc: Option<(String,)> =
        sqlx::query_as(&sql(&format!("SELECT doc FROM messages WHERE tenant_id = ? AND id = ?{lock}")))
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(conn)
            .await?;
    doc.map(|(doc,)| decode(id, &doc)).transpose()
}

/// Writes a message's state as it now is.
pub(super) async fn save(conn: &mut Conn, tenant: &TenantId, message: &Message, now: jiff::Timestamp) -> Result<()> {
    let updated =
        sqlx::query(&sql("UPDATE messages SET status = ?, doc = ?, updated_at = ? WHERE tenant_id = ? AND id = ?"))
            .bind(message.status.as_str())
            .bind(encode(message)?)
            .bind(ts_text(now))
            .bind(tenant.as_str())
            .bind(&message.id)
            .execute(conn)
            .await?
            .rows_affected();
    if updated == 0 {
        return Err(StoreError::Corrupt(format!("message {:?} vanished while it was being sent", message.id)));
    }
    Ok(())
}

/// Counts one more message sent by `provider` in `month` (`YYYY-MM`).
pub(super) async fn count_sent(conn: &mut Conn, provider: &str, month: &str) -> Result<()> {
    sqlx::query(&sql("INSERT INTO provider_usage (provider, month, sent) VALUES (?, ?, 1) \
         ON CONFLICT (provider, month) DO UPDATE SET sent = provider_usage.sent + 1"))
    .bind(provider)
    .bind(month)
    .execute(conn)
    .await?;
    Ok(())
}

/// Messages sent in `month`, per provider.
pub(super) async fn sent_in(conn: &mut Conn, month: &str) -> Result<Vec<(String, u64)>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(&sql("SELECT provider, sent FROM provider_usage WHERE month = ?"))
        .bind(month)
        .fetch_all(conn)
        .await?;
    rows.into_iter()
        .map(|(p, n)| u64::try_from(n).map(|n| (p.clone(), n)).map_err(|e| corrupt(format!("provider_usage {p:?}"), e)))
        .collect()
}
