//! The primary master's cycle: read the shard map and the observations,
//! decide (see [`super::decision`]), apply the reassignments with fenced
//! writes, wake the new owners, and state the outcome in one log line.

use super::decision::{decide, ClusterView, CoreappView, ShardDecision};
use super::election::MasterRole;
use super::monitor::Monitor;
use crate::cluster::Timing;
use crate::control::ControlClient;
use crate::policy::HealthPolicy;
use crate::store::master_lease::MasterAuth;
use crate::store::nodes::NodeRecord;
use crate::store::Store;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Runs one cycle and returns the decisions with whether each was applied.
pub async fn run_cycle(
    store: &Store,
    auth: &MasterAuth,
    role: &watch::Receiver<MasterRole>,
    coreapps: &[NodeRecord],
    monitor: &Monitor,
    timing: &Timing,
    health: &dyn HealthPolicy,
) -> anyhow::Result<Vec<(ShardDecision, bool)>> {
    let map = store.shard_map().await?;
    let observations = store.heartbeat_observations().await?;
    let view = ClusterView {
        now: map.now,
        shards: map.rows,
        coreapps: coreapps
            .iter()
            .map(|node| {
                let mine: Vec<_> = observations.iter().filter(|o| o.node_id == node.node_id).collect();
                CoreappView {
                    node_id: node.node_id.clone(),
                    last_seen: node.last_seen,
                    answers: mine.iter().map(|o| (o.master_id.clone(), o.last_ok_at)).collect(),
                    recent_rtt_us: mine.iter().map(|o| o.rtt_us.unsigned_abs()).collect(),
                    probe: monitor.probe(&node.node_id),
                }
            })
            .collect(),
        probing_for: monitor.probing_for(),
    };
    let mut outcome = Vec::new();
    for decision in decide(&view, timing, health) {
        let applied = match &decision {
            ShardDecision::Reassign { shard, expected_version, to, not_before, .. } => {
                // The lease may have lapsed while this cycle read; the write is
                // fenced on the database anyway, this only saves a round trip.
                let still_primary = role.borrow().acting_auth().is_some();
                if !still_primary {
                    false
                } else {
                    let done = store.reassign_shard(*shard, *expected_version, to, *not_before, auth).await?;
                    if done {
                        wake_new_owner(monitor.client(), coreapps, to, *shard, *not_before - view.now);
                    }
                    done
                }
            }
            _ => false,
        };
        outcome.push((decision, applied));
    }
    Ok(outcome)
}

/// Tells the new owner to claim now, or when `not_before` passes.
fn wake_new_owner(client: &ControlClient, coreapps: &[NodeRecord], to: &str, shard: u32, wait_ms: i64) {
    let Some(node) = coreapps.iter().find(|n| n.node_id == to) else { return };
    let addr = node.control_addr.clone();
    let client = client.clone();
    tokio::spawn(async move {
        if wait_ms > 0 {
            tokio::time::sleep(Duration::from_millis(wait_ms.unsigned_abs())).await;
        }
        let _ = client.wake(&addr, shard, Duration::from_millis(500)).await;
    });
}

/// Logs one line per cycle. A cycle that repeats the previous line verbatim
/// is logged at debug level, and again at info every 10 s, so that fast
/// heartbeat settings do not flood the log.
#[derive(Default)]
pub struct CycleLog {
    last: String,
    last_at: Option<Instant>,
}

impl CycleLog {
    /// States the cycle's outcome.
    pub fn log(&mut self, node_id: &str, epoch: i64, outcome: anyhow::Result<Vec<(ShardDecision, bool)>>) {
        let line = match outcome {
            Ok(decisions) => {
                let parts: Vec<String> = decisions
                    .iter()
                    .map(|(d, applied)| match d {
                        ShardDecision::Reassign { .. } if !applied => {
                            format!("{d} (not applied: the shard changed or the lease lapsed)")
                        }
                        _ => d.to_string(),
                    })
                    .collect();
                if parts.is_empty() {
                    format!("primary master {node_id}, epoch {epoch}: no shards yet")
                } else {
                    format!("primary master {node_id}, epoch {epoch}: {}", parts.join("; "))
                }
            }
            Err(e) => format!("primary master {node_id}, epoch {epoch}: cycle failed, no action: {e:#}"),
        };
        let repeat = line == self.last && self.last_at.is_some_and(|t| t.elapsed() < Duration::from_secs(10));
        if repeat {
            tracing::debug!("{line}");
        } else {
            tracing::info!("{line}");
            self.last_at = Some(Instant::now());
            self.last = line;
        }
    }
}
