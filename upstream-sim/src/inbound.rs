//! Messages from users of the network to an account, and the account's read
//! marks on them.
//!
//! `POST /sim/inbound` plays a user: [`InboundRequest::build`] turns its body
//! (the old `{"body": "..."}` text form, or any on-prem inbound message
//! object) into an [`NewInbound`], giving a media message its bytes (sent
//! inline, or generated to a size) and filling in their MIME type and
//! SHA-256. [`Inbox`] keeps every injected message and every `MarkRead` the
//! coreapps sent, deduplicated by outbox id like sends.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use shardgate_core::upstream::protocol::InboundMedia;
use uuid::Uuid;

use crate::media::{sha256_hex, MAX_MEDIA_BYTES};
use crate::state::SessionRecord;

/// Bytes generated for a media message that names neither `data` nor `size`.
const DEFAULT_MEDIA_BYTES: u64 = 1024;

/// `POST /sim/inbound`: a message from user `from` to `account`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundRequest {
    /// The receiving account.
    pub account: String,
    /// Absent: the network picks the shard from `from`.
    pub shard: Option<u32>,
    /// The sending user.
    pub from: String,
    /// The text of a text message (the original form); or give `message`.
    pub body: Option<String>,
    /// An on-prem inbound message object: `type` and its object.
    pub message: Option<Value>,
    /// The sender's profile name, as the webhook's `contacts` show it.
    pub profile_name: Option<String>,
    /// The bytes of a media message.
    pub media: Option<MediaSpec>,
}

/// The bytes of an injected media message: `data` (base64), or `size`
/// bytes generated; 1 KiB generated when neither is given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSpec {
    /// The bytes, base64.
    pub data: Option<String>,
    /// How many bytes to generate instead.
    pub size: Option<u64>,
    /// The MIME type, when the message object names none.
    pub mime_type: Option<String>,
}

/// An inbound message ready for the state to route.
#[derive(Debug, Clone, PartialEq)]
pub struct NewInbound {
    /// The receiving account.
    pub account: String,
    /// The shard asked for, if any.
    pub shard: Option<u32>,
    /// The sending user.
    pub from: String,
    /// The on-prem inbound message object.
    pub message: Value,
    /// The sender's profile name.
    pub profile_name: Option<String>,
    /// The bytes of a media message.
    pub media: Option<InboundMedia>,
}

/// What `POST /sim/inbound` says of an injected medium.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectedMedia {
    /// Its MIME type.
    pub mime_type: String,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

impl InjectedMedia {
    /// What to say of `media`.
    pub fn of(media: &InboundMedia) -> InjectedMedia {
        InjectedMedia {
            mime_type: media.mime_type.clone(),
            sha256: media.sha256.clone(),
            size: decoded_len(&media.data),
        }
    }
}

impl InboundRequest {
    /// Builds the message; `Err` says what is wrong with the request.
    pub fn build(self) -> Result<NewInbound, String> {
        let mut message = match (self.body, self.message) {
            (Some(body), None) => json!({"type": "text", "text": {"body": body}}),
            (None, Some(message @ Value::Object(_))) => message,
            (None, Some(_)) => return Err("message must be an object".into()),
            (Some(_), Some(_)) => return Err("give body or message, not both".into()),
            (None, None) => return Err("give body (a text) or message (an inbound message object)".into()),
        };
        let kind = message["type"].as_str().ok_or("message.type must be a string")?.to_owned();
        let media = match default_mime_type(&kind) {
            Some(default_mime) => {
                Some(attach_media(&mut message, &kind, self.media.unwrap_or_default(), default_mime)?)
            }
            None if self.media.is_some() => return Err(format!("media goes with media messages, not {kind:?}")),
            None => None,
        };
        Ok(NewInbound {
            account: self.account,
            shard: self.shard,
            from: self.from,
            message,
            profile_name: self.profile_name,
            media,
        })
    }
}

/// Gives the media message its bytes and writes their MIME type and SHA-256
/// into its object (keeping `caption`, `filename` and anything else given).
fn attach_media(message: &mut Value, kind: &str, spec: MediaSpec, default_mime: &str) -> Result<InboundMedia, String> {
    let bytes = match (spec.data, spec.size) {
        (Some(data), None) => BASE64.decode(data.as_bytes()).map_err(|e| format!("media.data is not base64: {e}"))?,
        (None, size) => generated(size.unwrap_or(DEFAULT_MEDIA_BYTES), &Uuid::new_v4().to_string(), MAX_MEDIA_BYTES)?,
        (Some(_), Some(_)) => return Err("give media.data or media.size, not both".into()),
    };
    if bytes.len() as u64 > MAX_MEDIA_BYTES {
        return Err(format!("media larger than {MAX_MEDIA_BYTES} bytes"));
    }
    let object = message
        .as_object_mut()
        .expect("checked to be an object")
        .entry(kind)
        .or_insert_with(|| Value::Object(Map::new()));
    let object = object.as_object_mut().ok_or_else(|| format!("message.{kind} must be an object"))?;
    let mime_type = object
        .get("mime_type")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or(spec.mime_type)
        .unwrap_or_else(|| default_mime.to_owned());
    let sha256 = sha256_hex(&bytes);
    object.insert("mime_type".into(), json!(mime_type));
    object.insert("sha256".into(), json!(sha256));
    Ok(InboundMedia { mime_type, sha256, data: BASE64.encode(&bytes) })
}

