//! Failover under fault, with real processes on real databases, judged by
//! the upstream-sim: kill -9 and SIGSTOP of the primary coreapp, kill -9 of
//! the masters, and the database cut off for longer than the lease TTL.
//! Every scenario runs under a steady send load and ends with the same
//! verdict: zero conflicts, zero bans, every acknowledged message delivered
//! exactly once and in order per recipient.

mod harness;

use harness::{load, start, wait_for, ClusterSpec};
use serde_json::Value;
use shardgate_core::config::DbEngine;
use std::time::Duration;

/// Recipients of the load, each with its own sequential sender.
const RECIPIENTS: usize = 4;
/// Messages per second per recipient.
const RATE: f64 = 15.0;

/// The sim's sessions of one node.
fn sessions_of<'a>(sessions: &'a Value, node: &str) -> Vec<&'a Value> {
    sessions["sessions"].as_array().into_iter().flatten().filter(|s| s["node"] == node).collect()
}

async fn kill9_primary_coreapp(engine: DbEngine) {
    let Some(mut cluster) = start(ClusterSpec::fast(engine)).await else { return };
    let before = cluster.shard(0).await;
    let load = load::start(cluster.http.clone(), cluster.api.clone(), cluster.token.clone(), RECIPIENTS, RATE);
    let delivered = cluster.wait_more_deliveries(0, 20).await;

    cluster.coreapp(&before.owner).kill9().await.expect("kill -9");
    let after = cluster.wait_new_primary(0, before.epoch, Duration::from_secs(10)).await;
    assert_ne!(after.owner, before.owner, "a different coreapp must take the shard");
    cluster.wait_more_deliveries(delivered, 20).await;

    let report = load.finish().await;
    cluster.wait_delivered(&report.acked_ids(), Duration::from_secs(30)).await;
    cluster.assert_exactly_once_in_order(&report).await;
    assert_eq!(report.refused() + report.unknown_outcomes(), 0, "the API must keep accepting during the failover");
}

