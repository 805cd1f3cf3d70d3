//! API keys: looked up by the hash of their secret on every request, written rarely.

use super::missions::ensure_tenant;
use super::rows::{KEY_COLUMNS, KeyRow, is_unique_violation, ts_text};
use crate::keys::{ApiKey, NewApiKey, Role};
use crate::{Result, StoreError};
use jiff::Timestamp;
use sqlx::SqlitePool;

pub(super) async fn insert(writer: &SqlitePool, tenant: &str, key: &NewApiKey) -> Result<ApiKey> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    ensure_tenant(&mut tx, tenant, key.created_at).await?;
    let inserted = sqlx::query(
        "INSERT INTO api_keys (tenant_id, id, name, role, secret_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(tenant)
    .bind(&key.id)
    .bind(&key.name)
    .bind(key.role.as_str())
    .bind(&key.secret_hash)
    .bind(ts_text(key.created_at))
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => tx.commit().await?,
        // The id, or (astronomically unlikely for random secrets) the secret's hash.
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::Conflict(format!("API key id {:?} is taken", key.id)));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(ApiKey {
        id: key.id.clone(),
        name: key.name.clone(),
        role: key.role,
        created_at: key.created_at,
        last_used_at: None,
    })
}

pub(super) async fn by_hash(reader: &SqlitePool, secret_hash: &str) -> Result<Option<(String, ApiKey)>> {
    let row: Option<KeyRow> = sqlx::query_as(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE secret_hash = ?"))
        .bind(secret_hash)
        .fetch_optional(reader)
        .await?;
    row.map(KeyRow::into_key).transpose()
}

pub(super) async fn list(reader: &SqlitePool, tenant: &str) -> Result<Vec<ApiKey>> {
    let rows: Vec<KeyRow> =
        sqlx::query_as(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id"))
            .bind(tenant)
            .fetch_all(reader)
            .await?;
    rows.into_iter().map(|row| row.into_key().map(|(_, key)| key)).collect()
}

pub(super) async fn delete(writer: &SqlitePool, tenant: &str, id: &str) -> Result<bool> {
    let result = sqlx::query("DELETE FROM api_keys WHERE tenant_id = ? AND id = ?")
        .bind(tenant)
        .bind(id)
        .execute(writer)
        .await?;
    Ok(result.rows_affected() > 0)
}

pub(super) async fn touch(writer: &SqlitePool, tenant: &str, id: &str, at: Timestamp) -> Result<()> {
    sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE tenant_id = ? AND id = ?")
        .bind(ts_text(at))
        .bind(tenant)
        .bind(id)
        .execute(writer)
        .await?;
    Ok(())
}

pub(super) async fn count(reader: &SqlitePool, tenant: &str, role: Role) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE tenant_id = ? AND role = ?")
        .bind(tenant)
        .bind(role.as_str())
        .fetch_one(reader)
        .await?;
    // COUNT(*) is never negative.
    Ok(n.unsigned_abs())
}
