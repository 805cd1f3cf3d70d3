//! API keys: looked up by the hash of their secret on every request, written rarely.

use super::missions::ensure_tenant;
use super::rows::{KEY_COLUMNS, KeyRow, is_unique_violation, ts_text};
use crate::keys::{ApiKey, NewApiKey, Role};
use crate::{Result, StoreError};
use jiff::Timestamp;
use sqlx::PgPool;

pub(super) async fn insert(writer: &PgPool, tenant: &str, key: &NewApiKey) -> Result<ApiKey> {
    let mut tx = writer.begin().await?;
    ensure_tenant(&mut tx, tenant, key.created_at).await?;
    // The id, or (astronomically unlikely for random secrets) the secret's hash, is taken:
    // either unique index makes DO NOTHING skip the row.
    let inserted = sqlx::query(
        "INSERT INTO api_keys (tenant_id, id, name, role, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(&key.id)
    .bind(&key.name)
    .bind(key.role.as_str())
    .bind(&key.secret_hash)
    .bind(ts_text(key.created_at))
    .execute(&mut *tx)
    .await;
    let taken = || StoreError::Conflict(format!("API key id {:?} is taken", key.id));
    match inserted {
        Ok(done) if done.rows_affected() > 0 => tx.commit().await?,
        Ok(_) => return Err(taken()),
        Err(e) if is_unique_violation(&e) => return Err(taken()),
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

pub(super) async fn by_hash(reader: &PgPool, secret_hash: &str) -> Result<Option<(String, ApiKey)>> {
    let row: Option<KeyRow> = sqlx::query_as(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE secret_hash = $1"))
        .bind(secret_hash)
        .fetch_optional(reader)
        .await?;
    row.map(KeyRow::into_key).transpose()
}

pub(super) async fn list(reader: &PgPool, tenant: &str) -> Result<Vec<ApiKey>> {
    let rows: Vec<KeyRow> =
        sqlx::query_as(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id"))
            .bind(tenant)
            .fetch_all(reader)
            .await?;
    rows.into_iter().map(|row| row.into_key().map(|(_, key)| key)).collect()
}

pub(super) async fn delete(writer: &PgPool, tenant: &str, id: &str) -> Result<bool> {
    let result = sqlx::query("DELETE FROM api_keys WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(id)
        .execute(writer)
        .await?;
    Ok(result.rows_affected() > 0)
}

pub(super) async fn touch(writer: &PgPool, tenant: &str, id: &str, at: Timestamp) -> Result<()> {
    sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(ts_text(at))
        .bind(tenant)
        .bind(id)
        .execute(writer)
        .await?;
    Ok(())
}

pub(super) async fn count(reader: &PgPool, tenant: &str, role: Role) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE tenant_id = $1 AND role = $2")
        .bind(tenant)
        .bind(role.as_str())
        .fetch_one(reader)
        .await?;
    // COUNT(*) is never negative.
    Ok(n.unsigned_abs())
}
