//! The shape of an outbound message, as the network checks it.
//!
//! A send carries the on-prem message object without `to`: `type` (text when
//! absent, as the API defaults it) and the object of that type. This module
//! checks that the object is there and well-formed enough to send, and says
//! what else the message depends on: the uploaded media it names and the
//! template it uses. The network's other rules (recipient, media store,
//! template registry) are the state's to apply. Failures carry on-prem codes:
//! 1001 (message too long), 1008 (required parameter is missing) and 1009
//! (parameter value is not valid).

use serde_json::{Map, Value};
use shardgate_core::upstream::protocol::UpstreamError;

use crate::templates::TemplateUse;

/// Longest text body, in characters.
const MAX_TEXT: usize = 4096;
/// Most reply buttons of an interactive message.
const MAX_BUTTONS: usize = 3;
/// Most sections, and most rows over all sections, of a list.
const MAX_SECTIONS: usize = 10;
const MAX_ROWS: usize = 10;

/// What a well-formed message depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageNeeds {
    /// Ids of the uploaded media it names, in order.
    pub media: Vec<String>,
    /// The template it uses, for `template` and `hsm` messages.
    pub template: Option<TemplateUse>,
}

/// Checks `message` and returns what it depends on.
pub fn check(message: &Value) -> Result<MessageNeeds, UpstreamError> {
    let message = message.as_object().ok_or_else(|| invalid("message", "must be an object"))?;
    let kind = match message.get("type") {
        None => "text",
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err(invalid("type", "must be a string")),
    };
    let mut needs = MessageNeeds::default();
    let body = message.get(kind);
    match kind {
        "text" => text(object(body, "text")?)?,
        "template" => needs.template = Some(template(object(body, "template")?, &mut needs.media)?),
        "hsm" => needs.template = Some(hsm(object(body, "hsm")?)?),
        "image" | "document" | "audio" | "video" | "sticker" => {
            needs.media.push(media(object(body, kind)?, kind)?);
        }
        "location" => location(object(body, "location")?)?,
        "contacts" => contacts(body)?,
        "interactive" => interactive(object(body, "interactive")?, &mut needs.media)?,
        other => return Err(invalid("type", &format!("{other:?} is no message type"))),
    }
    Ok(needs)
}

/// The text a person would read first: a text's body or a medium's caption.
pub fn summary(message: &Value) -> String {
    let kind = message.get("type").and_then(Value::as_str).unwrap_or("text");
    let body = &message[kind];
    body["body"].as_str().or_else(|| body["caption"].as_str()).unwrap_or_default().to_owned()
}

fn text(text: &Map<String, Value>) -> Result<(), UpstreamError> {
    let body = string(text, "text", "body")?;
    if body.chars().count() > MAX_TEXT {
        return Err(UpstreamError {
            code: 1001,
            title: "Message too long".into(),
            details: Some(format!("text.body is longer than {MAX_TEXT} characters")),
        });
    }
    Ok(())
}

fn template(template: &Map<String, Value>, media_ids: &mut Vec<String>) -> Result<TemplateUse, UpstreamError> {
    let namespace = string(template, "template", "namespace")?;
    let name = string(template, "template", "name")?;
    let language = language(template, "template")?;
    let mut params = 0;
    for (i, component) in array(template.get("components"), "template.components", false)?.iter().enumerate() {
        let path = format!("template.components[{i}]");
        let component = object(Some(component), &path)?;
        let kind = string(component, &path, "type")?.to_ascii_lowercase();
        if !matches!(kind.as_str(), "header" | "body" | "button") {
            return Err(invalid(&format!("{path}.type"), "must be header, body or button"));
        }
        let parameters = array(component.get("parameters"), &format!("{path}.parameters"), false)?;
        for (j, parameter) in parameters.iter().enumerate() {
            let path = format!("{path}.parameters[{j}]");
            let parameter = object(Some(parameter), &path)?;
            let kind = string(parameter, &path, "type")?;
            if matches!(kind, "image" | "document" | "video") {
                let path = format!("{path}.{kind}");
                media_ids.push(media(object(parameter.get(kind), &path)?, &path)?);
            }
        }
        params += parameters.len();
    }
    Ok(TemplateUse { namespace: namespace.into(), name: name.into(), language, params })
}

