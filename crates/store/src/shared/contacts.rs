//! Users' contact points and preferences: one row per user, its document as JSON.

use super::{Conn, LOCK_ROWS, sql};
use crate::rows::{corrupt, ts_text};
use crate::{Result, StoreError};
use questline_core::contact::Contact;
use questline_core::id::TenantId;

/// A user's contact; `lock`: held until the unit ends (PostgreSQL `FOR UPDATE`).
pub(super) async fn one(conn: &mut Conn, tenant: &TenantId, user_id: &str, lock: bool) -> Result<Option<Contact>> {
    let lock = if lock { LOCK_ROWS } else { "" };
    let doc: Option<(String,)> =
        sqlx::query_as(&sql(&format!("SELECT doc FROM user_contacts WHERE tenant_id = ? AND user_id = ?{lock}")))
            .bind(tenant.as_str())
            .bind(user_id)
            .fetch_optional(conn)
            .await?;
    doc.map(|(doc,)| serde_json::from_str(&doc).map_err(|e| corrupt(format!("user_contacts {user_id:?} doc"), e)))
        .transpose()
}

/// Writes a user's contact as it now is (inserted on the first write).
pub(super) async fn save(conn: &mut Conn, tenant: &TenantId, contact: &Contact, now: jiff::Timestamp) -> Result<()> {
    super::missions::ensure_tenant(conn, tenant, now).await?;
    let doc = serde_json::to_string(contact)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode the contact of {:?}: {e}", contact.user_id)))?;
    sqlx::query(&sql("INSERT INTO user_contacts (tenant_id, user_id, doc, updated_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (tenant_id, user_id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at"))
    .bind(tenant.as_str())
    .bind(&contact.user_id)
    .bind(doc)
    .bind(ts_text(now))
    .execute(conn)
    .await?;
    Ok(())
}
