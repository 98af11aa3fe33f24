//! The sim's rulebook: which session holds each (account, shard), when a hello
//! is a conflict, when an account is banned, which message ids were already
//! seen, and where a frame for an (account, shard) goes when no session is open.
//! The network's other knowledge has a module each, held here: who exists
//! ([`Directory`]), the approved templates ([`TemplateRegistry`]), uploaded
//! media ([`MediaStore`]) and the messages users sent ([`Inbox`]); a send is
//! judged against all of them ([`messages`] checks its shape).
//!
//! Everything here is plain data behind methods that take `now_ms`, so every
//! rule is unit-tested without sockets or clocks. The session tasks and the
//! inspection API call these methods under one mutex; each call is one atomic
//! decision, which is what makes the sim's records trustworthy as a judge.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use shardgate_core::upstream::protocol::{ContactCheck, ReceiptStatus, ServerFrame, UpstreamError};
use tokio::sync::mpsc::{error::SendError, UnboundedSender};
use uuid::Uuid;

use crate::contacts::Directory;
use crate::faults::{Faults, FaultsUpdate};
use crate::inbound::{Inbox, InjectedMedia, NewInbound};
use crate::media::{Chunk, MediaStore};
use crate::messages;
use crate::templates::TemplateRegistry;

/// Conflicts older than this no longer count toward a ban.
pub const CONFLICT_WINDOW_MS: i64 = 10 * 60 * 1000;

/// Conflicts within [`CONFLICT_WINDOW_MS`] that ban an account.
pub const CONFLICTS_TO_BAN: usize = 3;

/// Where the state puts frames for one open session; its task writes them to
/// the socket in order.
pub type Outbox = UnboundedSender<ServerFrame>;

/// An (account, shard): the unit that may hold at most one open session.
type Slot = (String, u32);

/// The durations the rules depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// A session with no pong for this long is gone.
    pub session_timeout_ms: i64,
    /// How long a ban lasts.
    pub ban_duration_ms: i64,
}

/// What a coreapp claims in its hello. The epoch is recorded, never trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionClaim {
    /// The account (phone number) the session is for.
    pub account: String,
    /// The shard of the account the session serves.
    pub shard: u32,
    /// How many shards the coreapp believes the account has.
    pub shards: u32,
    /// The node id of the coreapp.
    pub node: String,
    /// The node's fencing epoch for the shard.
    pub epoch: i64,
}

/// One session, open or closed, as `GET /sim/sessions` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Session id, `s-1`, `s-2`, … in opening order.
    pub id: String,
    /// The account of the session.
    pub account: String,
    /// The shard of the session.
    pub shard: u32,
    /// The shard count claimed in the hello.
    pub shards: u32,
    /// The node that opened it.
    pub node: String,
    /// The epoch claimed in the hello.
    pub epoch: i64,
    /// When the welcome was sent.
    pub opened_at_ms: i64,
    /// When the latest pong arrived, if any did.
    pub last_pong_ms: Option<i64>,
    /// When the session closed, if it did.
    pub closed_at_ms: Option<i64>,
    /// Why it closed: `conflict`, `banned`, `keepalive timeout`, `eof`, `bye`, …
    pub close_reason: Option<String>,
    /// Whether the session still holds its (account, shard).
    pub open: bool,
}

/// A hello for an (account, shard) that already had an open session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// The account.
    pub account: String,
    /// The contested shard.
    pub shard: u32,
    /// The session that was kicked.
    pub old_session: String,
    /// The node of the kicked session.
    pub old_node: String,
    /// The epoch of the kicked session.
    pub old_epoch: i64,
    /// The session that replaced it; `None` when this conflict banned the
    /// account and the hello was refused.
    pub new_session: Option<String>,
    /// The node that sent the conflicting hello.
    pub new_node: String,
    /// The epoch in the conflicting hello.
    pub new_epoch: i64,
    /// When the conflict happened.
    pub at_ms: i64,
}