fn hsm(hsm: &Map<String, Value>) -> Result<TemplateUse, UpstreamError> {
    let namespace = string(hsm, "hsm", "namespace")?;
    let name = string(hsm, "hsm", "element_name")?;
    let language = language(hsm, "hsm")?;
    let params = array(hsm.get("localizable_params"), "hsm.localizable_params", false)?;
    for (i, param) in params.iter().enumerate() {
        object(Some(param), &format!("hsm.localizable_params[{i}]"))?;
    }
    Ok(TemplateUse { namespace: namespace.into(), name: name.into(), language, params: params.len() })
}

fn language(parent: &Map<String, Value>, path: &str) -> Result<String, UpstreamError> {
    let path = format!("{path}.language");
    let language = object(parent.get("language"), &path)?;
    Ok(string(language, &path, "code")?.to_owned())
}

/// A medium by uploaded `id`; returns the id. A `link` never reaches the
/// network: the coreapp fetches it and uploads the bytes.
fn media(medium: &Map<String, Value>, path: &str) -> Result<String, UpstreamError> {
    if medium.contains_key("link") {
        return Err(invalid(
            &format!("{path}.link"),
            "links are fetched and uploaded by the client; the network takes uploaded media ids only",
        ));
    }
    Ok(string(medium, path, "id")?.to_owned())
}

fn location(location: &Map<String, Value>) -> Result<(), UpstreamError> {
    for (field, limit) in [("latitude", 90.0), ("longitude", 180.0)] {
        let value = location.get(field).ok_or_else(|| missing(&format!("location.{field}")))?;
        let degrees = value.as_f64().ok_or_else(|| invalid(&format!("location.{field}"), "must be a number"))?;
        if !(-limit..=limit).contains(&degrees) {
            return Err(invalid(&format!("location.{field}"), &format!("must be within ±{limit}")));
        }
    }
    Ok(())
}

fn contacts(contacts: Option<&Value>) -> Result<(), UpstreamError> {
    for (i, card) in array(contacts, "contacts", true)?.iter().enumerate() {
        let path = format!("contacts[{i}]");
        let name = object(object(Some(card), &path)?.get("name"), &format!("{path}.name"))?;
        string(name, &format!("{path}.name"), "formatted_name")?;
    }
    Ok(())
}

fn interactive(interactive: &Map<String, Value>, media_ids: &mut Vec<String>) -> Result<(), UpstreamError> {
    let kind = string(interactive, "interactive", "type")?;
    if let Some(header) = interactive.get("header") {
        let header = object(Some(header), "interactive.header")?;
        let header_kind = string(header, "interactive.header", "type")?;
        match header_kind {
            "text" => {
                string(header, "interactive.header", "text")?;
            }
            "image" | "video" | "document" => {
                let path = format!("interactive.header.{header_kind}");
                media_ids.push(media(object(header.get(header_kind), &path)?, &path)?);
            }
            _ => return Err(invalid("interactive.header.type", "must be text, image, video or document")),
        }
    }
    if kind != "product" || interactive.contains_key("body") {
        string(object(interactive.get("body"), "interactive.body")?, "interactive.body", "text")?;
    }
    let action = object(interactive.get("action"), "interactive.action")?;
    match kind {
        "button" => {
            let buttons = array(action.get("buttons"), "interactive.action.buttons", true)?;
            if buttons.len() > MAX_BUTTONS {
                return Err(invalid("interactive.action.buttons", &format!("holds at most {MAX_BUTTONS} buttons")));
            }
            for (i, button) in buttons.iter().enumerate() {
                let path = format!("interactive.action.buttons[{i}]");
                let button = object(Some(button), &path)?;
                if string(button, &path, "type")? != "reply" {
                    return Err(invalid(&format!("{path}.type"), "must be reply"));
                }
                let reply = object(button.get("reply"), &format!("{path}.reply"))?;
                string(reply, &format!("{path}.reply"), "id")?;
                string(reply, &format!("{path}.reply"), "title")?;
            }
        }
        "list" => {
            string(action, "interactive.action", "button")?;
            let rows = sections(action, "rows", &["id", "title"])?;
            if rows > MAX_ROWS {
                return Err(invalid("interactive.action.sections", &format!("hold at most {MAX_ROWS} rows")));
            }
        }
        "product" => {
            string(action, "interactive.action", "catalog_id")?;
            string(action, "interactive.action", "product_retailer_id")?;
        }
        "product_list" => {
            string(action, "interactive.action", "catalog_id")?;
            sections(action, "product_items", &["product_retailer_id"])?;
        }
        _ => return Err(invalid("interactive.type", "must be button, list, product or product_list")),
    }
    Ok(())
}

