//! The durable outbox of outbound messages and the store of inbound ones.
//!
//! The API acknowledges a message only after its row is committed here; the
//! shard's primary coreapp sends pending rows in `seq` order, so messages to
//! one recipient (always one shard) keep their order across failovers.
//! What a session reports is recorded by [`Store::record_outcomes`] in one
//! transaction, together with the callbacks it causes (see [`super::callbacks`]):
//! a status that really advanced, an inbound message stored for the first
//! time, an error tied to no message.

use super::callbacks::CallbackFilter;
use super::dialect::RowText;
use super::{Store, StoreResult};
use crate::callback_payload;
use crate::upstream::protocol::UpstreamError;
use sqlx::Row;
use std::collections::HashMap;

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
    /// Not delivered, and never will be: the upstream said so, or the coreapp
    /// could not send it (its medium is gone or was refused, its link could
    /// not be fetched). Reached only from queued or sent; final.
    Failed = 4,
}

impl MessageStatus {
    /// The status of a stored rank.
    pub fn from_rank(rank: i64) -> MessageStatus {
        match rank {
            1 => MessageStatus::Sent,
            2 => MessageStatus::Delivered,
            3 => MessageStatus::Read,
            4 => MessageStatus::Failed,
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
            MessageStatus::Failed => "failed",
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
    /// Message type (`text`, `image`, ...), or [`MARK_READ_KIND`].
    pub kind: String,
    /// Payload: the message object without `to`, or `{"message_id"}` for a read mark.
    pub body: String,
    /// Send attempts so far; above 0 means this is a resend.
    pub attempts: i64,
}

/// The outbox kind of a read mark (`PUT /v1/messages/{id}`): sent as a
/// mark-read, acknowledged like a message, never called back.
pub const MARK_READ_KIND: &str = "mark_read";

/// Stores an inbound message unless its id is already stored.
const INSERT_INBOUND: &str =
    "{insert_ignore} INTO inbound_messages (id, sender, body, timestamp_s, shard, received_at) \
     VALUES (?, ?, ?, ?, ?, {now})";

/// What a session reported, to be recorded in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionOutcomes {
    /// Acknowledged messages: API id and upstream id. An ack moves a queued
    /// message to `sent`.
    pub acks: Vec<(String, String)>,
    /// Status changes: receipts, and failures found by the coreapp itself.
    pub statuses: Vec<StatusUpdate>,
    /// Inbound messages (stored once each).
    pub inbound: Vec<ReceivedMessage>,
    /// Errors tied to no message, called back as `{"errors":[...]}`.
    pub notices: Vec<ErrorNotice>,
}

impl SessionOutcomes {
    /// Whether there is nothing to record.
    pub fn is_empty(&self) -> bool {
        self.acks.is_empty() && self.statuses.is_empty() && self.inbound.is_empty() && self.notices.is_empty()
    }
}

/// A new status of an outbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// API message id.
    pub id: String,
    /// The status reached.
    pub status: MessageStatus,
    /// When, unix seconds (the callback's `timestamp`).
    pub timestamp_s: i64,
    /// Why, for [`MessageStatus::Failed`].
    pub errors: Vec<UpstreamError>,
}

impl StatusUpdate {
    /// A status reached now, without errors.
    pub fn now(id: &str, status: MessageStatus) -> StatusUpdate {
        StatusUpdate { id: id.to_string(), status, timestamp_s: unix_now_s(), errors: Vec::new() }
    }

    /// A failure found now.
    pub fn failed(id: &str, errors: Vec<UpstreamError>) -> StatusUpdate {
        StatusUpdate { errors, ..StatusUpdate::now(id, MessageStatus::Failed) }
    }
}

/// An inbound message with what its callback needs besides what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The message as stored.
    pub message: InboundMessage,
    /// The sender's profile name, when the upstream told it.
    pub profile_name: Option<String>,
}

