//! The cluster as the nodes themselves report it: every registered master and
//! coreapp is probed and asked for its status, all at once, with a short
//! timeout (see [`crate::node_health`]). A node that does not answer is still
//! listed, with why, so that an operator sees it rather than a shorter list.

use crate::node_health::{self, Health};
use shardgate_core::control::{ControlClient, ControlError, NodeStatus};
use shardgate_core::store::nodes::NodeRecord;
use shardgate_core::store::{Store, StoreResult};
use std::collections::HashMap;

/// One node: how it is registered, what it answered, and the verdict on it.
#[derive(Debug)]
pub struct NodeView {
    /// Its registration.
    pub record: NodeRecord,
    /// Its status, or why it could not be had.
    pub status: Result<NodeStatus, ControlError>,
    /// What is really the case with it.
    pub health: Health,
}

impl NodeView {
    /// The status, if the node answered.
    pub fn reachable(&self) -> Option<&NodeStatus> {
        self.status.as_ref().ok()
    }
}

/// The status of every master and coreapp, one per control address.
///
/// Node ids include the pid by default, so a restarted node leaves its old
/// record behind at the same address; only the most recently seen record of
/// an address is listed, or the new process would answer for both (the
/// older one is `superseded`, see [`node_health::assess`]).
pub async fn survey(store: &Store, control: &ControlClient) -> StoreResult<Vec<NodeView>> {
    let control_plane = |r: &NodeRecord| r.role == "master" || r.role == "coreapp";
    let cluster = node_health::assess(store, Some(control), control_plane).await?;
    let mut latest: HashMap<String, NodeView> = HashMap::new();
    for verdict in cluster.nodes {
        match latest.get(&verdict.record.control_addr) {
            Some(known) if known.record.last_seen >= verdict.record.last_seen => {}
            _ => {
                let addr = verdict.record.control_addr.clone();
                let status = verdict.reply.into_status(&addr);
                latest.insert(addr, NodeView { record: verdict.record, status, health: verdict.health });
            }
        }
    }
    let mut views: Vec<NodeView> = latest.into_values().collect();
    views.sort_by(|a, b| (&a.record.role, &a.record.node_id).cmp(&(&b.record.role, &b.record.node_id)));
    Ok(views)
}
