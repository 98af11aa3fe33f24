//! The control plane answers only the cluster (issue 6, item 6): the control
//! ports of masters and coreapps turn away every request without the cluster
//! secret with 401 and no data, a node without a secret does not start, a
//! master treats a coreapp that rejects its secret as silent (never as gone),
//! and a flood of unauthenticated wake-ups does not slow the sends down.

mod harness;

use harness::{start, wait_for, ClusterSpec};
use serde_json::{json, Value};
use shardgate_core::config::DbEngine;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The flood: this many unauthenticated wake-ups over this many connections.
const FLOOD_REQUESTS: usize = 5_000;
const FLOOD_CONNECTIONS: usize = 100;

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client")
}

/// `GET /control/status` with `authorization` as the header, if any: status and body.
async fn control_status(http: &reqwest::Client, addr: &str, authorization: Option<&str>) -> (u16, String) {
    let mut request = http.get(format!("http://{addr}/control/status"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.expect("control port answers");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_ports_answer_only_callers_with_the_cluster_secret_and_the_cluster_still_fails_over() {
    let Some(mut cluster) = start(ClusterSpec::fast(DbEngine::Sqlite)).await else { return };
    let http = client();
    let primary = cluster.shard(0).await;
    let master = cluster.masters[0].ready_str("control_addr");
    let coreapp = cluster.coreapp(&primary.owner).ready_str("control_addr");
    let good = format!("Bearer {}", cluster.cluster_secret);
    for (node, addr) in [("master-1", &master), (primary.owner.as_str(), &coreapp)] {
        for (case, header) in [
            ("no secret", None),
            ("a wrong secret", Some("Bearer not-the-cluster-secret-at-all")),
            ("the secret without the Bearer scheme", Some(cluster.cluster_secret.as_str())),
        ] {
            let (status, body) = control_status(&http, addr, header).await;
            assert_eq!(status, 401, "{node} answered {case} with {status}: {body}");
            for field in ["pid", "instance_id", "epoch", "node_id"] {
                assert!(!body.contains(field), "{node}'s 401 to {case} leaks {field}: {body}");
            }
        }
        let (status, body) = control_status(&http, addr, Some(&good)).await;
        assert_eq!(status, 200, "{node} refused the cluster secret: {body}");
        let answer: Value = serde_json::from_str(&body).expect("status JSON");
        assert_eq!(answer["node_id"], node, "{body}");
    }
    let wake = http.post(format!("http://{coreapp}/control/wake")).json(&json!({"shard": 0})).send().await.unwrap();
    assert_eq!(wake.status().as_u16(), 401, "an unauthenticated wake-up is turned away");

    // The turned-away requests are logged, once per interval, naming the secret.
    let log = cluster.coreapp(&primary.owner).log_file.clone();
    wait_for("the coreapp to log the rejected control requests", Duration::from_secs(10), || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .any(|l| l.contains("WARN") && l.contains("rejected (401)") && l.contains("SHARDGATE_CLUSTER_SECRET"))
            .then_some(())
    })
    .await;

    // With every node given the secret, a kill -9 still moves the shard.
    cluster.coreapp(&primary.owner).kill9().await.expect("kill -9");
    cluster.wait_new_primary(0, primary.epoch, Duration::from_secs(15)).await;
    cluster.wait_all_shards_served(Duration::from_secs(15)).await;
    let stats = cluster.sim_stats().await;
    assert_eq!(stats["conflicts"], 0, "{stats}");
}

/// Runs `shardgate <role>` on a fresh SQLite directory with `secret` (or
/// none) and returns its exit status and stderr; it must exit within 60 s.
fn run_role(role: &str, secret: Option<&str>) -> (std::process::ExitStatus, String) {
    let dir = std::env::temp_dir().join(format!("shardgate-control-auth-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardgate"));
    command
        .args([role, "--data-dir", &dir.display().to_string()])
        .env_remove("SHARDGATE_CLUSTER_SECRET")
        .env_remove("WA_DB_ENGINE")
        .env("SHARDGATE_CONTROL_LISTEN", "127.0.0.1:0")
        .env("WEBAPP_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(secret) = secret {
        command.env("SHARDGATE_CLUSTER_SECRET", secret);
    }
    let mut child = command.spawn().expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("shardgate {role} without a usable secret kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let _ = std::fs::remove_dir_all(dir);
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_production_node_without_a_usable_cluster_secret_refuses_to_start_naming_the_variable() {
    for role in ["master", "coreapp", "webapp"] {
        for (case, secret, says) in [("no", None, "not set"), ("a short", Some("too-short"), "at least 16")] {
            let (status, stderr) = run_role(role, secret);
            assert!(!status.success(), "{role} started with {case} secret");
            let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("shardgate:")).collect();
            assert_eq!(errors.len(), 1, "{role} with {case} secret: one error line:\n{stderr}");
            assert!(
                errors[0].contains("SHARDGATE_CLUSTER_SECRET") && errors[0].contains(says),
                "{role} with {case} secret:\n{stderr}"
            );
            assert!(!stderr.contains("too-short"), "the error must not echo the secret:\n{stderr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coreapp_with_another_secret_is_a_silent_node_to_the_master_never_a_gone_one() {
    let Some(cluster) = start(ClusterSpec::fast(DbEngine::Sqlite)).await else { return };
    let mut stranger = cluster.start_coreapp_with_secret("coreapp-stranger", "a-secret-of-another-cluster").await;
    let log = cluster.masters.iter().map(|m| m.log_file.clone()).collect::<Vec<_>>();
    let line =
        wait_for("a master to log that coreapp-stranger rejects its secret", Duration::from_secs(15), || async {
            log.iter()
                .flat_map(|f| {
                    std::fs::read_to_string(f).unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>()
                })
                .find(|l| {
                    l.contains("WARN") && l.contains("coreapp-stranger") && l.contains("SHARDGATE_CLUSTER_SECRET")
                })
        })
        .await;
    assert!(line.contains("unanswered"), "the master says what the 401 means for the verdict: {line}");
    // Its heartbeats count as unanswered: no master records an answer from it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let heard = cluster.store.heartbeat_observations().await.expect("observations");
    assert!(
        heard.iter().all(|o| o.node_id != "coreapp-stranger"),
        "a coreapp that rejects the secret was recorded as answering"
    );
    // Nor can the webapp, which has the cluster's secret: health lists it as unreachable.
    let health: Value = cluster
        .http
        .get(format!("{}/v1/health", cluster.api))
        .bearer_auth(&cluster.token)
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("health JSON");
    let entry = &health["health"][stranger.ready_str("control_addr")];
    assert_eq!(entry["gateway_status"], "unreachable", "{health}");
    stranger.kill9().await.expect("kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unauthenticated_wakes_leaves_sends_under_one_second() {
    let Some(cluster) = start(ClusterSpec::fast(DbEngine::Sqlite)).await else { return };
    let primary = cluster.shard(0).await;
    let target = cluster.coreapps.iter().find(|c| c.name == primary.owner).expect("primary").ready_str("control_addr");

    let mut acked = Vec::new();
    let mut baseline = Vec::new();
    for i in 0..20 {
        let sent = Instant::now();
        acked.push(cluster.send_text("15550001111", &format!("before {i}")).await.expect("send"));
        baseline.push(sent.elapsed());
    }

    let next = Arc::new(AtomicUsize::new(0));
    let rejected = Arc::new(AtomicUsize::new(0));
    let other = Arc::new(AtomicUsize::new(0));
    let flood_started = Instant::now();
    let flood: Vec<_> = (0..FLOOD_CONNECTIONS)
        .map(|_| {
            let (next, rejected, other) = (next.clone(), rejected.clone(), other.clone());
            let url = format!("http://{target}/control/wake");
            // One client per task: each keeps its own connection open.
            let http = client();
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < FLOOD_REQUESTS {
                    let shard = rejected.load(Ordering::Relaxed) % 32;
                    match http.post(&url).json(&json!({"shard": shard})).send().await {
                        Ok(r) if r.status().as_u16() == 401 => rejected.fetch_add(1, Ordering::Relaxed),
                        _ => other.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    // The first send starts right behind the flood's spawn, so at least one
    // runs while it does, however fast the flood ends on a given machine.
    let mut during = Vec::new();
    for i in 0.. {
        let sent = Instant::now();
        acked.push(cluster.send_text("15550001111", &format!("during {i}")).await.expect("send during the flood"));
        during.push(sent.elapsed());
        if flood.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    let flood_took = flood_started.elapsed();
    for task in flood {
        task.await.expect("flood task");
    }
    let (rejected, other) = (rejected.load(Ordering::Relaxed), other.load(Ordering::Relaxed));

    let p50 = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let worst = during.iter().max().copied().unwrap_or_default();
    eprintln!(
        "flood of {FLOOD_REQUESTS} unauthenticated wake-ups over {FLOOD_CONNECTIONS} connections took {flood_took:?} \
         ({:.0}/s; {rejected} answered 401, {other} otherwise); send p50 {:?} before, {:?} during ({} sends), max {worst:?}",
        FLOOD_REQUESTS as f64 / flood_took.as_secs_f64(),
        p50(&mut baseline),
        p50(&mut during.clone()),
        during.len(),
    );
    assert_eq!(other, 0, "every flood request is answered 401");
    assert_eq!(rejected, FLOOD_REQUESTS);
    assert!(worst < Duration::from_secs(1), "a send took {worst:?} during the flood");
    cluster.wait_delivered(&acked, Duration::from_secs(20)).await;

    // The rejections are summed up, not logged one by one.
    let log = std::fs::read_to_string(&cluster.coreapps.iter().find(|c| c.name == primary.owner).unwrap().log_file)
        .unwrap_or_default();
    let lines = log.lines().filter(|l| l.contains("rejected (401)")).count();
    assert!((1..=5).contains(&lines), "{lines} log lines for {FLOOD_REQUESTS} rejected requests");
    let stats = cluster.sim_stats().await;
    assert_eq!(stats["conflicts"], 0, "{stats}");
}
