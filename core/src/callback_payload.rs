//! The callbacks a webhook receiver gets, in the flat on-prem format (no
//! `object`/`entry`/`changes` envelope, which is the Cloud API's):
//!
//! - an inbound message: `{"contacts":[{"profile":{"name"},"wa_id"}],
//!   "messages":[{"from","id","timestamp","type",<type>:{...}}]}`;
//! - a status change of an outbound message: `{"statuses":[{"id",
//!   "recipient_id","status","timestamp"}]}`, with `errors` when `failed`;
//! - an error not tied to a message: `{"errors":[{"code","title","details"}]}`.
//!
//! Timestamps are unix seconds written as strings, as the on-prem client
//! writes them. `conversation` and `pricing` are Cloud API fields the on-prem
//! format leaves out.

use crate::upstream::protocol::UpstreamError;
use serde_json::{json, Map, Value};

/// A status change: `{"statuses":[{"id","recipient_id","status","timestamp"}]}`,
/// plus the status's `errors` when there are any (a `failed` one).
pub fn status(id: &str, recipient_id: &str, status: &str, timestamp_s: i64, errors: &[UpstreamError]) -> Value {
    let mut entry = json!({
        "id": id,
        "recipient_id": recipient_id,
        "status": status,
        "timestamp": timestamp_s.to_string(),
    });
    if !errors.is_empty() {
        entry["errors"] = json!(errors);
    }
    json!({ "statuses": [entry] })
}

/// An inbound message. `message` is the on-prem message object as the
/// upstream sent it (`type`, its object, maybe `context`); `from`, `id` and
/// `timestamp` are ours, whatever it carries. The sender's profile name is
/// left out when the upstream did not tell it.
pub fn inbound(from: &str, id: &str, timestamp_s: i64, profile_name: Option<&str>, message: &Value) -> Value {
    let mut entry = Map::new();
    if let Value::Object(fields) = message {
        entry.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    entry.insert("from".into(), json!(from));
    entry.insert("id".into(), json!(id));
    entry.insert("timestamp".into(), json!(timestamp_s.to_string()));
    entry.entry("type").or_insert_with(|| json!("unknown"));
    let mut contact = json!({ "wa_id": from });
    if let Some(name) = profile_name {
        contact["profile"] = json!({ "name": name });
    }
    json!({ "contacts": [contact], "messages": [Value::Object(entry)] })
}

/// Errors not tied to one message: `{"errors":[...]}`.
pub fn errors(errors: &[UpstreamError]) -> Value {
    json!({ "errors": errors })
}

/// The id of the inbound message a stored payload announces, `None` for
/// statuses and errors; what `pass_through` deletes once it was delivered.
pub fn announced_inbound_id(payload: &str) -> Option<String> {
    let value: Value = serde_json::from_str(payload).ok()?;
    value.get("messages")?.get(0)?.get("id")?.as_str().map(str::to_string)
}

/// An error in the on-prem shape.
pub fn error(code: i64, title: &str, details: impl Into<String>) -> UpstreamError {
    UpstreamError { code, title: title.to_string(), details: Some(details.into()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_callbacks_are_flat_with_string_timestamps() {
        let sent = status("gBEG1", "16315551234", "sent", 1_700_000_000, &[]);
        assert_eq!(
            sent,
            json!({"statuses":[{"id":"gBEG1","recipient_id":"16315551234","status":"sent","timestamp":"1700000000"}]})
        );
        assert!(sent["statuses"][0].get("errors").is_none(), "no errors key unless failed");
    }

    #[test]
    fn failed_statuses_carry_their_errors() {
        let errors = [error(1013, "User is not valid", "not on the network")];
        let failed = status("m1", "1555", "failed", 5, &errors);
        assert_eq!(
            failed["statuses"][0]["errors"],
            json!([{"code":1013,"title":"User is not valid","details":"not on the network"}])
        );
    }

    #[test]
    fn inbound_callbacks_merge_the_message_object_under_our_fields() {
        let message = json!({"type":"image","image":{"id":"x","mime_type":"image/jpeg","sha256":"ab"},"from":"forged"});
        let payload = inbound("15551230000", "ABGG", 1_504_902_988, Some("Kerry"), &message);
        assert_eq!(
            payload,
            json!({
                "contacts":[{"profile":{"name":"Kerry"},"wa_id":"15551230000"}],
                "messages":[{"from":"15551230000","id":"ABGG","timestamp":"1504902988","type":"image",
                    "image":{"id":"x","mime_type":"image/jpeg","sha256":"ab"}}]
            })
        );
        let anonymous = inbound("1555", "i2", 1, None, &json!({"type":"text","text":{"body":"hi"}}));
        assert_eq!(anonymous["contacts"], json!([{"wa_id":"1555"}]));
        assert_eq!(announced_inbound_id(&anonymous.to_string()).as_deref(), Some("i2"));
    }

    #[test]
    fn only_inbound_payloads_announce_a_message_id() {
        assert_eq!(announced_inbound_id(&status("m1", "1", "read", 1, &[]).to_string()), None);
        assert_eq!(announced_inbound_id(&errors(&[error(1014, "Internal error", "x")]).to_string()), None);
        assert_eq!(announced_inbound_id("not json"), None);
    }
}
