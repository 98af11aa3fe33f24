//! `POST /v1/messages` for every on-prem message type and
//! `PUT /v1/messages/{id}` (mark as read), end to end over SQLite: what is
//! accepted lands in the outbox as the canonical message object under its
//! type, what is refused gets the on-prem code naming the field.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shardgate_core::media_dir::MediaDir;
use shardgate_core::routing::default_shard;
use shardgate_core::store::media::{MediaOrigin, MediaRecord};
use shardgate_core::store::messages::{InboundMessage, PendingMessage};
use support::*;

const TO: &str = "15551234567";

/// The outbox row of an accepted message.
async fn accepted(webapp: &Webapp, token: &str, body: Value) -> PendingMessage {
    let response = webapp.post_message(token, &body).await;
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}: {answer}");
    let id = answer["messages"][0]["id"].as_str().unwrap().to_string();
    let shard = default_shard(TO, SHARDS);
    let pending = webapp.store.pending_messages(shard, 1000).await.unwrap();
    pending.into_iter().find(|m| m.id == id).unwrap_or_else(|| panic!("{body} was acknowledged but not stored"))
}

/// An uploaded medium's id, recorded directly.
async fn uploaded_media_id(webapp: &Webapp) -> String {
    let stored = MediaDir::create(webapp.media_dir()).unwrap().store_bytes(b"\x89PNG").await.unwrap();
    let record = MediaRecord {
        id: stored.id.to_string(),
        mime_type: "image/png".into(),
        sha256: stored.sha256,
        size: 4,
        origin: MediaOrigin::Upload,
        created_at: 0,
    };
    webapp.store.insert_media(&record).await.unwrap();
    record.id
}

fn message(kind: &str, content: Value) -> Value {
    json!({"to": TO, "recipient_type": "individual", "type": kind, kind: content})
}

#[tokio::test]
async fn every_message_type_is_stored_under_its_kind_as_the_object_sent_upstream() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let media_id = uploaded_media_id(&webapp).await;
    let link = "https://example.com/media/file";
    let template = json!({
        "namespace": "cdb2df51_9816_c754_c5a4_64cdabdcad3e",
        "name": "order_update",
        "language": {"policy": "deterministic", "code": "en_US"},
        "components": [
            {"type": "header", "parameters": [{"type": "document", "document": {"id": media_id, "filename": "bill.pdf"}}]},
            {"type": "body", "parameters": [
                {"type": "text", "text": "Ann"},
                {"type": "currency", "currency": {"fallback_value": "$100.99", "code": "USD", "amount_1000": 100990}},
                {"type": "date_time", "date_time": {"fallback_value": "February 25, 1977", "year": 1977, "month": 2, "day_of_month": 25}}
            ]},
            {"type": "button", "sub_type": "quick_reply", "index": 0, "parameters": [{"type": "payload", "payload": "stop"}]},
            {"type": "button", "sub_type": "url", "index": 1, "parameters": [{"type": "text", "text": "order/42"}]}
        ]
    });
    let hsm = json!({
        "namespace": "cdb2df51_9816_c754_c5a4_64cdabdcad3e",
        "element_name": "hello_world",
        "language": {"policy": "fallback", "code": "en"},
        "localizable_params": [{"default": "Ann"}, {"default": "$5", "currency": {"currency_code": "USD", "amount_1000": 5000}}]
    });
    let contacts = json!([{
        "name": {"formatted_name": "Ann Lee", "first_name": "Ann"},
        "phones": [{"phone": "+1 (940) 555-1234", "type": "CELL", "wa_id": "19405551234"}],
        "emails": [{"email": "ann@example.com", "type": "WORK"}],
        "addresses": [{"city": "Menlo Park", "country_code": "us", "type": "WORK"}],
        "org": {"company": "Shardgate"},
        "urls": [{"url": "https://example.com"}],
        "birthday": "1990-01-31"
    }]);
    let buttons = json!({
        "type": "button",
        "header": {"type": "image", "image": {"link": link}},
        "body": {"text": "Pick one"},
        "footer": {"text": "thanks"},
        "action": {"buttons": [
            {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
            {"type": "reply", "reply": {"id": "no", "title": "No"}}
        ]}
    });
    let list = json!({
        "type": "list",
        "header": {"type": "text", "text": "Menu"},
        "body": {"text": "Pick a dish"},
        "action": {"button": "Open", "sections": [
            {"title": "Mains", "rows": [{"id": "m1", "title": "Soup", "description": "hot"}]},
            {"title": "Sides", "rows": [{"id": "s1", "title": "Bread"}]}
        ]}
    });
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "text",
            json!({"to": TO, "type": "text", "text": {"body": "hi"}, "preview_url": true}),
            json!({"type": "text", "text": {"body": "hi"}, "preview_url": true}),
        ),
        ("template", message("template", template.clone()), json!({"type": "template", "template": template})),
        ("hsm", message("hsm", hsm.clone()), json!({"type": "hsm", "hsm": hsm})),
        (
            "image",
            message("image", json!({"id": media_id, "caption": "look"})),
            json!({"type": "image", "image": {"id": media_id, "caption": "look"}}),
        ),
        (
            "document",
            message("document", json!({"link": link, "caption": "bill", "filename": "bill.pdf"})),
            json!({"type": "document", "document": {"link": link, "caption": "bill", "filename": "bill.pdf"}}),
        ),
        ("audio", message("audio", json!({"link": link})), json!({"type": "audio", "audio": {"link": link}})),
        (
            "video",
            message("video", json!({"id": media_id, "caption": "clip"})),
            json!({"type": "video", "video": {"id": media_id, "caption": "clip"}}),
        ),
        (
            "sticker",
            message("sticker", json!({"id": media_id})),
            json!({"type": "sticker", "sticker": {"id": media_id}}),
        ),
        (
            "location",
            message(
                "location",
                json!({"longitude": -122.425332, "latitude": 37.758056, "name": "HQ", "address": "1 Hacker Way"}),
            ),
            json!({"type": "location", "location": {"longitude": -122.425332, "latitude": 37.758056, "name": "HQ", "address": "1 Hacker Way"}}),
        ),
        ("contacts", message("contacts", contacts.clone()), json!({"type": "contacts", "contacts": contacts})),
        (
            "interactive",
            message("interactive", buttons.clone()),
            json!({"type": "interactive", "interactive": buttons}),
        ),
        ("interactive", message("interactive", list.clone()), json!({"type": "interactive", "interactive": list})),
    ];
    for (kind, body, expected) in cases {
        let stored = accepted(&webapp, &token, body.clone()).await;
        assert_eq!(stored.recipient, TO);
        let sent: Value = serde_json::from_str(&stored.body).unwrap();
        assert_eq!(sent, expected, "{kind}");
        assert!(sent.get("to").is_none() && sent.get("recipient_type").is_none(), "{kind}: {sent}");
    }
}

