//! Plugins in a running cluster of real processes: a router uploaded through
//! one webapp reaches the others and reroutes live; a node's plugins
//! directory is followed without a restart; routers swapped back and forth
//! under load lose no request; a hostile router never takes a node down and,
//! once unloaded for failing, is not loaded again.

mod harness;

use harness::{load, start, wait_for, ClusterSpec};
use serde_json::Value;
use shardgate_core::config::DbEngine;
use shardgate_core::routing::default_shard;
use std::time::{Duration, Instant};

fn component(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/plugins/{path}", env!("CARGO_MANIFEST_DIR"))).expect("component file")
}

/// The first number `prefix` + n whose default shard among 2 is `shard`.
fn recipient(prefix: &str, shard: u32) -> String {
    (0..1000).map(|n| format!("{prefix}{n:06}")).find(|r| default_shard(r, 2) == shard).expect("recipient")
}

async fn upload(cluster: &harness::Cluster, api: &str, kind: &str, name: &str, bytes: Vec<u8>) -> reqwest::Response {
    cluster
        .http
        .put(format!("{api}/v1/plugins/{kind}?name={name}&version=1.0.0"))
        .bearer_auth(&cluster.token)
        .header("Content-Type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .expect("PUT plugin")
}

async fn running(cluster: &harness::Cluster, api: &str, kind: &str) -> Value {
    let list: Value = cluster
        .http
        .get(format!("{api}/v1/plugins"))
        .bearer_auth(&cluster.token)
        .send()
        .await
        .expect("GET plugins")
        .json()
        .await
        .expect("plugins json");
    list["plugins"].as_array().unwrap().iter().find(|p| p["kind"] == kind).cloned().expect("kind listed")
}

async fn wait_running(cluster: &harness::Cluster, api: &str, kind: &str, name: &str) {
    wait_for(&format!("{kind} plugin {name} running on {api}"), Duration::from_secs(10), || async {
        (running(cluster, api, kind).await["name"] == name).then_some(())
    })
    .await;
}

/// Sends through `api` and returns the shard the sim received the message on.
async fn delivered_shard(cluster: &harness::Cluster, api: &str, to: &str) -> u64 {
    let id = harness::send_text(&cluster.http, api, &cluster.token, to, "routing probe").await.expect("accepted");
    wait_for(&format!("delivery of {id}"), Duration::from_secs(20), || async {
        let messages = cluster.sim_get("/sim/messages").await;
        messages["messages"].as_array()?.iter().find(|m| m["id"] == id.as_str())?["shard"].as_u64()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_uploaded_on_one_webapp_reroutes_live_on_every_webapp() {
    let spec = ClusterSpec { shards: 2, ..ClusterSpec::fast(DbEngine::Sqlite) };
    let Some(cluster) = start(spec).await else { return };
    let (_webapp2, api2) = cluster.start_webapp("webapp-2").await;
    // The country router pins 44 to shard 1 and hashes the rest over shard 0.
    let uk = recipient("447700", 0);
    let us = recipient("1555", 1);
    assert_eq!(delivered_shard(&cluster, &api2, &uk).await, 0, "default rule before the upload");

    let response =
        upload(&cluster, &cluster.api, "router", "country", component("components/router-country.wasm")).await;
    assert!(response.status().is_success(), "{}", response.text().await.unwrap_or_default());
    wait_running(&cluster, &api2, "router", "country").await;
    assert_eq!(delivered_shard(&cluster, &api2, &uk).await, 1, "pinned by the uploaded router");
    assert_eq!(delivered_shard(&cluster, &api2, &us).await, 0, "hashed over the unpinned shards");

    let deleted = cluster
        .http
        .delete(format!("{}/v1/plugins/router", cluster.api))
        .bearer_auth(&cluster.token)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    wait_running(&cluster, &api2, "router", "default").await;
    assert_eq!(delivered_shard(&cluster, &api2, &uk).await, 0, "the default rule is back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_routers_under_load_loses_no_request() {
    let spec = ClusterSpec { shards: 2, ..ClusterSpec::fast(DbEngine::Sqlite) };
    let Some(cluster) = start(spec).await else { return };
    let load = load::start(cluster.http.clone(), cluster.api.clone(), cluster.token.clone(), 4, 15.0);
    let mut delivered = cluster.wait_more_deliveries(0, 10).await;
    for _ in 0..3 {
        let response =
            upload(&cluster, &cluster.api, "router", "country", component("components/router-country.wasm")).await;
        assert!(response.status().is_success());
        wait_running(&cluster, &cluster.api, "router", "country").await;
        delivered = cluster.wait_more_deliveries(delivered, 10).await;
        let deleted =
            cluster.http.delete(format!("{}/v1/plugins/router", cluster.api)).bearer_auth(&cluster.token).send().await;
        assert!(deleted.unwrap().status().is_success());
        wait_running(&cluster, &cluster.api, "router", "default").await;
        delivered = cluster.wait_more_deliveries(delivered, 10).await;
    }
    let report = load.finish().await;
    assert!(report.acked_ids().len() >= 20, "the load ran through the swaps");
    assert_eq!(report.refused() + report.unknown_outcomes(), 0, "no request failed during the swaps");
    cluster.wait_delivered(&report.acked_ids(), Duration::from_secs(30)).await;
    // A swap moves recipients between shards by design, so only
    // exactly-once is checked here, not the order across the swap.
    cluster.assert_exactly_once(&report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_router_never_takes_the_node_down_and_stays_unloaded() {
    let Some(cluster) = start(ClusterSpec::fast(DbEngine::Sqlite)).await else { return };
    let response =
        upload(&cluster, &cluster.api, "router", "loop", component("test-components/hostile-loop.wasm")).await;
    assert!(response.status().is_success(), "a valid component loads: {}", response.text().await.unwrap_or_default());
    for n in 0..8 {
        let started = Instant::now();
        let sent = cluster.send_text("15550009999", &format!("despite the loop #{n}")).await;
        assert!(sent.is_ok(), "the native rule answers for the failing plugin: {sent:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "a looping plugin stalled a request");
    }
    let router = running(&cluster, &cluster.api, "router").await;
    assert_eq!(router["default"], true, "unloaded after repeated failures: {router}");
    // It stays unloaded: the cluster's copy is not loaded again.
    tokio::time::sleep(shardgate::plugin_sync::SYNC_EVERY * 3).await;
    assert_eq!(running(&cluster, &cluster.api, "router").await["default"], true, "the failing plugin came back");
    let health =
        cluster.http.get(format!("{}/v1/health", cluster.api)).bearer_auth(&cluster.token).send().await.unwrap();
    assert!(health.status().is_success(), "the webapp still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_directory_is_followed_without_a_restart() {
    let spec = ClusterSpec { shards: 2, ..ClusterSpec::fast(DbEngine::Sqlite) };
    let Some(cluster) = start(spec).await else { return };
    let dir = cluster.dir.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("router.wasm"), component("components/router-country.wasm")).unwrap();
    let (_webapp, api) =
        cluster.start_webapp_with("webapp-dir", &["--plugins-dir".into(), dir.display().to_string()]).await;
    wait_running(&cluster, &api, "router", "router").await;
    let uk = recipient("447700", 0);
    assert_eq!(delivered_shard(&cluster, &api, &uk).await, 1, "the directory's router runs");
    // The other webapp has no such directory and keeps the default.
    assert_eq!(running(&cluster, &cluster.api, "router").await["default"], true);

    std::fs::remove_file(dir.join("router.wasm")).unwrap();
    wait_running(&cluster, &api, "router", "default").await;
    assert_eq!(delivered_shard(&cluster, &api, &uk).await, 0, "removing the file brings the default back");

    // A file that is not a component is refused and the default keeps running.
    std::fs::write(dir.join("router.wasm"), b"not a component").unwrap();
    tokio::time::sleep(shardgate::plugin_sync::SYNC_EVERY * 2).await;
    assert_eq!(running(&cluster, &api, "router").await["default"], true);
}
