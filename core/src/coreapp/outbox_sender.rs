//! Sending a batch of outbox rows over the shard's session, in `seq` order,
//! without waiting for their acks: the session's [`SendWindow`] counts them
//! until they settle. Before a message goes:
//!
//! 1. its `link` media are fetched into the media directory and the message
//!    names them by id from then on (also in the outbox, so that a resend
//!    does not fetch again), see [`super::link_fetch`];
//! 2. every medium it names that this session has not uploaded yet is
//!    uploaded and its `media_stored` awaited, see [`super::media_upload`]
//!    (a new session uploads again: the upstream keeps media per session).
//!
//! A message whose medium is gone, refused or cannot be fetched fails
//! (`failed`, with the on-prem error) without being sent. A message whose
//! medium got no answer in time is held, and so are its recipient's later
//! messages, until the window puts them back, so that a recipient's
//! messages keep their order. Meanwhile the session's events are gathered as usual.

use super::media_upload::{self, UploadStart};
use super::message_media::{media_name, media_slots, name_by_id, MediaName};
use super::send_window::SendWindow;
use super::session_reports::SessionReports;
use super::shard_worker::{OpenSession, ShardWorker};
use crate::callback_payload::error;
use crate::store::messages::{PendingMessage, StatusUpdate, MARK_READ_KIND};
use crate::store::StoreResult;
use crate::upstream::protocol::{ClientFrame, UpstreamError};
use futures::StreamExt;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// Outbox rows read and sent at once, at most.
pub const BATCH: u32 = 128;
/// How long the answer to an upload may take once its last chunk is queued.
const UPLOAD_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Links of one batch fetched at once (the node-wide bound is the fetcher's).
const LINKS_AT_ONCE: usize = 4;

/// A pending row on its way to the wire.
enum Prepared {
    /// A read mark of the inbound message `message_id`.
    MarkRead { message_id: String },
    /// A message object, and the stored media it names.
    Message { body: Value, media: Vec<String> },
    /// Not sent: it fails with these errors.
    Fail(Vec<UpstreamError>),
    /// Not now: it waits for the window's put-back.
    Hold,
}

impl ShardWorker {
    /// Takes `pending` out of the outbox for `epoch` and sends what may go
    /// into the session's window; false when the session closed.
    pub(super) async fn send_batch(
        &mut self,
        open: &mut OpenSession,
        pending: Vec<PendingMessage>,
        epoch: i64,
        reports: &mut SessionReports,
    ) -> StoreResult<bool> {
        let shard = self.target.shard;
        // All of them, also those skipped below: taken, they are not read
        // again until the window puts them back.
        let ids: Vec<String> = pending.iter().map(|m| m.id.clone()).collect();
        self.store.mark_attempt(&ids, epoch, &self.target.node).await?;
        let pending: Vec<PendingMessage> =
            pending.into_iter().filter(|m| !open.window.is_out(&m.id) && !open.window.is_held(&m.recipient)).collect();
        let mut prepared: Vec<Prepared> = pending.iter().map(prepare).collect();
        if !self.resolve_links(&pending, &mut prepared, open, reports).await? {
            return Ok(false);
        }
        if !self.upload_media(&mut prepared, open, reports).await? {
            return Ok(false);
        }
        for (message, prepared) in pending.iter().zip(prepared) {
            let window: &mut SendWindow = &mut open.window;
            if window.is_held(&message.recipient) {
                continue;
            }
            let frame = match prepared {
                Prepared::Hold => {
                    window.hold(&message.recipient);
                    continue;
                }
                Prepared::Fail(errors) => {
                    tracing::info!("shard {shard}: message {} fails without being sent: {errors:?}", message.id);
                    reports.outcomes.statuses.push(StatusUpdate::failed(&message.id, errors));
                    continue;
                }
                Prepared::MarkRead { message_id } => ClientFrame::MarkRead { id: message.id.clone(), message_id },
                Prepared::Message { body, .. } => {
                    ClientFrame::Send { id: message.id.clone(), to: message.recipient.clone(), message: body }
                }
            };
            if !open.upstream.send(frame) {
                return Ok(false);
            }
            window.sent(message.id.clone());
        }
        Ok(true)
    }

    /// Fetches the links of the prepared messages (each link once), and
    /// names the fetched media by id; false when the session closed.
    async fn resolve_links(
        &mut self,
        pending: &[PendingMessage],
        prepared: &mut [Prepared],
        open: &mut OpenSession,
        reports: &mut SessionReports,
    ) -> StoreResult<bool> {
        let mut links: Vec<String> = Vec::new();
        for entry in prepared.iter() {
            if let Prepared::Message { body, .. } = entry {
                for slot in media_slots(body) {
                    if let Some(MediaName::Link(link)) = media_name(body, &slot) {
                        if !links.contains(&link) {
                            links.push(link);
                        }
                    }
                }
            }
        }
        if links.is_empty() {
            return Ok(true);
        }
        let fetcher = self.links.clone();
        let fetches = futures::stream::iter(links)
            .map(|link| {
                let fetcher = fetcher.clone();
                async move {
                    let fetched = fetcher.fetch(&link).await;
                    (link, fetched)
                }
            })
            .buffer_unordered(LINKS_AT_ONCE)
            .collect::<HashMap<_, _>>();
        let (fetched, alive) = absorbing(fetches, self.target.shard, open, reports).await;
        for (message, entry) in pending.iter().zip(prepared.iter_mut()) {
            let Prepared::Message { body, media } = entry else { continue };
            let mut outcome = None;
            let mut renamed = false;
            for slot in media_slots(body) {
                let Some(MediaName::Link(link)) = media_name(body, &slot) else { continue };
                match fetched.get(&link) {
                    Some(Ok(Ok(id))) => {
                        name_by_id(body, &slot, id);
                        media.push(id.clone());
                        renamed = true;
                    }
                    Some(Ok(Err(failure))) => {
                        outcome = Some(Prepared::Fail(vec![failure.clone()]));
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::warn!("shard {}: a fetched link could not be recorded: {e}", self.target.shard);
                        outcome = Some(Prepared::Hold);
                        break;
                    }
                    None => {
                        outcome = Some(Prepared::Hold);
                        break;
                    }
                }
            }
            match outcome {
                Some(outcome) => *entry = outcome,
                None if renamed => {
                    if let Err(e) = self.store.replace_message_body(&message.id, &body.to_string()).await {
                        tracing::warn!(
                            "message {}: cannot keep its fetched media ids (a resend fetches again): {e}",
                            message.id
                        );
                    }
                }
                None => {}
            }
        }
        Ok(alive)
    }

    /// Uploads the media the prepared messages name that this session has
    /// not uploaded, and waits for their answers; false when the session closed.
    async fn upload_media(
        &mut self,
        prepared: &mut [Prepared],
        open: &mut OpenSession,
        reports: &mut SessionReports,
    ) -> StoreResult<bool> {
        let shard = self.target.shard;
        let mut needed: Vec<String> = Vec::new();
        for entry in prepared.iter() {
            if let Prepared::Message { media, .. } = entry {
                for id in media {
                    if !open.uploaded.contains(id) && !needed.contains(id) {
                        needed.push(id.clone());
                    }
                }
            }
        }
        if needed.is_empty() {
            return Ok(true);
        }
        // Answers to uploads of earlier rounds that were given up on.
        reports.media_answers.clear();
        let mut failed: HashMap<String, UpstreamError> = HashMap::new();
        let mut awaiting: HashSet<String> = HashSet::new();
        for id in needed {
            match media_upload::upload(&self.store, &self.media, &open.upstream, &id).await? {
                UploadStart::Sent => {
                    awaiting.insert(id);
                }
                UploadStart::Unavailable(e) => {
                    failed.insert(id, e);
                }
                UploadStart::SessionClosed => return Ok(false),
            }
        }
        let give_up = Instant::now() + UPLOAD_ANSWER_TIMEOUT;
        let mut alive = true;
        loop {
            awaiting.retain(|id| match reports.media_answers.remove(id) {
                None => true,
                Some(None) => {
                    open.uploaded.insert(id.clone());
                    false
                }
                Some(Some(reason)) => {
                    let details = format!("the upstream refused medium {id}: {reason}");
                    failed.insert(id.clone(), error(1014, "Media upload error", details));
                    false
                }
            });
            if awaiting.is_empty() || !alive {
                break;
            }
            tokio::select! {
                event = open.upstream.events.recv() => alive = reports.absorb(shard, event, &mut open.upstream),
                _ = tokio::time::sleep_until(give_up) => {
                    tracing::warn!("shard {shard}: no answer to the upload of {awaiting:?}; their messages wait");
                    break;
                }
            }
        }
        if !alive {
            return Ok(false);
        }
        for entry in prepared.iter_mut() {
            let Prepared::Message { media, .. } = entry else { continue };
            if let Some(e) = media.iter().find_map(|id| failed.get(id)) {
                *entry = Prepared::Fail(vec![e.clone()]);
            } else if media.iter().any(|id| awaiting.contains(id)) {
                *entry = Prepared::Hold;
            }
        }
        Ok(true)
    }
}

/// What a pending row becomes, before its media are seen to.
fn prepare(message: &PendingMessage) -> Prepared {
    if message.kind == MARK_READ_KIND {
        let target = serde_json::from_str::<Value>(&message.body)
            .ok()
            .and_then(|body| body.get("message_id")?.as_str().map(str::to_string));
        return match target {
            Some(message_id) => Prepared::MarkRead { message_id },
            None => Prepared::Fail(vec![error(1009, "Parameter value is not valid", "a read mark without message_id")]),
        };
    }
    let body = upstream_message(&message.body);
    let media = media_slots(&body)
        .iter()
        .filter_map(|slot| match media_name(&body, slot) {
            Some(MediaName::Id(id)) => Some(id),
            _ => None,
        })
        .collect();
    Prepared::Message { body, media }
}

/// The message object an outbox body stands for: the stored JSON, or a
/// text message for a body stored as plain text by an older webapp.
fn upstream_message(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| serde_json::json!({"type": "text", "text": {"body": body}}))
}

