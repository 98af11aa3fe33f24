//! Wire protocol between a coreapp and the upstream messaging network.
//!
//! One JSON object per line over TCP. The coreapp opens with [`ClientFrame::Hello`];
//! the upstream answers [`ServerFrame::Welcome`] or [`ServerFrame::Refused`]. After
//! that the upstream pings, the coreapp pongs, and messages flow both ways. The
//! fencing epoch in the hello is logged by the upstream, never trusted.
//!
//! Messages travel in the on-prem JSON shape: a [`ClientFrame::Send`] carries
//! the API's message object (`type` and the object of that type, without
//! `to`), an [`ServerFrame::Inbound`] the on-prem inbound message object
//! (`type` and its object, without `id`, `from` and `timestamp`). Media
//! travels as [`ClientFrame::MediaChunk`]s before the first message of a
//! session that uses it, and inbound media inline in the inbound frame.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest raw media chunk a coreapp sends in one frame (base64 makes it a
/// third larger on the wire, well under any frame limit).
pub const MEDIA_CHUNK_BYTES: usize = 256 * 1024;

/// Frames the coreapp sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Opens a session for (account, shard).
    Hello { account: String, shard: u32, shards: u32, node: String, epoch: i64 },
    /// Answers a ping; a session that stops ponging is closed by the upstream.
    Pong { n: u64 },
    /// An outbound message. `id` is the idempotency key: a resend is acked again
    /// but delivered once. `message` is the on-prem message object without
    /// `to`, e.g. `{"type":"text","text":{"body":"hi"}}`; media it names by
    /// `id` must have been uploaded in this session.
    Send { id: String, to: String, message: Value },
    /// Marks the inbound message `message_id` read. `id` is an outbox id,
    /// acked (and deduplicated) like a send; no receipts follow.
    MarkRead { id: String, message_id: String },
    /// One chunk of media `media_id`, starting at byte `offset`; `data` is
    /// base64. The chunk with `last` set ends the upload, and the upstream
    /// answers [`ServerFrame::MediaStored`] or [`ServerFrame::MediaRefused`].
    MediaChunk { media_id: String, mime_type: String, sha256: String, offset: u64, data: String, last: bool },
    /// Asks which of `inputs` (phone numbers as the API got them) are on the
    /// network; answered by [`ServerFrame::ContactsChecked`] with the same `id`.
    CheckContacts { id: String, inputs: Vec<String> },
    /// Closes the session cleanly.
    Bye,
}

/// Frames the upstream sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The session is open.
    Welcome { session: String },
    /// The session was not opened (banned, refused by a fault, bad hello).
    Refused { reason: String },
    /// Keepalive; answer with [`ClientFrame::Pong`] carrying the same `n`.
    Ping { n: u64 },
    /// The message (or mark-read) `id` is accepted; `server_id` is the upstream's own id.
    Ack { id: String, server_id: String },
    /// A status change of an earlier message. `failed` comes with `errors`
    /// and is final; a failed message gets no other receipt.
    Receipt {
        id: String,
        status: ReceiptStatus,
        timestamp: i64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        errors: Vec<UpstreamError>,
    },
    /// A message from a user of the network to the account. `message` is the
    /// on-prem inbound object without `id`, `from` and `timestamp`, e.g.
    /// `{"type":"image","image":{"mime_type":"image/jpeg","sha256":"..","caption":"x"}}`;
    /// `media` carries the bytes of a media message.
    Inbound {
        id: String,
        from: String,
        timestamp: i64,
        message: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile_name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        media: Option<InboundMedia>,
    },
    /// The upload of `media_id` is complete and its bytes hash to `sha256`.
    MediaStored { media_id: String, sha256: String },
    /// The upload of `media_id` was refused (bad chunk order, wrong hash, too large).
    MediaRefused { media_id: String, reason: String },
    /// The answer to [`ClientFrame::CheckContacts`] `id`.
    ContactsChecked { id: String, contacts: Vec<ContactCheck> },
    /// The upstream closed this session: another session opened for the same
    /// (account, shard), or the keepalive timed out.
    Kicked { reason: String },
}

/// Receipt statuses, in the order the upstream emits them (`failed` instead of all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl ReceiptStatus {
    /// The on-prem webhook name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptStatus::Sent => "sent",
            ReceiptStatus::Delivered => "delivered",
            ReceiptStatus::Read => "read",
            ReceiptStatus::Failed => "failed",
        }
    }
}

/// An error in the on-prem shape (`code`, `title`, optional `details`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamError {
    /// On-prem error code, e.g. 1013 (user is not valid) or 2001 (template missing).
    pub code: i64,
    /// Short title.
    pub title: String,
    /// What exactly went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// The bytes of an inbound media message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMedia {
    /// Its MIME type.
    pub mime_type: String,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// The bytes, base64.
    pub data: String,
}

/// One contact's check result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactCheck {
    /// The input as asked.
    pub input: String,
    /// `valid` or `invalid`.
    pub status: String,
    /// The WhatsApp id of a valid input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_round_trip_as_tagged_json_lines() {
        let hello =
            ClientFrame::Hello { account: "15550001".into(), shard: 1, shards: 4, node: "coreapp-1".into(), epoch: 7 };
        let line = serde_json::to_string(&hello).unwrap();
        assert!(line.contains(r#""type":"hello""#), "{line}");
        assert_eq!(serde_json::from_str::<ClientFrame>(&line).unwrap(), hello);
        let receipt: ServerFrame =
            serde_json::from_str(r#"{"type":"receipt","id":"m1","status":"read","timestamp":5}"#).unwrap();
        assert_eq!(
            receipt,
            ServerFrame::Receipt { id: "m1".into(), status: ReceiptStatus::Read, timestamp: 5, errors: vec![] }
        );
    }

    #[test]
    fn a_message_object_travels_unchanged() {
        let send = ClientFrame::Send {
            id: "m1".into(),
            to: "15551234".into(),
            message: json!({"type":"location","location":{"latitude":1.5,"longitude":2.5}}),
        };
        let line = serde_json::to_string(&send).unwrap();
        assert_eq!(serde_json::from_str::<ClientFrame>(&line).unwrap(), send);
    }
}
