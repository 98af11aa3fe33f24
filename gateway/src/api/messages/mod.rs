//! `/v1/messages`: sending messages of every on-prem type, and marking
//! received ones as read. Both only write the shard's outbox and wake the
//! shard's owner; its primary coreapp does the sending.
//!
//! - [`send`]: `POST /v1/messages`: check, route, store, answer with the id.
//! - [`mark_read`]: `PUT /v1/messages/{id}`: a `mark_read` on the shard that received it.
//! - [`request`]: the body of a send, its shared fields, and the canonical
//!   message the coreapp sends upstream.
//! - one file per content type: [`text`], [`media`] (image, document, audio,
//!   video, sticker), [`location`], [`contact_cards`], [`interactive`],
//!   [`template`] and the legacy [`hsm`], and what those two share,
//!   [`template_parts`].
//! - [`checks`]: the rules they share, with errors that name the field.

pub mod checks;
pub mod contact_cards;
pub mod hsm;
pub mod interactive;
pub mod location;
pub mod mark_read;
pub mod media;
pub mod request;
pub mod send;
pub mod template;
pub mod template_parts;
pub mod text;

pub use mark_read::mark_read;
pub use send::send;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// A fresh outbox id: `gB` and the base64url of a random UUID, in the
/// spirit of the on-prem ids; 24 characters. Sends and read marks share it,
/// since both are outbox rows the upstream dedupes by id.
pub fn new_message_id() -> String {
    format!("gB{}", URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_unique_and_url_safe() {
        let (a, b) = (new_message_id(), new_message_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
