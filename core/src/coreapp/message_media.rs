//! Where a stored message object names media, and how a fetched link
//! becomes an id: the media of `image`, `document`, `audio`, `video` and
//! `sticker` messages, of template parameters and of interactive headers
//! (`image`, `document`, `video`). Each is named by `id` (uploaded with
//! `POST /v1/media`, or fetched already) or by `link`.

use serde_json::Value;

/// Message types whose content is a media object.
const MEDIA_MESSAGE_KINDS: [&str; 5] = ["image", "document", "audio", "video", "sticker"];
/// Media types a template parameter or an interactive header may carry.
const EMBEDDED_MEDIA_KINDS: [&str; 3] = ["image", "document", "video"];

/// How a media object names its medium.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaName {
    /// A stored medium's id.
    Id(String),
    /// A link the coreapp fetches.
    Link(String),
}

/// The media objects of `message`, as JSON pointers, in document order.
pub fn media_slots(message: &Value) -> Vec<String> {
    let mut slots = Vec::new();
    let kind = message.get("type").and_then(Value::as_str).unwrap_or("");
    if MEDIA_MESSAGE_KINDS.contains(&kind) && message.get(kind).is_some_and(Value::is_object) {
        slots.push(format!("/{kind}"));
    }
    let components = message.pointer("/template/components").and_then(Value::as_array);
    for (c, component) in components.into_iter().flatten().enumerate() {
        let parameters = component.get("parameters").and_then(Value::as_array);
        for (p, parameter) in parameters.into_iter().flatten().enumerate() {
            for media in EMBEDDED_MEDIA_KINDS {
                if parameter.get(media).is_some_and(Value::is_object) {
                    slots.push(format!("/template/components/{c}/parameters/{p}/{media}"));
                }
            }
        }
    }
    for media in EMBEDDED_MEDIA_KINDS {
        if message.pointer(&format!("/interactive/header/{media}")).is_some_and(Value::is_object) {
            slots.push(format!("/interactive/header/{media}"));
        }
    }
    slots
}

/// How the media object at `slot` names its medium (`id` wins over `link`).
pub fn media_name(message: &Value, slot: &str) -> Option<MediaName> {
    let object = message.pointer(slot)?;
    if let Some(id) = object.get("id").and_then(Value::as_str) {
        return Some(MediaName::Id(id.to_string()));
    }
    object.get("link").and_then(Value::as_str).map(|link| MediaName::Link(link.to_string()))
}

/// Names the medium at `slot` by `id` instead of its link (and drops the
/// link's `provider`, which only applies to a link).
pub fn name_by_id(message: &mut Value, slot: &str, id: &str) {
    if let Some(Value::Object(object)) = message.pointer_mut(slot) {
        object.remove("link");
        object.remove("provider");
        object.insert("id".into(), Value::String(id.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_media_of_messages_templates_and_headers() {
        let image = json!({"type":"image","image":{"id":"a","caption":"c"}});
        assert_eq!(media_slots(&image), vec!["/image"]);
        assert_eq!(media_name(&image, "/image"), Some(MediaName::Id("a".into())));
        let template = json!({"type":"template","template":{"name":"t","components":[
            {"type":"header","parameters":[{"type":"document","document":{"link":"https://x/d.pdf"}}]},
            {"type":"body","parameters":[{"type":"text","text":"hi"}]}]}});
        assert_eq!(media_slots(&template), vec!["/template/components/0/parameters/0/document"]);
        let interactive = json!({"type":"interactive","interactive":{"header":{"type":"video","video":{"id":"v"}}}});
        assert_eq!(media_slots(&interactive), vec!["/interactive/header/video"]);
        assert!(media_slots(&json!({"type":"text","text":{"body":"image"}})).is_empty());
    }

    #[test]
    fn a_fetched_link_becomes_an_id() {
        let mut message =
            json!({"type":"document","document":{"link":"http://x/f","provider":{"name":"p"},"filename":"f.pdf"}});
        assert_eq!(media_name(&message, "/document"), Some(MediaName::Link("http://x/f".into())));
        name_by_id(&mut message, "/document", "4b5bf27b-8672-4d55-bc21-d096dc200d0f");
        assert_eq!(
            message,
            json!({"type":"document","document":{"id":"4b5bf27b-8672-4d55-bc21-d096dc200d0f","filename":"f.pdf"}})
        );
    }
}
