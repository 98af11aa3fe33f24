//! `POST /v1/messages`: validates a message, asks the routing policy (the
//! router plugin) for its shard, stores it durably in that shard's outbox,
//! and only then answers with its id (I3). Sending is the shard
//! primary's job; it is woken in the background, and a shard without a
//! primary keeps the message until one is promoted.

use crate::api::Meta;
use crate::app::AppState;
use crate::error::{ApiError, ErrorKind};
use crate::extract::ApiJson;
use axum::extract::State;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use shardgate_core::policy::RouteRequest;
use shardgate_core::store::messages::NewMessage;

/// Longest text body, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;
/// Longest recipient, in digits (wa_ids are at most 15; the column holds 64).
const MAX_RECIPIENT_DIGITS: usize = 20;

/// The body. The content fields of the message types not supported yet are
/// named (and never read) so that such a message is refused for its type,
/// not for an "unknown field".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SendMessageRequest {
    /// Recipient phone number, digits with an optional leading `+`.
    pub to: Option<String>,
    /// Message type; `text` when absent, as in the on-prem client.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `individual` (the only kind there is).
    pub recipient_type: Option<String>,
    /// The text of a `text` message.
    pub text: Option<TextContent>,
    /// Whether the recipient's app renders a link preview.
    pub preview_url: Option<bool>,
    template: Option<IgnoredAny>,
    hsm: Option<IgnoredAny>,
    image: Option<IgnoredAny>,
    document: Option<IgnoredAny>,
    audio: Option<IgnoredAny>,
    video: Option<IgnoredAny>,
    sticker: Option<IgnoredAny>,
    location: Option<IgnoredAny>,
    contacts: Option<IgnoredAny>,
    interactive: Option<IgnoredAny>,
}

/// `text` of a text message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextContent {
    /// 1 to 4096 characters.
    pub body: Option<String>,
}

/// A request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidMessage {
    /// Recipient, digits only.
    pub recipient: String,
    /// Text body.
    pub body: String,
}

impl SendMessageRequest {
    /// Checks the request; the error names the offending field.
    pub fn validate(self) -> Result<ValidMessage, ApiError> {
        let to = self.to.ok_or_else(|| ApiError::missing("to is required: the recipient's phone number"))?;
        let recipient = to.trim().strip_prefix('+').unwrap_or(to.trim()).to_string();
        if recipient.is_empty()
            || recipient.len() > MAX_RECIPIENT_DIGITS
            || !recipient.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ApiError::invalid(format!(
                "to must be a phone number of 1 to {MAX_RECIPIENT_DIGITS} digits, optionally after a '+', not {to:?}"
            )));
        }
        if let Some(kind) = self.recipient_type.as_deref().filter(|k| *k != "individual") {
            return Err(ApiError::invalid(format!("recipient_type must be individual, not {kind:?}")));
        }
        let kind = self.kind.as_deref().unwrap_or("text");
        if kind != "text" {
            return Err(ApiError::invalid(format!(
                "type {kind:?} is not supported by this gateway yet; only text messages are"
            )));
        }
        let body = self
            .text
            .and_then(|t| t.body)
            .ok_or_else(|| ApiError::missing("text.body is required for a text message"))?;
        let chars = body.chars().count();
        if chars == 0 {
            return Err(ApiError::invalid("text.body must not be empty"));
        }
        if chars > MAX_TEXT_CHARS {
            return Err(ApiError::new(
                ErrorKind::MessageTooLong,
                format!("text.body is {chars} characters long; the limit is {MAX_TEXT_CHARS}"),
            ));
        }
        Ok(ValidMessage { recipient, body })
    }
}

/// Validates, routes, stores, then answers; wakes the shard's owner afterwards.
pub async fn send(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<SendMessageRequest>,
) -> Result<Json<SendMessageResponse>, ApiError> {
    let message = request.validate()?;
    let route = RouteRequest {
        recipient: message.recipient,
        kind: "text".to_string(),
        metadata: vec![("recipient-type".to_string(), "individual".to_string())],
    };
    let shard = state.shards.shard_of(&route).await?;
    let id = new_message_id();
    state
        .store
        .enqueue_message(&NewMessage {
            id: id.clone(),
            shard,
            recipient: route.recipient,
            kind: route.kind,
            body: message.body,
        })
        .await?;
    state.metrics.message_accepted();
    state.shards.wake_owner(shard);
    Ok(Json(SendMessageResponse { messages: vec![MessageId { id }], meta: Meta::current() }))
}

/// A fresh message id: `gB` and the base64url of a random UUID, in the
/// spirit of the on-prem ids; 24 characters.
pub fn new_message_id() -> String {
    format!("gB{}", URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> SendMessageRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn leading_plus_is_stripped_and_type_defaults_to_text() {
        let valid = request(r#"{"to":"+15551234567","text":{"body":"hi"}}"#).validate().unwrap();
        assert_eq!(valid, ValidMessage { recipient: "15551234567".into(), body: "hi".into() });
    }

    #[test]
    fn unsupported_type_is_refused_for_its_type() {
        let err = request(r#"{"to":"1555","type":"image","image":{"id":"x"}}"#).validate().unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidParameter);
        assert!(err.details.contains("image"), "{}", err.details);
    }

    #[test]
    fn body_length_counts_characters_not_bytes() {
        let body = "é".repeat(MAX_TEXT_CHARS);
        let json = serde_json::json!({"to":"1555","text":{"body":body}}).to_string();
        assert!(request(&json).validate().is_ok());
    }

    #[test]
    fn message_ids_are_unique_and_url_safe() {
        let (a, b) = (new_message_id(), new_message_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