/// A ban of an account, as `GET /sim/bans` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanRecord {
    /// The banned account.
    pub account: String,
    /// When the ban started (the third conflict).
    pub started_at_ms: i64,
    /// When the ban ends on its own.
    pub until_ms: i64,
    /// When `POST /sim/reset` lifted it early, if it did.
    pub lifted_at_ms: Option<i64>,
    /// Whether the ban is in force now.
    pub active: bool,
}

/// One received send, resends included, as `GET /sim/messages` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The client's message id, the idempotency key within the account.
    pub id: String,
    /// The recipient.
    pub to: String,
    /// A text's body or a medium's caption; empty for other messages.
    pub body: String,
    /// The message object as received (`type` and its object).
    pub message: Value,
    /// The id's latest status: `accepted` (acked, no receipt yet), `sent`,
    /// `delivered`, `read` or `failed`.
    pub status: String,
    /// Why it failed (on-prem errors); empty unless `status` is `failed`.
    #[serde(default)]
    pub errors: Vec<UpstreamError>,
    /// When each receipt of the id was emitted, by status (unix ms): where a
    /// callback's latency is measured from.
    #[serde(default)]
    pub status_at_ms: BTreeMap<String, i64>,
    /// The sending account.
    pub account: String,
    /// The shard of the session it came on.
    pub shard: u32,
    /// The session it came on.
    pub session: String,
    /// The node of that session.
    pub node: String,
    /// The epoch of that session.
    pub epoch: i64,
    /// When the sim received it.
    pub received_at_ms: i64,
    /// The server id it was acked with (the same for every resend).
    pub server_id: String,
    /// Whether the id had been received before.
    pub resend: bool,
    /// Whether this receipt delivered the message to the recipient.
    pub delivered: bool,
}

/// The counters of `GET /sim/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Conflicts recorded; must stay 0 in a correct cluster.
    pub conflicts: u64,
    /// Bans issued; must stay 0 in a correct cluster.
    pub bans: u64,
    /// Bans in force now.
    pub bans_active: u64,
    /// Sessions ever welcomed.
    pub sessions_opened: u64,
    /// Sessions open now.
    pub sessions_open: u64,
    /// Hellos refused (banned, refuse fault, invalid shard).
    pub sessions_refused: u64,
    /// Sends recorded, resends included.
    pub messages_received: u64,
    /// Distinct (account, id) pairs received, failed ones included.
    pub unique_messages: u64,
    /// Distinct (account, id) pairs that failed the network's checks: acked,
    /// answered with a `failed` receipt, never delivered.
    #[serde(default)]
    pub messages_failed: u64,
    /// Sends whose id had been received before.
    pub resends: u64,
    /// Deliveries of an id that was already delivered; must stay 0.
    pub duplicate_deliveries: u64,
    /// Sends swallowed by the drop fault.
    pub sends_dropped: u64,
    /// Inbound messages injected through the API.
    pub inbound_injected: u64,
    /// Receipts and inbound messages waiting for a session of their shard.
    pub frames_queued: u64,
    /// `MarkRead` frames received, resends included.
    #[serde(default)]
    pub mark_reads: u64,
    /// Media uploads that ended in `MediaStored`.
    #[serde(default)]
    pub media_stored: u64,
    /// Media uploads that ended in `MediaRefused`.
    #[serde(default)]
    pub media_refused: u64,
    /// `CheckContacts` frames answered.
    #[serde(default)]
    pub contact_checks: u64,
}

