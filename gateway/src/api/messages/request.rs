//! The body of `POST /v1/messages`: the recipient and the fields every
//! message shares, and the one content field of its `type`. Checking it
//! yields a [`ValidMessage`]: the recipient, and the [`OutboundMessage`]
//! the coreapp sends upstream as it is, in canonical form (fields in a fixed
//! order, defaults filled in, ids normalized, nothing the API does not know).

use super::checks;
use super::contact_cards::{self, ContactCard};
use super::hsm::Hsm;
use super::interactive::Interactive;
use super::location::Location;
use super::media::{MediaObject, MediaRef, MediaRules};
use super::template::Template;
use super::text::Text;
use crate::error::ApiError;
use serde::{Deserialize, Serialize};

/// Longest recipient, in digits (wa_ids are at most 15; the column holds 64).
const MAX_RECIPIENT_DIGITS: usize = 20;
/// The message types, in the order errors list them.
const MESSAGE_TYPES: [&str; 11] = [
    "text",
    "template",
    "hsm",
    "image",
    "document",
    "audio",
    "video",
    "sticker",
    "location",
    "contacts",
    "interactive",
];

/// The body of a send.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessageRequest {
    /// Recipient phone number, digits with an optional leading `+`.
    pub to: Option<String>,
    /// Message type; `text` when absent, as in the on-prem client.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `individual` (the only kind there is).
    pub recipient_type: Option<String>,
    /// How long the message may wait for delivery; accepted for
    /// compatibility, not forwarded (delivery is retried until the upstream
    /// answers).
    pub ttl: Option<Ttl>,
    /// The message this one replies to.
    pub context: Option<Context>,
    /// Whether the recipient's app previews a link of a text message.
    pub preview_url: Option<bool>,
    /// A `text` message's content.
    pub text: Option<Text>,
    /// A `template` message's content.
    pub template: Option<Template>,
    /// An `hsm` message's content.
    pub hsm: Option<Hsm>,
    /// An `image` message's content.
    pub image: Option<MediaObject>,
    /// A `document` message's content.
    pub document: Option<MediaObject>,
    /// An `audio` message's content.
    pub audio: Option<MediaObject>,
    /// A `video` message's content.
    pub video: Option<MediaObject>,
    /// A `sticker` message's content.
    pub sticker: Option<MediaObject>,
    /// A `location` message's content.
    pub location: Option<Location>,
    /// A `contacts` message's content.
    pub contacts: Option<Vec<ContactCard>>,
    /// An `interactive` message's content.
    pub interactive: Option<Interactive>,
}

/// A `ttl`: a number of seconds or a duration string, as clients send it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Ttl {
    /// Seconds.
    Seconds(u64),
    /// A duration as text.
    Text(String),
}

/// `context`: the message replied to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// Its id.
    pub message_id: Option<String>,
}

/// The content of a message, by type; serialized as `"<type>": content`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    /// `text`.
    Text(Text),
    /// `template`.
    Template(Template),
    /// `hsm`.
    Hsm(Hsm),
    /// `image`.
    Image(MediaObject),
    /// `document`.
    Document(MediaObject),
    /// `audio`.
    Audio(MediaObject),
    /// `video`.
    Video(MediaObject),
    /// `sticker`.
    Sticker(MediaObject),
    /// `location`.
    Location(Location),
    /// `contacts`.
    Contacts(Vec<ContactCard>),
    /// `interactive` (boxed: by far the largest content).
    Interactive(Box<Interactive>),
}

impl Content {
    /// The message type: also the outbox `kind` and the router's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Content::Text(_) => "text",
            Content::Template(_) => "template",
            Content::Hsm(_) => "hsm",
            Content::Image(_) => "image",
            Content::Document(_) => "document",
            Content::Audio(_) => "audio",
            Content::Video(_) => "video",
            Content::Sticker(_) => "sticker",
            Content::Location(_) => "location",
            Content::Contacts(_) => "contacts",
            Content::Interactive(_) => "interactive",
        }
    }
}

