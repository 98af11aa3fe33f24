//! The cluster as the nodes themselves report it: every registered master and
//! coreapp is asked for its status over its control API, all at once, with a
//! short timeout. A node that does not answer is still listed, as unreachable,
//! so that an operator sees it rather than a shorter list.

use futures::future::join_all;
use shardgate_core::control::{ControlClient, ControlError, NodeStatus};
use shardgate_core::store::nodes::NodeRecord;
use shardgate_core::store::{Store, StoreResult};
use std::collections::HashMap;
use std::time::Duration;

/// How long a node has to answer its status call.
pub const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// One node: how it is registered, and what it answered.
#[derive(Debug)]
pub struct NodeView {
    /// Its registration.
    pub record: NodeRecord,
    /// Its status, or why it could not be had.
    pub status: Result<NodeStatus, ControlError>,
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
/// an address is asked, or the new process would answer for both.
pub async fn survey(store: &Store, control: &ControlClient) -> StoreResult<Vec<NodeView>> {
    let (_, records) = store.nodes().await?;
    let mut latest: HashMap<String, NodeRecord> = HashMap::new();
    for record in records.into_iter().filter(|r| r.role == "master" || r.role == "coreapp") {
        match latest.get(&record.control_addr) {
            Some(known) if known.last_seen >= record.last_seen => {}
            _ => {
                latest.insert(record.control_addr.clone(), record);
            }
        }
    }
    let mut records: Vec<NodeRecord> = latest.into_values().collect();
    records.sort_by(|a, b| (&a.role, &a.node_id).cmp(&(&b.role, &b.node_id)));
    let answers = join_all(records.iter().map(|r| control.status(&r.control_addr, STATUS_TIMEOUT))).await;
    Ok(records
        .into_iter()
        .zip(answers)
        .map(|(record, status)| {
            let status = status.and_then(|s| answered_as(&record, s));
            NodeView { record, status }
        })
        .collect())
}

/// A node that answers under another id is not the registered one: that
/// record is stale, and what answered is listed under its own record.
fn answered_as(record: &NodeRecord, status: NodeStatus) -> Result<NodeStatus, ControlError> {
    if status.node_id == record.node_id {
        Ok(status)
    } else {
        Err(ControlError::Other {
            addr: record.control_addr.clone(),
            reason: format!("node {} answers at this address now", status.node_id),
        })
    }
}
