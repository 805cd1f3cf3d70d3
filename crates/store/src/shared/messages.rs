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
                one(conn, tenant, &m.id, false)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("message {:?} was neither inserted nor found", m.id)))?,
            ));
        }
    }
    Ok(answers)
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