/// The message object the coreapp sends upstream: the request without
/// `to`, `recipient_type` and `ttl`, e.g.
/// `{"type":"text","text":{"body":"hi"},"preview_url":false}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboundMessage {
    /// The type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The message replied to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
    /// The content, under the type's name.
    #[serde(flatten)]
    pub content: Content,
    /// Text messages only; `false` unless asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview_url: Option<bool>,
}

/// A request that passed every check but the existence of its media.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidMessage {
    /// Recipient, digits only.
    pub recipient: String,
    /// What is stored and sent.
    pub message: OutboundMessage,
    /// Uploaded media it refers to, which must exist.
    pub media: Vec<MediaRef>,
}

impl ValidMessage {
    /// The outbox body: the message as canonical JSON.
    pub fn body(&self) -> String {
        serde_json::to_string(&self.message).expect("a message serializes")
    }
}

impl SendMessageRequest {
    /// Checks the request; the error names the offending field.
    pub fn validate(mut self) -> Result<ValidMessage, ApiError> {
        let recipient = recipient(self.to.take())?;
        if let Some(kind) = self.recipient_type.as_deref() {
            checks::one_of(kind, "recipient_type", &["individual"])?;
        }
        if let Some(Ttl::Text(ttl)) = &self.ttl {
            checks::text(ttl, "ttl", 32)?;
        }
        if let Some(context) = &self.context {
            let id = checks::required(
                context.message_id.as_deref(),
                "context.message_id",
                "the id of the message replied to",
            )?;
            checks::text(id, "context.message_id", 128)?;
        }
        let kind = self.kind.take().unwrap_or_else(|| "text".to_string());
        let mut media = Vec::new();
        let content = self.take_content(&kind, &mut media)?;
        self.refuse_other_contents(&kind)?;
        let preview_url = match content {
            Content::Text(_) => Some(self.preview_url.unwrap_or(false)),
            _ => {
                checks::absent(&self.preview_url, "preview_url", "link previews apply to text messages only")?;
                None
            }
        };
        let message = OutboundMessage { kind: content.kind(), context: self.context, content, preview_url };
        Ok(ValidMessage { recipient, message, media })
    }

    /// The checked content of `kind`, taken out of its field.
    fn take_content(&mut self, kind: &str, media: &mut Vec<MediaRef>) -> Result<Content, ApiError> {
        let missing = |what: &str| ApiError::missing(format!("{kind} is required: a {kind} message carries {what}"));
        let medium = |object: Option<MediaObject>, media: &mut Vec<MediaRef>| -> Result<MediaObject, ApiError> {
            object.ok_or_else(|| missing("the medium, by id or link"))?.checked(
                kind,
                MediaRules::of_message(kind),
                media,
            )
        };
        Ok(match kind {
            "text" => Content::Text(self.text.take().ok_or_else(|| missing("its text in text.body"))?.checked()?),
            "template" => {
                Content::Template(self.template.take().ok_or_else(|| missing("the template"))?.checked(media)?)
            }
            "hsm" => Content::Hsm(self.hsm.take().ok_or_else(|| missing("the template"))?.checked()?),
            "image" => Content::Image(medium(self.image.take(), media)?),
            "document" => Content::Document(medium(self.document.take(), media)?),
            "audio" => Content::Audio(medium(self.audio.take(), media)?),
            "video" => Content::Video(medium(self.video.take(), media)?),
            "sticker" => Content::Sticker(medium(self.sticker.take(), media)?),
            "location" => Content::Location(self.location.take().ok_or_else(|| missing("the place"))?.checked()?),
            "contacts" => Content::Contacts(contact_cards::checked(
                self.contacts.take().ok_or_else(|| missing("the contact cards"))?,
            )?),
            "interactive" => {
                let interactive = self.interactive.take().ok_or_else(|| missing("the buttons or list"))?;
                Content::Interactive(Box::new(interactive.checked(media)?))
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "type must be one of {}, not {other:?}",
                    MESSAGE_TYPES.join(", ")
                )))
            }
        })
    }

    /// 1010 for a content field of another type (the own one was taken).
    fn refuse_other_contents(&self, kind: &str) -> Result<(), ApiError> {
        let present = [
            ("text", self.text.is_some()),
            ("template", self.template.is_some()),
            ("hsm", self.hsm.is_some()),
            ("image", self.image.is_some()),
            ("document", self.document.is_some()),
            ("audio", self.audio.is_some()),
            ("video", self.video.is_some()),
            ("sticker", self.sticker.is_some()),
            ("location", self.location.is_some()),
            ("contacts", self.contacts.is_some()),
            ("interactive", self.interactive.is_some()),
        ];
        for (field, is_present) in present {
            checks::absent(&is_present.then_some(()), field, &format!("this is a {kind} message"))?;
        }
        Ok(())
    }
}

