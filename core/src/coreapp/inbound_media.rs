//! Inbound media: the upstream sends the bytes of a media message inline.
//! When `media.auto_download` lists the message's type (`voice` is a type
//! of its own), the bytes go to the media directory, recorded with origin
//! `inbound`, and the message object (stored, and called back) names the
//! medium by our `id`, with its `mime_type` and `sha256`. A type not
//! downloaded keeps `mime_type` and `sha256` but has no `id`: the webhook
//! receiver learns of the medium without being able to fetch it, as with an
//! on-prem client that does not download it. A medium that cannot be stored
//! is reported by an `{"errors":[...]}` callback, and the message is still
//! stored and called back, without an `id`.

use crate::callback_payload::error;
use crate::cluster::messaging_settings::MediaSettings;
use crate::media_dir::MediaDir;
use crate::store::media::{MediaOrigin, MediaRecord};
use crate::store::messages::{ErrorNotice, ReceivedMessage};
use crate::store::Store;
use crate::upstream::protocol::InboundMedia;
use base64::Engine;
use serde_json::{json, Value};

/// Completes `received` with what is known of its medium, storing the bytes
/// when `settings` says so; an error notice when they could not be stored.
pub async fn keep_inbound_media(
    store: &Store,
    media_dir: &MediaDir,
    settings: &MediaSettings,
    received: &mut ReceivedMessage,
    media: InboundMedia,
) -> Option<ErrorNotice> {
    let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(&received.message.body) else {
        return None;
    };
    let kind = message.get("type").and_then(Value::as_str).unwrap_or("").to_string();
    let mut notice = None;
    let mut stored_id = None;
    // A redelivered message is stored already, with its medium. (Should the
    // lookup fail, the medium is stored again: a spare file, not a loss.)
    if settings.downloads(&kind) && !matches!(store.inbound_message(&received.message.id).await, Ok(Some(_))) {
        match store_medium(store, media_dir, &media).await {
            Ok(id) => stored_id = Some(id),
            Err(why) => {
                let details = format!(
                    "the {kind} of inbound message {} from {} could not be stored: {why}",
                    received.message.id, received.message.sender
                );
                tracing::warn!("{details}");
                notice = Some(ErrorNotice {
                    shard: received.message.shard,
                    recipient: received.message.sender.clone(),
                    errors: vec![error(1014, "Internal error", details)],
                });
            }
        }
    }
    let object = message.entry(kind).or_insert_with(|| json!({}));
    if let Value::Object(object) = object {
        object.entry("mime_type").or_insert_with(|| json!(media.mime_type));
        object.entry("sha256").or_insert_with(|| json!(media.sha256));
        match stored_id {
            Some(id) => object.insert("id".into(), json!(id)),
            // Whatever the upstream put there names nothing of ours.
            None => object.remove("id"),
        };
    }
    received.message.body = Value::Object(message).to_string();
    notice
}

/// Writes the bytes and records them; the new medium's id.
async fn store_medium(store: &Store, media_dir: &MediaDir, media: &InboundMedia) -> Result<String, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(media.data.as_bytes())
        .map_err(|e| format!("its bytes are not base64 ({e})"))?;
    let stored = media_dir.store_bytes(&bytes).await.map_err(|e| e.to_string())?;
    if !media.sha256.is_empty() && !stored.sha256.eq_ignore_ascii_case(&media.sha256) {
        tracing::warn!(
            "inbound medium {}: the upstream said sha256 {}, the bytes hash to {}",
            stored.id,
            media.sha256,
            stored.sha256
        );
    }
    let record = MediaRecord {
        id: stored.id.to_string(),
        mime_type: media.mime_type.clone(),
        sha256: stored.sha256,
        size: i64::try_from(stored.size).unwrap_or(i64::MAX),
        origin: MediaOrigin::Inbound,
        created_at: 0,
    };
    if let Err(e) = store.insert_media(&record).await {
        let _ = media_dir.remove(&stored.id).await;
        return Err(format!("cannot record it: {e}"));
    }
    Ok(record.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::messages::InboundMessage;

    fn received(id: &str) -> ReceivedMessage {
        let body = serde_json::json!({"type":"image","image":{"caption":"look","id":"upstream-own-id"}});
        ReceivedMessage {
            message: InboundMessage {
                id: id.into(),
                sender: "1555".into(),
                body: body.to_string(),
                timestamp_s: 1,
                shard: 0,
            },
            profile_name: None,
        }
    }

    fn media(data: &str) -> InboundMedia {
        InboundMedia { mime_type: "image/jpeg".into(), sha256: crate::digest::sha256_hex(b"jpeg"), data: data.into() }
    }

    #[tokio::test]
    async fn downloaded_media_get_our_id_and_others_none() {
        let dir = std::env::temp_dir().join(format!("shardgate-inbound-{}", uuid::Uuid::new_v4().simple()));
        let store = crate::testing::sqlite_cluster_store(&dir, 1).await.unwrap();
        let media_dir = MediaDir::create(dir.join("media")).unwrap();
        let jpeg = base64::engine::general_purpose::STANDARD.encode(b"jpeg");

        let mut kept = received("in-1");
        let all = MediaSettings::default();
        assert_eq!(keep_inbound_media(&store, &media_dir, &all, &mut kept, media(&jpeg)).await, None);
        let body: Value = serde_json::from_str(&kept.message.body).unwrap();
        let id = body["image"]["id"].as_str().unwrap();
        assert_eq!(body["image"]["caption"], "look");
        assert_eq!(body["image"]["mime_type"], "image/jpeg");
        let record = store.media(id).await.unwrap().unwrap();
        assert_eq!((record.origin, record.sha256), (MediaOrigin::Inbound, crate::digest::sha256_hex(b"jpeg")));
        assert_eq!(std::fs::read(media_dir.path(&id.parse().unwrap())).unwrap(), b"jpeg");

        let mut skipped = received("in-2");
        let none = MediaSettings { auto_download: vec!["voice".into()] };
        assert_eq!(keep_inbound_media(&store, &media_dir, &none, &mut skipped, media(&jpeg)).await, None);
        let body: Value = serde_json::from_str(&skipped.message.body).unwrap();
        assert!(body["image"].get("id").is_none(), "not downloaded: no id");
        assert_eq!(body["image"]["sha256"], crate::digest::sha256_hex(b"jpeg"));

        let mut broken = received("in-3");
        let notice = keep_inbound_media(&store, &media_dir, &all, &mut broken, media("%%%")).await.unwrap();
        assert_eq!((notice.recipient.as_str(), notice.errors[0].code), ("1555", 1014));
        let body: Value = serde_json::from_str(&broken.message.body).unwrap();
        assert!(body["image"].get("id").is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