/// An error tied to no message (say, inbound media that could not be stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorNotice {
    /// Shard whose primary delivers the callback.
    pub shard: u32,
    /// Ordering key of the callback: the user it concerns.
    pub recipient: String,
    /// The errors.
    pub errors: Vec<UpstreamError>,
}

/// Now, in unix seconds, by this node's clock.
pub fn unix_now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Message ids per statement, well under every engine's limit on placeholders.
const IDS_PER_QUERY: usize = 500;
/// Rows per multi-row insert (five placeholders each).
const ROWS_PER_INSERT: usize = 100;

/// What the callbacks of an outbound message need to know of it.
struct OutboundMeta {
    recipient: String,
    kind: String,
    shard: u32,
    /// `status_rank` before the outcomes apply.
    rank: i64,
}

/// Whether `status` advances the message `id` from the rank `ranks` holds
/// for it, and if so records the new rank; false for a message not in `ranks`.
fn advances(ranks: &mut HashMap<&str, i64>, id: &str, status: MessageStatus) -> bool {
    match ranks.get_mut(id) {
        Some(rank) if *rank < status as i64 => {
            *rank = status as i64;
            true
        }
        _ => false,
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

/// A pending row of the `SELECT seq, id, recipient, kind, body, attempts` shape.
fn pending_row(r: &sqlx::any::AnyRow) -> StoreResult<PendingMessage> {
    Ok(PendingMessage {
        seq: r.try_get(0)?,
        id: r.text(1)?,
        recipient: r.text(2)?,
        kind: r.text(3)?,
        body: r.text(4)?,
        attempts: r.try_get(5)?,
    })
}

impl Store {
    /// Stores an accepted message; returns once committed.
    pub async fn enqueue_message(&self, message: &NewMessage) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        self.insert_messages(&mut tx, std::slice::from_ref(message)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores accepted messages routed over `shards` shards in one
    /// transaction (one commit, one fsync), provided the cluster still has
    /// that many shards when they are written; false, with nothing stored,
    /// when the count changed (their shards may be wrong). The count is read
    /// after the inserts, when the transaction already holds SQLite's write
    /// lock: a SQLite transaction that reads first cannot always take it later.
    pub async fn enqueue_messages(&self, messages: &[NewMessage], shards: u32) -> StoreResult<bool> {
        let mut tx = self.pool().begin().await?;
        self.insert_messages(&mut tx, messages).await?;
        let stored = sqlx::query("SELECT shards FROM cluster WHERE id = 1").fetch_optional(&mut *tx).await?;
        let current = stored.map(|r| r.try_get::<i64, _>(0)).transpose()?;
        if current != Some(i64::from(shards)) {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Multi-row inserts of `messages`, in their order (so `seq` follows it).
    async fn insert_messages(&self, conn: &mut sqlx::AnyConnection, messages: &[NewMessage]) -> StoreResult<()> {
        for chunk in messages.chunks(ROWS_PER_INSERT) {
            let rows = vec!["(?, ?, ?, ?, ?, 0, {now}, 0)"; chunk.len()].join(", ");
            let sql = self.sql(&format!(
                "INSERT INTO messages (id, shard, recipient, kind, body, status_rank, created_at, attempts) VALUES {rows}"
            ));
            let mut query = sqlx::query(&sql);
            for message in chunk {
                query = query
                    .bind(&message.id)
                    .bind(i64::from(message.shard))
                    .bind(&message.recipient)
                    .bind(&message.kind)
                    .bind(&message.body);
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// The oldest unacknowledged messages of a shard, in send order.
    pub async fn pending_messages(&self, shard: u32, limit: u32) -> StoreResult<Vec<PendingMessage>> {
        let sql = self.sql(
            "SELECT seq, id, recipient, kind, body, attempts FROM messages \
             WHERE shard = ? AND status_rank = 0 ORDER BY seq LIMIT ?",
        );
        let query = sqlx::query(&sql).bind(i64::from(shard)).bind(i64::from(limit));
        query.fetch_all(self.pool()).await?.iter().map(pending_row).collect()
    }

    /// The oldest unacknowledged messages of a shard that epoch `epoch` has
    /// not taken out (see [`Store::mark_attempt`]), in send order: what the
    /// shard's primary sends next while earlier messages await their acks.
    /// Rows committed late with a lower `seq` are found too.
    pub async fn unsent_messages(&self, shard: u32, epoch: i64, limit: u32) -> StoreResult<Vec<PendingMessage>> {
        let sql = self.sql(
            "SELECT seq, id, recipient, kind, body, attempts FROM messages \
             WHERE shard = ? AND status_rank = 0 AND (sent_epoch IS NULL OR sent_epoch <> ?) ORDER BY seq LIMIT ?",
        );
        let query = sqlx::query(&sql).bind(i64::from(shard)).bind(epoch).bind(i64::from(limit));
        query.fetch_all(self.pool()).await?.iter().map(pending_row).collect()
    }

    /// Puts back every unacknowledged message epoch `epoch` took out of the
    /// shard's outbox, so that [`Store::unsent_messages`] returns them again
    /// (a resend after an ack timeout, a new session, held messages).
    pub async fn put_back_unacknowledged(&self, shard: u32, epoch: i64) -> StoreResult<()> {
        let sql =
            self.sql("UPDATE messages SET sent_epoch = NULL WHERE shard = ? AND status_rank = 0 AND sent_epoch = ?");
        sqlx::query(&sql).bind(i64::from(shard)).bind(epoch).execute(self.pool()).await?;
        Ok(())
    }

    /// Takes messages out of the outbox for epoch `epoch` before they go on
    /// the wire, and counts the attempt, so that a resend after a failover is
    /// visible in the outbox. One statement.
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

    /// Records the upstream's acknowledgement of a message (no callbacks).
    pub async fn mark_sent(&self, id: &str, server_id: &str) -> StoreResult<()> {
        let outcomes = SessionOutcomes { acks: vec![(id.into(), server_id.into())], ..Default::default() };
        self.record_outcomes(&outcomes, CallbackFilter::OFF).await.map(drop)
    }

    /// Records a delivery receipt (no callbacks); a status never moves backwards.
    pub async fn record_receipt(&self, id: &str, status: MessageStatus) -> StoreResult<()> {
        let outcomes = SessionOutcomes { statuses: vec![StatusUpdate::now(id, status)], ..Default::default() };
        self.record_outcomes(&outcomes, CallbackFilter::OFF).await.map(drop)
    }

    /// Records what a session reported in one transaction: one commit (one
    /// fsync, one hold of SQLite's write lock) for a whole batch, one
    /// statement per status for the status changes, with the callbacks
    /// `filter` lets through. Returns how many callbacks it wrote.
    ///
    /// A status is recorded, and called back, only when it advances: an ack
    /// or `sent` from queued, `delivered` and `read` from anything lower,
    /// `failed` from queued or sent only (a delivered message never fails).
    /// Read marks are acknowledged like messages but never called back.
    /// Within one batch the acks apply first, then the statuses by rank
    /// (`sent`, `delivered`, `read`, `failed`), so a message's callbacks
    /// keep the order of its statuses.
    pub async fn record_outcomes(&self, outcomes: &SessionOutcomes, filter: CallbackFilter) -> StoreResult<usize> {
        if outcomes.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = outcomes
            .acks
            .iter()
            .map(|(id, _)| id.as_str())
            .chain(outcomes.statuses.iter().map(|s| s.id.as_str()))
            .collect();
        // Read before the transaction (SQLite: a transaction that reads first
        // cannot always take the write lock later, SQLITE_BUSY_SNAPSHOT,
        // whatever the busy timeout). Only this shard's primary moves these
        // statuses, so the ranks read here are the ones the updates find; a
        // deposed primary's late write can at worst cause a second callback.
        let meta = if filter.on { self.outbound_meta(&ids).await? } else { HashMap::new() };
        let mut ranks: HashMap<&str, i64> = meta.iter().map(|(id, m)| (id.as_str(), m.rank)).collect();
        let by_rank = |status: MessageStatus| outcomes.statuses.iter().filter(move |u| u.status == status);
        let mut tx = self.pool().begin().await?;
        self.mark_acknowledged(&mut tx, &outcomes.acks).await?;
        for status in [MessageStatus::Sent, MessageStatus::Delivered, MessageStatus::Read] {
            let ids: Vec<&str> = by_rank(status).map(|u| u.id.as_str()).collect();
            self.advance_to(&mut tx, status, &ids).await?;
        }
        let mut callbacks = 0;
        let now_s = unix_now_s();
        for (id, _) in &outcomes.acks {
            if advances(&mut ranks, id, MessageStatus::Sent) {
                let update = StatusUpdate { timestamp_s: now_s, ..StatusUpdate::now(id, MessageStatus::Sent) };
                callbacks += self.call_back_status(&mut tx, &update, meta.get(id), filter).await?;
            }
        }
        for status in [MessageStatus::Sent, MessageStatus::Delivered, MessageStatus::Read] {
            for update in by_rank(status) {
                if advances(&mut ranks, &update.id, status) {
                    callbacks += self.call_back_status(&mut tx, update, meta.get(&update.id), filter).await?;
                }
            }
        }
        for update in by_rank(MessageStatus::Failed) {
            if self.fail(&mut tx, update).await? {
                callbacks += self.call_back_status(&mut tx, update, meta.get(&update.id), filter).await?;
            }
        }
        let inbound = self.sql(INSERT_INBOUND);
        for received in &outcomes.inbound {
            let message = &received.message;
            let stored = sqlx::query(&inbound)
                .bind(&message.id)
                .bind(&message.sender)
                .bind(&message.body)
                .bind(message.timestamp_s)
                .bind(i64::from(message.shard))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if stored && filter.on {
                let object = serde_json::from_str(&message.body)
                    .unwrap_or_else(|_| serde_json::json!({"type": "text", "text": {"body": message.body}}));
                let payload = callback_payload::inbound(
                    &message.sender,
                    &message.id,
                    message.timestamp_s,
                    received.profile_name.as_deref(),
                    &object,
                );
                self.enqueue_callback(&mut tx, message.shard, &message.sender, &payload).await?;
                callbacks += 1;
            }
        }
        if filter.on {
            for notice in &outcomes.notices {
                let payload = callback_payload::errors(&notice.errors);
                self.enqueue_callback(&mut tx, notice.shard, &notice.recipient, &payload).await?;
                callbacks += 1;
            }
        }
        tx.commit().await?;
        Ok(callbacks)
    }

    /// Moves the acknowledged messages still queued to `sent`, with their
    /// upstream ids: one statement per [`IDS_PER_QUERY`] / 2 acks.
    async fn mark_acknowledged(&self, conn: &mut sqlx::AnyConnection, acks: &[(String, String)]) -> StoreResult<()> {
        for chunk in acks.chunks(IDS_PER_QUERY / 2) {
            let cases = vec!["WHEN ? THEN ?"; chunk.len()].join(" ");
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let sql = self.sql(&format!(
                "UPDATE messages SET status_rank = 1, sent_at = {{now}}, server_id = CASE id {cases} END \
                 WHERE status_rank = 0 AND id IN ({placeholders})"
            ));
            let mut query = sqlx::query(&sql);
            for (id, server_id) in chunk {
                query = query.bind(id).bind(server_id);
            }
            for (id, _) in chunk {
                query = query.bind(id);
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Moves the messages `ids` to `status` (`sent`, `delivered` or `read`)
    /// where that advances them: one statement per [`IDS_PER_QUERY`] ids.
    async fn advance_to(&self, conn: &mut sqlx::AnyConnection, status: MessageStatus, ids: &[&str]) -> StoreResult<()> {
        let column = match status {
            MessageStatus::Delivered => "delivered_at",
            MessageStatus::Read => "read_at",
            _ => "sent_at",
        };
        let rank = status as i64;
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let sql = self.sql(&format!(
                "UPDATE messages SET status_rank = ?, {column} = {{now}} WHERE status_rank < ? AND id IN ({placeholders})"
            ));
            let mut query = sqlx::query(&sql).bind(rank).bind(rank);
            for id in chunk {
                query = query.bind(*id);
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Fails a queued or sent message, keeping why; true when it did.
    async fn fail(&self, conn: &mut sqlx::AnyConnection, update: &StatusUpdate) -> StoreResult<bool> {
        let sql = self.sql("UPDATE messages SET status_rank = ? WHERE id = ? AND status_rank < ?");
        let changed = sqlx::query(&sql)
            .bind(MessageStatus::Failed as i64)
            .bind(&update.id)
            .bind(MessageStatus::Delivered as i64)
            .execute(&mut *conn)
            .await?
            .rows_affected()
            == 1;
        if changed {
            let errors = serde_json::to_string(&update.errors).expect("errors serialize");
            let sql = self.sql("{insert_ignore} INTO message_failures (id, errors, failed_at) VALUES (?, ?, {now})");
            sqlx::query(&sql).bind(&update.id).bind(errors).execute(&mut *conn).await?;
        }
        Ok(changed)
    }

    /// Writes the status callback of `update` if `filter` lets it through;
    /// returns how many it wrote (0 or 1).
    async fn call_back_status(
        &self,
        conn: &mut sqlx::AnyConnection,
        update: &StatusUpdate,
        meta: Option<&OutboundMeta>,
        filter: CallbackFilter,
    ) -> StoreResult<usize> {
        let Some(meta) = meta else { return Ok(0) };
        if meta.kind == MARK_READ_KIND || !filter.calls_back(update.status) {
            return Ok(0);
        }
        let payload = callback_payload::status(
            &update.id,
            &meta.recipient,
            update.status.as_str(),
            update.timestamp_s,
            &update.errors,
        );
        self.enqueue_callback(conn, meta.shard, &meta.recipient, &payload).await?;
        Ok(1)
    }

    /// Recipient, kind and shard of the messages `ids`.
    async fn outbound_meta(&self, ids: &[&str]) -> StoreResult<HashMap<String, OutboundMeta>> {
        let mut found = HashMap::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let sql = self.sql(&format!(
                "SELECT id, recipient, kind, shard, status_rank FROM messages WHERE id IN ({placeholders})"
            ));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for r in query.fetch_all(self.pool()).await? {
                let meta = OutboundMeta {
                    recipient: r.text(1)?,
                    kind: r.text(2)?,
                    shard: u32::try_from(r.try_get::<i64, _>(3)?).unwrap_or(u32::MAX),
                    rank: r.try_get(4)?,
                };
                found.insert(r.text(0)?, meta);
            }
        }
        Ok(found)
    }

    /// Replaces the stored object of a queued message, e.g. a fetched link
    /// by the id of the stored medium, so that a resend does not fetch again.
    pub async fn replace_message_body(&self, id: &str, body: &str) -> StoreResult<bool> {
        let sql = self.sql("UPDATE messages SET body = ? WHERE id = ? AND status_rank = 0");
        self.changed_one_row(sqlx::query(&sql).bind(body).bind(id)).await
    }

    /// Why a message failed: its on-prem `errors` array as JSON, `None` when it did not.
    pub async fn message_failure(&self, id: &str) -> StoreResult<Option<String>> {
        let sql = self.sql("SELECT errors FROM message_failures WHERE id = ?");
        let row = sqlx::query(&sql).bind(id).fetch_optional(self.pool()).await?;
        row.map(|r| r.text(0)).transpose()
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
        self.changed_one_row(
            sqlx::query(&sql)
                .bind(&message.id)
                .bind(&message.sender)
                .bind(&message.body)
                .bind(message.timestamp_s)
                .bind(i64::from(message.shard)),
        )
        .await
    }
}
