//! Operations tell the truth (issue 10, item 6): `shardgate status` and
//! `GET /v1/health` name what is really the case with each node of a cluster
//! of real processes: a `kill -9`ed node is `gone`, a SIGSTOPped one
//! `paused`, a partitioned one `unreachable`; and `shardgate status --prune`
//! removes only the records of nodes gone for good, which `Store::remove_node`
//! guards on every engine.

mod harness;

use harness::{start, wait_for, Cluster, ClusterSpec};
use serde_json::{json, Value};
use shardgate_core::config::DbEngine;
use shardgate_core::control_auth::SECRET_ENV;
use shardgate_core::store::nodes::NodeRecord;
use shardgate_core::store::shard_map::ClusterInfo;
use shardgate_core::store::Store;
use shardgate_core::testing::TestDatabase;
use std::time::Duration;

/// How long a verdict may take to show: one probe (two 0.5 s steps) plus
/// the masters' next heartbeat, with room for a loaded machine.
const VERDICT_WITHIN: Duration = Duration::from_secs(15);

/// The database flags the cluster's nodes run with, as its webapp was given them.
fn db_args(cluster: &Cluster) -> Vec<String> {
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", cluster.webapp.pid)).expect("webapp command line");
    let args: Vec<String> =
        cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).filter(|a| !a.is_empty()).collect();
    args.windows(2)
        .filter(|pair| pair[0].starts_with("--db-") || pair[0] == "--data-dir")
        .flat_map(|pair| pair.to_vec())
        .collect()
}

/// `shardgate status --json` with `extra` flags, run with the cluster's secret.
async fn status(cluster: &Cluster, extra: &[&str]) -> Value {
    status_with(cluster, extra, Some(&cluster.cluster_secret)).await
}

/// `shardgate status --json` with `extra` flags and `secret`, if any.
async fn status_with(cluster: &Cluster, extra: &[&str], secret: Option<&str>) -> Value {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardgate"));
    command.args(["status", "--json"]).args(extra).args(db_args(cluster)).env_remove(SECRET_ENV);
    if let Some(secret) = secret {
        command.env(SECRET_ENV, secret);
    }
    let run = command.kill_on_drop(true).output();
    let out = tokio::time::timeout(Duration::from_secs(30), run).await.expect("status within 30 s").expect("status");
    assert!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

/// The node `node` of a status document.
fn node<'a>(status: &'a Value, node: &str) -> Option<&'a Value> {
    status["nodes"].as_array()?.iter().find(|n| n["node"] == node)
}

/// `gateway_status` of the node at `addr` in `GET /v1/health`.
async fn gateway_status(cluster: &Cluster, addr: &str) -> Value {
    let (code, body) = cluster.api_call(reqwest::Method::GET, "/v1/health", None).await;
    assert_eq!(code, 200, "GET /v1/health: {body}");
    body["health"][addr]["gateway_status"].clone()
}

/// Waits until `shardgate status` shows `name` as `health` and `GET
/// /v1/health` shows `gateway_status` (one of them) at its address.
async fn wait_verdict(cluster: &Cluster, name: &str, addr: &str, health: &str, gateway: &[&str]) {
    wait_for(&format!("status to show {name} {health}"), VERDICT_WITHIN, || async {
        let s = status(cluster, &[]).await;
        (node(&s, name)?["health"] == health).then_some(())
    })
    .await;
    wait_for(&format!("GET /v1/health to show {name} at {addr} as one of {gateway:?}"), VERDICT_WITHIN, || async {
        let got = gateway_status(cluster, addr).await;
        gateway.iter().any(|g| got == *g).then_some(())
    })
    .await;
}

/// Waits until every node of the cluster is `healthy`.
async fn wait_all_healthy(cluster: &Cluster) {
    wait_for("every node healthy", VERDICT_WITHIN, || async {
        let s = status(cluster, &[]).await;
        let nodes = s["nodes"].as_array()?;
        (nodes.len() == 6 && nodes.iter().all(|n| n["health"] == "healthy")).then_some(())
    })
    .await;
}

