//! The callbacks waiting for the webhook receiver, and their delivery state.
//!
//! A callback row is written in the same transaction that records what it
//! announces ([`Store::record_outcomes`]), so an announced change is never
//! lost and never announced without having happened. The shard's primary
//! coreapp delivers the rows of its shard (`crate::coreapp::callbacks`),
//! each recipient's in `seq` order. A row is pending while `delivered_at` is
//! NULL; it is settled when delivered (`delivered_at`) or dropped after its
//! one attempt under `callback_persist=false` (`delivered_at` and
//! `dropped_at`). Settled rows are pruned after a while.

use super::dialect::RowText;
use super::messages::MessageStatus;
use super::{Store, StoreResult};
use crate::cluster::Settings;
use sqlx::Row;

/// Which callbacks [`Store::record_outcomes`] writes: the settings in force
/// at that moment, reduced to what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallbackFilter {
    /// A receiver is set (`webhooks.url`); nothing is written otherwise.
    pub on: bool,
    /// `sent` statuses are called back.
    pub sent: bool,
    /// `delivered` statuses are called back.
    pub delivered: bool,
    /// `read` statuses are called back.
    pub read: bool,
}

impl CallbackFilter {
    /// No callbacks at all.
    pub const OFF: CallbackFilter = CallbackFilter { on: false, sent: false, delivered: false, read: false };

    /// The filter of `settings`.
    pub fn of(settings: &Settings) -> CallbackFilter {
        CallbackFilter {
            on: settings.callbacks_on(),
            sent: settings.calls_back_status("sent"),
            delivered: settings.calls_back_status("delivered"),
            read: settings.calls_back_status("read"),
        }
    }

    /// Whether a change to `status` is called back (`failed` always is, when on).
    pub fn calls_back(&self, status: MessageStatus) -> bool {
        self.on
            && match status {
                MessageStatus::Queued => false,
                MessageStatus::Sent => self.sent,
                MessageStatus::Delivered => self.delivered,
                MessageStatus::Read => self.read,
                MessageStatus::Failed => true,
            }
    }
}

/// A pending callback as the delivery scan reads it: without its payload,
/// so that a scan's memory does not grow with payload sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCallback {
    /// Order of the callback in its shard.
    pub seq: i64,
    /// Ordering key: the recipient of a status, the sender of an inbound message.
    pub recipient: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Milliseconds until it may be attempted (0: now), on the database clock.
    pub wait_ms: i64,
}

/// A callback row, for inspection and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRow {
    /// Order of the callback in its shard.
    pub seq: i64,
    /// Shard whose primary delivers it.
    pub shard: u32,
    /// Ordering key.
    pub recipient: String,
    /// The JSON body posted to the receiver.
    pub payload: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Earliest next attempt, database clock (unix ms).
    pub next_attempt_at: i64,
    /// When it was settled (delivered or dropped), database clock.
    pub delivered_at: Option<i64>,
    /// When it was dropped without delivery (`callback_persist=false`).
    pub dropped_at: Option<i64>,
}

/// How a delivery attempt ended, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// The receiver took it (2xx). With `forget_inbound`, the inbound
    /// message it announced is deleted too (`pass_through`).
    Delivered {
        /// The callback.
        seq: i64,
        /// Inbound message to delete.
        forget_inbound: Option<String>,
    },
    /// The attempt failed; the next waits `delay_ms`.
    Retry {
        /// The callback.
        seq: i64,
        /// Milliseconds until the next attempt.
        delay_ms: i64,
    },
    /// The attempt failed and the callback is given up (`callback_persist=false`).
    Dropped {
        /// The callback.
        seq: i64,
    },
}

/// Seqs per statement, well under every engine's limit on placeholders.
const SEQS_PER_QUERY: usize = 500;

