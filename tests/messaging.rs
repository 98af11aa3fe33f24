//! The messaging surface end to end, with real processes judged by the sim:
//! every on-prem message type accepted, carried upstream unchanged and
//! delivered once; media uploaded through one webapp, read and deleted
//! through another, and sent upstream once per session however many
//! messages use it; media by link fetched by the coreapp; contact checks
//! through the upstream with the shared cache; mark-as-read through the
//! shard that received the message.

mod harness;

use axum::routing::get;
use harness::{start, wait_for, Cluster, ClusterSpec};
use reqwest::Method;
use serde_json::{json, Value};
use shardgate_core::config::DbEngine;
use shardgate_core::digest::sha256_hex;
use std::time::Duration;

const TO: &str = "15551230001";

fn spec() -> ClusterSpec {
    ClusterSpec { shards: 2, coreapps: 2, masters: 1, ..ClusterSpec::fast(DbEngine::Sqlite) }
}

/// `POST /v1/media` of `bytes` as `mime` through the webapp at `api`; the media id.
async fn upload(cluster: &Cluster, api: &str, bytes: Vec<u8>, mime: &str) -> String {
    let response = cluster
        .http
        .post(format!("{api}/v1/media"))
        .bearer_auth(&cluster.token)
        .header("content-type", mime)
        .body(bytes)
        .send()
        .await
        .expect("upload");
    let status = response.status();
    let body: Value = response.json().await.expect("upload json");
    assert!(status.is_success(), "upload refused: {status} {body}");
    body["media"][0]["id"].as_str().expect("media id").to_string()
}

/// The sim's records of message `id` (every send of it).
async fn sim_records(cluster: &Cluster, id: &str) -> Vec<Value> {
    let all = cluster.sim_get("/sim/messages").await;
    all["messages"].as_array().into_iter().flatten().filter(|m| m["id"] == id).cloned().collect()
}