/// Awaits `work` while gathering the session's events; its output, and
/// whether the session is still open.
async fn absorbing<F: Future>(
    work: F,
    shard: u32,
    open: &mut OpenSession,
    reports: &mut SessionReports,
) -> (F::Output, bool) {
    tokio::pin!(work);
    let mut alive = true;
    loop {
        tokio::select! {
            output = &mut work => return (output, alive),
            event = open.upstream.events.recv(), if alive => alive = reports.absorb(shard, event, &mut open.upstream),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(kind: &str, body: &str) -> PendingMessage {
        PendingMessage {
            seq: 1,
            id: "m1".into(),
            recipient: "1555".into(),
            kind: kind.into(),
            body: body.into(),
            attempts: 0,
        }
    }

    #[test]
    fn read_marks_and_messages_are_prepared_by_kind() {
        assert!(matches!(
            prepare(&pending(MARK_READ_KIND, r#"{"message_id":"in-1"}"#)),
            Prepared::MarkRead { message_id } if message_id == "in-1"
        ));
        assert!(matches!(prepare(&pending(MARK_READ_KIND, "{}")), Prepared::Fail(_)));
        let image = r#"{"type":"image","image":{"id":"4b5bf27b-8672-4d55-bc21-d096dc200d0f"}}"#;
        assert!(matches!(
            prepare(&pending("image", image)),
            Prepared::Message { media, .. } if media == vec!["4b5bf27b-8672-4d55-bc21-d096dc200d0f".to_string()]
        ));
        assert!(matches!(
            prepare(&pending("text", "plain old body")),
            Prepared::Message { body, media } if body["text"]["body"] == "plain old body" && media.is_empty()
        ));
    }
}