#[tokio::test]
async fn the_outbox_kind_is_the_message_type() {
    use sqlx::Connection;
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    accepted(&webapp, &token, message("location", json!({"longitude": 1, "latitude": 2}))).await;
    accepted(&webapp, &token, json!({"to": TO, "text": {"body": "default type"}})).await;
    let url = format!("sqlite://{}", webapp.dir.join("shardgate.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let kinds: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, body FROM messages ORDER BY seq").fetch_all(&mut db).await.unwrap();
    assert_eq!(kinds[0].0, "location");
    assert_eq!(
        kinds[1],
        ("text".to_string(), r#"{"type":"text","text":{"body":"default type"},"preview_url":false}"#.to_string())
    );
}

#[tokio::test]
async fn refused_messages_get_the_onprem_code_naming_the_field_and_store_nothing() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let unknown_media = "4b5bf27b-8672-4d55-bc21-d096dc200d0f";
    let template = |components: Value| {
        message(
            "template",
            json!({"namespace": "ns", "name": "t", "language": {"code": "en"}, "components": components}),
        )
    };
    let cases: Vec<(&str, Value, StatusCode, u64, &str)> = vec![
        (
            "media id not uploaded",
            message("image", json!({"id": unknown_media})),
            StatusCode::NOT_FOUND,
            1006,
            "image.id",
        ),
        (
            "media id ill-formed",
            message("video", json!({"id": "../../etc/passwd"})),
            StatusCode::BAD_REQUEST,
            1009,
            "video.id",
        ),
        (
            "link not http",
            message("audio", json!({"link": "ftp://example.com/a.mp3"})),
            StatusCode::BAD_REQUEST,
            1009,
            "audio.link",
        ),
        (
            "neither id nor link",
            message("document", json!({"caption": "c"})),
            StatusCode::BAD_REQUEST,
            1008,
            "document.id",
        ),
        (
            "caption on audio",
            message("audio", json!({"link": "https://a.b/c", "caption": "x"})),
            StatusCode::BAD_REQUEST,
            1010,
            "audio.caption",
        ),
        (
            "filename on image",
            message("image", json!({"link": "https://a.b/c", "filename": "x"})),
            StatusCode::BAD_REQUEST,
            1010,
            "image.filename",
        ),
        (
            "unknown media field",
            message("image", json!({"link": "https://a.b/c", "alt": "x"})),
            StatusCode::BAD_REQUEST,
            1010,
            "image",
        ),
        ("missing content", json!({"to": TO, "type": "location"}), StatusCode::BAD_REQUEST, 1008, "location"),
        (
            "latitude out of range",
            message("location", json!({"longitude": 0, "latitude": 95})),
            StatusCode::BAD_REQUEST,
            1009,
            "location.latitude",
        ),
        (
            "template without name",
            message("template", json!({"namespace": "ns", "language": {"code": "en"}})),
            StatusCode::BAD_REQUEST,
            1008,
            "template.name",
        ),
        (
            "template bad policy",
            message("template", json!({"namespace": "ns", "name": "t", "language": {"policy": "any", "code": "en"}})),
            StatusCode::BAD_REQUEST,
            1009,
            "template.language.policy",
        ),
        (
            "template parameter type",
            template(json!([{"type": "body", "parameters": [{"type": "sticker"}]}])),
            StatusCode::BAD_REQUEST,
            1009,
            "template.components[0].parameters[0].type",
        ),
        (
            "template currency amount",
            template(
                json!([{"type": "body", "parameters": [{"type": "currency", "currency": {"fallback_value": "$1", "code": "USD"}}]}]),
            ),
            StatusCode::BAD_REQUEST,
            1008,
            "template.components[0].parameters[0].currency.amount_1000",
        ),
        (
            "template unknown field",
            template(json!([{"type": "body", "parameters": [{"type": "text", "text": "a", "bold": true}]}])),
            StatusCode::BAD_REQUEST,
            1010,
            "template.components[0].parameters[0]",
        ),
        (
            "template header media not uploaded",
            template(json!([{"type": "header", "parameters": [{"type": "image", "image": {"id": unknown_media}}]}])),
            StatusCode::NOT_FOUND,
            1006,
            "template.components[0].parameters[0].image.id",
        ),
        (
            "hsm without params default",
            message(
                "hsm",
                json!({"namespace": "ns", "element_name": "e", "language": {"code": "en"}, "localizable_params": [{}]}),
            ),
            StatusCode::BAD_REQUEST,
            1008,
            "hsm.localizable_params[0].default",
        ),
        (
            "contact without name",
            message("contacts", json!([{"phones": [{"phone": "1"}]}])),
            StatusCode::BAD_REQUEST,
            1008,
            "contacts[0].name",
        ),
        (
            "four buttons",
            message(
                "interactive",
                json!({"type": "button", "body": {"text": "b"}, "action": {"buttons": [
            {"type": "reply", "reply": {"id": "1", "title": "1"}}, {"type": "reply", "reply": {"id": "2", "title": "2"}},
            {"type": "reply", "reply": {"id": "3", "title": "3"}}, {"type": "reply", "reply": {"id": "4", "title": "4"}}]}}),
            ),
            StatusCode::BAD_REQUEST,
            1009,
            "interactive.action.buttons",
        ),
        (
            "interactive without body",
            message("interactive", json!({"type": "list", "action": {"button": "b", "sections": []}})),
            StatusCode::BAD_REQUEST,
            1008,
            "interactive.body.text",
        ),
        (
            "content of another type",
            json!({"to": TO, "type": "text", "text": {"body": "hi"}, "location": {"longitude": 1, "latitude": 1}}),
            StatusCode::BAD_REQUEST,
            1010,
            "location",
        ),
        (
            "preview_url off text",
            json!({"to": TO, "type": "sticker", "sticker": {"link": "https://a.b/c"}, "preview_url": false}),
            StatusCode::BAD_REQUEST,
            1010,
            "preview_url",
        ),
        (
            "recipient_type group",
            json!({"to": TO, "recipient_type": "group", "text": {"body": "hi"}}),
            StatusCode::BAD_REQUEST,
            1009,
            "recipient_type",
        ),
        (
            "context without id",
            json!({"to": TO, "context": {}, "text": {"body": "hi"}}),
            StatusCode::BAD_REQUEST,
            1008,
            "context.message_id",
        ),
        ("ttl negative", json!({"to": TO, "ttl": -1, "text": {"body": "hi"}}), StatusCode::BAD_REQUEST, 1009, "ttl"),
    ];
    for (case, body, status, code, field) in cases {
        let (got_status, got_code, details) = onprem_error(webapp.post_message(&token, &body).await).await;
        assert_eq!((got_status, got_code), (status, code), "{case}: {details}");
        assert!(details.starts_with(field), "{case}: {details:?} should name {field}");
    }
    assert!(webapp.pending_ids().await.is_empty(), "nothing refused was stored");
}

#[tokio::test]
async fn mark_read_queues_a_read_mark_on_the_shard_that_received_the_message() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let wakes = webapp.owned_by_fake_coreapp().await;
    // Received on shard 1, whatever the sender's hash says: the mark follows the session.
    let inbound = InboundMessage {
        id: "ABGGFlA5FpafAgo6EhoNtrtPzjp".into(),
        sender: "16315551234".into(),
        body: "hello".into(),
        timestamp_s: 1_700_000_000,
        shard: 1,
    };
    assert!(webapp.store.store_inbound(&inbound).await.unwrap());
    let path = format!("/v1/messages/{}", inbound.id);
    for _ in 0..2 {
        let response = webapp
            .request(Method::PUT, &path)
            .bearer_auth(&token)
            .json(&json!({"status": "read"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, json!({"meta": {"api_status": "stable", "version": shardgate_core::VERSION}}));
    }
    let marks = webapp.store.pending_messages(1, 100).await.unwrap();
    assert_eq!(marks.len(), 2, "each mark is queued; marking twice is harmless");
    for mark in &marks {
        assert_eq!(mark.recipient, inbound.sender);
        assert_eq!(serde_json::from_str::<Value>(&mark.body).unwrap(), json!({"message_id": inbound.id}));
        assert_eq!(mark.id.len(), 24, "an outbox id like a send's");
    }
    assert!(webapp.store.pending_messages(0, 100).await.unwrap().is_empty());
    assert!(woken(&wakes, 1).await, "the owner of the receiving shard was woken");
}

#[tokio::test]
async fn mark_read_of_an_unknown_message_or_status_is_refused() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let unknown = webapp
        .request(Method::PUT, "/v1/messages/gBGGFmkiWVVPAgkgQkwi7IORac0")
        .bearer_auth(&token)
        .json(&json!({"status": "read"}))
        .send()
        .await
        .unwrap();
    let (status, code, _) = onprem_error(unknown).await;
    assert_eq!((status, code), (StatusCode::NOT_FOUND, 1006));
    let inbound =
        InboundMessage { id: "in-1".into(), sender: "1555".into(), body: "x".into(), timestamp_s: 1, shard: 0 };
    webapp.store.store_inbound(&inbound).await.unwrap();
    for (body, expected) in
        [(json!({"status": "delivered"}), 1009), (json!({}), 1008), (json!({"status": "read", "x": 1}), 1010)]
    {
        let response =
            webapp.request(Method::PUT, "/v1/messages/in-1").bearer_auth(&token).json(&body).send().await.unwrap();
        let (status, code, details) = onprem_error(response).await;
        assert_eq!((status, code), (StatusCode::BAD_REQUEST, expected), "{body}: {details}");
    }
    assert!(webapp.pending_ids().await.is_empty());
}

#[tokio::test]
async fn a_user_role_may_send_and_mark_read() {
    use shardgate_core::policy::UserRole;
    let webapp = Webapp::start().await;
    auth_user(&webapp, "ana", UserRole::User).await;
    let token = token_of(webapp.login("ana", NEW_PASSWORD, None).await).await;
    accepted(&webapp, &token, json!({"to": TO, "text": {"body": "from a user"}})).await;
    let inbound = InboundMessage { id: "in-2".into(), sender: TO.into(), body: "x".into(), timestamp_s: 1, shard: 0 };
    webapp.store.store_inbound(&inbound).await.unwrap();
    let response = webapp
        .request(Method::PUT, "/v1/messages/in-2")
        .bearer_auth(&token)
        .json(&json!({"status": "read"}))
        .send()
        .await;
    assert_eq!(response.unwrap().status(), StatusCode::OK);
}

async fn auth_user(webapp: &Webapp, name: &str, role: shardgate_core::policy::UserRole) {
    shardgate_gateway::auth::create_user(&webapp.store, name, NEW_PASSWORD, role).await.unwrap();
}
