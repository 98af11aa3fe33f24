//! One shard's worker: while the lease is usable it keeps the shard's one
//! upstream session open and, in rounds, drains the shard's outbox in `seq`
//! order ([`super::outbox_sender`]) through a sliding window of messages
//! awaiting their acks ([`super::send_window`]), asks the contact checks queued on the
//! shard ([`super::contact_checks`]), and records what the session reports,
//! with the callbacks it causes ([`super::session_reports`]); the shard's
//! callback delivery is woken right after. A new session starts from the
//! oldest unacknowledged message, so only what was in flight is resent.
//! A new session waits until the previous one of the shard is surely closed
//! upstream (see [`super::quiet`]), and sessions that keep ending young back off.
//!
//! Everything a round does rides on the session it is given: nothing here
//! but [`ShardWorker::run`] opens or closes one.

use super::contact_checks::{ContactQuestions, CHECKS_PER_ROUND};
use super::link_fetch::LinkFetcher;
use super::outbox_sender::BATCH;
use super::quiet::UpstreamQuiet;
use super::send_window::SendWindow;
use super::session::{LeaseGrant, SessionLimits, SessionTarget, UpstreamSession};
use super::session_reports::SessionReports;
use crate::cluster::live_settings::LiveSettings;
use crate::media_dir::MediaDir;
use crate::store::{Store, StoreResult};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// Outbox poll period when no wake-up arrives; also how often queued
/// contact checks are looked for while the outbox keeps the worker busy.
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
    /// Rung when new messages (or contact checks) were stored for the shard.
    pub wake: Arc<Notify>,
    /// Rung by the worker when it recorded new callbacks of the shard.
    pub callbacks: Arc<Notify>,
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
            callbacks: Arc::default(),
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
    /// The media directory: media to upload, inbound media to keep.
    pub media: MediaDir,
    /// Fetches the media links of messages.
    pub links: LinkFetcher,
}

/// The shard's open session and what belongs to it alone.
pub(super) struct OpenSession {
    /// The session.
    pub upstream: UpstreamSession,
    opened: Instant,
    /// Media uploaded and stored upstream in this session; a new session
    /// uploads them again.
    pub uploaded: HashSet<String>,
    /// Contact checks asked in this session and not answered yet.
    pub questions: ContactQuestions,
    /// The messages this session has out, awaiting their acks.
    pub window: SendWindow,
    /// When queued contact checks were last looked for (`None`: never).
    contacts_looked: Option<Instant>,
}

impl ShardWorker {
    /// Runs until the grant is revoked.
    pub async fn run(mut self) {
        let shard = self.target.shard;
        let mut session: Option<OpenSession> = None;
        let mut reports = SessionReports::default();
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
            let Some(open) = session.as_mut() else {
                if !reports.is_empty() {
                    // Left by a database error; not worth waiting for the next session.
                    if let Err(e) = self.record_reports(&mut reports, &mut ContactQuestions::default()).await {
                        tracing::warn!("shard {shard}: cannot record the last session's reports yet: {e}");
                    }
                }
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
                        session = Some(OpenSession {
                            upstream: s,
                            opened: Instant::now(),
                            uploaded: HashSet::new(),
                            questions: ContactQuestions::default(),
                            window: SendWindow::new(),
                            contacts_looked: None,
                        });
                    }
                    Err(e) => {
                        tracing::warn!("shard {shard} cannot open its upstream session: {e}");
                        self.pause(&mut backoff).await;
                    }
                }
                continue;
            };
            match self.round(open, grant.epoch, &mut reports).await {
                Ok(true) => {}
                Ok(false) => self.close(&mut session, "closed", &mut backoff).await,
                Err(e) => {
                    tracing::warn!("shard {shard} database error, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        self.close(&mut session, "revoked", &mut backoff).await;
        // What the last session reported and is not recorded yet: one more try.
        if let Err(e) = self.record_reports(&mut reports, &mut ContactQuestions::default()).await {
            tracing::warn!("shard {shard}: reports of its last session are lost: {e}");
        }
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
    async fn close(&mut self, session: &mut Option<OpenSession>, why: &str, backoff: &mut Duration) {
        if let Some(OpenSession { upstream, opened, .. }) = session.take() {
            let id = upstream.id.clone();
            upstream.close().await;
            self.signals.set_open(false);
            tracing::info!("shard {} upstream session {id} closed ({why})", self.target.shard);
            if opened.elapsed() >= HEALTHY_SESSION {
                *backoff = BACKOFF_START;
            } else if !self.grant.borrow().revoked {
                self.pause(backoff).await;
            }
        }
    }

    /// Sends one batch, or waits for work, acks or a deadline, then records
    /// what the session reported meanwhile; false when the session closed.
    async fn round(&mut self, open: &mut OpenSession, epoch: i64, reports: &mut SessionReports) -> StoreResult<bool> {
        let shard = self.target.shard;
        if !reports.is_empty() {
            // The last round's reports could not be recorded: its acks above
            // all, without which the put-backs would resend them.
            self.record(reports, open).await?;
        }
        if open.contacts_looked.is_none_or(|at| at.elapsed() >= IDLE_POLL) {
            open.contacts_looked = Some(Instant::now());
            let queued = self.store.pending_contact_checks(shard, CHECKS_PER_ROUND).await?;
            if let Some(frame) = open.questions.ask(queued) {
                if !open.upstream.send(frame) {
                    return Ok(false);
                }
            }
        }
        if open.window.put_back_due(shard) {
            self.store.put_back_unacknowledged(shard, epoch).await?;
            open.window.put_back_done();
        }
        let room = u32::try_from(open.window.free()).unwrap_or(u32::MAX).min(BATCH);
        let pending = if room > 0 { self.store.unsent_messages(shard, epoch, room).await? } else { Vec::new() };
        let alive = if pending.is_empty() {
            let idle_until = Instant::now() + IDLE_POLL;
            let until = open.window.next_deadline().map_or(idle_until, |deadline| deadline.min(idle_until));
            tokio::select! {
                _ = self.signals.wake.notified() => {
                    // A webapp stored something: contact checks, maybe.
                    open.contacts_looked = None;
                    true
                }
                _ = tokio::time::sleep_until(until) => true,
                _ = self.grant.changed() => true,
                event = open.upstream.events.recv() => reports.absorb(shard, event, &mut open.upstream),
            }
        } else {
            self.send_batch(open, pending, epoch, reports).await? && reports.absorb_ready(shard, &mut open.upstream)
        };
        self.record(reports, open).await?;
        Ok(alive)
    }

    /// Takes the messages settled since out of `open`'s window, then records
    /// the reports ([`ShardWorker::record_reports`]).
    async fn record(&self, reports: &mut SessionReports, open: &mut OpenSession) -> StoreResult<()> {
        let outcomes = &reports.outcomes;
        open.window.settled(
            outcomes.acks.iter().map(|(id, _)| id.as_str()).chain(outcomes.statuses.iter().map(|s| s.id.as_str())),
        );
        self.record_reports(reports, &mut open.questions).await
    }

    /// Records the reports, with the callbacks the settings in force now
    /// allow, and wakes the shard's callback delivery when there are new ones.
    async fn record_reports(&self, reports: &mut SessionReports, questions: &mut ContactQuestions) -> StoreResult<()> {
        let settings = self.settings.current();
        let callbacks = reports.record(&self.store, &self.media, &settings.settings, questions).await?;
        if callbacks > 0 {
            self.signals.callbacks.notify_one();
        }
        Ok(())
    }
}
