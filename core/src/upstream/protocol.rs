//! Wire protocol between a coreapp and the upstream messaging network.
//!
//! One JSON object per line over TCP. The coreapp opens with [`ClientFrame::Hello`];
//! the upstream answers [`ServerFrame::Welcome`] or [`ServerFrame::Refused`]. After
//! that the upstream pings, the coreapp pongs, and messages flow both ways. The
//! fencing epoch in the hello is logged by the upstream, never trusted.

use serde::{Deserialize, Serialize};

/// Frames the coreapp sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Opens a session for (account, shard).
    Hello { account: String, shard: u32, shards: u32, node: String, epoch: i64 },
    /// Answers a ping; a session that stops ponging is closed by the upstream.
    Pong { n: u64 },
    /// An outbound message. `id` is the idempotency key: a resend is acked again
    /// but delivered once.
    Send { id: String, to: String, body: String },
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
    /// The message `id` is accepted; `server_id` is the upstream's own id.
    Ack { id: String, server_id: String },
    /// A delivery receipt for an earlier message.
    Receipt { id: String, status: ReceiptStatus, timestamp: i64 },
    /// A message from a user of the network to the account.
    Inbound { id: String, from: String, body: String, timestamp: i64 },
    /// The upstream closed this session: another session opened for the same
    /// (account, shard), or the keepalive timed out.
    Kicked { reason: String },
}

/// Receipt statuses, in the order the upstream emits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    Sent,
    Delivered,
    Read,
}

impl ReceiptStatus {
    /// The on-prem webhook name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptStatus::Sent => "sent",
            ReceiptStatus::Delivered => "delivered",
            ReceiptStatus::Read => "read",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_as_tagged_json_lines() {
        let hello =
            ClientFrame::Hello { account: "15550001".into(), shard: 1, shards: 4, node: "coreapp-1".into(), epoch: 7 };
        let line = serde_json::to_string(&hello).unwrap();
        assert!(line.contains(r#""type":"hello""#), "{line}");
        assert_eq!(serde_json::from_str::<ClientFrame>(&line).unwrap(), hello);
        let receipt: ServerFrame =
            serde_json::from_str(r#"{"type":"receipt","id":"m1","status":"read","timestamp":5}"#).unwrap();
        assert_eq!(receipt, ServerFrame::Receipt { id: "m1".into(), status: ReceiptStatus::Read, timestamp: 5 });
    }
}