/// The coreapps that do not own shard 0.
async fn secondaries(cluster: &Cluster) -> Vec<String> {
    let owner = cluster.shard(0).await.owner;
    cluster.coreapps.iter().map(|c| c.name.clone()).filter(|name| *name != owner).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_is_gone_and_paused_node_is_paused_in_status_and_health() {
    let Some(mut cluster) = start(ClusterSpec::fast(DbEngine::Sqlite)).await else { return };
    wait_all_healthy(&cluster).await;
    let [killed, paused] = <[String; 2]>::try_from(secondaries(&cluster).await).expect("two secondaries");
    let killed_addr = cluster.coreapp(&killed).ready_str("control_addr");
    let paused_addr = cluster.coreapp(&paused).ready_str("control_addr");

    cluster.coreapp(&killed).kill9().await.expect("kill -9");
    wait_verdict(&cluster, &killed, &killed_addr, "gone", &["gone"]).await;

    cluster.coreapp(&paused).pause().expect("SIGSTOP");
    wait_verdict(&cluster, &paused, &paused_addr, "paused", &["paused"]).await;
    let s = status(&cluster, &[]).await;
    assert_eq!(node(&s, &killed).expect("killed node listed")["health"], "gone", "{s}");

    cluster.coreapp(&paused).resume().expect("SIGCONT");
    wait_verdict(&cluster, &paused, &paused_addr, "healthy", &["connected", "disconnected"]).await;

    // Without the secret, status probes by TCP only, and says so.
    let s = status_with(&cluster, &[], None).await;
    assert_eq!(node(&s, &killed).expect("killed node listed")["health"], "gone", "{s}");
    assert!(s["notes"][0].as_str().is_some_and(|n| n.contains(SECRET_ENV) && n.contains("TCP")), "{s}");
}

/// Names of the nodes `--prune` removed, sorted.
fn removed_nodes(status: &Value) -> Vec<String> {
    let mut removed: Vec<String> = status["prune"]["removed"]
        .as_array()
        .expect("prune report")
        .iter()
        .filter_map(|l| l["node"].as_str().map(str::to_string))
        .collect();
    removed.sort_unstable();
    removed
}

/// Why `--prune` kept `name`.
fn kept_for<'a>(status: &'a Value, name: &str) -> Option<&'a str> {
    status["prune"]["kept"].as_array()?.iter().find(|l| l["node"] == name)?["reason"].as_str()
}