/// What the state decided about a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The session was already closed (kicked while the send was in flight):
    /// a closed session carries nothing, so the send is ignored.
    SessionClosed,
    /// The drop fault swallowed it: no record, no ack.
    Dropped,
    /// Recorded: ack with `server_id` after `ack_delay_ms`; receipts follow
    /// only when this is not a resend: `failed` with `errors` when there are
    /// any, else `sent`, `delivered` and `read`.
    Accepted {
        /// The server id to ack with.
        server_id: String,
        /// Whether the id was seen before.
        resend: bool,
        /// How long the ack-delay fault holds the ack back.
        ack_delay_ms: u64,
        /// Why the network refused to deliver the message; empty when it does.
        errors: Vec<UpstreamError>,
    },
}

/// The answer to `POST /sim/inbound`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectedInbound {
    /// The id of the inbound message.
    pub id: String,
    /// The shard it was routed to.
    pub shard: u32,
    /// True when no session of that shard was open, so it waits for one.
    pub queued: bool,
    /// The bytes of a media message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<InjectedMedia>,
}

/// A ban as stored; [`BanRecord`] adds whether it is in force.
#[derive(Debug, Clone)]
struct Ban {
    account: String,
    started_at_ms: i64,
    until_ms: i64,
    lifted_at_ms: Option<i64>,
}

impl Ban {
    fn is_active(&self, now_ms: i64) -> bool {
        self.lifted_at_ms.is_none() && now_ms < self.until_ms
    }
}

/// Counters that are not the length of some record list.
#[derive(Debug, Default)]
struct Counters {
    sessions_refused: u64,
    resends: u64,
    duplicate_deliveries: u64,
    sends_dropped: u64,
    inbound_injected: u64,
}

/// All the sim knows: live routing, the full history, and the faults.
#[derive(Debug)]
pub struct SimState {
    timings: Timings,
    faults: Faults,
    /// Every session ever, in opening order.
    sessions: Vec<SessionRecord>,
    session_index: HashMap<String, usize>,
    /// The open session of each (account, shard). A session is open exactly
    /// while it is here.
    slots: HashMap<Slot, String>,
    outboxes: HashMap<String, Outbox>,
    /// Frames for an (account, shard) with no open session, flushed on the
    /// next welcome.
    pending: HashMap<Slot, VecDeque<ServerFrame>>,
    conflicts: Vec<ConflictRecord>,
    /// Recent conflict times per account that have not yet led to a ban.
    strikes: HashMap<String, Vec<i64>>,
    bans: Vec<Ban>,
    /// The shard count of each account's latest session, to route inbound
    /// messages that name no shard.
    shard_counts: HashMap<String, u32>,
    messages: Vec<MessageRecord>,
    /// (account, client id) → server id: the idempotency table.
    server_ids: HashMap<(String, String), String>,
    delivered: HashSet<(String, String)>,
    /// Recipient → delivered ids, in order of first receipt.
    deliveries: BTreeMap<String, Vec<String>>,
    /// (account, client id) → why the network refused it.
    failures: HashMap<(String, String), Vec<UpstreamError>>,
    /// (account, client id) → the latest receipt emitted for it.
    statuses: HashMap<(String, String), ReceiptStatus>,
    /// (account, client id) → when each of its receipts was emitted.
    status_times: HashMap<(String, String), BTreeMap<String, i64>>,
    contacts: Directory,
    templates: TemplateRegistry,
    media: MediaStore,
    inbox: Inbox,
    counters: Counters,
}

impl SimState {
    /// An empty network.
    pub fn new(timings: Timings) -> Self {
        SimState {
            timings,
            faults: Faults::default(),
            sessions: Vec::new(),
            session_index: HashMap::new(),
            slots: HashMap::new(),
            outboxes: HashMap::new(),
            pending: HashMap::new(),
            conflicts: Vec::new(),
            strikes: HashMap::new(),
            bans: Vec::new(),
            shard_counts: HashMap::new(),
            messages: Vec::new(),
            server_ids: HashMap::new(),
            delivered: HashSet::new(),
            deliveries: BTreeMap::new(),
            failures: HashMap::new(),
            statuses: HashMap::new(),
            status_times: HashMap::new(),
            contacts: Directory::default(),
            templates: TemplateRegistry::default(),
            media: MediaStore::default(),
            inbox: Inbox::default(),
            counters: Counters::default(),
        }
    }

