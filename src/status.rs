//! `shardgate status`: the cluster as one table, read straight from the
//! database, so it works while nodes are down: node, role, shards, epoch,
//! last heartbeat, health.

use serde::Serialize;
use shardgate_core::cluster::Settings;
use shardgate_core::config::DbConfig;
use shardgate_core::store::Store;

/// Options of `shardgate status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusConfig {
    #[command(flatten)]
    db: DbConfig,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
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
    health: String,
}

/// Prints the table.
pub async fn run(config: StatusConfig) -> anyhow::Result<()> {
    let store = Store::connect(&config.db).await?;
    let lease = store.read_master_lease().await?;
    let (now, nodes) = store.nodes().await?;
    let map = store.shard_map().await?;
    let observations = store.heartbeat_observations().await?;
    let settings = match store.settings_doc().await? {
        Some((_, doc)) => Settings::from_stored(&doc).unwrap_or_default(),
        None => Settings::default(),
    };
    let timing = settings.timing().map_err(|e| anyhow::anyhow!("stored settings invalid: {e}"))?;
    let unhealthy_ms = timing.unhealthy.as_millis() as f64;
    let stale_ms = timing.db_unhealthy_after.as_millis() as f64;
    let rows: Vec<NodeRow> = nodes
        .iter()
        .map(|n| {
            let since_seen = (now - n.last_seen) as f64;
            let heard = observations.iter().filter(|o| o.node_id == n.node_id).map(|o| o.last_ok_at).max();
            let (role, shards, epoch, last_heartbeat_ms, healthy) = match n.role.as_str() {
                "master" => {
                    let primary = lease.holder == n.node_id && lease.is_live();
                    let role = if primary { "primary_master" } else { "secondary_master" };
                    let epoch = if primary { lease.epoch.to_string() } else { "-".into() };
                    (role.to_string(), "-".to_string(), epoch, Some(since_seen), since_seen <= stale_ms)
                }
                "coreapp" => {
                    let owned: Vec<_> = map.rows.iter().filter(|r| r.owner == n.node_id).collect();
                    let shards = owned
                        .iter()
                        .map(|r| if r.lease_live(now) { r.shard.to_string() } else { format!("{}(pending)", r.shard) })
                        .collect::<Vec<_>>()
                        .join(",");
                    let epoch = owned.iter().map(|r| r.epoch.to_string()).collect::<Vec<_>>().join(",");
                    let last = heard.map(|t| (now - t) as f64);
                    let healthy = last.is_some_and(|l| l <= unhealthy_ms) && since_seen <= stale_ms;
                    ("coreapp".to_string(), shards, epoch, last, healthy)
                }
                other => {
                    (other.to_string(), "-".to_string(), "-".to_string(), Some(since_seen), since_seen <= stale_ms)
                }
            };
            NodeRow {
                node: n.node_id.clone(),
                role,
                address: n.control_addr.clone(),
                shards: if shards.is_empty() { "-".into() } else { shards },
                epoch: if epoch.is_empty() { "-".into() } else { epoch },
                last_heartbeat_s: last_heartbeat_ms.map(|ms| (ms / 100.0).round() / 10.0),
                health: if healthy { "healthy" } else { "unhealthy" }.into(),
            }
        })
        .collect();
    if config.json {
        let shards: Vec<_> = map
            .rows
            .iter()
            .map(|r| serde_json::json!({"shard": r.shard, "owner": r.owner, "epoch": r.epoch, "lease_live": r.lease_live(now)}))
            .collect();
        let out = serde_json::json!({
            "master_lease": {"holder": lease.holder, "epoch": lease.epoch, "live": lease.is_live()},
            "nodes": rows,
            "shards": shards,
        });
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
    Ok(())
}
