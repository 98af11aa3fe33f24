//! One upstream connection: the hello handshake, then a loop that writes the
//! session's outbox, pings, enforces the keepalive and applies the client's
//! frames (sends, read marks, media chunks, contact checks) to the shared
//! state, then one teardown that every close path shares.
//!
//! Every decision is taken in the state before the client hears of it, so a
//! test that has just read `Welcome` or `Kicked` finds the inspection API
//! already agreeing.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use futures::{SinkExt, StreamExt};
use shardgate_core::upstream::protocol::{ClientFrame, ReceiptStatus, ServerFrame, UpstreamError};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::time::{interval_at, sleep, timeout, timeout_at, Instant, MissedTickBehavior};
use tokio_util::codec::{Framed, LinesCodec, LinesCodecError};
use tracing::Instrument;

use crate::media::Chunk;
use crate::state::{Outbox, SendOutcome, SessionClaim};
use crate::{now_ms, Shared};

/// Longest line accepted from a client; anything longer is a protocol error.
const MAX_LINE_BYTES: usize = 1024 * 1024;

type Lines = Framed<TcpStream, LinesCodec>;

/// Why the session loop ended, and what (if anything) to tell the client.
struct Ending {
    /// The close reason recorded for the session.
    reason: String,
    /// Sent as `Kicked{reason}` after the state has recorded the close.
    notice: Option<String>,
}

impl Ending {
    fn silent(reason: impl Into<String>) -> Self {
        Ending { reason: reason.into(), notice: None }
    }

    fn kicked(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Ending { notice: Some(reason.clone()), reason }
    }
}

/// Serves one connection from accept to hang-up.
pub(super) async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let mut lines = Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE_BYTES));
    let claim = match read_hello(&mut lines, shared.session_timeout).await {
        Ok(claim) => claim,
        Err(reason) => {
            tracing::debug!(%reason, "upstream-sim hello rejected");
            // The peer may be gone already; there is nobody to tell then.
            let _ = lines.send(encode(&ServerFrame::Refused { reason })).await;
            return;
        }
    };
    let (outbox, frames) = unbounded_channel();
    let opened = shared.state().open_session(claim.clone(), outbox.clone(), now_ms());
    let id = match opened {
        Ok(id) => id,
        Err(reason) => {
            tracing::info!(account = %claim.account, shard = claim.shard, node = %claim.node, %reason, "hello refused");
            let _ = lines.send(encode(&ServerFrame::Refused { reason })).await;
            return;
        }
    };
    let span = tracing::info_span!(
        "sim_session", session = %id, account = %claim.account, shard = claim.shard,
        node = %claim.node, epoch = claim.epoch
    );
    let session = LiveSession { id, claim, shared, outbox };
    session.run(lines, frames).instrument(span).await;
}

/// Waits up to `limit` for the first line and parses it as a hello.
async fn read_hello(lines: &mut Lines, limit: Duration) -> Result<SessionClaim, String> {
    let line = match timeout(limit, lines.next()).await {
        Err(_) => return Err("no hello in time".into()),
        Ok(None) => return Err("closed before hello".into()),
        Ok(Some(Err(error))) => return Err(format!("bad hello: {error}")),
        Ok(Some(Ok(line))) => line,
    };
    match serde_json::from_str(&line) {
        Ok(ClientFrame::Hello { account, shard, shards, node, epoch }) => {
            Ok(SessionClaim { account, shard, shards, node, epoch })
        }
        Ok(other) => Err(format!("expected hello, got {other:?}")),
        Err(error) => Err(format!("bad hello: {error}")),
    }
}

/// A welcomed session and what its task needs.
struct LiveSession {
    id: String,
    claim: SessionClaim,
    shared: Arc<Shared>,
    /// The task's own handle on its outbox, for acks; the state holds another
    /// one only while the session is open.
    outbox: Outbox,
}

impl LiveSession {
    async fn run(self, mut lines: Lines, mut frames: UnboundedReceiver<ServerFrame>) {
        let ending = self.serve_frames(&mut lines, &mut frames).await;
        {
            let mut state = self.shared.state();
            // A no-op when the state already closed it (kicked).
            state.close_session(&self.id, &ending.reason, now_ms());
            // The state no longer routes here, so this drains everything.
            let unsent = std::iter::from_fn(|| frames.try_recv().ok()).collect();
            state.requeue_unsent(&self.id, unsent);
        }
        if let Some(reason) = ending.notice {
            let _ = lines.send(encode(&ServerFrame::Kicked { reason })).await;
        }
        tracing::debug!(reason = %ending.reason, "upstream-sim connection closed");
    }

