//! One shard's sender: while the lease is usable it keeps an upstream session
//! open and drains the shard's outbox in `seq` order, records acks and
//! receipts, and stores inbound messages. After a promotion it starts from
//! the oldest unacknowledged message, so only what was in flight is resent.

use super::session::{LeaseGrant, SessionEvent, SessionTarget, UpstreamSession};
use crate::store::messages::{InboundMessage, MessageStatus, SessionOutcomes};
use crate::store::Store;
use crate::upstream::protocol::{ClientFrame, ReceiptStatus};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// Messages sent per round before waiting for their acks.
const BATCH: u32 = 64;
/// How long unacknowledged messages wait before being sent again.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Outbox poll period when no wake-up arrives.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// Handles the keeper and the control API keep on a running worker.
#[derive(Clone, Default)]
pub struct WorkerSignals {
    /// Rung when new messages were stored for the shard.
    pub wake: Arc<Notify>,
    /// Whether the upstream session is open right now.
    pub session_open: Arc<AtomicBool>,
}

/// Everything a shard worker needs.
pub struct ShardWorker {
    /// Database.
    pub store: Store,
    /// Where and as whom to open the session.
    pub target: SessionTarget,
    /// The lease grant, updated by the keeper.
    pub grant: watch::Receiver<LeaseGrant>,
    /// Wake-up and status.
    pub signals: WorkerSignals,
}

impl ShardWorker {
    /// Runs until the grant is revoked.
    pub async fn run(mut self) {
        let shard = self.target.shard;
        let mut session: Option<UpstreamSession> = None;
        let mut backoff = Duration::from_millis(50);
        loop {
            let grant = self.grant.borrow_and_update().clone();
            if grant.revoked {
                break;
            }
            if !grant.usable() {
                self.close(&mut session, "lease not usable").await;
                let _ = self.grant.changed().await;
                continue;
            }
            let Some(open) = session.as_mut() else {
                match UpstreamSession::open(&self.target, self.grant.clone()).await {
                    Ok(s) => {
                        tracing::info!("shard {shard} upstream session {} open (epoch {})", s.id, grant.epoch);
                        self.signals.session_open.store(true, Ordering::Relaxed);
                        backoff = Duration::from_millis(50);
                        session = Some(s);
                    }
                    Err(e) => {
                        tracing::warn!("shard {shard} cannot open its upstream session: {e}");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = self.grant.changed() => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
                continue;
            };
            match self.round(open, grant.epoch).await {
                Ok(true) => {}
                Ok(false) => self.close(&mut session, "closed").await,
                Err(e) => {
                    tracing::warn!("shard {shard} database error, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        self.close(&mut session, "revoked").await;
    }

    /// Closes the session, returning once its socket is closed.
    async fn close(&self, session: &mut Option<UpstreamSession>, why: &str) {
        if let Some(s) = session.take() {
            let id = s.id.clone();
            s.close().await;
            tracing::info!("shard {} upstream session {id} closed ({why})", self.target.shard);
        }
        self.signals.session_open.store(false, Ordering::Relaxed);
    }

    /// Sends one batch, or waits for work; false when the session closed.
    async fn round(&mut self, session: &mut UpstreamSession, epoch: i64) -> crate::store::StoreResult<bool> {
        let pending = self.store.pending_messages(self.target.shard, BATCH).await?;
        let mut outcomes = SessionOutcomes::default();
        if pending.is_empty() {
            let open = tokio::select! {
                _ = self.signals.wake.notified() => true,
                _ = tokio::time::sleep(IDLE_POLL) => true,
                _ = self.grant.changed() => true,
                event = session.events.recv() => self.collect(event, &mut outcomes, session),
            };
            self.store.record_outcomes(&outcomes).await?;
            return Ok(open);
        }
        let ids: Vec<String> = pending.iter().map(|m| m.id.clone()).collect();
        self.store.mark_attempt(&ids, epoch, &self.target.node).await?;
        for message in &pending {
            let frame =
                ClientFrame::Send { id: message.id.clone(), to: message.recipient.clone(), body: message.body.clone() };
            if !session.send(frame) {
                return Ok(false);
            }
        }
        let mut waiting: HashSet<String> = ids.into_iter().collect();
        let give_up = Instant::now() + ACK_TIMEOUT;
        let mut open = true;
        while open && !waiting.is_empty() {
            tokio::select! {
                event = session.events.recv() => {
                    open = self.collect(event, &mut outcomes, session);
                    for (id, _) in &outcomes.acks {
                        waiting.remove(id);
                    }
                }
                _ = tokio::time::sleep_until(give_up) => {
                    tracing::warn!("shard {}: {} message(s) unacknowledged, will resend", self.target.shard, waiting.len());
                    break;
                }
            }
        }
        self.store.record_outcomes(&outcomes).await?;
        Ok(open)
    }

    /// Adds `event` and every event already queued behind it to `outcomes`;
    /// false when the session closed.
    fn collect(
        &self,
        event: Option<SessionEvent>,
        outcomes: &mut SessionOutcomes,
        session: &mut UpstreamSession,
    ) -> bool {
        let mut next = event;
        loop {
            match next {
                Some(SessionEvent::Ack { id, server_id }) => outcomes.acks.push((id, server_id)),
                Some(SessionEvent::Receipt { id, status }) => {
                    let status = match status {
                        ReceiptStatus::Sent => MessageStatus::Sent,
                        ReceiptStatus::Delivered => MessageStatus::Delivered,
                        ReceiptStatus::Read => MessageStatus::Read,
                    };
                    outcomes.receipts.push((id, status));
                }
                Some(SessionEvent::Inbound { id, from, body, timestamp }) => outcomes.inbound.push(InboundMessage {
                    id,
                    sender: from,
                    body,
                    // The upstream stamps in milliseconds; webhooks speak seconds.
                    timestamp_s: timestamp / 1000,
                    shard: self.target.shard,
                }),
                Some(SessionEvent::Closed(reason)) => {
                    tracing::info!("shard {} session ended: {reason}", self.target.shard);
                    return false;
                }
                None => return false,
            }
            match session.events.try_recv() {
                Ok(event) => next = Some(event),
                Err(_) => return true,
            }
        }
    }
}