/// Waits until each of `names` is `gone` with a record older than `stale_after` seconds.
async fn wait_gone_for_good(cluster: &Cluster, names: &[String], stale_after: f64) {
    wait_for(&format!("{names:?} gone for longer than {stale_after} s"), VERDICT_WITHIN, || async {
        let s = status(cluster, &[]).await;
        let old = |name: &String| {
            node(&s, name).is_some_and(|n| n["health"] == "gone" && n["last_seen_s"].as_f64() > Some(stale_after))
        };
        names.iter().all(old).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_records_gone_for_good_but_never_a_shard_owner_or_the_lease_holder() {
    let Some(mut cluster) = start(ClusterSpec::fast(DbEngine::Sqlite)).await else { return };
    wait_all_healthy(&cluster).await;
    // Liveness writes every 0.5 s: records are stale (and prunable once gone)
    // after 1 s.
    cluster.patch_settings(json!({"db_update_interval": 0.5})).await;
    let stale_after = 1.0;
    // The masters go first, the secondary before the primary: no shard and
    // no lease changes hands from here on.
    let holder = cluster.store.read_master_lease().await.expect("lease").holder;
    let secondary_master = cluster.masters.iter().position(|m| m.name != holder).expect("a secondary master");
    let secondary_master_name = cluster.masters[secondary_master].name.clone();
    cluster.masters[secondary_master].kill9().await.expect("kill -9 secondary master");
    cluster.masters[1 - secondary_master].kill9().await.expect("kill -9 primary master");
    let owner = cluster.shard(0).await.owner;
    let spares = secondaries(&cluster).await;

    // A killed coreapp and the secondary master go; the lease holder and
    // every live node stay.
    cluster.coreapp(&spares[0]).kill9().await.expect("kill -9");
    let gone = [spares[0].clone(), holder.clone(), secondary_master_name.clone()];
    wait_gone_for_good(&cluster, &gone, stale_after).await;
    let s = status(&cluster, &["--prune"]).await;
    let mut expected = vec![spares[0].clone(), secondary_master_name];
    expected.sort_unstable();
    assert_eq!(removed_nodes(&s), expected, "{s}");
    assert!(kept_for(&s, &holder).is_some_and(|r| r.contains("holds the master lease")), "{s}");
    for live in [owner.as_str(), spares[1].as_str(), "webapp-1"] {
        let health = node(&s, live).expect("listed")["health"].as_str().expect("health");
        assert_ne!(health, "gone", "{s}");
        assert_eq!(kept_for(&s, live), Some(health), "a live node is kept for its health: {s}");
    }
    let (_, records) = cluster.store.nodes().await.expect("nodes");
    let mut left: Vec<&str> = records.iter().map(|r| r.node_id.as_str()).collect();
    left.sort_unstable();
    let mut expected = [owner.as_str(), spares[1].as_str(), holder.as_str(), "webapp-1"];
    expected.sort_unstable();
    assert_eq!(left, expected);
    let observations = cluster.store.heartbeat_observations().await.expect("observations");
    let removed = removed_nodes(&s);
    assert!(
        observations.iter().all(|o| !removed.contains(&o.node_id) && !removed.contains(&o.master_id)),
        "the observations of and by removed nodes go with them: {observations:?}"
    );

    // With every coreapp dead, the shard owner keeps its record.
    for name in [&spares[1], &owner] {
        cluster.coreapp(name).kill9().await.expect("kill -9 coreapp");
    }
    wait_gone_for_good(&cluster, &[spares[1].clone(), owner.clone()], stale_after).await;
    let s = status(&cluster, &["--prune"]).await;
    assert_eq!(removed_nodes(&s), [spares[1].clone()], "{s}");
    assert!(kept_for(&s, &owner).is_some_and(|r| r.contains("owns shard 0")), "{s}");
    assert!(kept_for(&s, &holder).is_some_and(|r| r.contains("holds the master lease")), "{s}");
    assert_eq!(kept_for(&s, "webapp-1"), Some("healthy"), "{s}");
    let (_, records) = cluster.store.nodes().await.expect("nodes");
    let mut left: Vec<&str> = records.iter().map(|r| r.node_id.as_str()).collect();
    left.sort_unstable();
    let mut expected = [owner.as_str(), holder.as_str(), "webapp-1"];
    expected.sort_unstable();
    assert_eq!(left, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_node_is_unreachable_in_status_and_health() {
    let spec = ClusterSpec { netns_coreapp: true, ..ClusterSpec::fast(DbEngine::Sqlite) };
    let Some(cluster) = start(spec).await else { return };
    wait_all_healthy(&cluster).await;
    let name = harness::netns::NETNS_COREAPP;
    let addr = cluster.coreapps.iter().find(|c| c.name == name).expect("namespaced coreapp").ready_str("control_addr");
    let port = addr.rsplit(':').next().expect("port");
    // Every packet to its control port is dropped silently, SYNs included;
    // the namespace and its rules go when the cluster is dropped.
    let ns = cluster.netns.as_ref().expect("namespace");
    ns.exec(&["iptables", "-w", "-A", "INPUT", "-p", "tcp", "--dport", port, "-j", "DROP"]);
    wait_verdict(&cluster, name, &addr, "unreachable", &["unreachable"]).await;
}

/// `Store::remove_node` on every engine (the statement that keeps shard
/// owners and the lease holder is the same on all three).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_node_deletes_only_an_unchanged_record_of_a_node_without_shard_or_lease() {
    for engine in [DbEngine::Sqlite, DbEngine::Postgres, DbEngine::MySql] {
        let Some(db) = TestDatabase::create(engine).await else { continue };
        let store = Store::connect(&db.config).await.expect("store");
        store.bootstrap().await.expect("bootstrap");
        store.migrate().await.expect("migrate");
        let record = |id: &str, role: &str| NodeRecord {
            node_id: id.into(),
            role: role.into(),
            instance_id: format!("{id}-1"),
            control_addr: format!("{id}:6252"),
            version: "0".into(),
            pid: 1,
            started_at: 0,
            last_seen: 0,
        };
        for (id, role) in [("core-a", "coreapp"), ("core-b", "coreapp"), ("master-a", "master"), ("master-z", "master")]
        {
            store.register_node(&record(id, role)).await.expect("register");
        }
        for (master, node) in [("master-a", "core-a"), ("master-a", "core-b"), ("master-z", "core-b")] {
            store.record_heartbeat(master, node, &format!("{node}-1"), 10).await.expect("heartbeat");
        }
        store.init_cluster(&ClusterInfo { shards: 1, account: "15550000000".into() }).await.expect("cluster");
        let auth = store.try_acquire_master_lease("master-a", Duration::from_secs(60)).await.unwrap().expect("lease");
        assert!(store.reassign_shard(0, 0, "core-b", 0, &auth).await.unwrap(), "core-b owns shard 0");
        let (_, nodes) = store.nodes().await.unwrap();
        let seen = |id: &str| nodes.iter().find(|n| n.node_id == id).expect("registered").last_seen;

        assert!(!store.remove_node("core-a", seen("core-a") - 1).await.unwrap(), "{engine:?}: a changed record stays");
        assert!(!store.remove_node("core-b", seen("core-b")).await.unwrap(), "{engine:?}: a shard owner stays");
        assert!(!store.remove_node("master-a", seen("master-a")).await.unwrap(), "{engine:?}: the lease holder stays");
        assert!(store.remove_node("core-a", seen("core-a")).await.unwrap(), "{engine:?}");
        assert!(store.remove_node("master-z", seen("master-z")).await.unwrap(), "{engine:?}");

        let (_, left) = store.nodes().await.unwrap();
        let left: Vec<&str> = left.iter().map(|n| n.node_id.as_str()).collect();
        assert_eq!(left, ["core-b", "master-a"], "{engine:?}");
        let observations = store.heartbeat_observations().await.unwrap();
        let observations: Vec<(&str, &str)> =
            observations.iter().map(|o| (o.master_id.as_str(), o.node_id.as_str())).collect();
        assert_eq!(observations, [("master-a", "core-b")], "{engine:?}: observations of and by removed nodes go");
        drop(store);
        drop(db);
    }
}