/// Waits until the sim delivered `id`, and returns the payload it received.
async fn delivered_payload(cluster: &Cluster, id: &str) -> Value {
    wait_for(&format!("delivery of {id}"), Duration::from_secs(20), || async {
        let records = sim_records(cluster, id).await;
        records.iter().find(|m| m["delivered"] == true).map(|m| m["message"].clone())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_type_is_carried_upstream_unchanged_and_delivered_once() {
    let Some(cluster) = start(spec()).await else { return };
    cluster
        .sim_post(
            "/sim/templates",
            json!([
                {"namespace": "ns", "name": "order_ready", "language": "en_US", "params": 3},
                {"namespace": "ns", "name": "legacy_hsm", "language": "en", "params": 1},
            ]),
        )
        .await;
    let image = upload(&cluster, &cluster.api, vec![7u8; 300_000], "image/jpeg").await;
    let document = upload(&cluster, &cluster.api, b"%PDF-1.4 contract".to_vec(), "application/pdf").await;
    let audio = upload(&cluster, &cluster.api, vec![1u8; 2_000], "audio/mpeg").await;
    let video = upload(&cluster, &cluster.api, vec![2u8; 5_000], "video/mp4").await;
    let sticker = upload(&cluster, &cluster.api, vec![3u8; 1_000], "image/webp").await;

    let messages = [
        json!({"type": "text", "text": {"body": "hello"}, "preview_url": true}),
        json!({"type": "template", "template": {
        "namespace": "ns", "name": "order_ready",
        "language": {"policy": "deterministic", "code": "en_US"},
        "components": [
            {"type": "header", "parameters": [{"type": "image", "image": {"id": image}}]},
            {"type": "body", "parameters": [
                {"type": "text", "text": "Ann"},
                {"type": "currency", "currency": {"fallback_value": "$10", "code": "USD", "amount_1000": 10000}},
            ]},
        ]}}),
        json!({"type": "hsm", "hsm": {
            "namespace": "ns", "element_name": "legacy_hsm",
            "language": {"policy": "deterministic", "code": "en"},
            "localizable_params": [{"default": "Ann"}]}}),
        json!({"type": "image", "image": {"id": image, "caption": "a picture"}}),
        json!({"type": "image", "image": {"id": image, "caption": "the same picture again"}}),
        json!({"type": "document", "document": {"id": document, "filename": "contract.pdf", "caption": "sign"}}),
        json!({"type": "audio", "audio": {"id": audio}}),
        json!({"type": "video", "video": {"id": video, "caption": "clip"}}),
        json!({"type": "sticker", "sticker": {"id": sticker}}),
        json!({"type": "location", "location": {"longitude": -122.4, "latitude": 37.8, "name": "HQ", "address": "1 Main St"}}),
        json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Ann Lee", "first_name": "Ann"},
            "phones": [{"phone": "+1 555 123 4567", "type": "CELL", "wa_id": "15551234567"}]}]}),
        json!({"type": "interactive", "interactive": {"type": "button",
            "body": {"text": "Ready?"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                                   {"type": "reply", "reply": {"id": "no", "title": "No"}}]}}}),
        json!({"type": "interactive", "interactive": {"type": "list",
            "header": {"type": "text", "text": "Menu"}, "body": {"text": "Pick one"}, "footer": {"text": "thanks"},
            "action": {"button": "Options", "sections": [{"title": "Mains",
                "rows": [{"id": "r1", "title": "Soup", "description": "hot"}]}]}}}),
    ];
    let mut sent = Vec::new();
    for message in &messages {
        let mut request = message.clone();
        request["to"] = json!(TO);
        request["recipient_type"] = json!("individual");
        sent.push((cluster.send_message(request).await, message.clone()));
    }
    for (id, message) in &sent {
        let received = delivered_payload(&cluster, id).await;
        let kind = message["type"].as_str().unwrap();
        assert_eq!(received["type"], kind, "{id}: {received}");
        // The type's own object travels unchanged (media ids included).
        assert_eq!(received[kind], message[kind], "{kind} changed on its way upstream");
    }
    let counts = cluster.delivery_counts().await;
    for (id, _) in &sent {
        assert_eq!(counts.get(id), Some(&1), "{id} delivered {:?} times", counts.get(id));
    }
    let stats = cluster.sim_stats().await;
    assert_eq!(stats["conflicts"], 0, "{stats}");
    assert_eq!(stats["messages_failed"], 0, "{stats}");
    // The image was used by three messages on one session: its bytes went up once.
    let media = cluster.sim_get("/sim/media").await;
    let record = media["media"].as_array().unwrap().iter().find(|m| m["media_id"] == image.as_str()).cloned();
    let record = record.unwrap_or_else(|| panic!("image never uploaded: {media}"));
    assert_eq!(record["sha256"], sha256_hex(&[7u8; 300_000]), "{record}");
    for session in record["sessions"].as_array().unwrap() {
        assert_eq!(session["uploads"], 1, "image uploaded more than once in a session: {record}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_written_through_one_webapp_is_read_and_deleted_through_another() {
    let Some(cluster) = start(spec()).await else { return };
    let (_webapp2, api2) = cluster.start_webapp("webapp-2").await;
    let bytes: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let id = upload(&cluster, &cluster.api, bytes.clone(), "application/pdf").await;

    let response =
        cluster.http.get(format!("{api2}/v1/media/{id}")).bearer_auth(&cluster.token).send().await.expect("download");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    let downloaded = response.bytes().await.expect("media bytes");
    assert_eq!(sha256_hex(&downloaded), sha256_hex(&bytes), "the bytes changed");

    let id2 = cluster
        .send_message(json!({"to": TO, "type": "document", "document": {"id": id, "filename": "big.pdf"}}))
        .await;
    delivered_payload(&cluster, &id2).await;

    let (status, _) =
        harness::api_call(&cluster.http, &api2, &cluster.token, Method::DELETE, &format!("/v1/media/{id}"), None).await;
    assert_eq!(status, 200, "delete through the second webapp");
    let (status, body) = cluster.api_call(Method::GET, &format!("/v1/media/{id}"), None).await;
    assert_eq!(status, 404, "deleted media still served: {body}");
    assert!(body["errors"][0]["code"].is_number(), "404 in the on-prem format: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_by_link_is_fetched_by_the_coreapp_and_sent_by_id() {
    let Some(cluster) = start(spec()).await else { return };
    let picture: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let served = picture.clone();
    let app = axum::Router::new().route(
        "/cat.jpg",
        get(move || {
            let bytes = served.clone();
            async move { ([("content-type", "image/jpeg")], bytes) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let link = format!("http://{}/cat.jpg", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let id = cluster.send_message(json!({"to": TO, "type": "image", "image": {"link": link, "caption": "cat"}})).await;
    let received = delivered_payload(&cluster, &id).await;
    assert!(received["image"]["link"].is_null(), "the link went upstream: {received}");
    let media_id = received["image"]["id"].as_str().unwrap_or_else(|| panic!("no media id upstream: {received}"));
    assert_eq!(received["image"]["caption"], "cat");
    let media = cluster.sim_get("/sim/media").await;
    let record = media["media"].as_array().unwrap().iter().find(|m| m["media_id"] == media_id).cloned();
    assert_eq!(record.expect("uploaded")["sha256"], sha256_hex(&picture));

    // A link that cannot be fetched fails the message; nothing is delivered.
    let dead = cluster
        .send_message(json!({"to": TO, "type": "image", "image": {"link": "http://127.0.0.1:9/none.jpg"}}))
        .await;
    wait_for("the dead link's message to fail", Duration::from_secs(40), || async {
        let row = cluster.store.message_status(&dead).await.ok().flatten()?;
        (row.as_str() == "failed").then_some(())
    })
    .await;
    assert!(sim_records(&cluster, &dead).await.is_empty(), "a message with a dead link went upstream");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_the_network_refuses_end_failed_and_are_never_delivered() {
    let Some(cluster) = start(spec()).await else { return };
    let unknown_number =
        cluster.send_message(json!({"to": "0123456789", "type": "text", "text": {"body": "hi"}})).await;
    let unknown_template = cluster
        .send_message(json!({"to": TO, "type": "template", "template": {
            "namespace": "ns", "name": "never_registered", "language": {"policy": "deterministic", "code": "en"}}}))
        .await;
    for (id, code) in [(&unknown_number, 1013), (&unknown_template, 2001)] {
        wait_for(&format!("{id} to fail"), Duration::from_secs(20), || async {
            let status = cluster.store.message_status(id).await.ok().flatten()?;
            (status.as_str() == "failed").then_some(())
        })
        .await;
        let records = sim_records(&cluster, id).await;
        assert_eq!(records[0]["errors"][0]["code"], code, "{records:?}");
        assert!(records.iter().all(|r| r["delivered"] == false));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_are_checked_through_the_upstream_once_and_then_answered_from_the_cache() {
    let Some(cluster) = start(spec()).await else { return };
    let (_webapp2, api2) = cluster.start_webapp("webapp-2").await;
    let ask = json!({"blocking": "wait", "contacts": ["+1 (555) 123-4567", "0123 456 789"], "force_check": false});
    let (status, body) = cluster.api_call(Method::POST, "/v1/contacts", Some(ask.clone())).await;
    assert_eq!(status, 200, "{body}");
    let contacts = body["contacts"].as_array().expect("contacts");
    assert_eq!(contacts[0]["input"], "+1 (555) 123-4567");
    assert_eq!(contacts[0]["status"], "valid", "{body}");
    assert_eq!(contacts[0]["wa_id"], "15551234567");
    assert_eq!(contacts[1]["status"], "invalid", "{body}");
    assert!(contacts[1]["wa_id"].is_null(), "{body}");
    let checks = cluster.sim_stats().await["contact_checks"].as_u64().unwrap();
    assert!(checks >= 1, "no check reached the upstream");

    // Another webapp answers from the shared cache: no new check upstream.
    let (status, again) =
        harness::api_call(&cluster.http, &api2, &cluster.token, Method::POST, "/v1/contacts", Some(ask)).await;
    assert_eq!(status, 200);
    assert_eq!(again["contacts"], body["contacts"]);
    assert_eq!(cluster.sim_stats().await["contact_checks"].as_u64().unwrap(), checks, "the cache was not used");

    // force_check goes upstream again.
    let forced = json!({"blocking": "wait", "contacts": ["+1 (555) 123-4567"], "force_check": true});
    let (status, _) = cluster.api_call(Method::POST, "/v1/contacts", Some(forced)).await;
    assert_eq!(status, 200);
    assert!(cluster.sim_stats().await["contact_checks"].as_u64().unwrap() > checks, "force_check used the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marking_an_inbound_message_read_reaches_the_upstream() {
    let Some(cluster) = start(spec()).await else { return };
    let injected = cluster
        .sim_post(
            "/sim/inbound",
            json!({"account": cluster_account(&cluster).await, "from": "15557770001", "body": "hi"}),
        )
        .await;
    let id = injected["id"].as_str().expect("inbound id").to_string();
    wait_for("the inbound message to be stored", Duration::from_secs(20), || async {
        cluster.store.inbound_message(&id).await.ok().flatten()
    })
    .await;
    let (status, body) =
        cluster.api_call(Method::PUT, &format!("/v1/messages/{id}"), Some(json!({"status": "read"}))).await;
    assert_eq!(status, 200, "{body}");
    wait_for("the read mark at the upstream", Duration::from_secs(20), || async {
        let inbound = cluster.sim_get("/sim/inbound").await;
        let record = inbound["inbound"].as_array()?.iter().find(|m| m["id"] == id.as_str())?.clone();
        (record["read_marks"].as_u64()? >= 1).then_some(())
    })
    .await;
    let (status, body) =
        cluster.api_call(Method::PUT, "/v1/messages/in-never-received", Some(json!({"status": "read"}))).await;
    assert_eq!(status, 404, "{body}");
}

/// The account the cluster's coreapps open sessions for.
async fn cluster_account(cluster: &Cluster) -> String {
    let sessions = cluster.sim_get("/sim/sessions").await;
    sessions["sessions"][0]["account"].as_str().expect("a session").to_string()
}
