//! Callbacks to the webhook, end to end with real processes: every inbound
//! message and every status of every acknowledged message reaches the
//! receiver at least once, in order per message, across a kill -9 of the
//! primary coreapp and across a receiver that fails for a while; failing
//! callbacks are retried with linear backoff; nothing is called back while
//! `webhooks.url` is empty. Duplicates are counted and printed.

mod harness;

use harness::webhook_receiver::WebhookReceiver;
use harness::{load, start, wait_for, Cluster, ClusterSpec};
use serde_json::{json, Value};
use shardgate_core::config::DbEngine;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const TO: &str = "15551230002";

/// The account the cluster's coreapps open sessions for.
async fn account(cluster: &Cluster) -> String {
    let sessions = cluster.sim_get("/sim/sessions").await;
    sessions["sessions"][0]["account"].as_str().expect("a session").to_string()
}

/// Injects `n` text messages from `from`; their ids, in order.
async fn inject(cluster: &Cluster, account: &str, from: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let body = json!({"account": account, "from": from, "body": format!("inbound {i}")});
        ids.push(cluster.sim_post("/sim/inbound", body).await["id"].as_str().expect("id").to_string());
    }
    ids
}

/// `(callbacks, duplicates)` the receiver accepted: statuses by (id, status),
/// inbound messages by id.
fn duplicates(receiver: &WebhookReceiver) -> (usize, usize) {
    let statuses = receiver.statuses();
    let inbound: Vec<String> = receiver.inbound().iter().map(|m| m["id"].as_str().unwrap_or("").to_string()).collect();
    let unique = statuses.iter().collect::<HashSet<_>>().len() + inbound.iter().collect::<HashSet<_>>().len();
    let total = statuses.len() + inbound.len();
    (total, total - unique)
}

