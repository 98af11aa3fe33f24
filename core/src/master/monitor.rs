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

/// This master's heartbeat state.
pub struct Monitor {
    client: ControlClient,
    probes: HashMap<String, Probe>,
    started: Instant,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor::new()
    }
}

impl Monitor {
    /// A monitor that has not probed anything yet.
    pub fn new() -> Monitor {
        Monitor { client: ControlClient::new(), probes: HashMap::new(), started: Instant::now() }
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
            let probe = match result {
                Ok(status) => {
                    let rtt_us = i64::try_from(rtt.as_micros()).unwrap_or(i64::MAX);
                    if let Err(e) = store.record_heartbeat(master_id, &node.node_id, &status.instance_id, rtt_us).await
                    {
                        tracing::debug!("cannot record the heartbeat of {}: {e}", node.node_id);
                    }
                    Probe::Answered { instance_id: status.instance_id }
                }
                Err(ControlError::Refused(_)) => Probe::Refused,
                Err(e) => {
                    tracing::debug!("heartbeat to {} unanswered: {e}", node.node_id);
                    Probe::Silent
                }
            };
            self.probes.insert(node.node_id.clone(), probe);
        }
        Ok(coreapps)
    }
}
