//! The coreapp's upstream session for one shard, and the self-fence.
//!
//! One I/O task owns the socket. It writes a frame only while the shard lease
//! is usable by this process's monotonic clock ([`LeaseGrant::usable_until`]),
//! and it drops the socket the instant that deadline passes, whatever the rest
//! of the process is doing: a coreapp stuck on its database still stops
//! talking upstream in time. After a SIGSTOP/SIGCONT the deadline check comes
//! first (`biased`), so a resumed zombie never answers even one buffered ping.
//!
//! Every way a session ends goes through one exit of the I/O task, which
//! leaves the shard's [`SessionSlot`] saying whether the upstream is known to
//! have closed it (see [`super::quiet`]). Closes we start ourselves say `bye`
//! and wait briefly for the upstream's EOF, the only proof a clean close has.
//! An upstream that sends nothing (not even a ping) for `session_timeout` is
//! treated as gone, so that a primary cut off from it is noticed.

use super::frame_codec::{UpstreamLine, UpstreamLines};
use super::quiet::SessionSlot;
use crate::upstream::protocol::{ClientFrame, ContactCheck, InboundMedia, ReceiptStatus, ServerFrame, UpstreamError};
use futures::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{timeout_at, Instant};
use tokio_util::codec::Framed;

/// Longest wait for the upstream's EOF after our `bye`.
const BYE_WAIT: Duration = Duration::from_secs(1);
/// Media chunks queued for the socket at most: an upload is read from its
/// file only as fast as the socket takes it (about 1 MiB ahead).
const MEDIA_CHUNKS_AHEAD: usize = 4;

/// The right to use a shard's upstream session, as the lease keeper grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGrant {
    /// Fencing epoch of the lease.
    pub epoch: i64,
    /// The session may be used until this instant, unless renewed.
    pub usable_until: Instant,
    /// The shard was taken away or is being released: close now.
    pub revoked: bool,
}

impl LeaseGrant {
    /// Whether the session may be used right now.
    pub fn usable(&self) -> bool {
        !self.revoked && Instant::now() < self.usable_until
    }
}

/// What the upstream sent that the shard worker acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// A message was accepted.
    Ack {
        /// API message id.
        id: String,
        /// Upstream id.
        server_id: String,
    },
    /// A receipt for an earlier message.
    Receipt {
        /// API message id.
        id: String,
        /// New status.
        status: ReceiptStatus,
        /// Upstream time, unix milliseconds.
        timestamp: i64,
        /// Why it failed, for `failed`.
        errors: Vec<UpstreamError>,
    },
    /// A message from a user.
    Inbound {
        /// Upstream message id.
        id: String,
        /// Sender.
        from: String,
        /// The on-prem message object (`type` and its object).
        message: serde_json::Value,
        /// Upstream time, unix milliseconds.
        timestamp: i64,
        /// The sender's profile name.
        profile_name: Option<String>,
        /// The bytes of a media message.
        media: Option<InboundMedia>,
    },
    /// An upload this session made is complete.
    MediaStored {
        /// Media id.
        media_id: String,
    },
    /// An upload this session made was refused.
    MediaRefused {
        /// Media id.
        media_id: String,
        /// Why.
        reason: String,
    },
    /// The answer to a contact check.
    ContactsChecked {
        /// The check's id.
        id: String,
        /// One result per input.
        contacts: Vec<ContactCheck>,
    },
    /// The session is closed; the reason says by whom.
    Closed(String),
}

/// How a session treats the network, fixed when it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// How long the upstream keeps a silent session; as long without a frame
    /// from it, the upstream is taken for gone.
    pub session_timeout: Duration,
    /// `TCP_USER_TIMEOUT`: unacknowledged data aborts the connection after this.
    pub write_abort: Duration,
    /// Longest inbound line; longer ones are skipped and counted.
    pub max_frame_bytes: usize,
}