/// Checks `action.sections` and the `fields` of each entry of their `entries`;
/// returns how many entries there are in all.
fn sections(action: &Map<String, Value>, entries: &str, fields: &[&str]) -> Result<usize, UpstreamError> {
    let sections = array(action.get("sections"), "interactive.action.sections", true)?;
    if sections.len() > MAX_SECTIONS {
        return Err(invalid("interactive.action.sections", &format!("holds at most {MAX_SECTIONS} sections")));
    }
    let mut total = 0;
    for (i, section) in sections.iter().enumerate() {
        let path = format!("interactive.action.sections[{i}]");
        let section = object(Some(section), &path)?;
        let list = array(section.get(entries), &format!("{path}.{entries}"), true)?;
        for (j, entry) in list.iter().enumerate() {
            let path = format!("{path}.{entries}[{j}]");
            let entry = object(Some(entry), &path)?;
            for field in fields {
                string(entry, &path, field)?;
            }
        }
        total += list.len();
    }
    Ok(total)
}

fn object<'a>(value: Option<&'a Value>, path: &str) -> Result<&'a Map<String, Value>, UpstreamError> {
    match value {
        None | Some(Value::Null) => Err(missing(path)),
        Some(value) => value.as_object().ok_or_else(|| invalid(path, "must be an object")),
    }
}

/// An array at `path`; absent is empty unless `required`, and a required one
/// must hold something.
fn array<'a>(value: Option<&'a Value>, path: &str, required: bool) -> Result<&'a [Value], UpstreamError> {
    match value {
        None | Some(Value::Null) if required => Err(missing(path)),
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) if required && items.is_empty() => Err(invalid(path, "must not be empty")),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(invalid(path, "must be an array")),
    }
}

/// A non-empty string field of `parent`.
fn string<'a>(parent: &'a Map<String, Value>, path: &str, field: &str) -> Result<&'a str, UpstreamError> {
    let path = format!("{path}.{field}");
    match parent.get(field) {
        None | Some(Value::Null) => Err(missing(&path)),
        Some(Value::String(s)) if s.trim().is_empty() => Err(invalid(&path, "must not be empty")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(&path, "must be a string")),
    }
}

fn missing(path: &str) -> UpstreamError {
    UpstreamError {
        code: 1008,
        title: "Required parameter is missing".into(),
        details: Some(format!("{path} is missing")),
    }
}