    /// Decides a hello. On success the session holds its (account, shard),
    /// `Welcome` and then every queued frame of that shard are already in
    /// `outbox`, and the id is returned. A session already holding the shard
    /// is kicked and a conflict recorded first. `Err` carries the refusal
    /// reason.
    pub fn open_session(&mut self, claim: SessionClaim, outbox: Outbox, now_ms: i64) -> Result<String, String> {
        if claim.account.is_empty() || claim.shards == 0 || claim.shard >= claim.shards {
            return Err(self.refuse(format!(
                "bad hello: shard {} of {} for account {:?}",
                claim.shard, claim.shards, claim.account
            )));
        }
        if self.is_banned(&claim.account, now_ms) {
            return Err(self.refuse("banned".into()));
        }
        if self.faults.refuse_sessions {
            return Err(self.refuse("refused".into()));
        }
        let id = format!("s-{}", self.sessions.len() + 1);
        let slot = (claim.account.clone(), claim.shard);
        if let Some(old_id) = self.slots.get(&slot).cloned() {
            if self.keepalive_expired(&old_id, now_ms) {
                // The holder's own task has not noticed yet (its timer runs
                // late under load), but the network already counts it as
                // gone: replacing it is no conflict.
                self.kick(&old_id, "keepalive timeout", now_ms);
            } else if self.record_conflict(&old_id, &id, &claim, now_ms) {
                return Err(self.refuse("banned".into()));
            }
        }

        tracing::info!(
            session = %id, account = %claim.account, shard = claim.shard,
            node = %claim.node, epoch = claim.epoch,
            "session opened"
        );
        self.session_index.insert(id.clone(), self.sessions.len());
        self.sessions.push(SessionRecord {
            id: id.clone(),
            account: claim.account.clone(),
            shard: claim.shard,
            shards: claim.shards,
            node: claim.node,
            epoch: claim.epoch,
            opened_at_ms: now_ms,
            last_pong_ms: None,
            closed_at_ms: None,
            close_reason: None,
            open: true,
        });
        self.shard_counts.insert(claim.account, claim.shards);
        // The receiver is alive: the caller holds it and reads it only after
        // this returns, so these sends cannot fail.
        let _ = outbox.send(ServerFrame::Welcome { session: id.clone() });
        for frame in self.pending.remove(&slot).unwrap_or_default() {
            let _ = outbox.send(frame);
        }
        self.outboxes.insert(id.clone(), outbox);
        self.slots.insert(slot, id.clone());
        Ok(id)
    }

    /// Closes session `id` and releases its (account, shard). Idempotent:
    /// closing a session that is already closed (say, kicked for a conflict
    /// and now seeing its EOF) changes nothing, so it can never release a
    /// newer session's shard. Returns whether this call closed it.
    pub fn close_session(&mut self, id: &str, reason: &str, now_ms: i64) -> bool {
        self.release(id, reason, now_ms).is_some()
    }

    /// Records a pong: session `id` is alive for another session timeout.
    pub fn pong(&mut self, id: &str, now_ms: i64) {
        if let Some(&index) = self.session_index.get(id) {
            self.sessions[index].last_pong_ms = Some(now_ms);
        }
    }

    /// Routes the receipts and inbound messages that were put in a session's
    /// outbox but never written, because the session closed first, to its
    /// (account, shard) again. Acks are dropped: they belong to the closed
    /// session only.
    pub fn requeue_unsent(&mut self, id: &str, frames: Vec<ServerFrame>) {
        let Some(slot) = self.record(id).map(|s| (s.account.clone(), s.shard)) else {
            return;
        };
        for frame in frames {
            if matches!(frame, ServerFrame::Receipt { .. } | ServerFrame::Inbound { .. }) {
                self.route(&slot, frame);
            }
        }
    }