/// Every message's statuses arrived in the order the upstream emitted them.
fn assert_status_order(receiver: &WebhookReceiver) {
    let rank = |s: &str| ["sent", "delivered", "read"].iter().position(|x| *x == s).unwrap_or(3);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (id, status) in receiver.statuses() {
        let r = rank(&status);
        let before = seen.entry(id.clone()).or_insert(0);
        // A duplicate may repeat an older status; a new one never skips back.
        assert!(r + 1 >= *before, "{id}: {status} after a later status");
        *before = (*before).max(r + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_inbound_message_and_status_reaches_the_webhook_across_a_kill9_and_an_outage() {
    let Some(mut cluster) = start(ClusterSpec::fast(DbEngine::Sqlite)).await else { return };
    let receiver = WebhookReceiver::start().await;
    cluster
        .patch_settings(json!({"webhooks": {"url": receiver.url}, "callback_backoff_delay_ms": 100,
            "max_callback_backoff_delay_ms": 400}))
        .await;
    let account = account(&cluster).await;
    let mut inbound = inject(&cluster, &account, "15557770010", 5).await;

    let load = load::start(cluster.http.clone(), cluster.api.clone(), cluster.token.clone(), 4, 10.0);
    receiver.wait_until("the first callbacks", Duration::from_secs(30), |r| r.statuses().len() >= 300).await;

    // 1. kill -9 of the primary while callbacks flow.
    let before = cluster.shard(0).await;
    cluster.coreapp(&before.owner).kill9().await.expect("kill -9");
    cluster.wait_new_primary(0, before.epoch, Duration::from_secs(10)).await;
    inbound.extend(inject(&cluster, &account, "15557770010", 5).await);
    let after_kill = receiver.statuses().len();
    receiver
        .wait_until("callbacks from the new primary", Duration::from_secs(30), |r| {
            r.statuses().len() >= after_kill + 300
        })
        .await;

    // 2. The receiver fails for a while: callbacks wait in the database.
    receiver.set_failing(true);
    let failed_before = receiver.deliveries().iter().filter(|d| !d.accepted).count();
    receiver
        .wait_until("callbacks refused by the failing receiver", Duration::from_secs(20), |r| {
            r.deliveries().iter().filter(|d| !d.accepted).count() >= failed_before + 10
        })
        .await;
    inbound.extend(inject(&cluster, &account, "15557770011", 5).await);
    let report = load.finish().await;
    receiver.set_failing(false);

    let acked = report.acked_ids();
    cluster.wait_delivered(&acked, Duration::from_secs(30)).await;
    let missing = |r: &WebhookReceiver| -> Vec<String> {
        let got: HashSet<(String, String)> = r.statuses().into_iter().collect();
        let inbound_got: HashSet<String> =
            r.inbound().iter().filter_map(|m| m["id"].as_str().map(str::to_string)).collect();
        let mut left: Vec<String> = acked
            .iter()
            .flat_map(|id| ["sent", "delivered", "read"].map(|s| (id.clone(), s.to_string())))
            .filter(|key| !got.contains(key))
            .map(|(id, s)| format!("{id}/{s}"))
            .collect();
        left.extend(inbound.iter().filter(|id| !inbound_got.contains(*id)).cloned());
        left
    };
    let arrived =
        harness::poll_until(Duration::from_secs(60), || async { missing(&receiver).is_empty().then_some(()) });
    if arrived.await.is_none() {
        let left = missing(&receiver);
        panic!(
            "{} callbacks never arrived, e.g. {:?}; {}",
            left.len(),
            &left[..left.len().min(5)],
            cluster.logs_hint()
        );
    }
    assert_status_order(&receiver);
    let (total, dups) = duplicates(&receiver);
    eprintln!(
        "callbacks accepted: {total}, duplicates: {dups} ({:.2}%), refused attempts: {}",
        100.0 * dups as f64 / total as f64,
        receiver.deliveries().iter().filter(|d| !d.accepted).count()
    );
    assert!(dups * 100 < total, "duplicates must stay under 1% of callbacks: {dups} of {total}");
    let stats = cluster.sim_stats().await;
    assert_eq!(stats["conflicts"], 0, "{stats}");

    // The inbound format: contacts with the sender, messages with the text.
    let first = receiver.accepted().into_iter().find(|b| b["messages"][0]["id"] == inbound[0].as_str()).unwrap();
    assert_eq!(first["contacts"][0]["wa_id"], "15557770010", "{first}");
    assert_eq!(first["messages"][0]["from"], "15557770010", "{first}");
    assert_eq!(first["messages"][0]["type"], "text", "{first}");
    assert_eq!(first["messages"][0]["text"]["body"], "inbound 0", "{first}");
    assert!(first["messages"][0]["timestamp"].is_string(), "on-prem timestamps are strings: {first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_retried_with_linear_backoff_up_to_the_cap() {
    let spec = ClusterSpec { coreapps: 2, masters: 1, ..ClusterSpec::fast(DbEngine::Sqlite) };
    let Some(cluster) = start(spec).await else { return };
    let receiver = WebhookReceiver::start().await;
    receiver.set_failing(true);
    cluster
        .patch_settings(json!({"webhooks": {"url": receiver.url}, "callback_backoff_delay_ms": 300,
            "max_callback_backoff_delay_ms": 700}))
        .await;
    let id = cluster.send_text(TO, "retry me").await.expect("accepted");
    receiver.wait_until("five refused attempts", Duration::from_secs(20), |r| r.deliveries().len() >= 5).await;
    let attempts = receiver.deliveries();
    // Callbacks to one recipient go in order: only the first (`sent`) is tried.
    assert!(attempts.iter().take(5).all(|d| d.body["statuses"][0]["status"] == "sent"), "out of order retries");
    let gaps: Vec<Duration> = attempts.windows(2).take(4).map(|w| w[1].at - w[0].at).collect();
    eprintln!("gaps between attempts: {gaps:?}");
    for (gap, expected_ms) in gaps.iter().zip([300u64, 600, 700, 700]) {
        let expected = Duration::from_millis(expected_ms);
        assert!(
            *gap + Duration::from_millis(30) >= expected && *gap <= expected + Duration::from_millis(600),
            "gap {gap:?}, expected about {expected:?} (linear backoff from 300 ms, capped at 700 ms): {gaps:?}"
        );
    }
    receiver.set_failing(false);
    receiver
        .wait_until("sent, delivered and read after recovery", Duration::from_secs(20), |r| {
            let got: Vec<String> = r.statuses().into_iter().filter(|(i, _)| *i == id).map(|(_, s)| s).collect();
            got.contains(&"read".to_string())
        })
        .await;
    let got: Vec<String> = receiver.statuses().into_iter().filter(|(i, _)| *i == id).map(|(_, s)| s).collect();
    assert_eq!(got, ["sent", "delivered", "read"], "each status once, in order");

    // Without callback_persist a refused callback gets one attempt only.
    cluster.patch_settings(json!({"callback_persist": false})).await;
    receiver.set_failing(true);
    let dropped = cluster.send_text(TO, "dropped").await.expect("accepted");
    receiver
        .wait_until("one attempt of each status of the dropped message", Duration::from_secs(20), |r| {
            r.deliveries().iter().filter(|d| d.body["statuses"][0]["id"] == dropped.as_str()).count() >= 3
        })
        .await;
    receiver.set_failing(false);
    let marker = cluster.send_text(TO, "after").await.expect("accepted");
    receiver
        .wait_until("the next message's read callback", Duration::from_secs(20), |r| {
            r.statuses().contains(&(marker.clone(), "read".to_string()))
        })
        .await;
    let attempts_of_dropped =
        receiver.deliveries().iter().filter(|d| d.body["statuses"][0]["id"] == dropped.as_str()).count();
    assert_eq!(attempts_of_dropped, 3, "callback_persist=false retried a refused callback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_called_back_while_the_webhook_url_is_empty() {
    let spec = ClusterSpec { coreapps: 2, masters: 1, ..ClusterSpec::fast(DbEngine::Sqlite) };
    let Some(cluster) = start(spec).await else { return };
    let receiver = WebhookReceiver::start().await;
    let account = account(&cluster).await;
    cluster.patch_settings(json!({"webhooks": {"url": receiver.url}})).await;
    cluster.patch_settings(json!({"webhooks": {"url": ""}})).await;

    let quiet = cluster.send_text(TO, "nobody hears this").await.expect("accepted");
    let quiet_inbound = inject(&cluster, &account, "15557770020", 1).await.remove(0);
    wait_for("the quiet message to be read and the inbound stored", Duration::from_secs(20), || async {
        let read = cluster.store.message_status(&quiet).await.ok().flatten()?.as_str() == "read";
        let stored = cluster.store.inbound_message(&quiet_inbound).await.ok().flatten().is_some();
        (read && stored).then_some(())
    })
    .await;

    cluster.patch_settings(json!({"webhooks": {"url": receiver.url}})).await;
    let heard = cluster.send_text(TO, "this one is heard").await.expect("accepted");
    receiver
        .wait_until("the heard message's read callback", Duration::from_secs(20), |r| {
            r.statuses().contains(&(heard.clone(), "read".to_string()))
        })
        .await;
    let mentions_quiet = |b: &Value| b.to_string().contains(&quiet) || b.to_string().contains(&quiet_inbound);
    assert!(!receiver.accepted().iter().any(mentions_quiet), "called back while webhooks.url was empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_media_is_stored_and_announced_with_its_id_and_only_for_the_kinds_asked_for() {
    let spec = ClusterSpec { coreapps: 2, masters: 1, ..ClusterSpec::fast(DbEngine::Sqlite) };
    let Some(cluster) = start(spec).await else { return };
    let receiver = WebhookReceiver::start().await;
    cluster.patch_settings(json!({"webhooks": {"url": receiver.url}, "media": {"auto_download": ["image"]}})).await;
    let account = account(&cluster).await;
    let image = cluster
        .sim_post(
            "/sim/inbound",
            json!({"account": account, "from": "15557770030", "profile_name": "Ann",
                "message": {"type": "image", "image": {"caption": "look"}}, "media": {"size": 50_000}}),
        )
        .await;
    let document = cluster
        .sim_post(
            "/sim/inbound",
            json!({"account": account, "from": "15557770030",
                "message": {"type": "document", "document": {"filename": "a.pdf"}}, "media": {"size": 2_000}}),
        )
        .await;
    let announced = |id: &Value| {
        let id = id.as_str().unwrap_or("").to_string();
        move |r: &WebhookReceiver| r.inbound().iter().any(|m| m["id"] == id.as_str())
    };
    receiver.wait_until("the image callback", Duration::from_secs(20), announced(&image["id"])).await;
    receiver.wait_until("the document callback", Duration::from_secs(20), announced(&document["id"])).await;
    let inbound = receiver.inbound();
    let image_message = inbound.iter().find(|m| m["id"] == image["id"]).unwrap();
    assert_eq!(image_message["image"]["sha256"], image["media"]["sha256"], "{image_message}");
    assert_eq!(image_message["image"]["caption"], "look");
    let media_id = image_message["image"]["id"].as_str().unwrap_or_else(|| panic!("no media id: {image_message}"));
    let response = cluster
        .http
        .get(format!("{}/v1/media/{media_id}", cluster.api))
        .bearer_auth(&cluster.token)
        .send()
        .await
        .expect("download");
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    assert_eq!(shardgate_core::digest::sha256_hex(&bytes), image["media"]["sha256"].as_str().unwrap());
    // Documents are not in auto_download: announced, but with no stored medium.
    let document_message = inbound.iter().find(|m| m["id"] == document["id"]).unwrap();
    assert!(document_message["document"]["id"].is_null(), "{document_message}");
    assert_eq!(document_message["document"]["sha256"], document["media"]["sha256"]);
}
