//! Hardening of the one promise (never two upstream sessions for one shard,
//! so never a ban) against cheap faults, with real processes judged by the
//! upstream-sim (issue 6, items 1, 2, 5 and 8):
//!
//! - oversized and unparsable inbound frames;
//! - a settings change that would lower the upstream session timeout;
//! - `kill -9` of the primary coreapp whose FIN never reaches the upstream;
//! - a primary coreapp cut off from the upstream while it still answers the masters.
//!
//! The last two run `coreapp-1` in a network namespace of the test's own
//! (`harness::netns`), where iptables drops its packets silently; they need
//! root, `ip` and `iptables`.

mod harness;

use harness::{load, poll_every, start, Cluster, ClusterSpec};
use serde_json::{json, Value};
use shardgate_core::config::DbEngine;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Recipients of the load, each with its own sequential sender.
const RECIPIENTS: usize = 4;
/// Messages per second per recipient.
const RATE: f64 = 15.0;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

/// The sim's records of every session of `shard`, in opening order.
async fn sessions_of_shard(cluster: &Cluster, shard: u32) -> Vec<Value> {
    let sessions = cluster.sim_get("/sim/sessions").await;
    sessions["sessions"].as_array().into_iter().flatten().filter(|s| s["shard"] == shard).cloned().collect()
}

