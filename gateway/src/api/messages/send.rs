//! `POST /v1/messages`: checks a message, asks the routing policy (the
//! router plugin) for its shard, stores it durably in that shard's outbox (committed with
//! the other messages that arrived meanwhile, see [`crate::outbox_writer`]),
//! and only then answers with its id (I3). Sending is the shard primary's
//! job; it is woken in the background, and a shard without a primary keeps
//! the message until one is promoted.

use super::new_message_id;
use super::request::SendMessageRequest;
use crate::error::{ApiError, ErrorKind};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::views::Meta;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use shardgate_core::policy::RouteRequest;
use shardgate_core::store::messages::NewMessage;

/// Checks, routes, stores, then answers; wakes the shard's owner afterwards.
pub async fn send(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<SendMessageRequest>,
) -> Result<Json<SendMessageResponse>, ApiError> {
    let message = request.validate()?;
    // The medium must exist now: once acknowledged, the message is sent, and
    // a deleted medium fails it by webhook like the on-prem client does.
    for medium in &message.media {
        if state.store.media(&medium.id.to_string()).await?.is_none() {
            return Err(ApiError::new(
                ErrorKind::NotFound,
                format!(
                    "{}: there is no medium {}; upload it with POST /v1/media, or send a link",
                    medium.field, medium.id
                ),
            ));
        }
    }
    let kind = message.message.kind;
    let route = RouteRequest {
        recipient: message.recipient.clone(),
        kind: kind.to_string(),
        metadata: vec![("recipient-type".to_string(), "individual".to_string())],
    };
    let routed = state.shards.shard_of(&route).await?;
    let id = new_message_id();
    let stored = NewMessage {
        id: id.clone(),
        shard: routed.shard,
        recipient: route.recipient,
        kind: kind.to_string(),
        body: message.body(),
    };
    state.outbox.store(stored, routed.shards).await?;
    state.metrics.message_accepted();
    state.shards.wake_owner(routed.shard);
    Ok(Json(SendMessageResponse { messages: vec![MessageId { id }], meta: Meta::current() }))
}

/// The answer: `{"messages":[{"id"}],"meta":{...}}`.
#[derive(Debug, Serialize)]
pub struct SendMessageResponse {
    /// The stored message.
    pub messages: Vec<MessageId>,
    /// API status and version.
    pub meta: Meta,
}

/// The id of a stored message.
#[derive(Debug, Serialize)]
pub struct MessageId {
    /// Message id, also the upstream idempotency key.
    pub id: String,
}