    /// Records a send that arrived on session `session`: assigns or reuses the
    /// server id and, if its id is new for the account, judges it against the
    /// network's rules and delivers it or records why not. A resend keeps the
    /// first verdict.
    pub fn receive_send(&mut self, session: &str, id: &str, to: &str, message: &Value, now_ms: i64) -> SendOutcome {
        let Some(from) = self.record(session).filter(|s| s.open).cloned() else {
            return SendOutcome::SessionClosed;
        };
        if self.faults.drop_sends {
            self.counters.sends_dropped += 1;
            return SendOutcome::Dropped;
        }
        let key = (from.account.clone(), id.to_owned());
        let (server_id, resend) = match self.server_ids.get(&key) {
            Some(server_id) => (server_id.clone(), true),
            None => {
                let server_id = format!("srv-{}", Uuid::new_v4().simple());
                self.server_ids.insert(key.clone(), server_id.clone());
                (server_id, false)
            }
        };
        let errors = if resend {
            self.counters.resends += 1;
            self.failures.get(&key).cloned().unwrap_or_default()
        } else {
            match self.judge(&from.account, to, message) {
                Ok(()) => {
                    self.deliver(key, to);
                    Vec::new()
                }
                Err(error) => {
                    tracing::info!(%id, %to, code = error.code, details = ?error.details, "message failed");
                    self.failures.insert(key, vec![error.clone()]);
                    vec![error]
                }
            }
        };
        let delivered = !resend && errors.is_empty();
        self.messages.push(MessageRecord {
            id: id.to_owned(),
            to: to.to_owned(),
            body: messages::summary(message),
            message: message.clone(),
            // Filled from the latest receipt when the records are read.
            status: String::new(),
            errors: errors.clone(),
            status_at_ms: BTreeMap::new(),
            account: from.account,
            shard: from.shard,
            session: from.id,
            node: from.node,
            epoch: from.epoch,
            received_at_ms: now_ms,
            server_id: server_id.clone(),
            resend,
            delivered,
        });
        SendOutcome::Accepted { server_id, resend, ack_delay_ms: self.faults.ack_delay_ms, errors }
    }

    /// The network's verdict on a new message of `account`: the recipient
    /// exists, the message is well-formed, its template is registered with
    /// that many parameters, and every medium it names was uploaded.
    fn judge(&self, account: &str, to: &str, message: &Value) -> Result<(), UpstreamError> {
        self.contacts.require(to)?;
        let needs = messages::check(message)?;
        if let Some(template) = &needs.template {
            self.templates.require(template)?;
        }
        for media_id in &needs.media {
            self.media.require(account, media_id)?;
        }
        Ok(())
    }

    /// Records a `MarkRead` that arrived on session `session`. It is acked
    /// like a send (same server id for a resend) and gets no receipt.
    pub fn receive_mark_read(&mut self, session: &str, id: &str, message_id: &str, now_ms: i64) -> SendOutcome {
        let Some(from) = self.record(session).filter(|s| s.open).cloned() else {
            return SendOutcome::SessionClosed;
        };
        let (server_id, resend) = self.inbox.mark_read(&from, id, message_id, now_ms);
        SendOutcome::Accepted { server_id, resend, ack_delay_ms: self.faults.ack_delay_ms, errors: Vec::new() }
    }

    /// Takes a media chunk that arrived on session `session`; returns the
    /// answer for that session when the upload ended. Chunks on a closed
    /// session are ignored.
    pub fn receive_media_chunk(&mut self, session: &str, chunk: Chunk, now_ms: i64) -> Option<ServerFrame> {
        let account = self.record(session).filter(|s| s.open)?.account.clone();
        self.media.receive_chunk(&account, session, chunk, now_ms)
    }