/// One line per session, for failure messages and reports.
fn describe_sessions(sessions: &[Value], since_ms: i64) -> String {
    sessions
        .iter()
        .map(|s| {
            let rel = |field: &str| s[field].as_i64().map_or("-".to_string(), |t| format!("{:+}ms", t - since_ms));
            format!(
                "  {} node={} epoch={} opened={} closed={} reason={}",
                s["id"].as_str().unwrap_or("?"),
                s["node"].as_str().unwrap_or("?"),
                s["epoch"],
                rel("opened_at_ms"),
                rel("closed_at_ms"),
                s["close_reason"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Pairs of sessions of one shard that were open at the same time at the sim.
fn overlaps(sessions: &[Value]) -> Vec<String> {
    sessions
        .windows(2)
        .filter_map(|pair| {
            let (old, new) = (&pair[0], &pair[1]);
            let opened = new["opened_at_ms"].as_i64()?;
            match old["closed_at_ms"].as_i64() {
                Some(closed) if closed <= opened => None,
                closed => Some(format!(
                    "{} ({}) opened at {opened} while {} ({}) was open (closed at {closed:?}, {})",
                    new["id"], new["node"], old["id"], old["node"], old["close_reason"]
                )),
            }
        })
        .collect()
}

/// The sim's verdict on I2: zero conflicts and bans, no overlapping sessions;
/// panics with the whole story otherwise.
async fn assert_no_conflict(cluster: &Cluster, shard: u32, since_ms: i64) {
    let stats = cluster.sim_stats().await;
    let sessions = sessions_of_shard(cluster, shard).await;
    let overlapping = overlaps(&sessions);
    if stats["conflicts"] != 0 || stats["bans"] != 0 || !overlapping.is_empty() {
        let conflicts = cluster.sim_get("/sim/conflicts").await;
        panic!(
            "the upstream saw two sessions for one shard: conflicts={} bans={}\nconflicts: {conflicts}\n\
             overlaps: {overlapping:?}\nsessions (times from the fault):\n{}\n{}",
            stats["conflicts"],
            stats["bans"],
            describe_sessions(&sessions, since_ms),
            cluster.logs_hint()
        );
    }
}

/// The longest time without a first delivery at the sim, among the messages
/// received from `from_ms` on (and the last one before it); with its start.
async fn longest_delivery_gap(cluster: &Cluster, from_ms: i64) -> (Duration, i64) {
    let messages = cluster.sim_get("/sim/messages").await;
    let mut times: Vec<i64> = messages["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["delivered"] == true)
        .filter_map(|m| m["received_at_ms"].as_i64())
        .collect();
    times.sort_unstable();
    let first = times.iter().rposition(|t| *t < from_ms).unwrap_or(0);
    times[first..]
        .windows(2)
        .map(|w| (Duration::from_millis((w[1] - w[0]) as u64), w[0]))
        .max()
        .unwrap_or((Duration::ZERO, from_ms))
}

/// The sim's session address, where the namespace's rules point.
fn sim_session_addr(cluster: &Cluster) -> SocketAddr {
    cluster.sim.ready_str("session_addr").parse().expect("sim session address")
}

/// 1 shard, 3 coreapps, 2 masters; heartbeat 0.2 s, unhealthy 1 s, the
/// upstream's session timeout 0.5 s; `coreapp-1` primary, in a namespace.
fn netns_spec() -> ClusterSpec {
    ClusterSpec { session_timeout: 0.5, netns_coreapp: true, ..ClusterSpec::fast(DbEngine::Sqlite) }
}

/// Item 1: inbound frames the coreapp cannot take (longer than its
/// `--upstream-max-frame-bytes`, or no frame at all) are skipped, or at worst
/// end the session the safe way; never a second session, never a ban.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_garbage_inbound_frames_never_cause_a_conflict() {
    let max_frame = 1 << 20;
    let spec = ClusterSpec {
        node_env: vec![("SHARDGATE_UPSTREAM_MAX_FRAME_BYTES".into(), max_frame.to_string())],
        ..ClusterSpec::fast(DbEngine::Sqlite)
    };
    let Some(cluster) = start(spec).await else { return };
    let load = load::start(cluster.http.clone(), cluster.api.clone(), cluster.token.clone(), RECIPIENTS, RATE);
    let delivered = cluster.wait_more_deliveries(0, 20).await;
    let first = sessions_of_shard(&cluster, 0).await;
    let session = first.iter().find(|s| s["open"] == true).expect("an open session").clone();
    let account = session["account"].as_str().expect("account").to_string();
    let faults_at = now_ms();

    let oversized = "x".repeat(1_900_000);
    let garbage: Vec<String> = vec![
        "this is not json".into(),
        "{".into(),
        String::new(),
        r#"{"type":"no_such_frame","n":1}"#.into(),
        r#"{"type":"ack"}"#.into(),
        "\u{1}\u{2}\u{7f}".into(),
        "y".repeat(max_frame + 4096),
    ];
    for round in 0..4 {
        let injected: Value = cluster
            .http
            .post(format!("{}/sim/inbound", cluster.sim_api))
            .json(&json!({"account": account, "shard": 0, "from": "15557777", "body": oversized}))
            .send()
            .await
            .expect("inject inbound")
            .json()
            .await
            .expect("inbound json");
        assert!(injected["id"].is_string(), "round {round}: inbound not injected: {injected}");
        let faults: Value = cluster
            .http
            .post(format!("{}/sim/faults", cluster.sim_api))
            .json(&json!({"raw_lines": garbage}))
            .send()
            .await
            .expect("raw lines")
            .json()
            .await
            .expect("faults json");
        assert!(faults["raw_lines"].is_array(), "the sim takes no raw lines: {faults}");
        // Until some session has taken the garbage (a ping goes out every
        // session_timeout / 3), and a little longer for the coreapp to react.
        poll_every(Duration::from_secs(5), Duration::from_millis(20), || async {
            cluster.sim_get("/sim/faults").await.get("raw_lines").is_none().then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Anything that closed must have had time to reopen (or conflict).
    tokio::time::sleep(Duration::from_secs_f64(3.0 * cluster.spec.session_timeout)).await;
    cluster.wait_all_shards_served(Duration::from_secs(30)).await;
    cluster.wait_more_deliveries(delivered, 20).await;
    let report = load.finish().await;
    cluster.wait_delivered(&report.acked_ids(), Duration::from_secs(30)).await;

    let sessions = sessions_of_shard(&cluster, 0).await;
    println!("sessions of shard 0 (times from the first injection):\n{}", describe_sessions(&sessions, faults_at));
    assert_no_conflict(&cluster, 0, faults_at).await;
    let still_open = sessions.iter().any(|s| s["id"] == session["id"] && s["open"] == true);
    if !still_open {
        // It closed: acceptable only the safe way, which the overlap check
        // above has judged; say so in the output.
        println!("session {} did not survive the oddities", session["id"]);
    }
    cluster.assert_exactly_once_in_order(&report).await;
}

/// Finds `key` anywhere in a JSON document.
fn find_key<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) => map.get(key).or_else(|| map.values().find_map(|v| find_key(v, key))),
        Value::Array(items) => items.iter().find_map(|v| find_key(v, key)),
        _ => None,
    }
}

/// Item 2: the upstream keeps a silent session for 1 s; the API cannot make
/// the cluster believe less, so a paused primary still cannot overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_cannot_lower_the_upstream_session_timeout() {
    // The lease TTL (unhealthy_interval) must exceed the session timeout plus margins.
    let spec = ClusterSpec { session_timeout: 1.0, unhealthy_interval: 2.0, ..ClusterSpec::fast(DbEngine::Sqlite) };
    let Some(mut cluster) = start(spec).await else { return };
    let url = format!("{}/v1/settings/application", cluster.api);
    let load = load::start(cluster.http.clone(), cluster.api.clone(), cluster.token.clone(), RECIPIENTS, RATE);
    let delivered = cluster.wait_more_deliveries(0, 20).await;
    let mut problems = Vec::new();

    let response = cluster
        .http
        .patch(&url)
        .bearer_auth(&cluster.token)
        .json(&json!({"upstream_session_timeout": 0.01, "heartbeat_interval": 0.05, "unhealthy_interval": 0.2}))
        .send()
        .await
        .expect("PATCH settings");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    println!("PATCH answered {status}: {body}");
    if !status.is_client_error() {
        problems.push(format!("PATCH lowering upstream_session_timeout answered {status}, not 4xx: {body}"));
    } else {
        let error = &body["errors"][0];
        let named = [&error["title"], &error["details"]]
            .iter()
            .any(|v| v.as_str().is_some_and(|t| t.contains("upstream_session_timeout")));
        if !(error["code"].is_number() && named) {
            problems.push(format!("the refusal is not an on-prem error naming upstream_session_timeout: {body}"));
        }
    }
    let got: Value =
        cluster.http.get(&url).bearer_auth(&cluster.token).send().await.expect("GET settings").json().await.unwrap();
    let in_force = find_key(&got, "upstream_session_timeout").and_then(Value::as_f64);
    println!("GET shows upstream_session_timeout = {in_force:?}");
    if in_force != Some(1.0) {
        problems.push(format!("GET shows upstream_session_timeout {in_force:?}, not 1: {got}"));
    }

    // Let any change reach every node (one heartbeat plus a bound), then pause the primary.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cluster.shard(0).await;
    let paused_at = now_ms();
    cluster.coreapp(&before.owner).pause().expect("SIGSTOP");
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.coreapp(&before.owner).resume().expect("SIGCONT");
    cluster.wait_all_shards_served(Duration::from_secs(30)).await;
    cluster.wait_more_deliveries(delivered, 20).await;
    let report = load.finish().await;
    cluster.wait_delivered(&report.acked_ids(), Duration::from_secs(30)).await;

    let sessions = sessions_of_shard(&cluster, 0).await;
    println!("sessions of shard 0 (times from the pause):\n{}", describe_sessions(&sessions, paused_at));
    let stats = cluster.sim_stats().await;
    if stats["conflicts"] != 0 || stats["bans"] != 0 {
        let conflicts = cluster.sim_get("/sim/conflicts").await;
        problems.push(format!("after a 3 s pause of the primary: {stats}\nconflicts: {conflicts}"));
    }
    assert!(problems.is_empty(), "{}\n{}", problems.join("\n"), cluster.logs_hint());
    cluster.assert_exactly_once_in_order(&report).await;
}

/// Item 5: `kill -9` of the primary whose FIN (and RST) never reaches the
/// upstream: the sim keeps the old session until its keepalive timeout, and
/// no other coreapp may open one before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_with_lost_fin_never_opens_a_second_session() {
    let Some(mut cluster) = start(netns_spec()).await else { return };
    let before = cluster.shard(0).await;
    assert_eq!(before.owner, harness::netns::NETNS_COREAPP, "the namespaced coreapp must be primary");
    let load = load::start(cluster.http.clone(), cluster.api.clone(), cluster.token.clone(), RECIPIENTS, RATE);
    let delivered = cluster.wait_more_deliveries(0, 20).await;

    let sim_addr = sim_session_addr(&cluster);
    cluster.netns.as_ref().expect("namespace").drop_traffic_to(sim_addr);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let killed_at = now_ms();
    cluster.coreapp(&before.owner).kill9().await.expect("kill -9");

    let after = cluster.wait_new_primary(0, before.epoch, Duration::from_secs(15)).await;
    assert_ne!(after.owner, before.owner, "a different coreapp must take the shard");
    cluster.wait_more_deliveries(delivered, 20).await;
    let report = load.finish().await;
    cluster.wait_delivered(&report.acked_ids(), Duration::from_secs(30)).await;

    let sessions = sessions_of_shard(&cluster, 0).await;
    let (gap, gap_from) = longest_delivery_gap(&cluster, killed_at).await;
    println!("sessions of shard 0 (times from the kill):\n{}", describe_sessions(&sessions, killed_at));
    println!(
        "longest delivery gap: {:.3} s, from {:+} ms after the kill (target: heartbeat {} s + session_timeout {} s \
         + margin, under ~1.5 s)",
        gap.as_secs_f64(),
        gap_from - killed_at,
        cluster.spec.heartbeat_interval,
        cluster.spec.session_timeout
    );
    assert_no_conflict(&cluster, 0, killed_at).await;
    cluster.assert_exactly_once_in_order(&report).await;
    assert!(gap < Duration::from_secs(3), "delivery stopped for {gap:?} after the kill; {}", cluster.logs_hint());
}

/// Item 8: the primary loses the upstream (both ways) but still answers the
/// masters' heartbeats; it must be reported disconnected and replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_cut_off_from_upstream_is_replaced() {
    let Some(cluster) = start(netns_spec()).await else { return };
    let before = cluster.shard(0).await;
    assert_eq!(before.owner, harness::netns::NETNS_COREAPP, "the namespaced coreapp must be primary");
    let cut_node_key = cluster.coreapps[0].ready_str("control_addr");
    let load = load::start(cluster.http.clone(), cluster.api.clone(), cluster.token.clone(), RECIPIENTS, RATE);
    let delivered = cluster.wait_more_deliveries(0, 20).await;

    let ns = cluster.netns.as_ref().expect("namespace");
    let cut_at = Instant::now();
    let cut_at_ms = now_ms();
    ns.cut_off_from(sim_session_addr(&cluster));
    // Silence noticed (session_timeout), unhealthy for unhealthy_interval,
    // then the lease wait (the lease TTL is unhealthy_interval), plus a bound.
    let spec = &cluster.spec;
    let limit = Duration::from_secs_f64(spec.session_timeout + 2.0 * spec.unhealthy_interval + 2.0);
    // While cut and still owner, GET /v1/health must show the node disconnected.
    let mut disconnected_while_owner: Option<Duration> = None;
    let mut last_health = Value::Null;
    let deadline = cut_at + limit;
    let takeover = loop {
        let row = cluster.shard(0).await;
        let now = cluster.store.now_ms().await.expect("database clock");
        if row.epoch > before.epoch && row.lease_live(now) {
            break Some(row);
        }
        if disconnected_while_owner.is_none() && row.owner == before.owner {
            let health = cluster.http.get(format!("{}/v1/health", cluster.api)).bearer_auth(&cluster.token).send();
            if let Ok(health) = health.await {
                let health: Value = health.json().await.unwrap_or(Value::Null);
                if health["health"][cut_node_key.as_str()]["gateway_status"] == "disconnected" {
                    disconnected_while_owner = Some(cut_at.elapsed());
                }
                last_health = health;
            }
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let replaced_after = cut_at.elapsed();
    let sessions = sessions_of_shard(&cluster, 0).await;
    println!("sessions of shard 0 (times from the cut):\n{}", describe_sessions(&sessions, cut_at_ms));
    println!(
        "cut at +0: health showed {cut_node_key} disconnected: {disconnected_while_owner:?}; takeover: {:?} after \
         {replaced_after:?} (limit {limit:?}); last health while owner: {}",
        takeover.as_ref().map(|r| (&r.owner, r.epoch)),
        last_health["health"]
    );
    let stats = cluster.sim_stats().await;
    println!("sim stats: {stats}");
    let Some(after) = takeover else {
        ns.heal();
        panic!(
            "the primary cut off from the upstream was not replaced within {limit:?} (health disconnected: \
             {disconnected_while_owner:?}); {}",
            cluster.logs_hint()
        );
    };
    assert_ne!(after.owner, before.owner);
    cluster.wait_all_shards_served(Duration::from_secs(10)).await;
    cluster.wait_more_deliveries(delivered, 20).await;
    let (gap, gap_from) = longest_delivery_gap(&cluster, cut_at_ms).await;
    println!("longest delivery gap: {:.3} s, from {:+} ms after the cut", gap.as_secs_f64(), gap_from - cut_at_ms);
    ns.heal();
    let report = load.finish().await;
    cluster.wait_delivered(&report.acked_ids(), Duration::from_secs(30)).await;
    assert_no_conflict(&cluster, 0, cut_at_ms).await;
    cluster.assert_exactly_once_in_order(&report).await;
    assert!(
        disconnected_while_owner.is_some(),
        "GET /v1/health never showed the cut-off primary {cut_node_key} as disconnected while it held the shard"
    );
    assert!(gap <= limit, "delivery stopped for {gap:?} (limit {limit:?}); {}", cluster.logs_hint());
}
