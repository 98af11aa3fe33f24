//! The durable outbox of outbound messages and the store of inbound ones.
//!
//! The API acknowledges a message only after its row is committed here; the
//! shard's primary coreapp sends pending rows in `seq` order, so messages to
//! one recipient (always one shard) keep their order across failovers.

use super::dialect::RowText;
use super::{Store, StoreResult};
use sqlx::Row;

/// Delivery progress of an outbound message, as stored in `status_rank`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MessageStatus {
    /// Stored, not yet acknowledged by the upstream.
    Queued = 0,
    /// Acknowledged by the upstream.
    Sent = 1,
    /// Delivered to the recipient's device.
    Delivered = 2,
    /// Read by the recipient.
    Read = 3,
}

impl MessageStatus {
    /// The status of a stored rank.
    pub fn from_rank(rank: i64) -> MessageStatus {
        match rank {
            1 => MessageStatus::Sent,
            2 => MessageStatus::Delivered,
            3 => MessageStatus::Read,
            _ => MessageStatus::Queued,
        }
    }

    /// The on-prem name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
        }
    }
}

/// A message accepted by the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// API message id, also the upstream idempotency key.
    pub id: String,
    /// Shard chosen by the router.
    pub shard: u32,
    /// Recipient wa_id.
    pub recipient: String,
    /// Message type (`text`, ...).
    pub kind: String,
    /// Payload sent upstream.
    pub body: String,
}

/// An outbox row waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMessage {
    /// Outbox order.
    pub seq: i64,
    /// API message id.
    pub id: String,
    /// Recipient wa_id.
    pub recipient: String,
    /// Payload.
    pub body: String,
    /// Send attempts so far; above 0 means this is a resend.
    pub attempts: i64,
}

/// Stores an inbound message unless its id is already stored.
const INSERT_INBOUND: &str =
    "{insert_ignore} INTO inbound_messages (id, sender, body, timestamp_s, shard, received_at) \
     VALUES (?, ?, ?, ?, ?, {now})";

/// What a session reported, to be recorded in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionOutcomes {
    /// Acknowledged messages: API id and upstream id.
    pub acks: Vec<(String, String)>,
    /// Receipts: API id and new status.
    pub receipts: Vec<(String, MessageStatus)>,
    /// Inbound messages (stored once each).
    pub inbound: Vec<InboundMessage>,
}

impl SessionOutcomes {
    /// Whether there is nothing to record.
    pub fn is_empty(&self) -> bool {
        self.acks.is_empty() && self.receipts.is_empty() && self.inbound.is_empty()
    }
}

/// A message received from the upstream for the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// Upstream message id (dedupes redeliveries).
    pub id: String,
    /// Sender wa_id.
    pub sender: String,
    /// Text body.
    pub body: String,
    /// Upstream timestamp, unix seconds.
    pub timestamp_s: i64,
    /// Shard whose session received it.
    pub shard: u32,
}