    /// Answers a `CheckContacts` that arrived on session `session`; `None` on
    /// a closed session.
    pub fn check_contacts(&mut self, session: &str, inputs: &[String]) -> Option<Vec<ContactCheck>> {
        self.record(session).filter(|s| s.open)?;
        Some(self.contacts.check(inputs))
    }

    /// Sends a receipt for message `id` to the current session of
    /// (account, shard), or queues it until one opens.
    pub fn emit_receipt(
        &mut self,
        account: &str,
        shard: u32,
        id: &str,
        status: ReceiptStatus,
        errors: Vec<UpstreamError>,
        now_ms: i64,
    ) {
        let key = (account.to_owned(), id.to_owned());
        self.status_times.entry(key.clone()).or_default().insert(status.as_str().to_owned(), now_ms);
        self.statuses.insert(key, status);
        let frame = ServerFrame::Receipt { id: id.to_owned(), status, timestamp: now_ms, errors };
        self.route(&(account.to_owned(), shard), frame);
    }

    /// Injects a message from a user to an account. Without a shard, the
    /// network picks one from the sender and the shard count of the account's
    /// latest session, so one sender always lands on one shard.
    pub fn inject_inbound(&mut self, inbound: NewInbound, now_ms: i64) -> InjectedInbound {
        let shards = self.shard_counts.get(&inbound.account).copied().unwrap_or(1);
        let shard = inbound.shard.unwrap_or_else(|| shard_of_sender(&inbound.from, shards));
        let id = format!("in-{}", Uuid::new_v4().simple());
        self.inbox.record(&id, shard, &inbound, now_ms);
        let media = inbound.media.as_ref().map(InjectedMedia::of);
        let slot = (inbound.account, shard);
        let frame = ServerFrame::Inbound {
            id: id.clone(),
            from: inbound.from,
            timestamp: now_ms,
            message: inbound.message,
            profile_name: inbound.profile_name,
            media: inbound.media,
        };
        self.counters.inbound_injected += 1;
        let queued = self.route(&slot, frame);
        InjectedInbound { id, shard, queued, media }
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }

    /// Applies a partial fault update and returns the faults now in force.
    pub fn update_faults(&mut self, update: FaultsUpdate) -> Faults {
        self.faults.apply(update);
        tracing::info!(faults = ?self.faults, "faults updated");
        self.faults.clone()
    }

    /// The raw lines of the `raw_lines` fault, for the session about to write:
    /// each goes out once, to whichever session takes it.
    pub fn take_raw_lines(&mut self) -> Vec<String> {
        self.faults.take_raw_lines()
    }

    /// Lifts every ban in force and forgets conflicts that had not banned yet,
    /// so manual play can start over. The history stays. Returns how many
    /// bans were lifted.
    pub fn lift_bans(&mut self, now_ms: i64) -> usize {
        self.strikes.clear();
        let mut lifted = 0;
        for ban in self.bans.iter_mut().filter(|b| b.is_active(now_ms)) {
            ban.lifted_at_ms = Some(now_ms);
            lifted += 1;
        }
        tracing::info!(lifted, "bans lifted by reset");
        lifted
    }

    /// The counters.
    pub fn stats(&self, now_ms: i64) -> SimStats {
        SimStats {
            conflicts: self.conflicts.len() as u64,
            bans: self.bans.len() as u64,
            bans_active: self.bans.iter().filter(|b| b.is_active(now_ms)).count() as u64,
            sessions_opened: self.sessions.len() as u64,
            sessions_open: self.slots.len() as u64,
            sessions_refused: self.counters.sessions_refused,
            messages_received: self.messages.len() as u64,
            unique_messages: self.server_ids.len() as u64,
            messages_failed: self.failures.len() as u64,
            resends: self.counters.resends,
            duplicate_deliveries: self.counters.duplicate_deliveries,
            sends_dropped: self.counters.sends_dropped,
            inbound_injected: self.counters.inbound_injected,
            frames_queued: self.pending.values().map(|q| q.len() as u64).sum(),
            mark_reads: self.inbox.marks_received(),
            media_stored: self.media.uploads_stored(),
            media_refused: self.media.uploads_refused(),
            contact_checks: self.contacts.checks(),
        }
    }

