//! The coreapp's upstream session for one shard, and the self-fence.
//!
//! One I/O task owns the socket. It writes a frame only while the shard lease
//! is usable by this process's monotonic clock ([`LeaseGrant::usable_until`]),
//! and it drops the socket the instant that deadline passes, whatever the rest
//! of the process is doing: a coreapp stuck on its database still stops
//! talking upstream in time. After a SIGSTOP/SIGCONT the deadline check comes
//! first (`biased`), so a resumed zombie never answers even one buffered ping.

use crate::upstream::protocol::{ClientFrame, ReceiptStatus, ServerFrame};
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout_at, Instant};
use tokio_util::codec::{Framed, LinesCodec};

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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    },
    /// A message from a user.
    Inbound {
        /// Upstream message id.
        id: String,
        /// Sender.
        from: String,
        /// Text.
        body: String,
        /// Unix seconds.
        timestamp: i64,
    },
    /// The session is closed; the reason says by whom.
    Closed(String),
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
    /// Events from the upstream, ending with [`SessionEvent::Closed`].
    pub events: mpsc::UnboundedReceiver<SessionEvent>,
    io: tokio::task::JoinHandle<()>,
}

impl UpstreamSession {
    /// Opens a session under `grant`; fails if the lease stops being usable meanwhile.
    pub async fn open(
        target: &SessionTarget,
        mut grant: watch::Receiver<LeaseGrant>,
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
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut framed = Framed::new(stream, LinesCodec::new_with_max_length(1 << 20));
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
            Some(Ok(line)) => line,
            Some(Err(e)) => return Err(format!("upstream read failed: {e}")),
            None => return Err("upstream closed during the hello".into()),
        };
        match serde_json::from_str::<ServerFrame>(&line) {
            Ok(ServerFrame::Welcome { session }) => {
                let (out_tx, out_rx) = mpsc::unbounded_channel();
                let (ev_tx, ev_rx) = mpsc::unbounded_channel();
                let io = tokio::spawn(io_task(framed, grant, out_rx, ev_tx));
                Ok(UpstreamSession { id: session, out: out_tx, events: ev_rx, io })
            }
            Ok(ServerFrame::Refused { reason }) => Err(format!("upstream refused the session: {reason}")),
            Ok(other) => Err(format!("unexpected answer to the hello: {other:?}")),
            Err(e) => Err(format!("unreadable answer to the hello: {e}")),
        }
    }

    /// Queues a frame; false when the session is already closed.
    pub fn send(&self, frame: ClientFrame) -> bool {
        self.out.send(frame).is_ok()
    }

    /// Closes the session and returns once its socket is closed.
    pub async fn close(self) {
        drop(self.out);
        let _ = self.io.await;
    }
}

/// Writes one frame if the lease is still usable, giving up at its deadline.
async fn write_before(
    framed: &mut Framed<TcpStream, LinesCodec>,
    frame: &ClientFrame,
    grant: &watch::Receiver<LeaseGrant>,
) -> bool {
    let current = grant.borrow().clone();
    if !current.usable() {
        return false;
    }
    let line = serde_json::to_string(frame).expect("frames serialize");
    matches!(timeout_at(current.usable_until, framed.send(line)).await, Ok(Ok(())))
}

async fn io_task(
    mut framed: Framed<TcpStream, LinesCodec>,
    mut grant: watch::Receiver<LeaseGrant>,
    mut out: mpsc::UnboundedReceiver<ClientFrame>,
    events: mpsc::UnboundedSender<SessionEvent>,
) {
    let reason = loop {
        let current = grant.borrow_and_update().clone();
        if current.revoked {
            let _ = write_before(&mut framed, &ClientFrame::Bye, &grant).await;
            break "closed: shard revoked or released".to_string();
        }
        if Instant::now() >= current.usable_until {
            break "self-fenced: the lease could have expired".to_string();
        }
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(current.usable_until) => continue,
            changed = grant.changed() => {
                if changed.is_err() {
                    break "closed: lease keeper stopped".to_string();
                }
            }
            frame = out.recv() => match frame {
                Some(frame) => {
                    if !write_before(&mut framed, &frame, &grant).await {
                        break "write failed or lease unusable".to_string();
                    }
                }
                None => break "closed by the shard worker".to_string(),
            },
            line = framed.next() => match line {
                None => break "closed by the upstream".to_string(),
                Some(Err(e)) => break format!("read failed: {e}"),
                Some(Ok(line)) => match serde_json::from_str::<ServerFrame>(&line) {
                    Ok(ServerFrame::Ping { n }) => {
                        if !write_before(&mut framed, &ClientFrame::Pong { n }, &grant).await {
                            break "pong failed or lease unusable".to_string();
                        }
                    }
                    Ok(ServerFrame::Ack { id, server_id }) => {
                        let _ = events.send(SessionEvent::Ack { id, server_id });
                    }
                    Ok(ServerFrame::Receipt { id, status, .. }) => {
                        let _ = events.send(SessionEvent::Receipt { id, status });
                    }
                    Ok(ServerFrame::Inbound { id, from, body, timestamp }) => {
                        let _ = events.send(SessionEvent::Inbound { id, from, body, timestamp });
                    }
                    Ok(ServerFrame::Kicked { reason }) => break format!("kicked by the upstream: {reason}"),
                    Ok(other) => tracing::debug!("ignoring upstream frame {other:?}"),
                    Err(e) => tracing::warn!("unreadable upstream frame: {e}"),
                },
            },
        }
    };
    drop(framed);
    let _ = events.send(SessionEvent::Closed(reason));
}
