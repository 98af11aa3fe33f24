//! The sim's rulebook: which session holds each (account, shard), when a hello
//! is a conflict, when an account is banned, which message ids were already
//! seen, and where a frame for an (account, shard) goes when no session is open.
//!
//! Everything here is plain data behind methods that take `now_ms`, so every
//! rule is unit-tested without sockets or clocks. The session tasks and the
//! inspection API call these methods under one mutex; each call is one atomic
//! decision, which is what makes the sim's records trustworthy as a judge.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::{error::SendError, UnboundedSender};
use uuid::Uuid;

use super::faults::{Faults, FaultsUpdate};
use crate::upstream::protocol::{ReceiptStatus, ServerFrame};

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
    /// The text.
    pub body: String,
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
    /// Distinct (account, id) pairs received.
    pub unique_messages: u64,
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
    /// only when this is not a resend.
    Accepted {
        /// The server id to ack with.
        server_id: String,
        /// Whether the id was seen before.
        resend: bool,
        /// How long the ack-delay fault holds the ack back.
        ack_delay_ms: u64,
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
    /// server id and delivers the message if its id is new for the account.
    pub fn receive_send(&mut self, session: &str, id: &str, to: &str, body: &str, now_ms: i64) -> SendOutcome {
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
        if resend {
            self.counters.resends += 1;
        } else {
            self.deliver(key, to);
        }
        self.messages.push(MessageRecord {
            id: id.to_owned(),
            to: to.to_owned(),
            body: body.to_owned(),
            account: from.account,
            shard: from.shard,
            session: from.id,
            node: from.node,
            epoch: from.epoch,
            received_at_ms: now_ms,
            server_id: server_id.clone(),
            resend,
            delivered: !resend,
        });
        SendOutcome::Accepted { server_id, resend, ack_delay_ms: self.faults.ack_delay_ms }
    }

    /// Sends a receipt for message `id` to the current session of
    /// (account, shard), or queues it until one opens.
    pub fn emit_receipt(&mut self, account: &str, shard: u32, id: &str, status: ReceiptStatus, now_ms: i64) {
        let frame = ServerFrame::Receipt { id: id.to_owned(), status, timestamp: now_ms };
        self.route(&(account.to_owned(), shard), frame);
    }

    /// Injects a message from user `from` to `account`. Without a shard, the
    /// network picks one from `from` and the shard count of the account's
    /// latest session, so one sender always lands on one shard.
    pub fn inject_inbound(
        &mut self,
        account: &str,
        shard: Option<u32>,
        from: &str,
        body: &str,
        now_ms: i64,
    ) -> InjectedInbound {
        let shards = self.shard_counts.get(account).copied().unwrap_or(1);
        let shard = shard.unwrap_or_else(|| shard_of_sender(from, shards));
        let id = format!("in-{}", Uuid::new_v4().simple());
        let frame =
            ServerFrame::Inbound { id: id.clone(), from: from.to_owned(), body: body.to_owned(), timestamp: now_ms };
        self.counters.inbound_injected += 1;
        let queued = self.route(&(account.to_owned(), shard), frame);
        InjectedInbound { id, shard, queued }
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
            resends: self.counters.resends,
            duplicate_deliveries: self.counters.duplicate_deliveries,
            sends_dropped: self.counters.sends_dropped,
            inbound_injected: self.counters.inbound_injected,
            frames_queued: self.pending.values().map(|q| q.len() as u64).sum(),
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

    /// Every received send, resends included, in arrival order.
    pub fn messages(&self) -> Vec<MessageRecord> {
        self.messages.clone()
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
        // Keyed by session id: only the slot's own holder may free it.
        if self.slots.get(&slot).is_some_and(|holder| holder == id) {
            self.slots.remove(&slot);
        }
        self.outboxes.remove(id)
    }

    /// Puts `frame` in the outbox of the slot's open session, or queues it.
    /// Returns whether it was queued.
    fn route(&mut self, slot: &Slot, frame: ServerFrame) -> bool {
        let outbox = self.slots.get(slot).and_then(|id| self.outboxes.get(id));
        let frame = match outbox.map(|o| o.send(frame.clone())) {
            Some(Ok(())) => return false,
            // The session's task ended and has not closed it yet; keep the
            // frame for the next session.
            Some(Err(SendError(frame))) => frame,
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
mod tests {
    use super::*;
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    const BAN_MS: i64 = 60_000;
    /// Longer than the conflict window, so that no test session expires
    /// unless a test says so.
    const TIMINGS: Timings = Timings { session_timeout_ms: 24 * 3600 * 1000, ban_duration_ms: BAN_MS };

    fn claim(account: &str, shard: u32, node: &str, epoch: i64) -> SessionClaim {
        SessionClaim { account: account.into(), shard, shards: 4, node: node.into(), epoch }
    }

    fn open(
        state: &mut SimState,
        claim: SessionClaim,
        now_ms: i64,
    ) -> (Result<String, String>, UnboundedReceiver<ServerFrame>) {
        let (outbox, frames) = unbounded_channel();
        (state.open_session(claim, outbox, now_ms), frames)
    }

    fn drain(frames: &mut UnboundedReceiver<ServerFrame>) -> Vec<ServerFrame> {
        std::iter::from_fn(|| frames.try_recv().ok()).collect()
    }

    fn kicked(reason: &str) -> ServerFrame {
        ServerFrame::Kicked { reason: reason.into() }
    }

    #[test]
    fn second_hello_for_a_shard_kicks_the_first_and_records_both_sides() {
        let mut state = SimState::new(TIMINGS);
        let (first, mut first_frames) = open(&mut state, claim("a", 0, "n1", 1), 10);
        let (second, mut second_frames) = open(&mut state, claim("a", 0, "n2", 2), 20);
        let (first, second) = (first.unwrap(), second.unwrap());

        assert_eq!(drain(&mut first_frames), vec![ServerFrame::Welcome { session: first.clone() }, kicked("conflict")]);
        assert_eq!(drain(&mut second_frames), vec![ServerFrame::Welcome { session: second.clone() }]);
        assert_eq!(
            state.conflicts(),
            vec![ConflictRecord {
                account: "a".into(),
                shard: 0,
                old_session: first.clone(),
                old_node: "n1".into(),
                old_epoch: 1,
                new_session: Some(second),
                new_node: "n2".into(),
                new_epoch: 2,
                at_ms: 20,
            }]
        );
        let sessions = state.sessions();
        assert_eq!(sessions[0].close_reason.as_deref(), Some("conflict"));
        assert!(sessions[1].open);
    }

    #[test]
    fn hello_after_the_holder_missed_a_session_timeout_of_pongs_is_no_conflict() {
        let timings = Timings { session_timeout_ms: 1000, ..TIMINGS };
        let mut state = SimState::new(timings);
        let (_, mut old_frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
        let (_, _) = open(&mut state, claim("a", 1, "n1", 1), 0);
        state.pong("s-1", 500);

        let (early, _early_frames) = open(&mut state, claim("a", 1, "n2", 2), 999);
        let (late, _late_frames) = open(&mut state, claim("a", 0, "n2", 2), 1500);

        assert!(early.is_ok() && late.is_ok());
        assert_eq!(state.conflicts().len(), 1, "only the hello within the timeout conflicts");
        assert_eq!(state.conflicts()[0].shard, 1);
        assert_eq!(drain(&mut old_frames).last(), Some(&kicked("keepalive timeout")));
        assert_eq!(state.sessions()[0].close_reason.as_deref(), Some("keepalive timeout"));
    }

    #[test]
    fn late_close_of_a_kicked_session_leaves_the_new_session_open() {
        let mut state = SimState::new(TIMINGS);
        let (first, _f) = open(&mut state, claim("a", 0, "n1", 1), 10);
        let (second, _s) = open(&mut state, claim("a", 0, "n2", 2), 20);

        assert!(!state.close_session(&first.unwrap(), "eof", 30));

        let sessions = state.sessions();
        assert_eq!(sessions[0].close_reason.as_deref(), Some("conflict"), "first close wins");
        assert!(sessions[1].open);
        assert_eq!(state.stats(30).sessions_open, 1);
        let after = state.receive_send(&second.unwrap(), "m1", "u", "hi", 40);
        assert!(matches!(after, SendOutcome::Accepted { .. }), "{after:?}");
    }

    #[test]
    fn different_shards_and_accounts_never_conflict() {
        let mut state = SimState::new(TIMINGS);
        for (account, shard) in [("a", 0), ("a", 1), ("b", 0)] {
            assert!(open(&mut state, claim(account, shard, "n1", 1), 10).0.is_ok());
        }
        let stats = state.stats(10);
        assert_eq!((stats.conflicts, stats.sessions_open), (0, 3));
    }

    #[test]
    fn third_conflict_in_ten_minutes_bans_refuses_and_kicks_the_account() {
        let mut state = SimState::new(TIMINGS);
        let (_other_shard, mut other_frames) = open(&mut state, claim("a", 1, "n1", 1), 0);
        let mut receivers = Vec::new();
        for t in 0..3 {
            let (id, frames) = open(&mut state, claim("a", 0, "n1", t), t * 1000);
            id.unwrap();
            receivers.push(frames);
        }
        let (third, _) = open(&mut state, claim("a", 0, "n2", 9), 5000);

        assert_eq!(third, Err("banned".into()));
        assert_eq!(state.conflicts().len(), 3);
        assert_eq!(state.conflicts()[2].new_session, None);
        assert_eq!(drain(&mut other_frames).last(), Some(&kicked("banned")));
        assert_eq!(drain(&mut receivers[2]).last(), Some(&kicked("conflict")));
        assert_eq!(state.stats(5000).sessions_open, 0);
        assert_eq!(open(&mut state, claim("a", 3, "n1", 1), 6000).0, Err("banned".into()));
        assert!(open(&mut state, claim("b", 0, "n1", 1), 6000).0.is_ok(), "other accounts unaffected");
        let bans = state.bans(6000);
        assert_eq!((bans.len(), bans[0].active, bans[0].until_ms), (1, true, 5000 + BAN_MS));
    }

    #[test]
    fn conflicts_spread_over_more_than_ten_minutes_do_not_ban() {
        let mut state = SimState::new(TIMINGS);
        let _receivers: Vec<_> =
            (0..4).map(|i| open(&mut state, claim("a", 0, "n1", i), i * CONFLICT_WINDOW_MS / 2).1).collect();
        let stats = state.stats(2 * CONFLICT_WINDOW_MS);
        assert_eq!((stats.conflicts, stats.bans), (3, 0));
    }

    #[test]
    fn ban_ends_after_ban_duration_or_on_reset() {
        let mut state = SimState::new(TIMINGS);
        let _receivers: Vec<_> = (0..4).map(|i| open(&mut state, claim("a", 0, "n1", i), i).1).collect();
        assert_eq!(open(&mut state, claim("a", 0, "n1", 9), BAN_MS).0, Err("banned".into()));
        assert!(open(&mut state, claim("a", 0, "n1", 9), 3 + BAN_MS).0.is_ok());

        let mut state = SimState::new(TIMINGS);
        let _receivers: Vec<_> = (0..4).map(|i| open(&mut state, claim("a", 0, "n1", i), i).1).collect();
        assert_eq!(state.lift_bans(10), 1);
        assert!(open(&mut state, claim("a", 0, "n1", 9), 11).0.is_ok());
        assert_eq!(state.bans(11)[0].lifted_at_ms, Some(10));
    }

    #[test]
    fn resend_reuses_server_id_counts_a_resend_and_is_not_delivered_again() {
        let mut state = SimState::new(TIMINGS);
        let (session, _frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
        let session = session.unwrap();

        let first = state.receive_send(&session, "m1", "u1", "hi", 1);
        let again = state.receive_send(&session, "m1", "u1", "hi", 2);

        let SendOutcome::Accepted { server_id, resend: false, .. } = first else { panic!("{first:?}") };
        assert_eq!(again, SendOutcome::Accepted { server_id, resend: true, ack_delay_ms: 0 });
        let stats = state.stats(2);
        assert_eq!(
            (stats.messages_received, stats.unique_messages, stats.resends, stats.duplicate_deliveries),
            (2, 1, 1, 0)
        );
        assert_eq!(state.deliveries()["u1"], vec!["m1"]);
        let flags: Vec<_> = state.messages().iter().map(|m| (m.resend, m.delivered)).collect();
        assert_eq!(flags, vec![(false, true), (true, false)]);
    }

    #[test]
    fn same_id_from_two_accounts_is_two_messages() {
        let mut state = SimState::new(TIMINGS);
        let (a, _fa) = open(&mut state, claim("a", 0, "n1", 1), 0);
        let (b, _fb) = open(&mut state, claim("b", 0, "n1", 1), 0);
        state.receive_send(&a.unwrap(), "m1", "u1", "hi", 1);
        state.receive_send(&b.unwrap(), "m1", "u1", "hi", 1);
        assert_eq!(state.stats(1).resends, 0);
        assert_eq!(state.stats(1).duplicate_deliveries, 0);
    }

    #[test]
    fn deliveries_keep_the_order_of_first_receipt_per_recipient() {
        let mut state = SimState::new(TIMINGS);
        let (session, _frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
        let session = session.unwrap();
        for (id, to) in [("m1", "u1"), ("m2", "u2"), ("m3", "u1"), ("m1", "u1"), ("m4", "u1")] {
            state.receive_send(&session, id, to, "x", 1);
        }
        assert_eq!(state.deliveries()["u1"], vec!["m1", "m3", "m4"]);
        assert_eq!(state.deliveries()["u2"], vec!["m2"]);
    }

    #[test]
    fn send_on_a_closed_session_is_ignored() {
        let mut state = SimState::new(TIMINGS);
        let (session, _frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
        let session = session.unwrap();
        state.close_session(&session, "bye", 1);
        assert_eq!(state.receive_send(&session, "m1", "u1", "hi", 2), SendOutcome::SessionClosed);
        assert_eq!(state.stats(2).messages_received, 0);
    }

    #[test]
    fn drop_fault_records_nothing_and_refuse_fault_refuses_hellos() {
        let mut state = SimState::new(TIMINGS);
        let (session, _frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
        state.update_faults(FaultsUpdate { drop_sends: Some(true), ..Default::default() });
        assert_eq!(state.receive_send(&session.unwrap(), "m1", "u1", "hi", 1), SendOutcome::Dropped);
        assert_eq!((state.stats(1).messages_received, state.stats(1).sends_dropped), (0, 1));

        state.update_faults(FaultsUpdate { refuse_sessions: Some(true), ..Default::default() });
        assert_eq!(open(&mut state, claim("a", 1, "n1", 1), 2).0, Err("refused".into()));
    }

    #[test]
    fn frames_for_a_shard_without_session_are_flushed_after_the_next_welcome() {
        let mut state = SimState::new(TIMINGS);
        state.emit_receipt("a", 0, "m1", ReceiptStatus::Delivered, 5);
        let injected = state.inject_inbound("a", Some(0), "u1", "hello", 6);
        assert!(injected.queued);
        assert_eq!(state.stats(6).frames_queued, 2);

        let (session, mut frames) = open(&mut state, claim("a", 0, "n1", 1), 7);

        let expected = vec![
            ServerFrame::Welcome { session: session.unwrap() },
            ServerFrame::Receipt { id: "m1".into(), status: ReceiptStatus::Delivered, timestamp: 5 },
            ServerFrame::Inbound { id: injected.id, from: "u1".into(), body: "hello".into(), timestamp: 6 },
        ];
        assert_eq!(drain(&mut frames), expected);
        assert_eq!(state.stats(7).frames_queued, 0);
    }

    #[test]
    fn unsent_receipts_of_a_closed_session_wait_for_the_next_one_but_acks_do_not() {
        let mut state = SimState::new(TIMINGS);
        let (session, _frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
        let session = session.unwrap();
        state.close_session(&session, "eof", 1);
        let receipt = ServerFrame::Receipt { id: "m1".into(), status: ReceiptStatus::Read, timestamp: 1 };
        let ack = ServerFrame::Ack { id: "m1".into(), server_id: "srv".into() };

        state.requeue_unsent(&session, vec![ack, receipt.clone()]);

        let (_, mut frames) = open(&mut state, claim("a", 0, "n1", 1), 2);
        assert_eq!(drain(&mut frames)[1..], [receipt]);
    }

    #[test]
    fn inbound_without_shard_lands_on_the_senders_shard_of_the_latest_shard_count() {
        let mut state = SimState::new(TIMINGS);
        assert_eq!(state.inject_inbound("a", None, "u1", "x", 0).shard, 0, "no session yet: shard 0");
        let _receivers: Vec<_> = (0..4).map(|shard| open(&mut state, claim("a", shard, "n1", 1), 0).1).collect();
        let expected = shard_of_sender("u1", 4);
        for _ in 0..3 {
            let injected = state.inject_inbound("a", None, "u1", "x", 1);
            assert_eq!((injected.shard, injected.queued), (expected, false));
        }
        let spread: HashSet<u32> = (0..64).map(|i| shard_of_sender(&format!("u{i}"), 4)).collect();
        assert_eq!(spread.len(), 4, "senders spread over all shards");
    }

    #[test]
    fn hello_with_shard_out_of_range_is_refused() {
        let mut state = SimState::new(TIMINGS);
        let bad = SessionClaim { shard: 4, ..claim("a", 0, "n1", 1) };
        assert!(open(&mut state, bad, 0).0.unwrap_err().starts_with("bad hello"));
        assert_eq!(state.stats(0).sessions_refused, 1);
    }
}
