//! `POST /v1/contacts` end to end over SQLite: cached results answer at
//! once, uncached inputs are queued on their shard for its coreapp (played
//! here by the test, writing results into the cache), and `wait` answers
//! once the results arrive.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shardgate_core::routing::default_shard;
use shardgate_core::store::contacts::{ContactRow, ContactStatus};
use std::time::{Duration, Instant};
use support::*;

async fn check(webapp: &Webapp, token: &str, body: Value) -> reqwest::Response {
    webapp.request(Method::POST, "/v1/contacts").bearer_auth(token).json(&body).send().await.unwrap()
}

fn valid(input: &str, wa_id: &str) -> ContactRow {
    ContactRow { input: input.into(), status: ContactStatus::Valid, wa_id: Some(wa_id.into()), checked_at: 0 }
}

/// Every input queued for a check, with its shard.
async fn queued(webapp: &Webapp) -> Vec<(String, u32)> {
    let mut all = Vec::new();
    for shard in 0..SHARDS {
        for input in webapp.store.pending_contact_checks(shard, 100).await.unwrap() {
            all.push((input, shard));
        }
    }
    all
}

#[tokio::test]
async fn cached_results_answer_without_a_check() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let invalid =
        ContactRow { input: "+1 555 0000".into(), status: ContactStatus::Invalid, wa_id: None, checked_at: 0 };
    webapp.store.record_contact_results(&[valid("+1 (516) 283-7151", "15162837151"), invalid]).await.unwrap();
    let response = check(
        &webapp,
        &token,
        json!({"blocking": "wait", "contacts": ["+1 (516) 283-7151", "+1 555 0000", "not a number"]}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["contacts"],
        json!([
            {"input": "+1 (516) 283-7151", "status": "valid", "wa_id": "15162837151"},
            {"input": "+1 555 0000", "status": "invalid"},
            {"input": "not a number", "status": "invalid"}
        ])
    );
    assert_eq!(body["meta"]["api_status"], "stable");
    assert!(queued(&webapp).await.is_empty(), "nothing was checked again");
}

#[tokio::test]
async fn no_wait_answers_processing_and_queues_the_check_on_the_inputs_shard() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let wakes = webapp.owned_by_fake_coreapp().await;
    let input = "+1 631-555-1002";
    let body: Value = check(&webapp, &token, json!({"contacts": [input]})).await.json().await.unwrap();
    assert_eq!(body["contacts"], json!([{"input": input, "status": "processing"}]));
    let shard = default_shard("16315551002", SHARDS);
    assert_eq!(queued(&webapp).await, vec![(input.to_string(), shard)], "routed by the input's digits");
    assert!(woken(&wakes, shard).await, "the shard's owner was woken");
    // Asking again queues nothing new.
    check(&webapp, &token, json!({"blocking": "no_wait", "contacts": [input]})).await;
    assert_eq!(queued(&webapp).await.len(), 1);
}

#[tokio::test]
async fn wait_answers_once_the_coreapp_records_the_result() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let input = "+54 9 11 5612-1008";
    let store = webapp.store.clone();
    // The coreapp's part: take the queued check and record its result.
    let coreapp = tokio::spawn(async move {
        let shard = default_shard("5491156121008", SHARDS);
        loop {
            let pending = store.pending_contact_checks(shard, 10).await.unwrap();
            if let Some(input) = pending.first() {
                store.record_contact_results(&[valid(input, "5491156121008")]).await.unwrap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let started = Instant::now();
    let body: Value = check(&webapp, &token, json!({"blocking": "wait", "contacts": [input], "force_check": true}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["contacts"], json!([{"input": input, "status": "valid", "wa_id": "5491156121008"}]));
    assert!(started.elapsed() < Duration::from_secs(5), "answered as the result arrived");
    coreapp.await.unwrap();
    assert!(queued(&webapp).await.is_empty(), "recording the result took the check off the queue");
}

#[tokio::test]
async fn force_check_queues_a_cached_input_again() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    webapp.store.record_contact_results(&[valid("15551234567", "15551234567")]).await.unwrap();
    let body: Value =
        check(&webapp, &token, json!({"contacts": ["15551234567"], "force_check": true})).await.json().await.unwrap();
    assert_eq!(body["contacts"][0]["status"], "processing");
    assert_eq!(queued(&webapp).await.len(), 1);
}

#[tokio::test]
async fn bad_requests_get_onprem_errors() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let too_many: Vec<String> = (0..1001).map(|i| format!("1555{i:07}")).collect();
    let cases = [
        (json!({"blocking": "wait"}), 1008),
        (json!({"contacts": []}), 1009),
        (json!({"contacts": too_many}), 1009),
        (json!({"contacts": ["1555"], "blocking": "soon"}), 1009),
        (json!({"contacts": ["1555"], "force_check": "yes"}), 1009),
        (json!({"contacts": [15551234567u64]}), 1009),
        (json!({"contacts": ["1555"], "priority": 1}), 1010),
    ];
    for (body, expected) in cases {
        let (status, code, details) = onprem_error(check(&webapp, &token, body.clone()).await).await;
        assert_eq!((status, code), (StatusCode::BAD_REQUEST, expected), "{body}: {details}");
    }
    assert!(queued(&webapp).await.is_empty());
}