    /// The session's life: returns when it must end, without closing it.
    async fn serve_frames(&self, lines: &mut Lines, frames: &mut UnboundedReceiver<ServerFrame>) -> Ending {
        let timeout = self.shared.session_timeout;
        let mut deadline = Instant::now() + timeout;
        let mut pings = interval_at(Instant::now() + timeout / 3, timeout / 3);
        pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut ping_n = 0;
        loop {
            // Outbox first, so a kick is written before more input is read.
            let outgoing = tokio::select! {
                biased;
                _ = self.shared.stop.cancelled() => return Ending::silent("sim stopped"),
                Some(frame) = frames.recv() => frame,
                _ = tokio::time::sleep_until(deadline) => return Ending::kicked("keepalive timeout"),
                _ = pings.tick() => {
                    ping_n += 1;
                    ServerFrame::Ping { n: ping_n }
                }
                line = lines.next() => match line {
                    None => return Ending::silent("eof"),
                    Some(Err(LinesCodecError::Io(error))) => return Ending::silent(format!("read error: {error}")),
                    Some(Err(error)) => return Ending::kicked(format!("protocol error: {error}")),
                    Some(Ok(line)) => match serde_json::from_str(&line) {
                        Ok(ClientFrame::Pong { .. }) => {
                            deadline = Instant::now() + timeout;
                            self.shared.state().pong(&self.id, now_ms());
                            continue;
                        }
                        Ok(ClientFrame::Send { id, to, message }) => {
                            self.on_send(id, to, message);
                            continue;
                        }
                        Ok(ClientFrame::MarkRead { id, message_id }) => {
                            self.on_mark_read(id, message_id);
                            continue;
                        }
                        Ok(ClientFrame::MediaChunk { media_id, mime_type, sha256, offset, data, last }) => {
                            // Decoded before taking the lock; the state only hashes.
                            let data = BASE64.decode(data.as_bytes()).map_err(|e| e.to_string());
                            self.on_media_chunk(Chunk { media_id, mime_type, sha256, offset, data, last });
                            continue;
                        }
                        Ok(ClientFrame::CheckContacts { id, inputs }) => {
                            self.on_check_contacts(id, inputs);
                            continue;
                        }
                        Ok(ClientFrame::Bye) => return Ending::silent("bye"),
                        Ok(ClientFrame::Hello { .. }) => {
                            return Ending::kicked("protocol error: hello on an open session")
                        }
                        Err(error) => return Ending::kicked(format!("protocol error: {error}")),
                    },
                },
            };
            let kicked = matches!(outgoing, ServerFrame::Kicked { .. });
            // Garbage from the `raw_lines` fault goes out verbatim, before the frame.
            let raw_lines = self.shared.state().take_raw_lines();
            for raw in raw_lines {
                match timeout_at(deadline, lines.send(raw)).await {
                    Err(_) => return Ending::kicked("keepalive timeout"),
                    Ok(Err(error)) => return Ending::silent(format!("write error: {error}")),
                    Ok(Ok(())) => {}
                }
            }
            // A client that takes no frames until the keepalive deadline is as
            // dead as one that sends no pongs.
            match timeout_at(deadline, lines.send(encode(&outgoing))).await {
                Err(_) => return Ending::kicked("keepalive timeout"),
                Ok(Err(error)) => return Ending::silent(format!("write error: {error}")),
                Ok(Ok(())) if kicked => return Ending::silent("kicked"),
                Ok(Ok(())) => {}
            }
        }
    }

    /// Records a send, then acks it and schedules its receipts: `failed` for
    /// a message the network refused, `sent`, `delivered` and `read` for the
    /// others, none for a resend.
    fn on_send(&self, id: String, to: String, message: serde_json::Value) {
        let outcome = self.shared.state().receive_send(&self.id, &id, &to, &message, now_ms());
        let SendOutcome::Accepted { server_id, resend, ack_delay_ms, errors } = outcome else {
            tracing::debug!(%id, ?outcome, "send not acked");
            return;
        };
        let receipts = match (resend, errors.is_empty()) {
            (true, _) => Receipts::None,
            (false, true) => Receipts::Delivery,
            (false, false) => Receipts::Failed(errors),
        };
        self.acknowledge(id, server_id, receipts, ack_delay_ms);
    }

