//! The sliding window of a shard's session: the messages it has sent and
//! not seen settled yet (acknowledged, or given a status), at most
//! [`WINDOW`], so that sending never waits for a round of acks and the acks
//! outstanding stay bounded.
//!
//! A message taken out of the outbox is marked with the epoch that took it
//! (`Store::mark_attempt`), and the sender reads only rows its epoch has not
//! taken (`Store::unsent_messages`), so nothing in flight is read again.
//! What is taken and not settled goes back to the outbox
//! (`Store::put_back_unacknowledged`) and is sent again in `seq` order:
//! - when a session opens (what an earlier session of this epoch had out);
//! - when the oldest message out waited [`ACK_TIMEOUT`] for its ack;
//! - [`HELD_PAUSE`] after a message was held (its medium got no answer):
//!   its recipient's later messages are taken and skipped until then, so
//!   that they keep their order behind it.
//!
//! The upstream dedupes by message id, so a message sent twice is delivered once.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// Messages out and unsettled per session, at most.
pub const WINDOW: usize = 512;
/// How long the oldest message out waits for its ack before everything out is sent again.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long held messages (and their recipients' later ones) wait before they are tried again.
pub const HELD_PAUSE: Duration = Duration::from_secs(1);

/// What a session has out.
#[derive(Debug)]
pub struct SendWindow {
    /// Message ids in send order, with when they went; settled ones are
    /// dropped lazily from the front.
    sent: VecDeque<(String, Instant)>,
    /// The ids of `sent` not settled yet.
    unsettled: HashSet<String>,
    /// Recipients whose messages wait for the next put-back.
    held: HashSet<String>,
    /// When the outbox rows out are to be put back, if they are.
    put_back_at: Option<Instant>,
}

impl Default for SendWindow {
    fn default() -> Self {
        SendWindow::new()
    }
}

impl SendWindow {
    /// The window of a new session: what its epoch had out goes back first.
    pub fn new() -> SendWindow {
        SendWindow {
            sent: VecDeque::new(),
            unsettled: HashSet::new(),
            held: HashSet::new(),
            put_back_at: Some(Instant::now()),
        }
    }

    /// How many more messages may go out now.
    pub fn free(&self) -> usize {
        WINDOW.saturating_sub(self.unsettled.len())
    }

    /// Whether `id` is out and unsettled.
    pub fn is_out(&self, id: &str) -> bool {
        self.unsettled.contains(id)
    }

    /// Whether `recipient`'s messages wait behind a held one.
    pub fn is_held(&self, recipient: &str) -> bool {
        self.held.contains(recipient)
    }

    /// `id` went on the wire.
    pub fn sent(&mut self, id: String) {
        if self.unsettled.insert(id.clone()) {
            self.sent.push_back((id, Instant::now()));
        }
    }

    /// A message of `recipient` could not go now: it and its recipient's
    /// later messages wait for the put-back [`HELD_PAUSE`] from now.
    pub fn hold(&mut self, recipient: &str) {
        self.held.insert(recipient.to_string());
        let at = Instant::now() + HELD_PAUSE;
        self.put_back_at = Some(self.put_back_at.map_or(at, |earlier| earlier.min(at)));
    }

    /// These messages were acknowledged or given a status.
    pub fn settled<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) {
        for id in ids {
            self.unsettled.remove(id);
        }
        while self.sent.front().is_some_and(|(id, _)| !self.unsettled.contains(id)) {
            self.sent.pop_front();
        }
    }

    /// Whether the rows out are to go back to the outbox now; an ack timeout
    /// makes everything out count as unsent.
    pub fn put_back_due(&mut self, shard: u32) -> bool {
        let now = Instant::now();
        if self.sent.front().is_some_and(|(_, at)| now.duration_since(*at) >= ACK_TIMEOUT) {
            tracing::warn!("shard {shard}: {} message(s) unacknowledged, will resend", self.unsettled.len());
            self.sent.clear();
            self.unsettled.clear();
            // Due until done: a put-back the database refused is tried again.
            self.put_back_at = Some(now);
        }
        self.put_back_at.is_some_and(|at| at <= now)
    }

    /// The rows out went back to the outbox: held recipients may go again.
    pub fn put_back_done(&mut self) {
        self.held.clear();
        self.put_back_at = None;
    }

    /// When [`SendWindow::put_back_due`] next turns true, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let ack_due = self.sent.front().map(|(_, at)| *at + ACK_TIMEOUT);
        [ack_due, self.put_back_at].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_window_fills_settles_and_times_out() {
        let mut window = SendWindow::new();
        assert!(window.put_back_due(0), "a new session puts back what its epoch had out");
        window.put_back_done();
        assert!(!window.put_back_due(0));
        for i in 0..WINDOW {
            window.sent(format!("m{i}"));
        }
        assert_eq!(window.free(), 0);
        assert!(window.is_out("m3"));
        window.settled(["m0", "m1", "m3"]);
        assert_eq!(window.free(), 3);
        assert!(!window.is_out("m3"));
        assert_eq!(window.next_deadline(), Some(Instant::now() + ACK_TIMEOUT));
        tokio::time::advance(ACK_TIMEOUT).await;
        assert!(window.put_back_due(0), "the oldest message waited too long for its ack");
        assert_eq!(window.free(), WINDOW, "everything out counts as unsent");
        assert!(window.put_back_due(0), "due until the put-back is done");
        window.put_back_done();
        assert_eq!(window.next_deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_puts_back_after_the_pause() {
        let mut window = SendWindow::new();
        window.put_back_done();
        window.hold("1555");
        assert!(window.is_held("1555") && !window.is_held("1666"));
        assert!(!window.put_back_due(0));
        assert_eq!(window.next_deadline(), Some(Instant::now() + HELD_PAUSE));
        tokio::time::advance(HELD_PAUSE).await;
        assert!(window.put_back_due(0));
        window.put_back_done();
        assert!(!window.is_held("1555"));
    }
}
