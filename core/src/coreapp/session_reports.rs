//! What a shard's session reported and the database does not hold yet:
//! acks, receipts, inbound messages (and their media), contact check
//! answers, and the answers to media uploads. The shard worker gathers the
//! session's events here during a round and records them at its end in one
//! transaction, with their callbacks; a failed write keeps them for the next
//! round, so a database hiccup loses no receipt.

use super::contact_checks::ContactQuestions;
use super::inbound_media::keep_inbound_media;
use super::session::{SessionEvent, UpstreamSession};
use crate::cluster::Settings;
use crate::media_dir::MediaDir;
use crate::store::callbacks::CallbackFilter;
use crate::store::contacts::ContactRow;
use crate::store::messages::{InboundMessage, MessageStatus, ReceivedMessage, SessionOutcomes, StatusUpdate};
use crate::store::{Store, StoreResult};
use crate::upstream::protocol::{ContactCheck, InboundMedia, ReceiptStatus};
use std::collections::HashMap;
use tokio::sync::mpsc::error::TryRecvError;

/// Outcomes kept at most while the database refuses them; beyond, they are
/// dropped with an error line rather than exhaust memory (acks come again
/// with resends; receipts are lost).
const MAX_UNRECORDED: usize = 100_000;

/// Reports waiting to be recorded.
#[derive(Debug, Default)]
pub struct SessionReports {
    /// Acks, statuses, inbound messages and notices for the database.
    pub outcomes: SessionOutcomes,
    /// Answers to uploads: `None` stored, `Some(reason)` refused.
    pub media_answers: HashMap<String, Option<String>>,
    contact_answers: Vec<(String, Vec<ContactCheck>)>,
    contact_rows: Vec<ContactRow>,
    /// Media of inbound messages, by index in `outcomes.inbound`.
    inbound_media: Vec<(usize, InboundMedia)>,
}

impl SessionReports {
    /// Whether nothing waits to be recorded.
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
            && self.contact_answers.is_empty()
            && self.contact_rows.is_empty()
            && self.inbound_media.is_empty()
    }

    /// Takes `event` and every event already queued behind it; false when
    /// the session closed.
    pub fn absorb(&mut self, shard: u32, event: Option<SessionEvent>, session: &mut UpstreamSession) -> bool {
        let mut next = event;
        loop {
            match next {
                Some(SessionEvent::Closed(reason)) => {
                    tracing::info!("shard {shard} session ended: {reason}");
                    return false;
                }
                Some(event) => self.take(shard, event),
                None => return false,
            }
            match session.events.try_recv() {
                Ok(event) => next = Some(event),
                Err(_) => return true,
            }
        }
    }

    /// Takes the next event if one is already queued, without waiting (the
    /// rest wait for the next round); false when the session closed.
    pub fn absorb_ready(&mut self, shard: u32, session: &mut UpstreamSession) -> bool {
        match session.events.try_recv() {
            Ok(event) => self.absorb(shard, Some(event), session),
            Err(TryRecvError::Empty) => true,
            Err(TryRecvError::Disconnected) => self.absorb(shard, None, session),
        }
    }

    fn take(&mut self, shard: u32, event: SessionEvent) {
        match event {
            SessionEvent::Ack { id, server_id } => self.outcomes.acks.push((id, server_id)),
            SessionEvent::Receipt { id, status, timestamp, errors } => {
                let status = match status {
                    ReceiptStatus::Sent => MessageStatus::Sent,
                    ReceiptStatus::Delivered => MessageStatus::Delivered,
                    ReceiptStatus::Read => MessageStatus::Read,
                    ReceiptStatus::Failed => MessageStatus::Failed,
                };
                // The upstream stamps in milliseconds; webhooks speak seconds.
                self.outcomes.statuses.push(StatusUpdate { id, status, timestamp_s: timestamp / 1000, errors });
            }
            SessionEvent::Inbound { id, from, message, timestamp, profile_name, media } => {
                let index = self.outcomes.inbound.len();
                let message = InboundMessage {
                    id,
                    sender: from,
                    body: message.to_string(),
                    timestamp_s: timestamp / 1000,
                    shard,
                };
                self.outcomes.inbound.push(ReceivedMessage { message, profile_name });
                if let Some(media) = media {
                    self.inbound_media.push((index, media));
                }
            }
            SessionEvent::MediaStored { media_id } => {
                self.media_answers.insert(media_id, None);
            }
            SessionEvent::MediaRefused { media_id, reason } => {
                self.media_answers.insert(media_id, Some(reason));
            }
            SessionEvent::ContactsChecked { id, contacts } => self.contact_answers.push((id, contacts)),
            SessionEvent::Closed(_) => {}
        }
    }

    /// Records everything gathered: contact results, inbound media, then the
    /// outcomes with the callbacks the settings in force allow. Returns how
    /// many callbacks were written.
    pub async fn record(
        &mut self,
        store: &Store,
        media_dir: &MediaDir,
        settings: &Settings,
        questions: &mut ContactQuestions,
    ) -> StoreResult<usize> {
        for (id, contacts) in self.contact_answers.drain(..) {
            self.contact_rows.extend(questions.answered(&id, contacts));
        }
        if !self.contact_rows.is_empty() {
            store.record_contact_results(&self.contact_rows).await?;
            self.contact_rows.clear();
        }
        for (index, media) in std::mem::take(&mut self.inbound_media) {
            let received = &mut self.outcomes.inbound[index];
            if let Some(notice) = keep_inbound_media(store, media_dir, &settings.media, received, media).await {
                self.outcomes.notices.push(notice);
            }
        }
        match store.record_outcomes(&self.outcomes, CallbackFilter::of(settings)).await {
            Ok(callbacks) => {
                self.outcomes = SessionOutcomes::default();
                Ok(callbacks)
            }
            Err(e) => {
                let kept = self.outcomes.acks.len() + self.outcomes.statuses.len() + self.outcomes.inbound.len();
                if kept > MAX_UNRECORDED {
                    tracing::error!("dropping {kept} unrecorded upstream reports: the database refused them too long");
                    self.outcomes = SessionOutcomes::default();
                }
                Err(e)
            }
        }
    }
}