    /// Every session ever, in opening order.
    pub fn sessions(&self) -> Vec<SessionRecord> {
        self.sessions.clone()
    }

    /// Every conflict, oldest first.
    pub fn conflicts(&self) -> Vec<ConflictRecord> {
        self.conflicts.clone()
    }

    /// Every ban ever issued, oldest first.
    pub fn bans(&self, now_ms: i64) -> Vec<BanRecord> {
        self.bans
            .iter()
            .map(|ban| BanRecord {
                account: ban.account.clone(),
                started_at_ms: ban.started_at_ms,
                until_ms: ban.until_ms,
                lifted_at_ms: ban.lifted_at_ms,
                active: ban.is_active(now_ms),
            })
            .collect()
    }

    /// Every received send, resends included, in arrival order, each with
    /// its id's latest status.
    pub fn messages(&self) -> Vec<MessageRecord> {
        let mut messages = self.messages.clone();
        for message in &mut messages {
            let key = (message.account.clone(), message.id.clone());
            message.status = self.statuses.get(&key).map_or("accepted", |s| s.as_str()).to_owned();
            message.status_at_ms = self.status_times.get(&key).cloned().unwrap_or_default();
        }
        messages
    }

    /// The directory of numbers, to read and change through the API.
    pub fn contacts(&mut self) -> &mut Directory {
        &mut self.contacts
    }

    /// The template registry, to read and change through the API.
    pub fn templates(&mut self) -> &mut TemplateRegistry {
        &mut self.templates
    }

    /// The media store, to read through the API.
    pub fn media(&self) -> &MediaStore {
        &self.media
    }

    /// Injected messages and read marks, to read through the API.
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// Recipient → delivered ids, in delivery order.
    pub fn deliveries(&self) -> BTreeMap<String, Vec<String>> {
        self.deliveries.clone()
    }

    fn record(&self, id: &str) -> Option<&SessionRecord> {
        self.session_index.get(id).map(|&i| &self.sessions[i])
    }

    /// Whether open session `id` has gone a whole session timeout without a
    /// pong (counting from its welcome).
    fn keepalive_expired(&self, id: &str, now_ms: i64) -> bool {
        self.record(id).is_some_and(|s| {
            let alive_at = s.last_pong_ms.unwrap_or(s.opened_at_ms);
            now_ms - alive_at >= self.timings.session_timeout_ms
        })
    }

    fn is_banned(&self, account: &str, now_ms: i64) -> bool {
        self.bans.iter().any(|b| b.account == account && b.is_active(now_ms))
    }

    fn refuse(&mut self, reason: String) -> String {
        self.counters.sessions_refused += 1;
        reason
    }

    /// Kicks `old_id` for the hello `claim` (which will open as `new_id`
    /// unless this bans the account) and records the conflict. Returns
    /// whether the account is now banned.
    fn record_conflict(&mut self, old_id: &str, new_id: &str, claim: &SessionClaim, now_ms: i64) -> bool {
        self.kick(old_id, "conflict", now_ms);
        let strikes = self.strikes.entry(claim.account.clone()).or_default();
        strikes.retain(|&at| now_ms - at < CONFLICT_WINDOW_MS);
        strikes.push(now_ms);
        let banned = strikes.len() >= CONFLICTS_TO_BAN;
        let old = self.record(old_id).expect("an open slot names a recorded session").clone();
        tracing::warn!(
            account = %claim.account, shard = claim.shard,
            old_session = %old.id, old_node = %old.node, old_epoch = old.epoch,
            new_node = %claim.node, new_epoch = claim.epoch,
            "conflict: a second session opened for a shard that had one; kicked the old session"
        );
        self.conflicts.push(ConflictRecord {
            account: claim.account.clone(),
            shard: claim.shard,
            old_session: old.id,
            old_node: old.node,
            old_epoch: old.epoch,
            new_session: (!banned).then(|| new_id.to_owned()),
            new_node: claim.node.clone(),
            new_epoch: claim.epoch,
            at_ms: now_ms,
        });
        if banned {
            self.ban(&claim.account, now_ms);
        }
        banned
    }