/// Identity sent in the hello.
#[derive(Debug, Clone)]
pub struct SessionTarget {
    /// Upstream `host:port`.
    pub upstream: String,
    /// Account number.
    pub account: String,
    /// Shard of this session.
    pub shard: u32,
    /// Shard count of the cluster.
    pub shards: u32,
    /// Node id of this coreapp.
    pub node: String,
}

/// An open session: frames go out through the I/O task, events come back.
pub struct UpstreamSession {
    /// Session id the upstream gave.
    pub id: String,
    out: mpsc::UnboundedSender<ClientFrame>,
    /// Media chunks that may still be queued; the I/O task returns one per
    /// chunk written, and closes it when the session ends.
    media_credit: Arc<Semaphore>,
    /// Events from the upstream, ending with [`SessionEvent::Closed`].
    pub events: mpsc::UnboundedReceiver<SessionEvent>,
    io: tokio::task::JoinHandle<()>,
}

impl UpstreamSession {
    /// Opens a session under `grant` in `slot`; fails if the lease stops being
    /// usable meanwhile. `skipped` counts inbound frames skipped as unreadable.
    pub async fn open(
        target: &SessionTarget,
        mut grant: watch::Receiver<LeaseGrant>,
        mut slot: SessionSlot,
        limits: SessionLimits,
        skipped: Arc<AtomicU64>,
    ) -> Result<UpstreamSession, String> {
        let current = grant.borrow_and_update().clone();
        if !current.usable() {
            return Err("lease not usable".into());
        }
        let deadline = current.usable_until;
        let step = |limit: Duration| deadline.min(Instant::now() + limit);
        let stream = timeout_at(step(Duration::from_secs(2)), TcpStream::connect(&target.upstream))
            .await
            .map_err(|_| format!("connecting to {} timed out", target.upstream))?
            .map_err(|e| format!("cannot connect to {}: {e}", target.upstream))?;
        configure_socket(&stream, &limits).map_err(|e| format!("cannot configure the upstream socket: {e}"))?;
        let mut framed = Framed::new(stream, UpstreamLines::new(limits.max_frame_bytes));
        slot.exposed();
        let hello = ClientFrame::Hello {
            account: target.account.clone(),
            shard: target.shard,
            shards: target.shards,
            node: target.node.clone(),
            epoch: current.epoch,
        };
        if !write_before(&mut framed, &hello, &grant).await {
            return Err("lease stopped being usable before the hello".into());
        }
        let reply = timeout_at(step(Duration::from_secs(2)), framed.next())
            .await
            .map_err(|_| "no answer to the hello".to_string())?;
        let line = match reply {
            Some(Ok(UpstreamLine::Line(line))) => line,
            Some(Ok(other)) => return Err(format!("unreadable answer to the hello: {other:?}")),
            Some(Err(e)) => return Err(format!("upstream read failed: {e}")),
            None => {
                slot.closed_upstream();
                return Err("upstream closed during the hello".into());
            }
        };
        match serde_json::from_str::<ServerFrame>(&line) {
            Ok(ServerFrame::Welcome { session }) => {
                let (out_tx, out_rx) = mpsc::unbounded_channel();
                let (ev_tx, ev_rx) = mpsc::unbounded_channel();
                let media_credit = Arc::new(Semaphore::new(MEDIA_CHUNKS_AHEAD));
                let io = SessionIo {
                    framed,
                    grant,
                    out: out_rx,
                    events: ev_tx,
                    slot,
                    limits,
                    skipped,
                    media_credit: media_credit.clone(),
                };
                let io = tokio::spawn(io.run());
                Ok(UpstreamSession { id: session, out: out_tx, media_credit, events: ev_rx, io })
            }
            Ok(ServerFrame::Refused { reason }) => {
                slot.closed_upstream();
                Err(format!("upstream refused the session: {reason}"))
            }
            Ok(other) => Err(format!("unexpected answer to the hello: {other:?}")),
            Err(e) => Err(format!("unreadable answer to the hello: {e}")),
        }
    }