/// The MIME type of a media message of `kind` that names none; `None` for
/// kinds that carry no media.
fn default_mime_type(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "image" => "image/jpeg",
        "document" => "application/pdf",
        "audio" => "audio/mpeg",
        "voice" => "audio/ogg; codecs=opus",
        "video" => "video/mp4",
        "sticker" => "image/webp",
        _ => return None,
    })
}

/// `size` pseudo-random bytes (xorshift seeded by `seed`), so that two
/// injected media never share a hash.
fn generated(size: u64, seed: &str, cap: u64) -> Result<Vec<u8>, String> {
    if size > cap {
        return Err(format!("media.size is larger than {cap} bytes"));
    }
    let digest = sha256_hex(seed.as_bytes());
    let mut x = u64::from_str_radix(&digest[..16], 16).expect("hex") | 1;
    Ok((0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect())
}

/// One injected message, as `GET /sim/inbound` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundRecord {
    /// Its id.
    pub id: String,
    /// The receiving account.
    pub account: String,
    /// The shard it was routed to.
    pub shard: u32,
    /// The sending user.
    pub from: String,
    /// The sender's profile name.
    pub profile_name: Option<String>,
    /// The message object as sent (media bytes left out).
    pub message: Value,
    /// The size of its media bytes, for a media message.
    pub media_size: Option<u64>,
    /// When it was injected.
    pub injected_at_ms: i64,
    /// When the first read mark for it arrived.
    pub read_at_ms: Option<i64>,
    /// Read marks received for it, resends included.
    pub read_marks: u64,
}

/// One `MarkRead` frame, resends included, as `GET /sim/mark_reads` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkReadRecord {
    /// The outbox id, the idempotency key within the account.
    pub id: String,
    /// The inbound message marked read.
    pub message_id: String,
    /// Whether `message_id` is a message injected to this account.
    pub known: bool,
    /// The account.
    pub account: String,
    /// The shard of the session it came on.
    pub shard: u32,
    /// The session it came on.
    pub session: String,
    /// The node of that session.
    pub node: String,
    /// The epoch of that session.
    pub epoch: i64,
    /// When the sim received it.
    pub received_at_ms: i64,
    /// The server id it was acked with (the same for every resend).
    pub server_id: String,
    /// Whether the id had been received before.
    pub resend: bool,
}

/// Injected messages and the read marks on them.
#[derive(Debug, Default)]
pub struct Inbox {
    messages: Vec<InboundRecord>,
    /// (account, inbound id) → index in `messages`.
    index: HashMap<(String, String), usize>,
    marks: Vec<MarkReadRecord>,
    /// (account, outbox id) → server id.
    mark_ids: HashMap<(String, String), String>,
}

impl Inbox {
    /// Records an injected message routed to `shard` as `id`.
    pub fn record(&mut self, id: &str, shard: u32, inbound: &NewInbound, now_ms: i64) {
        self.index.insert((inbound.account.clone(), id.to_owned()), self.messages.len());
        self.messages.push(InboundRecord {
            id: id.to_owned(),
            account: inbound.account.clone(),
            shard,
            from: inbound.from.clone(),
            profile_name: inbound.profile_name.clone(),
            message: inbound.message.clone(),
            media_size: inbound.media.as_ref().map(|m| decoded_len(&m.data)),
            injected_at_ms: now_ms,
            read_at_ms: None,
            read_marks: 0,
        });
    }

    /// Records a `MarkRead` from session `from`; returns the server id to ack
    /// with and whether `id` is a resend.
    pub fn mark_read(&mut self, from: &SessionRecord, id: &str, message_id: &str, now_ms: i64) -> (String, bool) {
        let key = (from.account.clone(), id.to_owned());
        let resend = self.mark_ids.contains_key(&key);
        let server_id = self.mark_ids.entry(key).or_insert_with(|| format!("srv-{}", Uuid::new_v4().simple())).clone();
        let target = self.index.get(&(from.account.clone(), message_id.to_owned())).copied();
        if let Some(index) = target {
            let message = &mut self.messages[index];
            message.read_marks += 1;
            message.read_at_ms.get_or_insert(now_ms);
        }
        self.marks.push(MarkReadRecord {
            id: id.to_owned(),
            message_id: message_id.to_owned(),
            known: target.is_some(),
            account: from.account.clone(),
            shard: from.shard,
            session: from.id.clone(),
            node: from.node.clone(),
            epoch: from.epoch,
            received_at_ms: now_ms,
            server_id: server_id.clone(),
            resend,
        });
        (server_id, resend)
    }