    /// Bans `account` and kicks every session it still has open.
    fn ban(&mut self, account: &str, now_ms: i64) {
        self.strikes.remove(account);
        let until_ms = now_ms + self.timings.ban_duration_ms;
        tracing::warn!(%account, until_ms, "banned: {CONFLICTS_TO_BAN} conflicts within 10 minutes");
        self.bans.push(Ban { account: account.to_owned(), started_at_ms: now_ms, until_ms, lifted_at_ms: None });
        let open: Vec<String> =
            self.slots.iter().filter(|((owner, _), _)| owner == account).map(|(_, id)| id.clone()).collect();
        for id in open {
            self.kick(&id, "banned", now_ms);
        }
    }

    /// Closes a session and tells its task, which writes `Kicked` and hangs up.
    fn kick(&mut self, id: &str, reason: &str, now_ms: i64) {
        if let Some(outbox) = self.release(id, reason, now_ms) {
            // A task that is already gone has nobody left to tell.
            let _ = outbox.send(ServerFrame::Kicked { reason: reason.to_owned() });
        }
    }

    /// Marks the session closed and frees its shard; returns its outbox if it
    /// was open.
    fn release(&mut self, id: &str, reason: &str, now_ms: i64) -> Option<Outbox> {
        let index = *self.session_index.get(id)?;
        let session = &mut self.sessions[index];
        if !session.open {
            return None;
        }
        session.open = false;
        session.closed_at_ms = Some(now_ms);
        session.close_reason = Some(reason.to_owned());
        tracing::info!(session = %id, reason, "session closed");
        let slot = (session.account.clone(), session.shard);
        self.media.forget_session(id);
        // Keyed by session id: only the slot's own holder may free it.
        if self.slots.get(&slot).is_some_and(|holder| holder == id) {
            self.slots.remove(&slot);
        }
        self.outboxes.remove(id)
    }

    /// Puts `frame` in the outbox of the slot's open session, or queues it.
    /// Returns whether it was queued.
    fn route(&mut self, slot: &Slot, frame: ServerFrame) -> bool {
        let frame = match self.slots.get(slot).and_then(|id| self.outboxes.get(id)) {
            Some(outbox) => match outbox.send(frame) {
                Ok(()) => return false,
                // The session's task ended and has not closed it yet; keep the
                // frame for the next session.
                Err(SendError(frame)) => frame,
            },
            None => frame,
        };
        self.pending.entry(slot.clone()).or_default().push_back(frame);
        true
    }

    /// Delivers message `key` to `to`. Deduplication happens before this is
    /// called; the check here is the judge's own count of any delivery that
    /// slipped through twice.
    fn deliver(&mut self, key: (String, String), to: &str) {
        let id = key.1.clone();
        if !self.delivered.insert(key) {
            self.counters.duplicate_deliveries += 1;
        }
        self.deliveries.entry(to.to_owned()).or_default().push(id);
    }
}

/// The shard the network gives messages from `from`: the first 8 bytes of
/// SHA-256(from), big-endian, modulo `shards`.
fn shard_of_sender(from: &str, shards: u32) -> u32 {
    let digest = Sha256::digest(from.as_bytes());
    let head: [u8; 8] = digest[..8].try_into().expect("SHA-256 is 32 bytes");
    (u64::from_be_bytes(head) % u64::from(shards.max(1))) as u32
}

#[cfg(test)]
mod tests;
