//! One shard's sender: while the lease is usable it keeps an upstream session
//! open and drains the shard's outbox in `seq` order, records acks and
//! receipts, and stores inbound messages. After a promotion it starts from
//! the oldest unacknowledged message, so only what was in flight is resent.
//! A new session waits until the previous one of the shard is surely closed
//! upstream (see [`super::quiet`]), and sessions that keep ending young back off.

use super::quiet::UpstreamQuiet;
use super::session::{LeaseGrant, SessionEvent, SessionLimits, SessionTarget, UpstreamSession};
use crate::cluster::live_settings::LiveSettings;
use crate::store::messages::{InboundMessage, MessageStatus, SessionOutcomes};
use crate::store::Store;
use crate::upstream::protocol::{ClientFrame, ReceiptStatus};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// Messages sent per round before waiting for their acks.
const BATCH: u32 = 64;
/// How long unacknowledged messages wait before being sent again.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Outbox poll period when no wake-up arrives.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// A session that ends sooner than this after opening counts as a failure
/// for the backoff.
const HEALTHY_SESSION: Duration = Duration::from_secs(5);
/// First and longest pause between failing sessions.
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Handles the keeper and the control API keep on a running worker.
#[derive(Clone)]
pub struct WorkerSignals {
    /// Rung when new messages were stored for the shard.
    pub wake: Arc<Notify>,
    /// Whether the upstream session is open right now.
    pub session_open: Arc<AtomicBool>,
    /// When the session last opened or closed (or the worker started).
    pub session_changed: Arc<Mutex<Instant>>,
    /// Inbound frames skipped as oversized or unreadable.
    pub frames_skipped: Arc<AtomicU64>,
}

impl Default for WorkerSignals {
    fn default() -> Self {
        WorkerSignals {
            wake: Arc::default(),
            session_open: Arc::default(),
            session_changed: Arc::new(Mutex::new(Instant::now())),
            frames_skipped: Arc::default(),
        }
    }
}

impl WorkerSignals {
    /// How long the shard has been without an open session (zero while open).
    pub fn session_down_for(&self) -> Duration {
        if self.session_open.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        self.session_changed.lock().expect("signals lock").elapsed()
    }

    fn set_open(&self, open: bool) {
        if self.session_open.swap(open, Ordering::Relaxed) != open {
            *self.session_changed.lock().expect("signals lock") = Instant::now();
        }
    }
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
    /// When this process's sessions of the shard are surely closed upstream.
    pub quiet: UpstreamQuiet,
    /// Settings in force (session timeout, write abort).
    pub settings: LiveSettings,
    /// Longest inbound frame.
    pub max_frame_bytes: usize,
}

impl ShardWorker {
    /// Runs until the grant is revoked.
    pub async fn run(mut self) {
        let shard = self.target.shard;
        let mut session: Option<(UpstreamSession, Instant)> = None;
        let mut backoff = BACKOFF_START;
        loop {
            let grant = self.grant.borrow_and_update().clone();
            if grant.revoked {
                break;
            }
            if !grant.usable() {
                self.close(&mut session, "lease not usable", &mut backoff).await;
                let _ = self.grant.changed().await;
                continue;
            }
            let Some((open, _)) = session.as_mut() else {
                if let Some(wait) = self.quiet.remaining(shard).filter(|w| *w > Duration::from_millis(1)) {
                    tracing::info!(
                        "shard {shard} waits {:.3} s before its next session: the upstream may still hold the \
                         previous one until its session timeout",
                        wait.as_secs_f64()
                    );
                }
                let slot = tokio::select! {
                    slot = self.quiet.acquire(shard, self.settings.clone()) => slot,
                    _ = self.grant.changed() => continue,
                };
                let timing = self.settings.timing();
                let limits = SessionLimits {
                    session_timeout: timing.upstream_session_timeout,
                    write_abort: timing.upstream_write_abort,
                    max_frame_bytes: self.max_frame_bytes,
                };
                let skipped = self.signals.frames_skipped.clone();
                match UpstreamSession::open(&self.target, self.grant.clone(), slot, limits, skipped).await {
                    Ok(s) => {
                        tracing::info!("shard {shard} upstream session {} open (epoch {})", s.id, grant.epoch);
                        self.signals.set_open(true);
                        session = Some((s, Instant::now()));
                    }
                    Err(e) => {
                        tracing::warn!("shard {shard} cannot open its upstream session: {e}");
                        self.pause(&mut backoff).await;
                    }
                }
                continue;
            };
            match self.round(open, grant.epoch).await {
                Ok(true) => {}
                Ok(false) => self.close(&mut session, "closed", &mut backoff).await,
                Err(e) => {
                    tracing::warn!("shard {shard} database error, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        self.close(&mut session, "revoked", &mut backoff).await;
    }

    /// Waits `backoff` (or until the grant changes) and doubles it.
    async fn pause(&mut self, backoff: &mut Duration) {
        tokio::select! {
            _ = tokio::time::sleep(*backoff) => {}
            _ = self.grant.changed() => {}
        }
        *backoff = (*backoff * 2).min(BACKOFF_MAX);
    }

    /// Closes the session, returning once its socket is closed; a session
    /// that died young makes the next one wait a growing pause.
    async fn close(&mut self, session: &mut Option<(UpstreamSession, Instant)>, why: &str, backoff: &mut Duration) {
        if let Some((s, opened)) = session.take() {
            let id = s.id.clone();
            s.close().await;
            self.signals.set_open(false);
            tracing::info!("shard {} upstream session {id} closed ({why})", self.target.shard);
            if opened.elapsed() >= HEALTHY_SESSION {
                *backoff = BACKOFF_START;
            } else if !self.grant.borrow().revoked {
                self.pause(backoff).await;
            }
        }
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