impl Store {
    /// Stores an accepted message; returns once committed.
    pub async fn enqueue_message(&self, message: &NewMessage) -> StoreResult<()> {
        let sql = self.sql(
            "INSERT INTO messages (id, shard, recipient, kind, body, status_rank, created_at, attempts) \
             VALUES (?, ?, ?, ?, ?, 0, {now}, 0)",
        );
        sqlx::query(&sql)
            .bind(&message.id)
            .bind(i64::from(message.shard))
            .bind(&message.recipient)
            .bind(&message.kind)
            .bind(&message.body)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The oldest unacknowledged messages of a shard, in send order.
    pub async fn pending_messages(&self, shard: u32, limit: u32) -> StoreResult<Vec<PendingMessage>> {
        let sql = self.sql(
            "SELECT seq, id, recipient, body, attempts FROM messages \
             WHERE shard = ? AND status_rank = 0 ORDER BY seq LIMIT ?",
        );
        let rows = sqlx::query(&sql).bind(i64::from(shard)).bind(i64::from(limit)).fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| {
                Ok(PendingMessage {
                    seq: r.try_get(0)?,
                    id: r.text(1)?,
                    recipient: r.text(2)?,
                    body: r.text(3)?,
                    attempts: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Counts a send attempt before the messages go on the wire, so that a
    /// resend after a failover is visible in the outbox. One statement.
    pub async fn mark_attempt(&self, ids: &[String], epoch: i64, node_id: &str) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let placeholders = vec!["?"; ids.len()].join(", ");
        let sql = self.sql(&format!(
            "UPDATE messages SET attempts = attempts + 1, sent_epoch = ?, sent_node = ? WHERE id IN ({placeholders})"
        ));
        let mut query = sqlx::query(&sql).bind(epoch).bind(node_id);
        for id in ids {
            query = query.bind(id);
        }
        query.execute(self.pool()).await?;
        Ok(())
    }

    /// Records the upstream's acknowledgement of a message.
    pub async fn mark_sent(&self, id: &str, server_id: &str) -> StoreResult<()> {
        let outcomes = SessionOutcomes { acks: vec![(id.into(), server_id.into())], ..Default::default() };
        self.record_outcomes(&outcomes).await
    }

    /// Records a delivery receipt; a status never moves backwards.
    pub async fn record_receipt(&self, id: &str, status: MessageStatus) -> StoreResult<()> {
        let outcomes = SessionOutcomes { receipts: vec![(id.into(), status)], ..Default::default() };
        self.record_outcomes(&outcomes).await
    }

    /// Records what a session reported in one transaction: one commit (one
    /// fsync, one hold of SQLite's write lock) for a whole batch.
    pub async fn record_outcomes(&self, outcomes: &SessionOutcomes) -> StoreResult<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        let sent = self.sql(
            "UPDATE messages SET status_rank = {greatest}(status_rank, 1), server_id = ?, sent_at = {now} WHERE id = ?",
        );
        for (id, server_id) in &outcomes.acks {
            sqlx::query(&sent).bind(server_id).bind(id).execute(&mut *tx).await?;
        }
        for (id, status) in &outcomes.receipts {
            let column = match status {
                MessageStatus::Delivered => "delivered_at",
                MessageStatus::Read => "read_at",
                MessageStatus::Sent | MessageStatus::Queued => "sent_at",
            };
            let sql = self.sql(&format!(
                "UPDATE messages SET status_rank = {{greatest}}(status_rank, ?), {column} = {{now}} WHERE id = ?"
            ));
            sqlx::query(&sql).bind(*status as i64).bind(id).execute(&mut *tx).await?;
        }
        let inbound = self.sql(INSERT_INBOUND);
        for message in &outcomes.inbound {
            sqlx::query(&inbound)
                .bind(&message.id)
                .bind(&message.sender)
                .bind(&message.body)
                .bind(message.timestamp_s)
                .bind(i64::from(message.shard))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The stored status of a message, `None` when unknown.
    pub async fn message_status(&self, id: &str) -> StoreResult<Option<MessageStatus>> {
        let sql = self.sql("SELECT status_rank FROM messages WHERE id = ?");
        let row = sqlx::query(&sql).bind(id).fetch_optional(self.pool()).await?;
        row.map(|r| Ok(MessageStatus::from_rank(r.try_get(0)?))).transpose()
    }

    /// Number of messages per status, for stats.
    pub async fn message_counts(&self) -> StoreResult<Vec<(MessageStatus, i64)>> {
        let rows = sqlx::query("SELECT status_rank, COUNT(*) FROM messages GROUP BY status_rank")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok((MessageStatus::from_rank(r.try_get(0)?), r.try_get(1)?))).collect()
    }

    /// Stores an inbound message once; false when it was already stored.
    pub async fn store_inbound(&self, message: &InboundMessage) -> StoreResult<bool> {
        let sql = self.sql(INSERT_INBOUND);
        Ok(sqlx::query(&sql)
            .bind(&message.id)
            .bind(&message.sender)
            .bind(&message.body)
            .bind(message.timestamp_s)
            .bind(i64::from(message.shard))
            .execute(self.pool())
            .await?
            .rows_affected()
            == 1)
    }
}