/// The recipient's digits, without the optional leading `+`.
fn recipient(to: Option<String>) -> Result<String, ApiError> {
    let to = checks::required(to, "to", "the recipient's phone number")?;
    let digits = to.trim().strip_prefix('+').unwrap_or(to.trim());
    if digits.is_empty() || digits.len() > MAX_RECIPIENT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid(format!(
            "to must be a phone number of 1 to {MAX_RECIPIENT_DIGITS} digits, optionally after a '+', not {to:?}"
        )));
    }
    Ok(digits.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;

    fn validate(json: serde_json::Value) -> Result<ValidMessage, ApiError> {
        serde_json::from_value::<SendMessageRequest>(json).unwrap().validate()
    }

    #[test]
    fn text_is_the_default_type_and_is_stored_without_the_envelope() {
        let valid = validate(
            json!({"to": "+15551234567", "recipient_type": "individual", "ttl": 3600, "text": {"body": "hi"}}),
        )
        .unwrap();
        assert_eq!(valid.recipient, "15551234567");
        assert_eq!(valid.body(), r#"{"type":"text","text":{"body":"hi"},"preview_url":false}"#);
    }

    #[test]
    fn a_reply_keeps_its_context() {
        let valid =
            validate(json!({"to": "1555", "context": {"message_id": "ABGG"}, "type": "location", "location": {"longitude": 1, "latitude": 2}}))
                .unwrap();
        assert_eq!(
            valid.body(),
            r#"{"type":"location","context":{"message_id":"ABGG"},"location":{"longitude":1.0,"latitude":2.0}}"#
        );
    }

    #[test]
    fn content_of_another_type_and_stray_preview_are_refused() {
        let other =
            validate(json!({"to": "1555", "text": {"body": "hi"}, "image": {"link": "https://a/b"}})).unwrap_err();
        assert_eq!((other.kind, other.details.starts_with("image")), (ErrorKind::UnknownParameter, true));
        let preview =
            validate(json!({"to": "1555", "type": "image", "image": {"link": "https://a/b"}, "preview_url": true}));
        assert_eq!(preview.unwrap_err().kind, ErrorKind::UnknownParameter);
    }

    #[test]
    fn unknown_types_list_the_known_ones() {
        let err = validate(json!({"to": "1555", "type": "hologram"})).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidParameter);
        assert!(err.details.contains("interactive") && err.details.contains("hologram"), "{}", err.details);
        let missing = validate(json!({"to": "1555", "type": "sticker"})).unwrap_err();
        assert_eq!((missing.kind, missing.details.starts_with("sticker")), (ErrorKind::MissingParameter, true));
    }

    #[test]
    fn every_media_type_is_stored_by_its_kind() {
        for kind in ["image", "document", "audio", "video", "sticker"] {
            let valid = validate(json!({"to": "1555", "type": kind, kind: {"link": "https://example.com/m"}})).unwrap();
            assert_eq!(valid.message.kind, kind);
            assert_eq!(valid.body(), format!(r#"{{"type":"{kind}","{kind}":{{"link":"https://example.com/m"}}}}"#));
        }
    }
}