impl Store {
    /// Adds a callback in the caller's transaction.
    pub(crate) async fn enqueue_callback(
        &self,
        conn: &mut sqlx::AnyConnection,
        shard: u32,
        recipient: &str,
        payload: &serde_json::Value,
    ) -> StoreResult<()> {
        let sql = self.sql(
            "INSERT INTO callbacks (shard, recipient, payload, created_at, attempts, next_attempt_at) \
             VALUES (?, ?, ?, {now}, 0, {now})",
        );
        sqlx::query(&sql).bind(i64::from(shard)).bind(recipient).bind(payload.to_string()).execute(conn).await?;
        Ok(())
    }

    /// The first pending callback of each recipient of `shard` (the one that
    /// must go next), up to `limit` of them after `after_seq`, in `seq` order.
    ///
    /// One query, however many callbacks wait behind each head: a backlog
    /// of a few recipients costs a pass as much as an empty one. (Reading
    /// pending rows in pages and keeping each recipient's first made a pass
    /// read thousands of rows for a handful of heads; on a database server
    /// a pass then took longer than the callbacks took to arrive, and the
    /// backlog only grew: the fault suite's seed 11.)
    pub async fn pending_heads(&self, shard: u32, after_seq: i64, limit: u32) -> StoreResult<Vec<PendingCallback>> {
        let sql = self.sql(
            "SELECT c.seq, c.recipient, c.attempts, \
             CASE WHEN c.next_attempt_at <= {now} THEN 0 ELSE c.next_attempt_at - {now} END \
             FROM callbacks c JOIN (SELECT MIN(seq) AS head FROM callbacks \
             WHERE shard = ? AND delivered_at IS NULL GROUP BY recipient) h ON c.seq = h.head \
             WHERE c.seq > ? ORDER BY c.seq LIMIT ?",
        );
        self.pending_rows(&sql, shard, after_seq, limit).await
    }

    /// Up to `limit` pending callbacks of `shard` after `after_seq`, in `seq` order.
    pub async fn pending_callbacks(&self, shard: u32, after_seq: i64, limit: u32) -> StoreResult<Vec<PendingCallback>> {
        let sql = self.sql(
            "SELECT seq, recipient, attempts, \
             CASE WHEN next_attempt_at <= {now} THEN 0 ELSE next_attempt_at - {now} END \
             FROM callbacks WHERE shard = ? AND delivered_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
        );
        self.pending_rows(&sql, shard, after_seq, limit).await
    }