    /// Queues a frame; false when the session is already closed.
    pub fn send(&self, frame: ClientFrame) -> bool {
        self.out.send(frame).is_ok()
    }

    /// Queues a media chunk once fewer than a few are waiting for the
    /// socket, so that an upload streams from its file instead of piling up
    /// in memory; false when the session is closed.
    pub async fn send_media_chunk(&self, frame: ClientFrame) -> bool {
        match self.media_credit.acquire().await {
            Ok(permit) => {
                // Given back by the I/O task once the chunk is written.
                permit.forget();
                self.send(frame)
            }
            Err(_) => false,
        }
    }

    /// Closes the session and returns once its socket is closed.
    pub async fn close(self) {
        drop(self.out);
        let _ = self.io.await;
    }
}

/// Upstream sockets never outlive what the fence assumes: closing one aborts
/// it (no orphaned retransmissions after we let go, or after a kill), and the
/// kernel gives up on unacknowledged data after `write_abort`.
fn configure_socket(stream: &TcpStream, limits: &SessionLimits) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let socket = socket2::SockRef::from(stream);
    socket.set_linger(Some(Duration::ZERO))?;
    socket.set_tcp_user_timeout(Some(limits.write_abort.max(Duration::from_millis(1))))
}

type Lines = Framed<TcpStream, UpstreamLines>;

/// Writes one frame if the lease is still usable, giving up at its deadline.
async fn write_before(framed: &mut Lines, frame: &ClientFrame, grant: &watch::Receiver<LeaseGrant>) -> bool {
    let current = grant.borrow().clone();
    if !current.usable() {
        return false;
    }
    let line = serde_json::to_string(frame).expect("frames serialize");
    matches!(timeout_at(current.usable_until, framed.send(line)).await, Ok(Ok(())))
}

/// How a session ended, which decides what its slot may claim.
enum Ending {
    /// We close it: say `bye` and wait for the upstream's EOF.
    Ours(String),
    /// The upstream closed it (EOF or a kick).
    Theirs(String),
    /// Dropped without proof: the fence, a write or read failure, silence.
    Dropped(String),
}

/// The I/O task of one open session.
struct SessionIo {
    framed: Lines,
    grant: watch::Receiver<LeaseGrant>,
    out: mpsc::UnboundedReceiver<ClientFrame>,
    events: mpsc::UnboundedSender<SessionEvent>,
    slot: SessionSlot,
    limits: SessionLimits,
    skipped: Arc<AtomicU64>,
    media_credit: Arc<Semaphore>,
}

impl SessionIo {
    async fn run(mut self) {
        let ending = self.serve().await;
        // No chunk will be written any more: wake an upload waiting for room.
        self.media_credit.close();
        let reason = match ending {
            Ending::Ours(reason) => {
                if self.say_bye().await {
                    self.slot.closed_upstream();
                    format!("{reason}; the upstream confirmed the bye")
                } else {
                    format!("{reason}; no confirmation of the bye, the shard waits out the upstream's timeout")
                }
            }
            Ending::Theirs(reason) => {
                self.slot.closed_upstream();
                reason
            }
            Ending::Dropped(reason) => format!("{reason}; the shard waits out the upstream's timeout"),
        };
        let SessionIo { framed, slot, events, .. } = self;
        // The socket goes first (aborted), then the slot records the close.
        drop(framed);
        drop(slot);
        let _ = events.send(SessionEvent::Closed(reason));
    }

