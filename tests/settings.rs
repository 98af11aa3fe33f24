//! Invariant I5: a settings change made through one webapp is in force on
//! every live node within one heartbeat interval plus a small bound, and a
//! change that could let two sessions overlap is refused and changes nothing.

mod harness;

use harness::{start, wait_for, ClusterSpec};
use serde_json::{json, Value};
use shardgate_core::config::DbEngine;
use std::time::Duration;
use tokio::time::Instant;

async fn patch(cluster: &harness::Cluster, body: Value) -> reqwest::Response {
    cluster
        .http
        .patch(format!("{}/v1/settings/application", cluster.api))
        .bearer_auth(&cluster.token)
        .json(&body)
        .send()
        .await
        .expect("PATCH settings")
}

async fn settings_reach_every_node(engine: DbEngine) {
    let Some(cluster) = start(ClusterSpec::fast(engine)).await else { return };
    let before = cluster.store.settings_version().await.expect("version");

    let refused = patch(&cluster, json!({"unhealthy_interval": 0.4})).await;
    assert_eq!(refused.status(), 400);
    let error: Value = refused.json().await.unwrap();
    assert!(error["errors"][0]["details"].as_str().unwrap().contains("session_timeout"), "{error}");
    assert_eq!(cluster.store.settings_version().await.unwrap(), before, "a refused change must not be stored");

    let changed_at = Instant::now();
    let response = patch(&cluster, json!({"heartbeat_interval": 0.25, "unhealthy_interval": 1.5})).await;
    assert!(response.status().is_success(), "{}", response.text().await.unwrap_or_default());
    let version = cluster.store.settings_version().await.unwrap();
    assert_eq!(version, before + 1);
    // In force everywhere within one (old) heartbeat interval plus a bound
    // generous enough for a loaded two-core machine.
    let bound = Duration::from_secs_f64(cluster.spec.heartbeat_interval) + Duration::from_secs(2);
    let elapsed = wait_for("every node to run the new settings", bound, || async {
        let versions = cluster.node_settings_versions().await;
        versions.iter().all(|(_, v)| *v == Some(version)).then(|| changed_at.elapsed())
    })
    .await;
    eprintln!("settings in force on every node {elapsed:?} after the change");

    let got: Value = cluster
        .http
        .get(format!("{}/v1/settings/application", cluster.api))
        .bearer_auth(&cluster.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["settings"]["application"]["heartbeat_interval"], 0.25);
    assert_eq!(got["settings"]["application"]["unhealthy_interval"], 1.5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_settings_change_reaches_every_node_within_a_heartbeat() {
    settings_reach_every_node(DbEngine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_settings_change_reaches_every_node_within_a_heartbeat() {
    settings_reach_every_node(DbEngine::Postgres).await;
}
