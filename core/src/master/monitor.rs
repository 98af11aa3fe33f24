//! Heartbeat-based monitoring: every master, primary or secondary, asks each
//! coreapp for its status every `heartbeat_interval` and records each answer
//! in the database, so that the primary knows whether ANY master still hears
//! a coreapp. The primary also keeps its own latest probe per coreapp, which
//! tells a dead process (refused) from a silent one.

use super::decision::Probe;
use crate::cluster::Timing;
use crate::control::{ControlClient, ControlError};
use crate::store::nodes::NodeRecord;
use crate::store::{Store, StoreResult};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// How often the master repeats that a coreapp rejects its cluster secret.
const SECRET_MISMATCH_LOG_EVERY: Duration = Duration::from_secs(30);

/// This master's heartbeat state.
pub struct Monitor {
    client: ControlClient,
    probes: HashMap<String, Probe>,
    /// Coreapps that reject our cluster secret, with when that was last logged.
    secret_mismatch: HashMap<String, Instant>,
    started: Instant,
}

impl Monitor {
    /// A monitor that has not probed anything yet, heartbeating with `client`.
    pub fn new(client: ControlClient) -> Monitor {
        Monitor { client, probes: HashMap::new(), secret_mismatch: HashMap::new(), started: Instant::now() }
    }

    /// The control client the heartbeats go out with.
    pub fn client(&self) -> &ControlClient {
        &self.client
    }

    /// How long this master has been heartbeating.
    pub fn probing_for(&self) -> Duration {
        self.started.elapsed()
    }

    /// This master's latest probe of a coreapp.
    pub fn probe(&self, node_id: &str) -> Probe {
        self.probes.get(node_id).cloned().unwrap_or(Probe::Unknown)
    }

    /// Heartbeats every registered coreapp at once and returns their records.
    pub async fn heartbeat_all(
        &mut self,
        store: &Store,
        master_id: &str,
        timing: &Timing,
    ) -> StoreResult<Vec<NodeRecord>> {
        let (_, nodes) = store.nodes().await?;
        let coreapps: Vec<NodeRecord> = nodes.into_iter().filter(|n| n.role == "coreapp").collect();
        // A reply slower than one heartbeat is as good as none: the next one is due.
        let timeout = timing.heartbeat.max(Duration::from_millis(100));
        let probes = coreapps.iter().map(|node| {
            let client = self.client.clone();
            async move {
                let sent = Instant::now();
                let result = client.status(&node.control_addr, timeout).await;
                (node, result, sent.elapsed())
            }
        });
        for (node, result, rtt) in futures::future::join_all(probes).await {
            self.note_secret_mismatch(&node.node_id, &result);
            let probe = match result {
                Ok(status) => {
                    let rtt_us = i64::try_from(rtt.as_micros()).unwrap_or(i64::MAX);
                    if let Err(e) = store.record_heartbeat(master_id, &node.node_id, &status.instance_id, rtt_us).await
                    {
                        tracing::debug!("cannot record the heartbeat of {}: {e}", node.node_id);
                    }
                    let sessions_down_ms = status.shards.iter().map(|s| (s.shard, s.session_down_ms)).collect();
                    Probe::Answered { instance_id: status.instance_id, sessions_down_ms }
                }
                Err(ControlError::Refused(_)) => Probe::Refused,
                // Alive but deaf to us: an unanswered heartbeat, never proof
                // that the process (and so its session) is gone.
                Err(ControlError::Unauthorized(_)) => Probe::Silent,
                Err(e) => {
                    tracing::debug!("heartbeat to {} unanswered: {e}", node.node_id);
                    Probe::Silent
                }
            };
            self.probes.insert(node.node_id.clone(), probe);
        }
        Ok(coreapps)
    }

    /// Says clearly, every [`SECRET_MISMATCH_LOG_EVERY`], that a coreapp
    /// rejects this master's cluster secret, and when it accepts it again.
    fn note_secret_mismatch<T>(&mut self, node_id: &str, result: &Result<T, ControlError>) {
        match result {
            Err(ControlError::Unauthorized(addr)) => {
                let due = self.secret_mismatch.get(node_id).is_none_or(|at| at.elapsed() >= SECRET_MISMATCH_LOG_EVERY);
                if due {
                    tracing::warn!(
                        "coreapp {node_id} at {addr} rejects this master's cluster secret (401): its heartbeats \
                         count as unanswered; set the same SHARDGATE_CLUSTER_SECRET on every node"
                    );
                    self.secret_mismatch.insert(node_id.to_string(), Instant::now());
                }
            }
            Err(_) => {}
            Ok(_) => {
                if self.secret_mismatch.remove(node_id).is_some() {
                    tracing::info!("coreapp {node_id} accepts this master's cluster secret again");
                }
            }
        }
    }
}
