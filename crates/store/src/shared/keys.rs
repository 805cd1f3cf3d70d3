//! API keys: looked up by the hash of their secret on every request, written rarely.

use super::{Conn, sql};
use crate::keys::{ApiKey, NewApiKey, Role};
use crate::rows::{KEY_COLUMNS, KeyRow, ts_text};
use crate::{Result, StoreError};
use jiff::Timestamp;
use questline_core::id::TenantId;

pub(super) async fn insert(conn: &mut Conn, tenant: &TenantId, key: &NewApiKey) -> Result<ApiKey> {
    super::missions::ensure_tenant(conn, tenant, key.created_at).await?;
    // The id, or (astronomically unlikely for random secrets) the secret's hash, is taken:
    // either unique index makes DO NOTHING skip the row. Not an error, because on PostgreSQL
    // an error would abort the whole unit of work.
    let inserted = sqlx::query(&sql(
        "INSERT INTO api_keys (tenant_id, id, name, role, secret_hash, created_at) VALUES (?, ?, ?, ?, ?, ?) \
         ON CONFLICT DO NOTHING",
    ))
    .bind(tenant.as_str())
    .bind(&key.id)
    .bind(&key.name)
    .bind(key.role.as_str())
    .bind(&key.secret_hash)
    .bind(ts_text(key.created_at))
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if !inserted {
        return Err(StoreError::Conflict(format!("API key id {:?} is taken", key.id)));
    }
    Ok(ApiKey {
        id: key.id.clone(),
        name: key.name.clone(),
        role: key.role,
        created_at: key.created_at,
        last_used_at: None,
    })
}

pub(super) async fn by_hash(conn: &mut Conn, secret_hash: &str) -> Result<Option<(TenantId, ApiKey)>> {
    let row: Option<KeyRow> =
        sqlx::query_as(&sql(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE secret_hash = ?")))
            .bind(secret_hash)
            .fetch_optional(conn)
            .await?;
    row.map(KeyRow::into_key).transpose()
}

pub(super) async fn list(conn: &mut Conn, tenant: &TenantId) -> Result<Vec<ApiKey>> {
    let rows: Vec<KeyRow> = sqlx::query_as(&sql(&format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id"
    )))
    .bind(tenant.as_str())
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(|row| row.into_key().map(|(_, key)| key)).collect()
}

pub(super) async fn delete(conn: &mut Conn, tenant: &TenantId, id: &str) -> Result<bool> {
    let result = sqlx::query(&sql("DELETE FROM api_keys WHERE tenant_id = ? AND id = ?"))
        .bind(tenant.as_str())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() > 0)
}

pub(super) async fn touch(conn: &mut Conn, tenant: &TenantId, id: &str, at: Timestamp) -> Result<()> {
    sqlx::query(&sql("UPDATE api_keys SET last_used_at = ? WHERE tenant_id = ? AND id = ?"))
        .bind(ts_text(at))
        .bind(tenant.as_str())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub(super) async fn count(conn: &mut Conn, tenant: &TenantId, role: Role) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(&sql("SELECT COUNT(*) FROM api_keys WHERE tenant_id = ? AND role = ?"))
        .bind(tenant.as_str())
        .bind(role.as_str())
        .fetch_one(conn)
        .await?;
    // COUNT(*) is never negative.
    Ok(n.unsigned_abs())
}