async fn paused_primary_never_overlaps_new_primary(engine: DbEngine) {
    let Some(mut cluster) = start(ClusterSpec::fast(engine)).await else { return };
    let before = cluster.shard(0).await;
    let zombie = before.owner.clone();
    let load = load::start(cluster.http.clone(), cluster.api.clone(), cluster.token.clone(), RECIPIENTS, RATE);
    let delivered = cluster.wait_more_deliveries(0, 20).await;

    cluster.coreapp(&zombie).pause().expect("SIGSTOP");
    // The scenario: a zombie paused for three unhealthy intervals.
    tokio::time::sleep(Duration::from_secs_f64(3.0 * cluster.spec.unhealthy_interval)).await;
    let takeover = cluster.new_primary_within(0, before.epoch, Duration::from_secs(10)).await;
    // A database server finishes a paused client's statement on its own, so
    // there another coreapp must take over. SQLite's write lock lives in the
    // writing process: a zombie paused inside a write stalls every writer,
    // the masters included, until it resumes (safely: nobody can promote).
    assert!(
        takeover.is_some() || engine == DbEngine::Sqlite,
        "no coreapp took over from the paused primary; {}",
        cluster.logs_hint()
    );
    cluster.coreapp(&zombie).resume().expect("SIGCONT");
    if let Some(after) = &takeover {
        assert_ne!(after.owner, zombie);
        // The resumed zombie learns it lost the shard and holds nothing.
        let status_url = format!("http://{}/control/status", cluster.coreapp(&zombie).ready_str("control_addr"));
        wait_for("the zombie to drop its shard", Duration::from_secs(10), || async {
            let request = cluster.http.get(&status_url).bearer_auth(&cluster.cluster_secret);
            let status: Value = request.send().await.ok()?.json().await.ok()?;
            status["shards"].as_array()?.is_empty().then_some(())
        })
        .await;
    }
    cluster.wait_all_shards_served(Duration::from_secs(30)).await;
    cluster.wait_more_deliveries(delivered, 20).await;

    let report = load.finish().await;
    cluster.wait_delivered(&report.acked_ids(), Duration::from_secs(30)).await;
    cluster.assert_exactly_once_in_order(&report).await;

    let Some(after) = takeover else { return };
    // The zombie's sessions all closed before the new primary's first opened,
    // and it opened none afterwards.
    let sessions = cluster.sim_get("/sim/sessions").await;
    let new_opened = sessions_of(&sessions, &after.owner)
        .iter()
        .filter_map(|s| s["opened_at_ms"].as_i64())
        .min()
        .expect("the new primary opened a session");
    for s in sessions_of(&sessions, &zombie) {
        let closed = s["closed_at_ms"].as_i64().unwrap_or_else(|| panic!("zombie session still open: {s}"));
        assert!(closed <= new_opened, "zombie session {s} overlapped the new primary's (opened {new_opened})");
        assert!(s["opened_at_ms"].as_i64().unwrap() < new_opened, "zombie opened a session after failover: {s}");
    }
    let messages = cluster.sim_get("/sim/messages").await;
    let zombie_late = messages["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["node"] == zombie.as_str() && m["received_at_ms"].as_i64() >= Some(new_opened))
        .count();
    assert_eq!(zombie_late, 0, "the zombie talked upstream while another coreapp was primary");
}

async fn masters_down_coreapps_keep_serving(engine: DbEngine) {
    let Some(mut cluster) = start(ClusterSpec::fast(engine)).await else { return };
    let lease = cluster.store.read_master_lease().await.expect("lease");
    assert!(lease.is_live());
    let primary = cluster.masters.iter().position(|m| m.name == lease.holder).expect("primary master is ours");
    cluster.masters[primary].kill9().await.expect("kill -9 primary master");
    let taken = wait_for("a secondary master to take the lease", Duration::from_secs(10), || async {
        let l = cluster.store.read_master_lease().await.ok()?;
        (l.is_live() && l.holder != lease.holder && l.epoch > lease.epoch).then_some(l)
    })
    .await;
    assert_ne!(taken.holder, lease.holder);

    // Now no master at all: the coreapp must keep its session and deliver.
    for m in cluster.masters.iter_mut() {
        m.kill9().await.expect("kill -9 master");
    }
    let sessions_before = cluster.sim_stats().await["sessions_opened"].as_u64().expect("sessions_opened");
    let shard_before = cluster.shard(0).await;
    let load = load::start(cluster.http.clone(), cluster.api.clone(), cluster.token.clone(), RECIPIENTS, RATE);
    // Run well past the lease TTL and the unhealthy interval with no master.
    tokio::time::sleep(Duration::from_secs_f64(3.0 * cluster.spec.unhealthy_interval)).await;
    let report = load.finish().await;
    assert!(report.acked_ids().len() >= 20, "the API must accept while no master runs");
    cluster.wait_delivered(&report.acked_ids(), Duration::from_secs(30)).await;
    cluster.assert_exactly_once_in_order(&report).await;
    // No reassignment can happen without a master: the same coreapp served
    // under the same epoch throughout (it may reconnect, e.g. after a slow
    // renewal made it fence itself, but only as itself).
    assert_eq!(cluster.shard(0).await.epoch, shard_before.epoch);
    let sessions = cluster.sim_get("/sim/sessions").await;
    let during: Vec<&Value> = sessions["sessions"].as_array().unwrap().iter().skip(sessions_before as usize).collect();
    for s in during {
        assert_eq!(s["node"], shard_before.owner.as_str(), "only the primary may open sessions: {s}");
        assert_eq!(s["epoch"], shard_before.epoch, "{s}");
    }
}

async fn database_outage_self_fences_and_recovers(engine: DbEngine) {
    let spec = ClusterSpec { db_proxy: true, ..ClusterSpec::fast(engine) };
    let Some(cluster) = start(spec).await else { return };
    let load = load::start(cluster.http.clone(), cluster.api.clone(), cluster.token.clone(), RECIPIENTS, RATE);
    let delivered = cluster.wait_more_deliveries(0, 20).await;

    cluster.cut_database();
    // The primary cannot renew, so it must close its session on its own.
    wait_for("the primary coreapp to self-fence", Duration::from_secs(5), || async {
        (cluster.sim_stats().await["sessions_open"].as_u64() == Some(0)).then_some(())
    })
    .await;
    // Keep the database away for longer than the lease TTL.
    tokio::time::sleep(Duration::from_secs_f64(2.0 * cluster.spec.unhealthy_interval)).await;
    cluster.restore_database();
    cluster.wait_all_shards_served(Duration::from_secs(30)).await;
    cluster.wait_more_deliveries(delivered, 20).await;

    let report = load.finish().await;
    cluster.wait_delivered(&report.acked_ids(), Duration::from_secs(30)).await;
    cluster.assert_exactly_once_in_order(&report).await;
}

/// `scenario => sqlite_test, postgres_test, mariadb_test;` (a `-` skips an engine).
macro_rules! on_engines {
    ($($scenario:ident => $($engine:ident : $test:ident),+;)*) => {$($(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            $scenario(DbEngine::$engine).await;
        }
    )+)*};
}

on_engines! {
    kill9_primary_coreapp =>
        Sqlite: sqlite_killed_primary_coreapp_fails_over_delivering_every_message_once,
        Postgres: postgres_killed_primary_coreapp_fails_over_delivering_every_message_once,
        MySql: mariadb_killed_primary_coreapp_fails_over_delivering_every_message_once;
    paused_primary_never_overlaps_new_primary =>
        Sqlite: sqlite_paused_primary_never_overlaps_new_primary,
        Postgres: postgres_paused_primary_never_overlaps_new_primary,
        MySql: mariadb_paused_primary_never_overlaps_new_primary;
    masters_down_coreapps_keep_serving =>
        Sqlite: sqlite_secondary_master_takes_over_and_coreapps_serve_without_masters,
        Postgres: postgres_secondary_master_takes_over_and_coreapps_serve_without_masters,
        MySql: mariadb_secondary_master_takes_over_and_coreapps_serve_without_masters;
    database_outage_self_fences_and_recovers =>
        Postgres: postgres_database_outage_self_fences_and_recovers_without_loss,
        MySql: mariadb_database_outage_self_fences_and_recovers_without_loss;
}