    /// Runs a pending-callback query of [`Store::pending_heads`] or
    /// [`Store::pending_callbacks`]: bound as `shard, after_seq, limit`,
    /// selecting `seq, recipient, attempts, wait_ms`.
    async fn pending_rows(
        &self,
        sql: &str,
        shard: u32,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<PendingCallback>> {
        let rows = sqlx::query(sql)
            .bind(i64::from(shard))
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PendingCallback {
                    seq: r.try_get(0)?,
                    recipient: r.text(1)?,
                    attempts: r.try_get(2)?,
                    wait_ms: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// The payloads of the callbacks `seqs`, by seq.
    pub async fn callback_payloads(&self, seqs: &[i64]) -> StoreResult<Vec<(i64, String)>> {
        let mut found = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(SEQS_PER_QUERY) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let sql = self.sql(&format!("SELECT seq, payload FROM callbacks WHERE seq IN ({placeholders})"));
            let mut query = sqlx::query(&sql);
            for seq in chunk {
                query = query.bind(*seq);
            }
            for r in query.fetch_all(self.pool()).await? {
                found.push((r.try_get(0)?, r.text(1)?));
            }
        }
        Ok(found)
    }

    /// Records the outcomes of delivery attempts in one transaction (one
    /// commit for however many attempts ended meanwhile).
    pub async fn settle_callbacks(&self, settlements: &[Settlement]) -> StoreResult<()> {
        if settlements.is_empty() {
            return Ok(());
        }
        let delivered = self.sql(
            "UPDATE callbacks SET delivered_at = {now}, attempts = attempts + 1 WHERE seq = ? AND delivered_at IS NULL",
        );
        let retry = self.sql(
            "UPDATE callbacks SET attempts = attempts + 1, next_attempt_at = {now} + ? \
             WHERE seq = ? AND delivered_at IS NULL",
        );
        let dropped = self.sql(
            "UPDATE callbacks SET attempts = attempts + 1, delivered_at = {now}, dropped_at = {now} \
             WHERE seq = ? AND delivered_at IS NULL",
        );
        let forget = self.sql("DELETE FROM inbound_messages WHERE id = ?");
        let mut tx = self.pool().begin().await?;
        for settlement in settlements {
            match settlement {
                Settlement::Delivered { seq, forget_inbound } => {
                    sqlx::query(&delivered).bind(*seq).execute(&mut *tx).await?;
                    if let Some(id) = forget_inbound {
                        sqlx::query(&forget).bind(id).execute(&mut *tx).await?;
                    }
                }
                Settlement::Retry { seq, delay_ms } => {
                    sqlx::query(&retry).bind(*delay_ms).bind(*seq).execute(&mut *tx).await?;
                }
                Settlement::Dropped { seq } => {
                    sqlx::query(&dropped).bind(*seq).execute(&mut *tx).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes up to `limit` callbacks of `shard` settled more than
    /// `older_than_ms` ago; returns how many. Two bounded statements, since
    /// MySQL takes no LIMIT in a subquery of the table it deletes from.
    pub async fn prune_callbacks(&self, shard: u32, older_than_ms: i64, limit: u32) -> StoreResult<u64> {
        let sql = self.sql(
            "SELECT seq FROM callbacks WHERE shard = ? AND delivered_at IS NOT NULL AND delivered_at < {now} - ? \
             ORDER BY seq LIMIT ?",
        );
        let seqs: Vec<i64> = sqlx::query(&sql)
            .bind(i64::from(shard))
            .bind(older_than_ms)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let mut deleted = 0;
        for chunk in seqs.chunks(SEQS_PER_QUERY) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let sql = self.sql(&format!("DELETE FROM callbacks WHERE seq IN ({placeholders})"));
            let mut query = sqlx::query(&sql);
            for seq in chunk {
                query = query.bind(*seq);
            }
            deleted += query.execute(self.pool()).await?.rows_affected();
        }
        Ok(deleted)
    }

    /// The callbacks of `shard`, oldest first, at most `limit`: for
    /// inspection and tests.
    pub async fn callbacks_of_shard(&self, shard: u32, limit: u32) -> StoreResult<Vec<CallbackRow>> {
        let sql = self.sql(
            "SELECT seq, shard, recipient, payload, attempts, next_attempt_at, delivered_at, dropped_at \
             FROM callbacks WHERE shard = ? ORDER BY seq LIMIT ?",
        );
        let rows = sqlx::query(&sql).bind(i64::from(shard)).bind(i64::from(limit)).fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| {
                Ok(CallbackRow {
                    seq: r.try_get(0)?,
                    shard: u32::try_from(r.try_get::<i64, _>(1)?).unwrap_or(u32::MAX),
                    recipient: r.text(2)?,
                    payload: r.text(3)?,
                    attempts: r.try_get(4)?,
                    next_attempt_at: r.try_get(5)?,
                    delivered_at: r.try_get(6)?,
                    dropped_at: r.try_get(7)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DbEngine;
    use crate::store::messages::{
        ErrorNotice, InboundMessage, NewMessage, ReceivedMessage, SessionOutcomes, StatusUpdate, MARK_READ_KIND,
    };
    use crate::store::shard_map::ClusterInfo;
    use crate::testing::TestDatabase;
    use crate::upstream::protocol::UpstreamError;
    use serde_json::{json, Value};

    const ALL: CallbackFilter = CallbackFilter { on: true, sent: true, delivered: true, read: true };

    /// Runs `case` on a fresh, migrated database of each engine (the server
    /// ones unless `SHARDGATE_SKIP_SERVER_DBS=1`); the guard drops it.
    async fn on_every_engine(case: impl AsyncFn(&Store)) {
        for engine in [DbEngine::Sqlite, DbEngine::Postgres, DbEngine::MySql] {
            let Some(db) = TestDatabase::create(engine).await else { continue };
            let store = Store::connect(&db.config).await.unwrap();
            store.bootstrap().await.unwrap();
            store.migrate().await.unwrap();
            store.init_cluster(&ClusterInfo { shards: 2, account: "15550000000".into() }).await.unwrap();
            case(&store).await;
        }
    }

    async fn enqueue(store: &Store, id: &str, recipient: &str, kind: &str) {
        let body =
            if kind == MARK_READ_KIND { r#"{"message_id":"in-1"}"# } else { r#"{"type":"text","text":{"body":"hi"}}"# };
        let message =
            NewMessage { id: id.into(), shard: 1, recipient: recipient.into(), kind: kind.into(), body: body.into() };
        store.enqueue_message(&message).await.unwrap();
    }

    fn acks(ids: &[&str]) -> Vec<(String, String)> {
        ids.iter().map(|id| (id.to_string(), format!("srv-{id}"))).collect()
    }

    fn status(id: &str, status: MessageStatus) -> StatusUpdate {
        StatusUpdate { id: id.into(), status, timestamp_s: 1_700_000_000, errors: vec![] }
    }

    async fn payloads(store: &Store, shard: u32) -> Vec<(String, Value)> {
        let rows = store.callbacks_of_shard(shard, 100).await.unwrap();
        rows.into_iter().map(|r| (r.recipient, serde_json::from_str(&r.payload).unwrap())).collect()
    }

    fn statuses(callbacks: &[(String, Value)]) -> Vec<(String, String, String)> {
        callbacks
            .iter()
            .map(|(recipient, p)| {
                let s = &p["statuses"][0];
                (recipient.clone(), s["id"].as_str().unwrap().into(), s["status"].as_str().unwrap().into())
            })
            .collect()
    }

    #[tokio::test]
    async fn only_statuses_that_advance_are_called_back_and_read_marks_never() {
        on_every_engine(case_only_statuses_that_advance_are_called_back_and_read_marks_never).await;
    }

    async fn case_only_statuses_that_advance_are_called_back_and_read_marks_never(store: &Store) {
        enqueue(store, "m1", "1555", "text").await;
        enqueue(store, "m2", "1555", MARK_READ_KIND).await;
        enqueue(store, "m3", "1666", "text").await;
        let errors = vec![UpstreamError { code: 1013, title: "User is not valid".into(), details: None }];
        let outcomes = SessionOutcomes {
            acks: acks(&["m1", "m2", "m3"]),
            statuses: vec![
                status("m1", MessageStatus::Sent),
                status("m1", MessageStatus::Delivered),
                StatusUpdate { errors: errors.clone(), ..status("m3", MessageStatus::Failed) },
                status("m1", MessageStatus::Read),
                status("m1", MessageStatus::Delivered),
                status("unknown", MessageStatus::Read),
            ],
            ..Default::default()
        };
        assert_eq!(store.record_outcomes(&outcomes, ALL).await.unwrap(), 5);
        let callbacks = payloads(store, 1).await;
        assert_eq!(
            statuses(&callbacks),
            vec![
                ("1555".into(), "m1".into(), "sent".into()),
                ("1666".into(), "m3".into(), "sent".into()),
                ("1555".into(), "m1".into(), "delivered".into()),
                ("1555".into(), "m1".into(), "read".into()),
                ("1666".into(), "m3".into(), "failed".into()),
            ],
            "acks first, then the statuses by rank: each message's in order"
        );
        assert_eq!(callbacks[2].1["statuses"][0]["timestamp"], "1700000000");
        assert_eq!(callbacks[4].1["statuses"][0]["errors"], json!(errors));
        assert_eq!(store.message_status("m2").await.unwrap(), Some(MessageStatus::Sent), "the mark is acked");
        assert_eq!(store.message_status("m3").await.unwrap(), Some(MessageStatus::Failed));
        let stored: Vec<UpstreamError> =
            serde_json::from_str(&store.message_failure("m3").await.unwrap().unwrap()).unwrap();
        assert_eq!(stored, errors);
        assert_eq!(store.message_failure("m1").await.unwrap(), None);
        // Recorded again (a redelivered batch): nothing advances, nothing is called back.
        assert_eq!(store.record_outcomes(&outcomes, ALL).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_delivered_message_never_fails_and_a_failed_one_stays_failed() {
        on_every_engine(case_a_delivered_message_never_fails_and_a_failed_one_stays_failed).await;
    }

    async fn case_a_delivered_message_never_fails_and_a_failed_one_stays_failed(store: &Store) {
        enqueue(store, "m1", "1555", "text").await;
        enqueue(store, "m2", "1555", "text").await;
        store.record_receipt("m1", MessageStatus::Delivered).await.unwrap();
        let failures = SessionOutcomes {
            statuses: vec![StatusUpdate::failed("m1", vec![]), StatusUpdate::failed("m2", vec![])],
            ..Default::default()
        };
        assert_eq!(store.record_outcomes(&failures, ALL).await.unwrap(), 1, "only m2 fails");
        assert_eq!(store.message_status("m1").await.unwrap(), Some(MessageStatus::Delivered));
        assert_eq!(store.message_failure("m1").await.unwrap(), None);
        let later = SessionOutcomes { statuses: vec![status("m2", MessageStatus::Read)], ..Default::default() };
        assert_eq!(store.record_outcomes(&later, ALL).await.unwrap(), 0);
        assert_eq!(store.message_status("m2").await.unwrap(), Some(MessageStatus::Failed));
        assert!(store.pending_messages(1, 10).await.unwrap().is_empty(), "a failed message is not resent");
    }

    #[tokio::test]
    async fn the_settings_in_force_filter_what_is_written() {
        on_every_engine(case_the_settings_in_force_filter_what_is_written).await;
    }

    async fn case_the_settings_in_force_filter_what_is_written(store: &Store) {
        enqueue(store, "m1", "1555", "text").await;
        let outcomes = SessionOutcomes {
            acks: acks(&["m1"]),
            statuses: vec![status("m1", MessageStatus::Read)],
            notices: vec![ErrorNotice { shard: 1, recipient: "1555".into(), errors: vec![] }],
            ..Default::default()
        };
        assert_eq!(store.record_outcomes(&outcomes, CallbackFilter::OFF).await.unwrap(), 0);
        assert_eq!(store.message_status("m1").await.unwrap(), Some(MessageStatus::Read), "still recorded");
        enqueue(store, "m2", "1555", "text").await;
        let no_sent = CallbackFilter { sent: false, ..ALL };
        let outcomes = SessionOutcomes {
            acks: acks(&["m2"]),
            statuses: vec![status("m2", MessageStatus::Delivered)],
            notices: vec![ErrorNotice { shard: 1, recipient: "1555".into(), errors: vec![] }],
            ..Default::default()
        };
        assert_eq!(store.record_outcomes(&outcomes, no_sent).await.unwrap(), 2);
        let callbacks = payloads(store, 1).await;
        assert_eq!(callbacks[0].1["statuses"][0]["status"], "delivered");
        assert_eq!(callbacks[1].1, json!({"errors": []}));
    }

    #[tokio::test]
    async fn an_inbound_message_is_called_back_once() {
        on_every_engine(case_an_inbound_message_is_called_back_once).await;
    }

    async fn case_an_inbound_message_is_called_back_once(store: &Store) {
        let received = ReceivedMessage {
            message: InboundMessage {
                id: "in-1".into(),
                sender: "1777".into(),
                body: r#"{"type":"text","text":{"body":"hola"}}"#.into(),
                timestamp_s: 1_504_902_988,
                shard: 0,
            },
            profile_name: Some("Kerry".into()),
        };
        let outcomes = SessionOutcomes { inbound: vec![received], ..Default::default() };
        assert_eq!(store.record_outcomes(&outcomes, ALL).await.unwrap(), 1);
        assert_eq!(store.record_outcomes(&outcomes, ALL).await.unwrap(), 0, "a redelivery is stored once");
        let callbacks = payloads(store, 0).await;
        assert_eq!(callbacks.len(), 1);
        assert_eq!(callbacks[0].0, "1777", "ordered by the sender");
        assert_eq!(
            callbacks[0].1["messages"][0],
            json!({"from":"1777","id":"in-1","timestamp":"1504902988","type":"text","text":{"body":"hola"}})
        );
    }

    #[tokio::test]
    async fn delivery_state_moves_from_pending_to_settled_and_is_pruned() {
        on_every_engine(case_delivery_state_moves_from_pending_to_settled_and_is_pruned).await;
    }

    async fn case_delivery_state_moves_from_pending_to_settled_and_is_pruned(store: &Store) {
        for id in ["m1", "m2", "m3"] {
            enqueue(store, id, "1555", "text").await;
        }
        store
            .store_inbound(&InboundMessage {
                id: "in-9".into(),
                sender: "1555".into(),
                body: "{}".into(),
                timestamp_s: 1,
                shard: 1,
            })
            .await
            .unwrap();
        store
            .record_outcomes(&SessionOutcomes { acks: acks(&["m1", "m2", "m3"]), ..Default::default() }, ALL)
            .await
            .unwrap();
        let pending = store.pending_callbacks(1, 0, 10).await.unwrap();
        assert_eq!(pending.len(), 3);
        assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
        assert!(pending.iter().all(|p| p.wait_ms == 0 && p.attempts == 0 && p.recipient == "1555"));
        assert_eq!(store.pending_callbacks(1, pending[0].seq, 10).await.unwrap().len(), 2, "after a seq");
        let heads = store.pending_heads(1, 0, 10).await.unwrap();
        assert_eq!(heads.iter().map(|h| h.seq).collect::<Vec<_>>(), [pending[0].seq], "one head per recipient");
        let (a, b, c) = (pending[0].seq, pending[1].seq, pending[2].seq);
        assert_eq!(store.callback_payloads(&[b]).await.unwrap()[0].0, b);
        store
            .settle_callbacks(&[
                Settlement::Delivered { seq: a, forget_inbound: Some("in-9".into()) },
                Settlement::Retry { seq: b, delay_ms: 60_000 },
                Settlement::Dropped { seq: c },
            ])
            .await
            .unwrap();
        assert!(store.inbound_message("in-9").await.unwrap().is_none(), "pass_through forgets it");
        let pending = store.pending_callbacks(1, 0, 10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].seq, pending[0].attempts), (b, 1));
        let heads = store.pending_heads(1, 0, 10).await.unwrap();
        assert_eq!((heads.len(), heads[0].seq, heads[0].attempts), (1, b, 1), "the head moves on: {heads:?}");
        assert!(heads[0].wait_ms > 50_000, "{heads:?}");
        assert!(pending[0].wait_ms > 50_000, "{pending:?}");
        let rows = store.callbacks_of_shard(1, 10).await.unwrap();
        assert!(rows[0].delivered_at.is_some() && rows[0].dropped_at.is_none());
        assert!(rows[2].delivered_at.is_some() && rows[2].dropped_at.is_some(), "dropped is settled too");
        // A settled callback is settled for good.
        store.settle_callbacks(&[Settlement::Retry { seq: a, delay_ms: 1 }]).await.unwrap();
        assert_eq!(store.callbacks_of_shard(1, 10).await.unwrap()[0].attempts, 1);
        assert_eq!(store.prune_callbacks(1, 3_600_000, 100).await.unwrap(), 0, "too young");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert_eq!(store.prune_callbacks(1, 0, 1).await.unwrap(), 1, "bounded");
        assert_eq!(store.prune_callbacks(1, 0, 100).await.unwrap(), 1);
        let left: Vec<i64> = store.callbacks_of_shard(1, 10).await.unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(left, vec![b], "the pending one stays");
    }
}
