//! Messages to users: one row each, its document as JSON; and what each provider sent this
//! month.

use super::{Conn, Db, LOCK_ROWS, sql};
use crate::rows::{corrupt, ts_text};
use crate::{Result, StoreError};
use questline_core::id::TenantId;
use questline_core::message::Message;
use sqlx::{QueryBuilder, Row};

fn encode(message: &Message) -> Result<String> {
    serde_json::to_string(message)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode message {:?}: {e}", message.id)))
}

fn decode(id: &str, doc: &str) -> Result<Message> {
    serde_json::from_str(doc).map_err(|e| corrupt(format!("messages {id:?} doc"), e))
}

/// Rows one insert statement writes at most.
const INSERT_CHUNK: usize = 200;

/// Inserts new messages, a few statements for many; for each, `None` if it was inserted, or
/// the message that already held its id (inserted before, or earlier in `messages`).
pub(super) async fn insert_many(
    conn: &mut Conn,
    tenant: &TenantId,
    messages: &[Message],
) -> Result<Vec<Option<Message>>> {
    let Some(first) = messages.first() else { return Ok(Vec::new()) };
    super::missions::ensure_tenant(conn, tenant, first.created_at).await?;
    let mut inserted = std::collections::HashSet::new();
    for chunk in messages.chunks(INSERT_CHUNK) {
        let mut q =
            QueryBuilder::<Db>::new("INSERT INTO messages (tenant_id, id, status, doc, created_at, updated_at) ");
        let mut rows = Vec::with_capacity(chunk.len());
        for m in chunk {
            rows.push((m, encode(m)?, ts_text(m.created_at)));
        }
        q.push_values(&rows, |mut row, (m, doc, created)| {
            row.push_bind(tenant.as_str().to_owned())
                .push_bind(m.id.clone())
                .push_bind(m.status.as_str())
                .push_bind(doc.clone())
                .push_bind(created.clone())
                .push_bind(created.clone());
        });
        // DO NOTHING rather than a unique violation: on PostgreSQL an error would abort the
        // caller's whole unit of work. A second row with the same id is skipped the same way.
        q.push(" ON CONFLICT DO NOTHING RETURNING id");
        for row in q.build().fetch_all(&mut *conn).await? {
            inserted.insert(row.try_get::<String, _>("id")?);
        }
    }
    let mut answers = Vec::with_capacity(messages.len());
    let mut claimed = std::collections::HashSet::new();
    for m in messages {
        // The first row with an id is the one inserted; a later one meets it.
        if inserted.contains(&m.id) && claimed.insert(m.id.as_str()) {
            answers.push(None);
        } else {
            answers.push(Some(
                one(conn, tenant, &m.id)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("message {:?} was neither inserted nor found", m.id)))?,
            ));
        }
    }
    Ok(answers)
}

/// A message of the tenant.
pub(super) async fn one(conn: &mut Conn, tenant: &TenantId, id: &str) -> Result<Option<Message>> {
    let doc: Option<(String,)> = sqlx::query_as(&sql("SELECT doc FROM messages WHERE tenant_id = ? AND id = ?"))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(conn)
        .await?;
    doc.map(|(doc,)| decode(id, &doc)).transpose()
}

/// Rows one batched read or write of messages takes at most.
const BATCH_CHUNK: usize = 200;

/// Messages of the tenant by id, in a statement per [`BATCH_CHUNK`]; ids with no message are
/// left out. `lock`: held until the unit ends (PostgreSQL `FOR UPDATE`, taken in id order).
pub(super) async fn many(conn: &mut Conn, tenant: &TenantId, ids: &[&str], lock: bool) -> Result<Vec<Message>> {
    let mut ids: Vec<&str> = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(BATCH_CHUNK) {
        let mut q = QueryBuilder::<Db>::new("SELECT id, doc FROM messages WHERE tenant_id = ");
        q.push_bind(tenant.as_str()).push(" AND id IN (");
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        q.push(") ORDER BY id");
        if lock {
            q.push(LOCK_ROWS);
        }
        for row in q.build().fetch_all(&mut *conn).await? {
            let (id, doc): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            found.push(decode(&id, &doc)?);
        }
    }
    Ok(found)
}

/// Writes many messages' states as they now are, a statement per [`BATCH_CHUNK`].
pub(super) async fn save_many(
    conn: &mut Conn,
    tenant: &TenantId,
    messages: &[Message],
    now: jiff::Timestamp,
) -> Result<()> {
    for chunk in messages.chunks(BATCH_CHUNK) {
        let mut rows = Vec::with_capacity(chunk.len());
        for m in chunk {
            rows.push((m.id.as_str(), m.status.as_str(), encode(m)?));
        }
        let mut q = QueryBuilder::<Db>::new("UPDATE messages SET status = v.column2, doc = v.column3, updated_at = ");
        q.push_bind(ts_text(now)).push(" FROM (");
        q.push_values(&rows, |mut row, (id, status, doc)| {
            row.push_bind(*id).push_bind(*status).push_bind(doc.as_str());
        });
        q.push(") AS v WHERE messages.tenant_id = ").push_bind(tenant.as_str()).push(" AND messages.id = v.column1");
        let updated = q.build().execute(&mut *conn).await?.rows_affected();
        if updated != chunk.len() as u64 {
            return Err(StoreError::Corrupt(format!(
                "{} of {} messages vanished while they were being sent",
                chunk.len() as u64 - updated.min(chunk.len() as u64),
                chunk.len()
            )));
        }
    }
    Ok(())
}

/// Counts `n` more messages sent by `provider` in `month` (`YYYY-MM`).
pub(super) async fn count_sent(conn: &mut Conn, provider: &str, month: &str, n: u64) -> Result<()> {
    let n = i64::try_from(n).map_err(|e| corrupt(format!("a count of {n} sent"), e))?;
    sqlx::query(&sql("INSERT INTO provider_usage (provider, month, sent) VALUES (?, ?, ?) \
         ON CONFLICT (provider, month) DO UPDATE SET sent = provider_usage.sent + excluded.sent"))
    .bind(provider)
    .bind(month)
    .bind(n)
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