    /// The session's life; returns how it must end, without ending it.
    async fn serve(&mut self) -> Ending {
        let mut last_heard = Instant::now();
        loop {
            let current = self.grant.borrow_and_update().clone();
            if current.revoked {
                return Ending::Ours("closed: shard revoked or released".into());
            }
            if Instant::now() >= current.usable_until {
                return Ending::Dropped("self-fenced: the lease could have expired".into());
            }
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(current.usable_until) => continue,
                _ = tokio::time::sleep_until(last_heard + self.limits.session_timeout) => {
                    return Ending::Dropped("the upstream went silent (no frame for its session timeout)".into());
                }
                changed = self.grant.changed() => {
                    if changed.is_err() {
                        return Ending::Ours("closed: lease keeper stopped".into());
                    }
                }
                frame = self.out.recv() => match frame {
                    Some(frame) => {
                        if !write_before(&mut self.framed, &frame, &self.grant).await {
                            return Ending::Dropped("write failed or lease unusable".into());
                        }
                        if matches!(frame, ClientFrame::MediaChunk { .. }) {
                            self.media_credit.add_permits(1);
                        }
                    }
                    None => return Ending::Ours("closed by the shard worker".into()),
                },
                line = self.framed.next() => {
                    last_heard = Instant::now();
                    match line {
                        None => return Ending::Theirs("closed by the upstream".into()),
                        Some(Err(e)) => return Ending::Dropped(format!("read failed: {e}")),
                        Some(Ok(UpstreamLine::Line(line))) => {
                            if let Some(ending) = self.on_line(&line).await {
                                return ending;
                            }
                        }
                        Some(Ok(odd)) => self.skip(&format!("{odd:?}")),
                    }
                }
            }
        }
    }

    /// Acts on one inbound line; `Some` when the session must end.
    async fn on_line(&mut self, line: &str) -> Option<Ending> {
        let event = match serde_json::from_str::<ServerFrame>(line) {
            Ok(ServerFrame::Ping { n }) => {
                if !write_before(&mut self.framed, &ClientFrame::Pong { n }, &self.grant).await {
                    return Some(Ending::Dropped("pong failed or lease unusable".into()));
                }
                return None;
            }
            Ok(ServerFrame::Ack { id, server_id }) => SessionEvent::Ack { id, server_id },
            Ok(ServerFrame::Receipt { id, status, timestamp, errors }) => {
                SessionEvent::Receipt { id, status, timestamp, errors }
            }
            Ok(ServerFrame::Inbound { id, from, timestamp, message, profile_name, media }) => {
                SessionEvent::Inbound { id, from, message, timestamp, profile_name, media }
            }
            Ok(ServerFrame::MediaStored { media_id, .. }) => SessionEvent::MediaStored { media_id },
            Ok(ServerFrame::MediaRefused { media_id, reason }) => SessionEvent::MediaRefused { media_id, reason },
            Ok(ServerFrame::ContactsChecked { id, contacts }) => SessionEvent::ContactsChecked { id, contacts },
            Ok(ServerFrame::Kicked { reason }) => {
                return Some(Ending::Theirs(format!("kicked by the upstream: {reason}")))
            }
            Ok(other) => {
                tracing::debug!("ignoring upstream frame {other:?}");
                return None;
            }
            Err(e) => {
                self.skip(&format!("unparsable ({e})"));
                return None;
            }
        };
        let _ = self.events.send(event);
        None
    }

    fn skip(&self, what: &str) {
        let total = self.skipped.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            "skipped an inbound upstream frame: {what} (limit {} bytes); {total} skipped so far",
            self.limits.max_frame_bytes
        );
    }

    /// Says `bye` while the lease's time lasts and waits for the upstream's
    /// EOF; true only when it came.
    async fn say_bye(&mut self) -> bool {
        let usable_until = self.grant.borrow().usable_until;
        let deadline = usable_until.min(Instant::now() + BYE_WAIT.min(self.limits.session_timeout));
        if Instant::now() >= deadline {
            return false;
        }
        let bye = serde_json::to_string(&ClientFrame::Bye).expect("frames serialize");
        if !matches!(timeout_at(deadline, self.framed.send(bye)).await, Ok(Ok(()))) {
            return false;
        }
        loop {
            match timeout_at(deadline, self.framed.next()).await {
                Ok(None) => return true,
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) | Err(_) => return false,
            }
        }
    }
}
