//! `shardgate status`: the cluster as one table: node, role, shards, epoch,
//! last heartbeat, health. The table is read from the database, so it works
//! while nodes are down; the health word comes from probing every node
//! (`shardgate_gateway::node_health`, which `GET /v1/health` uses too).
//! `--prune` deletes the records of nodes gone for good.

use serde::Serialize;
use shardgate_core::config::DbConfig;
use shardgate_core::control::ControlClient;
use shardgate_core::control_auth::{ClusterSecret, SECRET_ENV};
use shardgate_core::store::master_lease::MasterLease;
use shardgate_core::store::shard_map::ShardMap;
use shardgate_core::store::{Store, StoreResult};
use shardgate_gateway::node_health::{self, ClusterHealth, Health, NodeVerdict};
use std::time::Duration;

/// Options of `shardgate status` (no `Debug`: they hold the cluster secret).
#[derive(Clone, clap::Args)]
pub struct StatusConfig {
    #[command(flatten)]
    db: DbConfig,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Delete the records of nodes gone for good (gone, superseded ones
    /// included, with a record older than the stale threshold), except a
    /// shard owner's and the master lease holder's.
    #[arg(long)]
    prune: bool,
    /// The cluster secret, to ask masters and coreapps for their status.
    /// Without it they are probed by TCP connect only, which cannot tell a
    /// paused node from a running one.
    #[arg(long = "cluster-secret", env = SECRET_ENV, hide_env_values = true)]
    cluster_secret: Option<String>,
}

/// One row of the table.
#[derive(Debug, Serialize)]
struct NodeRow {
    node: String,
    role: String,
    address: String,
    shards: String,
    epoch: String,
    last_heartbeat_s: Option<f64>,
    /// Since the node's last liveness write (the record's age).
    last_seen_s: f64,
    health: Health,
    /// Why the health is what it is.
    reason: String,
}

/// What `--prune` did with one node, and why.
#[derive(Debug, Serialize)]
struct PruneLine {
    node: String,
    reason: String,
}

/// What `--prune` did.
#[derive(Debug, Default, Serialize)]
struct Pruned {
    removed: Vec<PruneLine>,
    kept: Vec<PruneLine>,
}

/// Prints the table, and prunes when asked.
pub async fn run(config: StatusConfig) -> anyhow::Result<()> {
    let store = Store::connect(&config.db).await?;
    let mut notes = Vec::new();
    // An empty variable (`SHARDGATE_CLUSTER_SECRET=` in an env file) means unset.
    let control = match config.cluster_secret.as_deref().filter(|s| !s.is_empty()) {
        Some(secret) => Some(ControlClient::new(&ClusterSecret::new(secret).map_err(anyhow::Error::msg)?)),
        None => {
            notes.push(format!(
                "{SECRET_ENV} is not set: masters and coreapps were probed by TCP connect only, \
                 so a paused one cannot be told from a running one"
            ));
            None
        }
    };
    let cluster = node_health::assess(&store, control.as_ref(), |_| true).await?;
    let lease = store.read_master_lease().await?;
    let map = store.shard_map().await?;
    let rows: Vec<NodeRow> = cluster.nodes.iter().map(|v| row(v, &cluster, &lease, &map)).collect();
    let pruned = if config.prune { Some(prune(&store, &cluster, &lease, &map).await?) } else { None };
    if config.json {
        let shards: Vec<_> = map
            .rows
            .iter()
            .map(|r| serde_json::json!({"shard": r.shard, "owner": r.owner, "epoch": r.epoch, "lease_live": r.lease_live(map.now)}))
            .collect();
        let mut out = serde_json::json!({
            "master_lease": {"holder": lease.holder, "epoch": lease.epoch, "live": lease.is_live()},
            "nodes": rows,
            "shards": shards,
            "notes": notes,
        });
        if let Some(pruned) = pruned {
            out["prune"] = serde_json::to_value(pruned)?;
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{:<22} {:<17} {:<22} {:<14} {:<8} {:>14}  HEALTH",
        "NODE", "ROLE", "ADDRESS", "SHARDS", "EPOCH", "LAST HEARTBEAT"
    );
    for r in &rows {
        let last = r.last_heartbeat_s.map_or("never".to_string(), |s| format!("{s:.1} s ago"));
        println!(
            "{:<22} {:<17} {:<22} {:<14} {:<8} {:>14}  {}",
            r.node, r.role, r.address, r.shards, r.epoch, last, r.health
        );
    }
    for r in rows.iter().filter(|r| r.health != Health::Healthy) {
        println!("{} is {}: {}", r.node, r.health, r.reason);
    }
    for note in &notes {
        println!("note: {note}");
    }
    if let Some(pruned) = pruned {
        for line in &pruned.removed {
            println!("removed {}: {}", line.node, line.reason);
        }
        for line in &pruned.kept {
            println!("kept {}: {}", line.node, line.reason);
        }
    }
    Ok(())
}

/// The table row of one node.
fn row(v: &NodeVerdict, cluster: &ClusterHealth, lease: &MasterLease, map: &ShardMap) -> NodeRow {
    let node = &v.record.node_id;
    let (role, shards, epoch, last_heartbeat) = match v.record.role.as_str() {
        "master" => {
            let primary = lease.holder == *node && lease.is_live();
            let role = if primary { "primary_master" } else { "secondary_master" };
            let epoch = if primary { lease.epoch.to_string() } else { String::new() };
            (role.to_string(), String::new(), epoch, Some(v.seen_ago))
        }
        "coreapp" => {
            let owned: Vec<_> = map.rows.iter().filter(|r| r.owner == *node).collect();
            let shards = owned
                .iter()
                .map(|r| if r.lease_live(map.now) { r.shard.to_string() } else { format!("{}(pending)", r.shard) })
                .collect::<Vec<_>>()
                .join(",");
            let epoch = owned.iter().map(|r| r.epoch.to_string()).collect::<Vec<_>>().join(",");
            ("coreapp".to_string(), shards, epoch, v.heard_ago)
        }
        other => (other.to_string(), String::new(), String::new(), Some(v.seen_ago)),
    };
    let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
    NodeRow {
        node: node.clone(),
        role,
        address: v.record.control_addr.clone(),
        shards: dash(shards),
        epoch: dash(epoch),
        last_heartbeat_s: last_heartbeat.map(tenths),
        last_seen_s: tenths(v.seen_ago),
        health: v.health,
        reason: v.reason(&cluster.thresholds),
    }
}

/// Deletes the records of nodes gone for good, never a shard owner's or the
/// master lease holder's (their rows name them, and the store checks again
/// as it deletes); says for every node what became of it.
async fn prune(store: &Store, cluster: &ClusterHealth, lease: &MasterLease, map: &ShardMap) -> StoreResult<Pruned> {
    let t = &cluster.thresholds;
    let mut pruned = Pruned::default();
    for v in &cluster.nodes {
        let node = v.record.node_id.clone();
        let owned: Vec<String> = map.rows.iter().filter(|r| r.owner == node).map(|r| r.shard.to_string()).collect();
        let (removed, reason) = if !v.gone_for_good(t) {
            let reason = if v.health == Health::Gone {
                format!(
                    "gone, but its record is only {} old (kept until {} without a liveness write)",
                    secs(v.seen_ago),
                    secs(t.stale_after(&v.record.role))
                )
            } else {
                v.health.to_string()
            };
            (false, reason)
        } else if !owned.is_empty() {
            (false, format!("gone, but owns shard {} (the masters reassign it)", owned.join(",")))
        } else if lease.holder == node {
            (false, "gone, but holds the master lease (another master takes it over)".to_string())
        } else if store.remove_node(&node, v.record.last_seen).await? {
            (true, format!("{} ({} at {}): {}", v.health, v.record.role, v.record.control_addr, v.reason(t)))
        } else {
            (false, "its record changed since it was read (it came back, or took a shard or the master lease)".into())
        };
        let line = PruneLine { node, reason };
        if removed {
            pruned.removed.push(line);
        } else {
            pruned.kept.push(line);
        }
    }
    Ok(pruned)
}

/// Seconds, rounded to tenths.
fn tenths(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

/// A duration as seconds with one decimal.
fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}
