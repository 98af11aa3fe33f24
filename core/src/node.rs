//! What every node does at start: pick its identity, reach the database and
//! wait until the schema is one it knows.

use crate::store::{schema, Store, StoreError, StoreResult};
use std::time::Duration;

/// Who this process is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Stable id: the configured name, or the host name.
    pub node_id: String,
    /// Random per process; a restart gets a new one.
    pub instance_id: String,
}

impl NodeIdentity {
    /// A fresh identity for this process.
    pub fn new(node_id: Option<String>, role: &str) -> NodeIdentity {
        let node_id = node_id.unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default();
            let host = if host.is_empty() { "localhost".to_string() } else { host };
            format!("{role}-{host}-{}", std::process::id())
        });
        NodeIdentity { node_id, instance_id: uuid::Uuid::new_v4().simple().to_string() }
    }
}

/// Waits until the primary master has brought the schema to this build's
/// version; fails at once if the database is newer than this build.
pub async fn wait_for_schema(store: &Store, role: &str) -> StoreResult<()> {
    let known = schema::latest_version();
    let mut logged = false;
    loop {
        match store.check_not_newer().await {
            Ok(found) if found == known => return Ok(()),
            Ok(found) => {
                if !logged {
                    tracing::info!(
                        "{role} waiting for the primary master to bring the schema from version \
                         {found} to {known}"
                    );
                    logged = true;
                }
            }
            Err(e @ StoreError::SchemaTooNew { .. }) => return Err(e),
            Err(e) => tracing::warn!("{role} cannot read the schema version yet: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Seconds since the unix epoch on this node's clock (for display only).
pub fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}