    /// Records a read mark and acks it; no receipt follows.
    fn on_mark_read(&self, id: String, message_id: String) {
        let outcome = self.shared.state().receive_mark_read(&self.id, &id, &message_id, now_ms());
        let SendOutcome::Accepted { server_id, ack_delay_ms, .. } = outcome else {
            tracing::debug!(%id, ?outcome, "read mark not acked");
            return;
        };
        self.acknowledge(id, server_id, Receipts::None, ack_delay_ms);
    }

    /// Takes a media chunk; the end of the upload is answered to this session.
    fn on_media_chunk(&self, chunk: Chunk) {
        let answer = self.shared.state().receive_media_chunk(&self.id, chunk, now_ms());
        if let Some(frame) = answer {
            let _ = self.outbox.send(frame);
        }
    }

    /// Answers a contact check to this session.
    fn on_check_contacts(&self, id: String, inputs: Vec<String>) {
        let contacts = self.shared.state().check_contacts(&self.id, &inputs);
        if let Some(contacts) = contacts {
            let _ = self.outbox.send(ServerFrame::ContactsChecked { id, contacts });
        }
    }

    /// Acks `id` (after the ack-delay fault, if any), then emits `receipts`.
    fn acknowledge(&self, id: String, server_id: String, receipts: Receipts, ack_delay_ms: u64) {
        let ack = Acknowledgement {
            shared: self.shared.clone(),
            outbox: self.outbox.clone(),
            account: self.claim.account.clone(),
            shard: self.claim.shard,
            id,
            server_id,
            receipts,
        };
        if ack_delay_ms == 0 {
            // Inline, so acks leave in the order the sends came in.
            ack.ack_now();
            tokio::spawn(ack.later_receipts());
        } else {
            tokio::spawn(async move {
                if sleep_unless_stopped(&ack.shared, Duration::from_millis(ack_delay_ms)).await {
                    ack.ack_now();
                    ack.later_receipts().await;
                }
            });
        }
    }
}

/// The receipts that follow an ack.
enum Receipts {
    /// A resend or a read mark: the ack alone.
    None,
    /// A delivered message: `sent`, then `delivered` and `read`.
    Delivery,
    /// A message the network refused: one final `failed`.
    Failed(Vec<UpstreamError>),
}

/// The ack of one accepted send or read mark, and the receipts that follow it.
struct Acknowledgement {
    shared: Arc<Shared>,
    /// The sending session's outbox: the ack answers that session only.
    outbox: Outbox,
    account: String,
    shard: u32,
    id: String,
    server_id: String,
    receipts: Receipts,
}

impl Acknowledgement {
    /// Acks, and emits the first receipt (`sent` or `failed`) right behind it.
    fn ack_now(&self) {
        // If the session is gone, so is the ack: the client resends.
        let _ = self.outbox.send(ServerFrame::Ack { id: self.id.clone(), server_id: self.server_id.clone() });
        match &self.receipts {
            Receipts::None => {}
            Receipts::Delivery => self.emit(ReceiptStatus::Sent, Vec::new()),
            Receipts::Failed(errors) => self.emit(ReceiptStatus::Failed, errors.clone()),
        }
    }

    /// Emits `delivered` and then `read`, each one receipt delay later, for a
    /// delivered message only: a resend's recipient got it the first time.
    async fn later_receipts(self) {
        if !matches!(self.receipts, Receipts::Delivery) {
            return;
        }
        for status in [ReceiptStatus::Delivered, ReceiptStatus::Read] {
            if !sleep_unless_stopped(&self.shared, self.shared.receipt_delay).await {
                return;
            }
            self.emit(status, Vec::new());
        }
    }

    /// Receipts follow the (account, shard), not the session: they go to
    /// whichever session holds it now, or wait for the next one.
    fn emit(&self, status: ReceiptStatus, errors: Vec<UpstreamError>) {
        self.shared.state().emit_receipt(&self.account, self.shard, &self.id, status, errors, now_ms());
    }
}

/// Sleeps for `duration`; false if the sim stopped first.
async fn sleep_unless_stopped(shared: &Shared, duration: Duration) -> bool {
    tokio::select! {
        _ = shared.stop.cancelled() => false,
        _ = sleep(duration) => true,
    }
}

fn encode(frame: &ServerFrame) -> String {
    serde_json::to_string(frame).expect("server frames always serialize")
}