    /// Every injected message, in injection order.
    pub fn messages(&self) -> Vec<InboundRecord> {
        self.messages.clone()
    }

    /// Every `MarkRead` frame, in arrival order.
    pub fn marks(&self) -> Vec<MarkReadRecord> {
        self.marks.clone()
    }

    /// `MarkRead` frames received, resends included.
    pub fn marks_received(&self) -> u64 {
        self.marks.len() as u64
    }
}

/// How many bytes the padded base64 `data` decodes to.
fn decoded_len(data: &str) -> u64 {
    let padding = data.bytes().rev().take_while(|&b| b == b'=').count() as u64;
    (data.len() as u64 / 4) * 3 - padding
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> InboundRequest {
        let mut body = body;
        body["account"] = json!("15550001");
        body["from"] = json!("15557777");
        serde_json::from_value(body).unwrap()
    }

    fn session() -> SessionRecord {
        SessionRecord {
            id: "s-1".into(),
            account: "15550001".into(),
            shard: 0,
            shards: 1,
            node: "n1".into(),
            epoch: 1,
            opened_at_ms: 0,
            last_pong_ms: None,
            closed_at_ms: None,
            close_reason: None,
            open: true,
        }
    }

    #[test]
    fn the_original_body_form_is_a_text_message() {
        let built = request(json!({"body": "hi", "profile_name": "Ann"})).build().unwrap();
        assert_eq!(built.message, json!({"type":"text","text":{"body":"hi"}}));
        assert_eq!((built.profile_name.as_deref(), built.media), (Some("Ann"), None));
    }

    #[test]
    fn a_media_message_gets_its_bytes_with_their_mime_type_and_hash() {
        let data = BASE64.encode(b"a small picture");
        let message = json!({"type":"image","image":{"caption":"look"}});
        let built = request(json!({"message": message, "media": {"data": data}})).build().unwrap();

        let media = built.media.unwrap();
        assert_eq!((media.mime_type.as_str(), media.data.as_str()), ("image/jpeg", data.as_str()));
        assert_eq!(media.sha256, sha256_hex(b"a small picture"));
        let expected = json!({"caption":"look","mime_type":"image/jpeg","sha256":media.sha256});
        assert_eq!(built.message["image"], expected);
    }

    #[test]
    fn media_bytes_are_generated_to_a_size_or_by_default() {
        let voice = request(json!({"message": {"type":"voice"}, "media": {"size": 3000}})).build().unwrap();
        let media = voice.media.unwrap();
        assert_eq!(BASE64.decode(&media.data).unwrap().len(), 3000);
        assert_eq!(voice.message["voice"]["mime_type"], json!("audio/ogg; codecs=opus"));
        let doc = json!({"type":"document","document":{"filename":"a.txt","mime_type":"text/plain"}});
        let built = request(json!({"message": doc})).build().unwrap();
        assert_eq!(BASE64.decode(built.media.unwrap().data).unwrap().len(), 1024);
        assert_eq!(built.message["document"]["mime_type"], json!("text/plain"), "a given MIME type stays");
    }

    #[test]
    fn other_types_pass_through_unchanged_and_bad_requests_say_why() {
        let reply =
            json!({"type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":"y","title":"Yes"}}});
        assert_eq!(request(json!({"message": reply.clone()})).build().unwrap().message, reply);
        for bad in [
            json!({}),
            json!({"body": "x", "message": {"type":"text"}}),
            json!({"message": {"text": {"body": "no type"}}}),
            json!({"message": {"type":"location"}, "media": {"size": 1}}),
            json!({"message": {"type":"image"}, "media": {"size": MAX_MEDIA_BYTES + 1}}),
            json!({"message": {"type":"image"}, "media": {"data": "not base64!"}}),
        ] {
            assert!(request(bad.clone()).build().is_err(), "{bad}");
        }
    }

    #[test]
    fn read_marks_are_deduplicated_by_id_and_stamp_the_message_they_name() {
        let mut inbox = Inbox::default();
        let inbound = request(json!({"body": "hi"})).build().unwrap();
        inbox.record("in-1", 0, &inbound, 10);

        let (first, resend) = inbox.mark_read(&session(), "r1", "in-1", 20);
        assert!(!resend);
        assert_eq!(inbox.mark_read(&session(), "r1", "in-1", 30), (first, true));
        inbox.mark_read(&session(), "r2", "in-unknown", 40);

        let message = &inbox.messages()[0];
        assert_eq!((message.read_at_ms, message.read_marks), (Some(20), 2));
        let known: Vec<_> = inbox.marks().iter().map(|m| (m.id.clone(), m.resend, m.known)).collect();
        assert_eq!(known, vec![("r1".into(), false, true), ("r1".into(), true, true), ("r2".into(), false, false)]);
        assert_eq!(inbox.marks_received(), 3);
    }
}
