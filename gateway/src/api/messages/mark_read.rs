//! `PUT /v1/messages/{id}` with `{"status":"read"}`: marks a received
//! message as read. The mark is an outbox row (`kind` `mark_read`, body
//! `{"message_id": id}`) on the shard whose session received the message,
//! so it travels the same durable path as a send and leaves on the session
//! the sender is talking to. Marking again is harmless: the upstream takes a
//! read mark as often as it comes.

use super::checks;
use super::new_message_id;
use crate::error::{ApiError, ErrorKind};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::views::Meta;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use shardgate_core::store::messages::NewMessage;

/// The outbox kind of a read mark.
pub const MARK_READ_KIND: &str = "mark_read";

/// The body: `{"status": "read"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkReadRequest {
    /// `read`, the only status a business sets.
    pub status: Option<String>,
}

/// Queues the read mark on the receiving shard and wakes its owner.
pub async fn mark_read(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<MarkReadRequest>,
) -> Result<Json<MarkReadResponse>, ApiError> {
    let status = checks::required(request.status.as_deref(), "status", "read")?;
    checks::one_of(status, "status", &["read"])?;
    let inbound = state.store.inbound_message(&id).await?.ok_or_else(|| {
        ApiError::new(
            ErrorKind::NotFound,
            format!("no message {id:?} was received; only received messages can be marked read"),
        )
    })?;
    let mark = NewMessage {
        id: new_message_id(),
        shard: inbound.shard,
        recipient: inbound.sender,
        kind: MARK_READ_KIND.to_string(),
        body: serde_json::json!({ "message_id": inbound.id }).to_string(),
    };
    state.store.enqueue_message(&mark).await?;
    state.shards.wake_owner(inbound.shard);
    Ok(Json(MarkReadResponse { meta: Meta::current() }))
}

/// The answer: `{"meta":{...}}`.
#[derive(Debug, Serialize)]
pub struct MarkReadResponse {
    /// API status and version.
    pub meta: Meta,
}