fn invalid(path: &str, why: &str) -> UpstreamError {
    UpstreamError { code: 1009, title: "Parameter value is not valid".into(), details: Some(format!("{path} {why}")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(message: Value) -> i64 {
        check(&message).map(|_| 0).unwrap_or_else(|e| e.code)
    }

    #[test]
    fn every_message_type_in_its_usual_shape_is_well_formed() {
        let valid = [
            json!({"type":"text","text":{"body":"hi"}}),
            json!({"text":{"body":"type defaults to text"}}),
            json!({"type":"template","template":{"namespace":"ns","name":"t","language":{"policy":"deterministic","code":"en"},
                "components":[{"type":"body","parameters":[{"type":"text","text":"x"}]}]}}),
            json!({"type":"hsm","hsm":{"namespace":"ns","element_name":"t","language":{"code":"en"},"localizable_params":[{"default":"x"}]}}),
            json!({"type":"image","image":{"id":"m1","caption":"c"}}),
            json!({"type":"document","document":{"id":"m1","filename":"a.pdf"}}),
            json!({"type":"audio","audio":{"id":"m1"}}),
            json!({"type":"video","video":{"id":"m1"}}),
            json!({"type":"sticker","sticker":{"id":"m1"}}),
            json!({"type":"location","location":{"latitude":-33.9,"longitude":151.2,"name":"x"}}),
            json!({"type":"contacts","contacts":[{"name":{"formatted_name":"Ann"},"phones":[{"phone":"+1 555"}]}]}),
            json!({"type":"interactive","interactive":{"type":"button","body":{"text":"pick"},
                "action":{"buttons":[{"type":"reply","reply":{"id":"y","title":"Yes"}}]}}}),
            json!({"type":"interactive","interactive":{"type":"list","body":{"text":"pick"},
                "action":{"button":"menu","sections":[{"title":"s","rows":[{"id":"r","title":"R"}]}]}}}),
            json!({"type":"interactive","interactive":{"type":"product","action":{"catalog_id":"c","product_retailer_id":"p"}}}),
            json!({"type":"interactive","interactive":{"type":"product_list","header":{"type":"text","text":"h"},"body":{"text":"b"},
                "action":{"catalog_id":"c","sections":[{"title":"s","product_items":[{"product_retailer_id":"p"}]}]}}}),
        ];
        for message in valid {
            assert_eq!(code(message.clone()), 0, "{message}");
        }
    }

    #[test]
    fn a_missing_or_malformed_type_object_fails_with_the_on_prem_code() {
        let cases = [
            (json!({"type":"text"}), 1008),
            (json!({"type":"text","text":{"body":""}}), 1009),
            (json!({"type":"text","text":{"body":"x".repeat(4097)}}), 1001),
            (json!({"type":"hologram","hologram":{}}), 1009),
            (json!({"type":7}), 1009),
            (json!("not an object"), 1009),
            (json!({"type":"image","image":{"caption":"no id"}}), 1008),
            (json!({"type":"image","image":{"link":"https://example.com/a.jpg"}}), 1009),
            (json!({"type":"location","location":{"latitude":91,"longitude":0}}), 1009),
            (json!({"type":"location","location":{"latitude":1}}), 1008),
            (json!({"type":"contacts","contacts":[]}), 1009),
            (json!({"type":"contacts","contacts":[{"phones":[]}]}), 1008),
            (json!({"type":"template","template":{"namespace":"ns","name":"t"}}), 1008),
            (
                json!({"type":"template","template":{"namespace":"ns","name":"t","language":{"code":"en"},
                "components":[{"type":"footer"}]}}),
                1009,
            ),
            (json!({"type":"hsm","hsm":{"namespace":"ns","language":{"code":"en"}}}), 1008),
            (
                json!({"type":"interactive","interactive":{"type":"button","body":{"text":"b"},"action":{"buttons":[
                {"type":"reply","reply":{"id":"1","title":"1"}},{"type":"reply","reply":{"id":"2","title":"2"}},
                {"type":"reply","reply":{"id":"3","title":"3"}},{"type":"reply","reply":{"id":"4","title":"4"}}]}}}),
                1009,
            ),
            (json!({"type":"interactive","interactive":{"type":"list","action":{"button":"b","sections":[]}}}), 1008),
            (json!({"type":"interactive","interactive":{"type":"carousel","body":{"text":"b"},"action":{}}}), 1009),
        ];
        for (message, expected) in cases {
            assert_eq!(code(message.clone()), expected, "{message}");
        }
    }

    #[test]
    fn needs_name_every_media_id_and_the_template_with_its_parameter_count() {
        let message = json!({"type":"template","template":{"namespace":"ns","name":"t","language":{"code":"pt_BR"},
            "components":[
                {"type":"header","parameters":[{"type":"image","image":{"id":"h1"}}]},
                {"type":"body","parameters":[{"type":"text","text":"a"},{"type":"currency","currency":{}}]},
                {"type":"button","sub_type":"quick_reply","index":"0","parameters":[{"type":"payload","payload":"p"}]}]}});
        let needs = check(&message).unwrap();
        assert_eq!(needs.media, vec!["h1"]);
        let expected = TemplateUse { namespace: "ns".into(), name: "t".into(), language: "pt_BR".into(), params: 4 };
        assert_eq!(needs.template, Some(expected));
        let header = json!({"type":"interactive","interactive":{"type":"button","header":{"type":"video","video":{"id":"v1"}},
            "body":{"text":"b"},"action":{"buttons":[{"type":"reply","reply":{"id":"y","title":"Y"}}]}}});
        assert_eq!(check(&header).unwrap().media, vec!["v1"]);
    }

    #[test]
    fn summary_is_the_text_body_or_the_caption() {
        assert_eq!(summary(&json!({"type":"text","text":{"body":"hi"}})), "hi");
        assert_eq!(summary(&json!({"type":"image","image":{"id":"m","caption":"look"}})), "look");
        assert_eq!(summary(&json!({"type":"location","location":{"latitude":1,"longitude":2}})), "");
    }
}
